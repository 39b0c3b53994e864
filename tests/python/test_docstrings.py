"""The Examples sections of the public modules run as doctests."""

import doctest
import importlib

import pytest

MODULES = ["gprat", "gprat.gp", "gprat.kernels", "gprat.linalg", "gprat.runtime", "gprat.optimize",
           "gprat.gprat_compat", "gprat.simulate", "gprat.model_io", "gprat.cli"]


@pytest.mark.parametrize("name", MODULES + ["gprat.regressor", "gprat._sklearn_kernels"])
def test_examples(name):
    if name in ("gprat.regressor", "gprat._sklearn_kernels"):
        pytest.importorskip("sklearn")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
