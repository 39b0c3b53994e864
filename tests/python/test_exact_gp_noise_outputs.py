"""ExactGP with per-sample (heteroscedastic) noise, zero noise, several outputs and a constant
mean (issue #13), against the independent dense references of tests/reference.py
(general_lml: scipy.stats densities per output; general_lml_gradient: per-output closed form
with numpy.linalg.inv; general_predict: numpy.linalg.solve) and central finite differences."""

import warnings

import numpy as np
import pytest

import gprat
import reference as ref
from checks import close
from gprat import kernels

N, M, D = 53, 17, 2  # n not a multiple of the tile sizes: ragged last tiles
TILES = [8, 53]
LS_ARD = np.array([0.7, 1.1])
S2 = 1.3
TOL = {np.float64: 1e-8, np.float32: 3e-3}


def problem(rng, n=N, m=M, p=1):
    X = rng.uniform(-1.5, 1.5, size=(n, D))
    F = np.stack([np.sin(2 * X[:, 0] + k) + np.cos(X[:, 1] * (k + 1)) for k in range(p)], axis=1)
    Y = F + 0.1 * rng.standard_normal((n, p))
    Xs = rng.uniform(-1.7, 1.7, size=(m, D))
    return X, (Y[:, 0] if p == 1 else Y), Xs


def kernel(name, ard):
    return getattr(kernels, name)(lengthscale=LS_ARD if ard else 0.8, signal_variance=S2)


def grad_close(g, want, rtol, what):
    g, want = np.asarray(g), np.asarray(want)
    assert g.shape == want.shape, (what, g.shape, want.shape)
    scale = np.abs(want).max()
    for j in range(len(want)):  # every entry, relative to its own size
        assert abs(g[j] - want[j]) <= rtol * max(abs(want[j]), 1e-3 * scale), (what, j, g, want)


def fd_gradient(f, theta, h=1e-5):
    """Central finite differences of f at theta (O(h^2))."""
    theta = np.asarray(theta, dtype=np.float64)
    out = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (f(theta + e) - f(theta - e)) / (2 * h)
    return out


def unpack(theta, ard, learned, p_mean):
    """(lengthscale, s2, learned noise or None, mean or None) from a theta of this layout."""
    nl = D if ard else 1
    ls = np.exp(theta[:nl]) if ard else float(np.exp(theta[0]))
    s2 = float(np.exp(theta[nl]))
    i = nl + 1
    noise = None
    if learned:
        noise = float(np.exp(theta[i]))
        i += 1
    mean = np.array(theta[i:i + p_mean]) if p_mean else None
    return ls, s2, noise, mean


# ----------------------------------------------------------------------- per-sample noise
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("tile_size", TILES)
@pytest.mark.parametrize("learned", [False, True], ids=["fixed", "fixed+learned"])
@pytest.mark.parametrize("name,ard", [("SquaredExponential", True), ("Matern32", False)])
def test_heteroscedastic_noise_matches_dense_reference(name, ard, learned, tile_size, dtype, rng):
    X, y, Xs = problem(rng)
    s = rng.uniform(0.01, 0.3, size=N)  # known per-sample noise variances
    s[::7] = 0.0  # some exact observations
    gp = gprat.ExactGP(kernel(name, ard), noise_variance=s, learned_noise=0.02 if learned else None,
                       tile_size=tile_size, dtype=dtype).fit(X, y)
    n_kernel = (D if ard else 1) + 1
    assert gp.n_params == n_kernel + learned  # the fixed noise has no theta entry
    theta = gp.theta
    ls, s2, noise, _ = unpack(theta, ard, learned, 0)
    tol = TOL[dtype]
    want = ref.general_lml(name, X, y, ls, s2, fixed=s, learned=noise or 0.0)
    close(gp.log_marginal_likelihood(), want, tol, "lml")
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    close(lml, want, tol, "lml (training step)")
    grad_close(grad, ref.general_lml_gradient(name, X, y, ls, s2, ard, fixed=s, learned=noise), 10 * tol, "gradient")
    if dtype == np.float64:
        def f(t):
            ls_, s2_, noise_, _ = unpack(t, ard, learned, 0)
            return ref.general_lml(name, X, y, ls_, s2_, fixed=s, learned=noise_ or 0.0)
        grad_close(grad, fd_gradient(f, theta), 1e-6, "gradient vs finite differences")
    mean_ref, var_ref, cov_ref = ref.general_predict(name, X, y, Xs, ls, s2, fixed=s, learned=noise or 0.0)
    mean, std = gp.predict(Xs, return_std=True)
    close(mean, mean_ref[:, 0], 10 * tol, "mean")
    close(std, np.sqrt(var_ref), 10 * tol, "std")
    _, cov = gp.predict(Xs, return_cov=True)
    close(cov, cov_ref, 10 * tol, "cov")
    # include_noise adds the learned noise only: the per-sample noise is unknown at new points
    _, std_noisy = gp.predict(Xs, return_std=True, include_noise=True)
    close(std_noisy, np.sqrt(var_ref + (noise or 0.0)), 10 * tol, "std with noise")


