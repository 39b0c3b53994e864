import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

RTOL = {np.float64: 1e-9, np.float32: 2e-3}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    # Imported here, not at module level, so that test_cpp_suite.py (which needs no built
    # gprat) can still be collected and run when the Python extension is missing.
    import gprat

    gprat.start(request.param)
    yield request.param
    gprat.start(None)
