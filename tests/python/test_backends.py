"""The backend contract (gprat.backends): device strings, availability, and the refusals."""

import numpy as np
import pytest

import gprat
from gprat import backends


@pytest.mark.parametrize("text, kind, index", [("cpu", "cpu", 0), ("CPU", "cpu", 0), ("cuda", "cuda", 0),
                                                ("cuda:3", "cuda", 3), (" cuda:0 ", "cuda", 0)])
def test_parse_device(text, kind, index):
    device = backends.parse_device(text)
    assert (device.kind, device.index) == (kind, index)
    assert backends.parse_device(device) is device


@pytest.mark.parametrize("bad, error", [("gpu", ValueError), ("cuda:-1", ValueError), ("cuda:x", ValueError),
                                        ("cuda:", ValueError), (0, TypeError), (None, TypeError)])
def test_bad_device_strings(bad, error):
    with pytest.raises(error, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        backends.parse_device(bad)


@pytest.mark.skipif(backends.cuda_built(), reason="this build has the CUDA backend")
def test_cuda_without_the_backend_says_why():
    assert not gprat.cuda_available() and gprat.cuda_device_count() == 0 and not gprat.compiled_with_cuda()
    with pytest.raises(gprat.BackendUnavailableError, match="no CUDA backend"):
        gprat.ExactGP(gprat.kernels.SquaredExponential(1.0), device="cuda")
    with pytest.raises(gprat.BackendUnavailableError, match="no CUDA backend"):
        gprat.ExactGP(gprat.kernels.SquaredExponential(1.0), device="cuda:1")


def test_cpu_device_runs():
    X = np.linspace(0, 1, 20)[:, None]
    gp = gprat.ExactGP(gprat.kernels.SquaredExponential(0.3), device="cpu").fit(X, np.sin(X[:, 0]))
    assert str(gp.device) == "cpu" and "device='cpu'" in repr(gp)


@pytest.mark.parametrize("gpu_id, error, match", [("1", TypeError, "gpu_id must be a non-negative integer"),
                                                   (1.5, TypeError, "gpu_id must be a non-negative integer"),
                                                   (-1, ValueError, "gpu_id must be a non-negative integer")])
def test_gprat_gpu_id_is_checked_before_use(gpu_id, error, match):
    # The defect: int(gpu_id) was called unchecked (a string "1" passed, a float was truncated).
    series = list(np.sin(np.arange(40) / 5.0))
    with pytest.raises(error, match=match):
        gprat.GP(series, series, 4, 4, n_reg=4, gpu_id=gpu_id)
