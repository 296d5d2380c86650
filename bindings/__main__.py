"""``python -m pmrisk ...`` is the same as the ``pmrisk`` command."""

import sys

from .cli.commands import main

sys.exit(main())