def test_heteroscedastic_noise_optimizes_only_the_kernel(rng):
    X, y, _ = problem(rng)
    s = rng.uniform(0.01, 0.1, size=N)
    gp = gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=s).fit(X, y)
    before = gp.log_marginal_likelihood()
    result = gp.optimize(max_iter=50)
    assert result.theta.shape == (2,) and gp.log_marginal_likelihood() >= before
    np.testing.assert_array_equal(gp.noise_variance, s)  # fixed: untouched
    ls, s2, _, _ = unpack(gp.theta, False, False, 0)
    close(gp.log_marginal_likelihood(), ref.general_lml("SquaredExponential", X, y, ls, s2, fixed=s), 1e-9, "lml")


def test_equal_per_sample_noise_equals_the_scalar_model(rng):
    X, y, Xs = problem(rng)
    scalar = gprat.ExactGP(kernel("Matern52", False), noise_variance=0.05, tile_size=8).fit(X, y)
    array = gprat.ExactGP(kernel("Matern52", False), noise_variance=np.full(N, 0.05), tile_size=8).fit(X, y)
    close(array.log_marginal_likelihood(), scalar.log_marginal_likelihood(), 1e-12, "lml")
    close(array.predict(Xs), scalar.predict(Xs), 1e-12, "mean")
    _, g_scalar = scalar.log_marginal_likelihood(scalar.theta, eval_gradient=True)
    _, g_array = array.log_marginal_likelihood(array.theta, eval_gradient=True)
    close(g_array, g_scalar[:-1], 1e-10, "kernel gradient")


# ----------------------------------------------------------------------------- zero noise
def test_zero_noise_interpolates_without_a_noise_entry(rng):
    X = np.linspace(-2, 2, 12).reshape(-1, 1) * np.array([[1.0, 0.5]])  # well separated
    y = np.sin(X[:, 0])
    gp = gprat.ExactGP(kernels.SquaredExponential(0.5), noise_variance=0.0, tile_size=5).fit(X, y)
    assert gp.jitter_ == 0.0
    assert gp.n_params == 2 and np.all(np.isfinite(gp.theta))  # no log(0) in theta
    close(gp.log_marginal_likelihood(), ref.general_lml("SquaredExponential", X, y, 0.5, 1.0), 1e-8, "lml")
    close(gp.predict(X), y, 1e-8, "interpolation")
    _, std = gp.predict(X, return_std=True)
    assert np.all(std < 1e-4)
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    grad_close(grad, ref.general_lml_gradient("SquaredExponential", X, y, 0.5, 1.0, False), 1e-6, "gradient")
    gp.optimize(max_iter=30)
    assert gp.noise_variance == 0.0 and gp.n_params == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_zero_noise_with_close_points_is_jittered(dtype, rng):
    X = np.linspace(0, 1, 60).reshape(-1, 1)  # much closer than the lengthscale: singular K
    y = np.sin(3 * X[:, 0])
    gp = gprat.ExactGP(kernels.SquaredExponential(1.0), noise_variance=0.0, tile_size=16, dtype=dtype)
    with pytest.warns(gprat.NumericalWarning, match="added jitter"):
        gp.fit(X, y)
    assert gp.jitter_ > 0 and gp.n_params == 2
    # the jittered model is the dense model with noise jitter_ I
    K = ref.noisy_covariance("SquaredExponential", X, 1.0, 1.0, learned=gp.jitter_)
    rtol = max(1e-6, np.linalg.cond(K) * np.finfo(np.float64).eps) if dtype == np.float64 else 5e-2
    # (scipy.stats' density calls this matrix singular: the Cholesky oracle ref.lml is used)
    close(gp.log_marginal_likelihood(), ref.lml("SquaredExponential", X, y, ref.theta_of(1.0, 1.0, gp.jitter_), False),
          rtol, "lml with jitter")
    mean_ref, _, _ = ref.general_predict("SquaredExponential", X, y, X[::7] + 0.01, 1.0, 1.0, learned=gp.jitter_)
    close(gp.predict(X[::7] + 0.01), mean_ref[:, 0], 1e-4 if dtype == np.float64 else 5e-2, "mean with jitter")


