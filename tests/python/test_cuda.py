"""The CUDA backend (device="cuda"): the exact-GP assertions of test_exact_gp.py on the device,
against the dense NumPy reference (tests/reference.py) and the CPU engine, for float64 and
float32, every tile size (ragged ones too), kernel trees, the whole-matrix Cholesky, the errors,
jitter, memory and Ctrl-C.

Without a GPU (or without the backend) every device test is skipped with the reason (pytest -rs
prints it); what must hold there, the clear BackendUnavailableError, is tested instead.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest

import gprat
import reference as ref
from gprat import backends, kernels

HAVE_GPU = gprat.cuda_available()
WHY = gprat.cuda_status() or "a CUDA device is present"
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=f"no usable CUDA device: {WHY}")

N, M, D = 157, 41, 3  # n not a multiple of the tile sizes below: ragged last tiles
TILES = [None, 16, 50, 157, 400]


def problem(rng, n=N, m=M, d=D):
    X = rng.uniform(-1.5, 1.5, size=(n, d))
    y = np.sin(2 * X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    Xs = rng.uniform(-1.7, 1.7, size=(m, d))
    return X, y, Xs


def model(name, ard, tile_size, dtype=np.float64, device="cuda", **kw):
    ls = np.array([0.6, 0.9, 1.4]) if ard else 0.8
    k = getattr(kernels, name)(lengthscale=ls, signal_variance=1.3)
    return gprat.ExactGP(k, noise_variance=0.05, tile_size=tile_size, dtype=dtype, device=device, **kw)


def assert_close(a, b, rtol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(), 1e-300)
    err = np.abs(a - b).max() / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.1g}"


def assert_gradient_close(grad, want, rtol):
    for j in range(len(want)):  # every entry, relative to its own size
        assert abs(grad[j] - want[j]) <= rtol * max(abs(want[j]), 1e-3 * np.abs(want).max()), (j, grad, want)


# ------------------------------------------------------------------------------------------
# Everywhere: what is reported, and the error without a device
# ------------------------------------------------------------------------------------------


def test_availability_is_reported_without_exceptions():
    assert isinstance(gprat.cuda_available(), bool)
    count = gprat.cuda_device_count()
    assert isinstance(count, int) and count >= 0
    assert gprat.cuda_available() == (count > 0)
    assert isinstance(gprat.cuda_status(), str)
    assert (gprat.cuda_status() == "") == gprat.cuda_available()


@pytest.mark.skipif(HAVE_GPU, reason="a CUDA device is present: the error path needs a machine without one")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_device_raises_backend_unavailable(device):
    k = kernels.SquaredExponential(lengthscale=1.0, signal_variance=1.0)
    with pytest.raises(gprat.BackendUnavailableError, match="not available") as excinfo:
        gprat.ExactGP(k, device=device)
    assert "device='cpu'" in str(excinfo.value)  # the message says what to do
    assert gprat.cuda_status() in str(excinfo.value) or "0 device" in str(excinfo.value)


@pytest.mark.skipif(not backends.cuda_built() or HAVE_GPU, reason="needs the CUDA module built and no device")
def test_cuda_module_loads_and_counts_zero_devices_here():
    # The module was built (nvcc was there) and must load where no GPU is: device_count is 0
    # and the engine's constructor refuses with BackendUnavailableError, not a crash.
    try:
        import gprat._cuda as cuda
    except ImportError as error:  # the CUDA libraries are absent here: that is reported too
        assert "cannot be loaded" in gprat.cuda_status(), (error, gprat.cuda_status())
        return
    assert cuda.device_count() == 0
    assert cuda.device_status() != ""
    X = np.zeros((4, 2))
    core_kernel = kernels.SquaredExponential(lengthscale=1.0, signal_variance=1.0)._to_core()
    with pytest.raises(gprat.BackendUnavailableError, match="CUDA device 0 is not available"):
        cuda.ExactGP64(core_kernel, X, np.zeros(4), 0.1, device=0)


def test_gpu_id_maps_to_device():
    assert backends.device_from_gpu_id(None, None) == ("cpu", None)
    assert backends.device_from_gpu_id(2, 16) == ("cuda:2", 16)
    with pytest.raises(ValueError, match="gpu_id"):
        backends.device_from_gpu_id(-1)
    with pytest.raises(ValueError, match="n_units"):
        backends.device_from_gpu_id(0, 0)


# ------------------------------------------------------------------------------------------
# On the device
# ------------------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize("tile_size", TILES)
@pytest.mark.parametrize("ard", [False, True], ids=["iso", "ard"])
@pytest.mark.parametrize("name", ref.KERNELS)
def test_matches_dense_reference_and_cpu(name, ard, tile_size, rng):
    X, y, Xs = problem(rng)
    gp = model(name, ard, tile_size).fit(X, y)
    cpu = model(name, ard, tile_size, device="cpu").fit(X, y)
    theta = gp.theta
    want = ref.lml(name, X, y, theta, ard)
    assert_close(gp.log_marginal_likelihood(), want, 1e-9, "lml")
    assert_close(gp.log_marginal_likelihood(), cpu.log_marginal_likelihood(), 1e-10, "lml vs cpu")
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    lml_cpu, grad_cpu = cpu.log_marginal_likelihood(theta, eval_gradient=True)
    assert_close(lml, want, 1e-9, "lml (training step)")
    assert_gradient_close(grad, ref.lml_gradient(name, X, y, theta, ard), 1e-9)
    assert_gradient_close(grad, grad_cpu, 1e-10)
    mean_ref, var_ref, cov_ref = ref.predict(name, X, y, Xs, theta, ard)
    mean, std = gp.predict(Xs, return_std=True)  # after a gradient step: refactors lazily
    assert_close(mean, mean_ref, 1e-9, "mean")
    assert_close(std, np.sqrt(var_ref), 1e-9, "std")
    mean_cpu, std_cpu = cpu.predict(Xs, return_std=True)
    assert_close(mean, mean_cpu, 1e-10, "mean vs cpu")
    assert_close(std, std_cpu, 1e-10, "std vs cpu")
    _, cov = gp.predict(Xs, return_cov=True)
    assert_close(cov, cov_ref, 1e-9, "cov")
    _, std_noisy = gp.predict(Xs, return_std=True, include_noise=True)
    assert_close(std_noisy, np.sqrt(var_ref + gp.noise_variance), 1e-9, "std with noise")
    assert_close(gp.predict(Xs), mean_ref, 1e-9, "mean only")


@needs_gpu
@pytest.mark.parametrize("name", ref.KERNELS)
def test_float32_matches_cpu_float32(name, rng):
    X, y, Xs = problem(rng)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    gp = model(name, True, 32, dtype=np.float32).fit(X32, y32)
    cpu = model(name, True, 32, dtype=np.float32, device="cpu").fit(X32, y32)
    mean, std = gp.predict(Xs, return_std=True)
    assert mean.dtype == np.float32 and std.dtype == np.float32
    mean_cpu, std_cpu = cpu.predict(Xs, return_std=True)
    assert_close(mean, mean_cpu, 1e-4, "float32 mean vs cpu")
    assert_close(std, std_cpu, 1e-3, "float32 std vs cpu")
    assert_close(gp.log_marginal_likelihood(), cpu.log_marginal_likelihood(), 1e-4, "float32 lml vs cpu")
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    _, grad_cpu = cpu.log_marginal_likelihood(cpu.theta, eval_gradient=True)
    assert_gradient_close(grad, grad_cpu, 1e-3)
    # and the documented float32 tolerance against the float64 reference (test_exact_gp.py)
    mean_ref, var_ref, _ = ref.predict(name, X, y, Xs, gp.theta, True)
    assert_close(mean, mean_ref, 1e-3, "float32 mean vs reference")
    assert_close(std, np.sqrt(var_ref), 1e-2, "float32 std vs reference")


@needs_gpu
def test_kernel_tree_matches_cpu(rng):
    X, y, Xs = problem(rng)
    k = (kernels.SquaredExponential(lengthscale=[0.6, 0.9, 1.4], signal_variance=1.3)
         + kernels.Matern32(lengthscale=0.7, signal_variance=0.4) * kernels.Periodic(lengthscale=1.0, period=2.0, active_dims=[0]))
    gp = gprat.ExactGP(k, noise_variance=0.05, tile_size=40, device="cuda").fit(X, y)
    cpu = gprat.ExactGP(k, noise_variance=0.05, tile_size=40).fit(X, y)
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    lml_cpu, grad_cpu = cpu.log_marginal_likelihood(cpu.theta, eval_gradient=True)
    assert_close(lml, lml_cpu, 1e-10, "tree lml vs cpu")
    assert_gradient_close(grad, grad_cpu, 1e-10)
    mean, std = gp.predict(Xs, return_std=True)
    mean_cpu, std_cpu = cpu.predict(Xs, return_std=True)
    assert_close(mean, mean_cpu, 1e-10, "tree mean")
    assert_close(std, std_cpu, 1e-10, "tree std")


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_whole_matrix_cholesky_equals_tiled(dtype, rng):
    import gprat._cuda as cuda

    X, y, Xs = problem(rng, n=700)
    X, y, Xs = X.astype(dtype), y.astype(dtype), Xs.astype(dtype)
    core_kernel = kernels.SquaredExponential(lengthscale=[0.6, 0.9, 1.4], signal_variance=1.3)._to_core()
    engine = getattr(cuda, "ExactGP64" if dtype == np.float64 else "ExactGP32")
    tiled = engine(core_kernel, X, y, 0.05, 128, device=0, streams=4)
    whole = engine(core_kernel, X, y, 0.05, 128, device=0, streams=4)
    whole.cholesky_algorithm = "whole"
    tol = 1e-10 if dtype == np.float64 else 1e-4
    assert_close(whole.fit(), tiled.fit(), tol, "lml")
    assert_close(whole.cholesky_factor(), tiled.cholesky_factor(), tol, "L")
    K = ref.kernel_matrix("SquaredExponential", X.astype(np.float64), X.astype(np.float64), np.array([0.6, 0.9, 1.4]), 1.3)
    L = np.linalg.cholesky(K + 0.05 * np.eye(len(X)))
    assert_close(tiled.cholesky_factor(), L, 1e-12 if dtype == np.float64 else 1e-4, "L vs LAPACK")
    g1 = tiled.training_step(list(tiled.theta), True)[1]
    g2 = whole.training_step(list(whole.theta), True)[1]
    assert_gradient_close(g2, g1, 1e-9 if dtype == np.float64 else 1e-3)


@needs_gpu
@pytest.mark.parametrize("streams", [1, 3, 32])
def test_result_does_not_depend_on_streams(streams, rng):
    import gprat._cuda as cuda

    X, y, _ = problem(rng, n=900)
    core_kernel = kernels.Matern52(lengthscale=[0.6, 0.9, 1.4], signal_variance=1.3)._to_core()
    one = cuda.ExactGP64(core_kernel, X, y, 0.05, 100, device=0, streams=1)
    many = cuda.ExactGP64(core_kernel, X, y, 0.05, 100, device=0, streams=streams)
    l1, g1 = one.training_step(list(one.theta), True)
    l2, g2 = many.training_step(list(many.theta), True)
    assert_close(l2, l1, 1e-12, "lml across stream counts")
    assert_gradient_close(g2, g1, 1e-12)


@needs_gpu
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_not_positive_definite_keeps_previous_fit(device, rng):
    # test_exact_gp.py's case: a very smooth kernel, no noise to speak of, a duplicated row
    X, y, Xs = problem(rng, n=40)
    gp = model("SquaredExponential", False, 16, device=device).fit(X, y)
    mean = gp.predict(Xs)
    bad = np.vstack([X, X[:1]])
    gp.kernel = kernels.SquaredExponential(lengthscale=50.0, signal_variance=1e6)
    gp.noise_variance = 1e-12
    gp.max_jitter = 0.0
    with pytest.raises(gprat.NotPositiveDefiniteError) as excinfo:
        gp.fit(bad, np.append(y, y[0]))
    assert 1 <= excinfo.value.order <= len(bad)  # a global order, read from potrf's device info
    np.testing.assert_allclose(gp.predict(Xs), mean, rtol=1e-12)


@needs_gpu
def test_not_positive_definite_order_is_global(rng):
    # Rows 0..99 well separated, then row 100 repeats row 99 with a zero noise: the leading minor
    # of order 101 is singular (its pivot is zero up to rounding, negative or tiny); with tiles of
    # 32 the failure is in diagonal tile 3, so a tile-local info (101 - 96 = 5) would be wrong.
    import gprat._cuda as cuda

    X = np.linspace(0, 100, 101)[:, None]
    X[100] = X[99]
    y = np.zeros(101)
    core_kernel = kernels.SquaredExponential(lengthscale=0.3, signal_variance=1.0)._to_core()
    gp = cuda.ExactGP64(core_kernel, X, y, None, 32, device=0)
    try:
        gp.fit()
    except gprat.NotPositiveDefiniteError as error:
        assert error.order == 101, error.order
    else:  # rounding left a tiny positive pivot: then the factor's last entry shows it
        assert abs(gp.cholesky_factor()[100, 100]) < 1e-6


@needs_gpu
def test_duplicate_points_with_tiny_noise_get_jitter(rng):
    # test_reliability.py's case: numerically singular K; the jitter policy (models/exact.py) runs
    # on the device's NotPositiveDefiniteError as on the CPU's, and the jittered model is the dense
    # model with noise_variance + jitter_.
    X, y, Xs = problem(rng, n=40)
    X, y = np.vstack([X, X[:5]]), np.append(y, y[:5])
    gp = gprat.ExactGP(kernels.SquaredExponential(50.0, signal_variance=1e6), noise_variance=1e-12, tile_size=16,
                       device="cuda")
    with pytest.warns(gprat.NumericalWarning, match="added jitter"):
        gp.fit(X, y)
    assert gp.jitter_ > 0
    eff = gp.theta.copy()
    eff[-1] = np.log(gp.noise_variance + gp.jitter_)
    mean_ref, _, _ = ref.predict("SquaredExponential", X, y, Xs, eff, False)
    assert_close(gp.predict(Xs), mean_ref, 1e-4, "jittered mean")  # cond(K) ~ 1e10 (test_reliability.py)


@needs_gpu
def test_optimize_on_device_matches_cpu(rng):
    X, y, Xs = problem(rng)
    gp = model("SquaredExponential", True, 40).fit(X, y).optimize(max_iter=30)
    cpu = model("SquaredExponential", True, 40, device="cpu").fit(X, y).optimize(max_iter=30)
    assert_close(gp.theta, cpu.theta, 1e-6, "optimized theta")
    assert_close(gp.predict(Xs), cpu.predict(Xs), 1e-6, "mean after optimize")


@needs_gpu
def test_estimator_on_device(rng):
    X, y, Xs = problem(rng)
    est = gprat.GaussianProcessRegressor(device="cuda") if "device" in gprat.GaussianProcessRegressor().get_params() else None
    if est is None:
        pytest.skip("GaussianProcessRegressor has no device parameter yet (the lead adds it)")
    cpu = gprat.GaussianProcessRegressor().fit(X, y)
    est.fit(X, y)
    assert_close(est.predict(Xs), cpu.predict(Xs), 1e-6, "estimator mean")


@needs_gpu
def test_larger_than_device_memory_is_memory_error(rng):
    import gprat._cuda as cuda

    free_n = int(np.sqrt(2 * 200e9 / 8))  # lower tiles of ~200 GB: more than any single GPU holds
    X = np.zeros((free_n, 1))
    y = np.zeros(free_n)
    core_kernel = kernels.SquaredExponential(lengthscale=1.0, signal_variance=1.0)._to_core()
    with pytest.raises(MemoryError, match="not enough GPU memory"):
        cuda.ExactGP64(core_kernel, X, y, 0.1, None, device=0)
    gp = model("SquaredExponential", False, 50).fit(*problem(rng)[:2])  # still usable
    assert np.isfinite(gp.log_marginal_likelihood())


@needs_gpu
def test_ctrl_c_during_device_training(rng):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    n = 40_000
    X = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    gp = gprat.ExactGP(kernels.SquaredExponential([1.0, 1.0, 1.0]), noise_variance=0.01, device="cuda").fit(X, y)
    theta = gp.theta.copy()
    timer = threading.Timer(0.8, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        gp.optimize(max_iter=10_000)
    elapsed = time.perf_counter() - t0
    timer.join()
    assert elapsed < 0.8 + 3.0, elapsed  # one training step in flight at most
    np.testing.assert_array_equal(gp.theta, theta)
    assert np.isfinite(gp.predict(X[:10]).sum())


def _compat_gp(**kw):
    series = list(np.sin(np.linspace(0, 6, 71)))
    return gprat.GP(series, series, 4, 16, n_reg=8, **kw)


@pytest.mark.skipif(not backends.cuda_built() or HAVE_GPU, reason="needs the CUDA module built and no device")
def test_gprat_gpu_id_without_device_raises():
    assert gprat.compiled_with_cuda() and gprat.gpu_count() == 0
    with pytest.raises(gprat.BackendUnavailableError, match="not available"):
        _compat_gp(gpu_id=0, n_units=4)


@needs_gpu
def test_gprat_gpu_id_runs_on_the_device():
    cpu, gpu = _compat_gp(), _compat_gp(gpu_id=0, n_units=4)
    assert gprat.gpu_count() >= 1
    assert_close(gpu.compute_loss(), cpu.compute_loss(), 1e-10, "GPRat loss on the device")
    assert_close(gpu.predict(list(np.linspace(0, 1, 71)), 4, 16), cpu.predict(list(np.linspace(0, 1, 71)), 4, 16),
                 1e-10, "GPRat predict on the device")
