"""``python -m pmrisk ...`` is the same as the ``pmrisk`` command."""

import sys

from .cli import main

sys.exit(main())