def test_zero_noise_without_jitter_refuses_a_singular_matrix():
    X = np.vstack([np.zeros((1, 2)), np.zeros((1, 2)), np.ones((1, 2))])  # duplicate rows
    gp = gprat.ExactGP(kernels.SquaredExponential(1.0), noise_variance=0.0, max_jitter=0.0)
    with pytest.raises(gprat.NotPositiveDefiniteError, match="jitter is disabled"):
        gp.fit(X, [1.0, 1.0, 2.0])


# ------------------------------------------------------------------------- several outputs
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("tile_size", TILES)
@pytest.mark.parametrize("name,ard", [("SquaredExponential", False), ("Matern52", True)])
def test_several_outputs_equal_separate_dense_gps_summed(name, ard, tile_size, dtype, rng):
    p = 3
    X, Y, Xs = problem(rng, p=p)
    gp = gprat.ExactGP(kernel(name, ard), noise_variance=0.04, tile_size=tile_size, dtype=dtype).fit(X, Y)
    theta = gp.theta
    assert gp.n_params == (D if ard else 1) + 2  # one kernel and one noise for all outputs
    ls, s2, noise, _ = unpack(theta, ard, True, 0)
    tol = TOL[dtype]
    # p separate single-output dense GPs (the R&W oracle), summed
    th1 = ref.theta_of(ls, s2, noise)
    want_lml = sum(ref.lml(name, X, Y[:, j], th1, ard) for j in range(p))
    want_grad = sum(ref.lml_gradient(name, X, Y[:, j], th1, ard) for j in range(p))
    close(gp.log_marginal_likelihood(), want_lml, tol, "lml")
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    close(lml, want_lml, tol, "lml (training step)")
    grad_close(grad, want_grad, 10 * tol, "gradient")
    grad_close(grad, ref.general_lml_gradient(name, X, Y, ls, s2, ard, learned=noise), 10 * tol, "gradient (general)")
    mean, std = gp.predict(Xs, return_std=True)
    assert mean.shape == (M, p) and std.shape == (M,)
    for j in range(p):
        mean_j, var_j, cov_j = ref.predict(name, X, Y[:, j], Xs, th1, ard)
        close(mean[:, j], mean_j, 10 * tol, f"mean of output {j}")
        close(std, np.sqrt(var_j), 10 * tol, "std (shared)")
    mean2, cov = gp.predict(Xs, return_cov=True)
    close(cov, cov_j, 10 * tol, "cov (shared)")
    np.testing.assert_array_equal(mean2, mean)
    # one output of a multi-output model equals the single-output model
    single = gprat.ExactGP(kernel(name, ard), noise_variance=0.04, tile_size=tile_size, dtype=dtype).fit(X, Y[:, 1])
    close(mean[:, 1], single.predict(Xs), 10 * tol, "against the single-output engine")


