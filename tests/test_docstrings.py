"""Every docstring example in the package runs (numpy-style Examples blocks are doctests), as
a user would type it: in an empty namespace, so an example imports every name it uses."""

import doctest
import importlib
import pkgutil

import pytest

import pmrisk
import pmrisk.kernel

MODULES = sorted(
    {m.name for m in pkgutil.walk_packages(pmrisk.__path__, "pmrisk.")
     if m.name != "pmrisk.__main__"}
    | {m.name for m in pkgutil.iter_modules(pmrisk.kernel.__path__, "pmrisk.kernel.")}
    | {"pmrisk"})


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    res = doctest.testmod(module, globs={},
                          optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} doctest failure(s) in {name}"
