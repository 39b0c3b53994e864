import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gprat  # noqa: E402

RTOL = {np.float64: 1e-9, np.float32: 2e-3}


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    gprat.start(request.param)
    yield request.param
    gprat.start(None)