def test_several_outputs_optimize_one_shared_theta(rng):
    X, Y, _ = problem(rng, p=2)
    gp = gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=0.1).fit(X, Y)
    result = gp.optimize(max_iter=60)
    ls, s2, noise, _ = unpack(result.theta, False, True, 0)
    th1 = ref.theta_of(ls, s2, noise)
    close(result.log_marginal_likelihood, sum(ref.lml("SquaredExponential", X, Y[:, j], th1, False) for j in range(2)),
          1e-8, "optimized lml is the sum over outputs")
    grad = gp.log_marginal_likelihood(result.theta, eval_gradient=True)[1]
    assert np.all(np.abs(grad) < 1e-2 * N), grad  # a stationary point (within the box)


# --------------------------------------------------------------------------- constant mean
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("fixed", [False, True], ids=["learned", "per-sample"])
def test_constant_mean_and_its_gradient(fixed, p, dtype, rng):
    X, Y, Xs = problem(rng, p=p)
    Y = Y + (4.0 if p == 1 else np.array([4.0, -2.5]))
    s = rng.uniform(0.01, 0.2, size=N) if fixed else None
    init = 1.0 if p == 1 else [1.0, -1.0]
    gp = gprat.ExactGP(kernel("Matern32", True), noise_variance=s if fixed else 0.05, mean_constant=init,
                       tile_size=8, dtype=dtype).fit(X, Y)
    learned = not fixed
    assert gp.n_params == D + 1 + learned + p
    theta = gp.theta
    np.testing.assert_array_equal(theta[-p:], np.broadcast_to(init, (p,)))  # not in log space
    ls, s2, noise, c = unpack(theta, True, learned, p)
    tol = TOL[dtype]
    want = ref.general_lml("Matern32", X, Y, ls, s2, fixed=s, learned=noise or 0.0, mean=c)
    close(gp.log_marginal_likelihood(), want, tol, "lml")
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    want_grad = ref.general_lml_gradient("Matern32", X, Y, ls, s2, True, fixed=s, learned=noise, mean=c)
    grad_close(grad, want_grad, 10 * tol, "gradient")
    if dtype == np.float64:
        def f(t):
            ls_, s2_, noise_, c_ = unpack(t, True, learned, p)
            return ref.general_lml("Matern32", X, Y, ls_, s2_, fixed=s, learned=noise_ or 0.0, mean=c_)
        grad_close(grad, fd_gradient(f, theta), 1e-6, "gradient vs finite differences")
    mean_ref, var_ref, _ = ref.general_predict("Matern32", X, Y, Xs, ls, s2, fixed=s, learned=noise or 0.0, mean=c)
    mean, std = gp.predict(Xs, return_std=True)
    close(mean, mean_ref[:, 0] if p == 1 else mean_ref, 10 * tol, "mean (with c)")
    close(std, np.sqrt(var_ref), 10 * tol, "std")


def test_constant_mean_is_learned_unbounded(rng):
    X, y, Xs = problem(rng)
    y = y + 250.0  # far outside any log-space box
    gp = gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=0.05, mean_constant=0.0).fit(X, y)
    bounds = gp.default_bounds()
    assert np.all(np.isfinite(bounds[:3])) and np.all(bounds[3] == (-np.inf, np.inf))
    result = gp.optimize(max_iter=100)
    c = gp.mean_constant
    assert np.shape(c) == (1,) and abs(c[0] - 250.0) < 3.0, c
    assert result.theta[-1] == c[0]
    _, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    assert abs(grad[-1]) < 1e-2, grad  # 1^T alpha = 0 at the optimum of c
    # |c| beyond the log range is a valid theta entry
    gp.theta = np.append(gp.theta[:-1], 1e4)
    assert np.isfinite(gp.log_marginal_likelihood())
    with pytest.raises(ValueError, match="bounds must be finite"):
        gp.optimize(bounds=[[-np.inf, np.inf]] * 4)  # infinite rows only for mean entries


