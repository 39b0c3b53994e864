"""The Examples sections of every module of the package run as doctests."""

import doctest
import importlib
import pkgutil

import pytest

import gprat

#: Every module of the package, found by walking it (a new module is covered without listing it).
MODULES = ["gprat"] + sorted(
    info.name for info in pkgutil.walk_packages(gprat.__path__, prefix="gprat.") if not info.name.startswith("gprat._core")
)
#: Modules that import scikit-learn, an optional dependency.
NEEDS_SKLEARN = {"gprat.estimator", "gprat.kernels.sklearn", "gprat.sparse_estimator"}


def test_the_walk_finds_the_package_layout():
    for name in ("gprat.models.exact", "gprat.kernels.registry", "gprat.optim.adam", "gprat.io.model_file",
                 "gprat.cli.main", "gprat.compat.gprat", "gprat.estimator"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    if name in NEEDS_SKLEARN:
        pytest.importorskip("sklearn")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