# ------------------------------------------------------------------------------- bad input
def test_bad_noise_outputs_and_mean_are_refused(rng):
    X, y, _ = problem(rng)
    gp = gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=np.full(N - 1, 0.1))
    with pytest.raises(ValueError, match=rf"one entry per row of X; got len\(noise_variance\)={N - 1}, X.shape\[0\]={N}"):
        gp.fit(X, y)
    gp = gprat.ExactGP(kernel("SquaredExponential", False), mean_constant=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="one entry per output; got 3 entries for 2 output"):
        gp.fit(X, np.stack([y, y], axis=1))
    with pytest.raises(ValueError, match=rf"one row per row of X; got y.shape=\({N - 2}, 2\), X.shape\[0\]={N}"):
        gprat.ExactGP(kernel("SquaredExponential", False)).fit(X, np.stack([y, y], axis=1)[:-2])
    with pytest.raises(ValueError, match="entry 3 is -1.0"):
        gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=[0.1, 0.1, 0.1, -1.0])
    with pytest.raises(ValueError, match="entry 0 is nan"):
        gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=[np.nan, 0.1])
    with pytest.raises(TypeError, match="noise_variance must be a number or an array of numbers"):
        gprat.ExactGP(kernel("SquaredExponential", False), noise_variance=[object()])
    # a failed fit leaves the previous model usable
    good = gprat.ExactGP(kernel("SquaredExponential", False)).fit(X, y)
    mean = good.predict(X[:3])
    good.noise_variance = np.ones(5)
    with pytest.raises(ValueError, match="one entry per row"):
        good.fit(X, y)
    np.testing.assert_array_equal(good.predict(X[:3]), mean)


def test_default_theta_layout_is_unchanged(rng):
    X, y, _ = problem(rng)
    gp = gprat.ExactGP(kernel("SquaredExponential", True), noise_variance=0.05).fit(X, y)
    np.testing.assert_array_equal(gp.theta, np.log(np.r_[LS_ARD, S2, 0.05]))
    assert gp._core.n_params == 4 and gp._core.outputs == 1


def test_fit_memory_estimate_counts_the_outputs():
    one = gprat.ExactGP.fit_bytes(1000, tile_size=100)
    eight = gprat.ExactGP.fit_bytes(1000, tile_size=100, n_outputs=8)
    assert eight - one == 2 * 7 * 1000 * 8  # seven more columns of alpha and of z = L \ y, in float64


# ----------------------------------------------------------------------------- model files
def test_model_file_keeps_per_sample_noise_and_mean(tmp_path, rng):
    from gprat.io import GPModel, load_model

    X, y, Xs = problem(rng)
    s = rng.uniform(0.01, 0.2, size=N)
    common = dict(x_mean=np.zeros(D), x_scale=np.ones(D), y_mean=0.0, y_scale=1.0)
    model = GPModel("matern32", 0.8, 1.3, 0.02, X, y + 3.0, noise_fixed=s, mean_constant=2.5, **common)
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        assert int(archive["format_version"]) == 3  # older readers refuse it rather than drop s and c
        np.testing.assert_array_equal(archive["noise_fixed"], s)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.noise_fixed, s)
    assert loaded.mean_constant == 2.5
    mean_ref, var_ref, _ = ref.general_predict("Matern32", X, y + 3.0, Xs, 0.8, 1.3, fixed=s, learned=0.02, mean=2.5)
    mean, std = loaded.predict(Xs, return_std=True)
    close(mean, mean_ref[:, 0], 1e-9, "mean from the loaded file")
    close(std, np.sqrt(var_ref), 1e-9, "std from the loaded file")
    gp = loaded.gp
    gp.optimize(max_iter=20)
    loaded._read_hyperparameters(gp)
    assert loaded.mean_constant == gp.mean_constant[0] and loaded.noise_variance == gp.learned_noise
    with pytest.raises(ValueError, match="noise_fixed must hold variances"):
        GPModel("se", 0.8, 1.3, 0.02, X, y, noise_fixed=-s, **common)
