"""ExactGP against the dense NumPy implementation of R&W Algorithm 2.1 (tests/reference.py) and
against scikit-learn, for every kernel, tile size and thread count."""

import numpy as np
import pytest

import gprat
import reference as ref
from gprat import kernels

N, M, D = 157, 41, 3  # n not a multiple of the tile sizes below
TILES = [None, 16, 50, 157, 400]


def problem(rng, n=N, m=M, d=D):
    X = rng.uniform(-1.5, 1.5, size=(n, d))
    y = np.sin(2 * X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    Xs = rng.uniform(-1.7, 1.7, size=(m, d))
    return X, y, Xs


def model(name, ard, tile_size, dtype=np.float64):
    ls = np.array([0.6, 0.9, 1.4]) if ard else 0.8
    k = getattr(kernels, name)(lengthscale=ls, signal_variance=1.3)
    return gprat.ExactGP(k, noise_variance=0.05, tile_size=tile_size, dtype=dtype)


def assert_close(a, b, rtol, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(b).max(), 1e-300)
    err = np.abs(a - b).max() / scale
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.1g}"


@pytest.mark.parametrize("tile_size", TILES)
@pytest.mark.parametrize("ard", [False, True], ids=["iso", "ard"])
@pytest.mark.parametrize("name", ref.KERNELS)
def test_matches_dense_reference(name, ard, tile_size, rng, threads):
    X, y, Xs = problem(rng)
    gp = model(name, ard, tile_size).fit(X, y)
    theta = gp.theta
    assert_close(gp.log_marginal_likelihood(), ref.lml(name, X, y, theta, ard), 1e-9, "lml")
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    assert_close(lml, ref.lml(name, X, y, theta, ard), 1e-9, "lml (training step)")
    ref_grad = ref.lml_gradient(name, X, y, theta, ard)
    for j in range(len(theta)):  # every entry, relative to its own size
        assert abs(grad[j] - ref_grad[j]) <= 1e-9 * max(abs(ref_grad[j]), 1e-3 * np.abs(ref_grad).max()), (j, grad, ref_grad)
    mean_ref, var_ref, cov_ref = ref.predict(name, X, y, Xs, theta, ard)
    # predict after a gradient step: the factor is recomputed lazily
    mean, std = gp.predict(Xs, return_std=True)
    assert_close(mean, mean_ref, 1e-9, "mean")
    assert_close(std, np.sqrt(var_ref), 1e-9, "std")
    _, cov = gp.predict(Xs, return_cov=True)
    assert_close(cov, cov_ref, 1e-9, "cov")
    _, std_noisy = gp.predict(Xs, return_std=True, include_noise=True)
    assert_close(std_noisy, np.sqrt(var_ref + gp.noise_variance), 1e-9, "std with noise")
    assert_close(gp.predict(Xs), mean_ref, 1e-9, "mean only")


@pytest.mark.parametrize("name", ref.KERNELS)
def test_gradient_matches_finite_differences(name, rng):
    X, y, _ = problem(rng, n=60)
    gp = model(name, True, 16).fit(X, y)
    theta = gp.theta + 0.1
    _, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    np.testing.assert_allclose(grad, ref.lml_gradient_fd(name, X, y, theta, True), rtol=1e-6, atol=1e-6)


def test_gradient_at_the_fitted_theta_reuses_the_factor_and_equals_a_fresh_step(rng):
    # fit() holds the Cholesky factor at theta; the training step there skips the assembly and
    # the factorization. It must give what a step from scratch gives (the dense reference, and a
    # second step at theta, which factorizes afresh since the first one overwrote the factor).
    X, y, Xs = problem(rng, n=70)
    gp = model("Matern52", True, 16).fit(X, y)
    theta = gp.theta
    lml_reused, grad_reused = gp.log_marginal_likelihood(theta, eval_gradient=True)
    lml_fresh, grad_fresh = gp.log_marginal_likelihood(theta, eval_gradient=True)
    assert_close(lml_reused, ref.lml("Matern52", X, y, theta, True), 1e-9, "lml (reused factor)")
    np.testing.assert_allclose(grad_reused, grad_fresh, rtol=1e-12, atol=0)
    assert lml_reused == lml_fresh or abs(lml_reused - lml_fresh) <= 1e-12 * abs(lml_fresh)
    np.testing.assert_allclose(grad_reused, ref.lml_gradient("Matern52", X, y, theta, True), rtol=1e-9, atol=1e-9)
    mean_ref = ref.predict("Matern52", X, y, Xs, theta, True)[0]
    assert_close(gp.predict(Xs), mean_ref, 1e-9, "mean after the steps")


def test_training_step_does_not_change_model(rng):
    X, y, Xs = problem(rng)
    gp = model("Matern52", True, 32).fit(X, y)
    theta, mean = gp.theta.copy(), gp.predict(Xs)
    other = theta + 0.3
    lml_other = gp.log_marginal_likelihood(other, eval_gradient=True)[0]
    assert_close(lml_other, ref.lml("Matern52", X, y, other, True), 1e-9, "lml at other theta")
    np.testing.assert_array_equal(gp.theta, theta)
    np.testing.assert_allclose(gp.predict(Xs), mean, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("ard", [False, True])
@pytest.mark.parametrize("name,sk_kernel", [
    ("SquaredExponential", lambda ls: __import__("sklearn.gaussian_process.kernels", fromlist=["RBF"]).RBF(ls)),
    ("Matern12", lambda ls: __import__("sklearn.gaussian_process.kernels", fromlist=["Matern"]).Matern(ls, nu=0.5)),
    ("Matern32", lambda ls: __import__("sklearn.gaussian_process.kernels", fromlist=["Matern"]).Matern(ls, nu=1.5)),
    ("Matern52", lambda ls: __import__("sklearn.gaussian_process.kernels", fromlist=["Matern"]).Matern(ls, nu=2.5)),
])
def test_lml_equals_scikit_learn(name, sk_kernel, ard, rng):
    sk = pytest.importorskip("sklearn.gaussian_process")
    from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel

    X, y, Xs = problem(rng)
    gp = model(name, ard, 40).fit(X, y)
    ls = gp.kernel.lengthscale
    kern = ConstantKernel(gp.kernel.signal_variance) * sk_kernel(ls) + WhiteKernel(gp.noise_variance)
    sk_gp = sk.GaussianProcessRegressor(kern, alpha=0.0, optimizer=None).fit(X, y)
    assert_close(gp.log_marginal_likelihood(), sk_gp.log_marginal_likelihood_value_, 1e-9, "lml vs sklearn")
    mean, std = gp.predict(Xs, return_std=True, include_noise=True)
    sk_mean, sk_std = sk_gp.predict(Xs, return_std=True)
    assert_close(mean, sk_mean, 1e-9, "mean vs sklearn")
    assert_close(std, sk_std, 1e-9, "std vs sklearn")


@pytest.mark.parametrize("name", ref.KERNELS)
def test_float32_within_documented_tolerance(name, rng):
    X, y, Xs = problem(rng)
    gp64 = model(name, True, 32).fit(X, y)
    gp32 = model(name, True, 32, dtype=np.float32).fit(X.astype(np.float32), y.astype(np.float32))
    mean32, std32 = gp32.predict(Xs, return_std=True)
    assert mean32.dtype == np.float32
    mean64, std64 = gp64.predict(Xs, return_std=True)
    # float32 tolerance: 1e-3 relative on the mean, 1e-2 on the std (docs: ExactGP dtype)
    assert_close(mean32, mean64, 1e-3, "float32 mean")
    assert_close(std32, std64, 1e-2, "float32 std")
    assert_close(gp32.log_marginal_likelihood(), gp64.log_marginal_likelihood(), 1e-3, "float32 lml")


def test_cholesky_factor_is_lapacks(rng):
    X, y, _ = problem(rng)
    gp = model("SquaredExponential", True, 20).fit(X, y)
    K = ref.kernel_matrix("SquaredExponential", X, X, gp.kernel.lengthscale, gp.kernel.signal_variance)
    np.testing.assert_allclose(gp.cholesky_factor(), np.linalg.cholesky(K + gp.noise_variance * np.eye(N)), atol=1e-12)


@pytest.mark.parametrize("method", ["L-BFGS-B", "adam"])
def test_optimize_increases_lml_and_honours_mask(method, rng):
    X, y, _ = problem(rng, n=120)
    gp = model("SquaredExponential", True, 32).fit(X, y)
    start = gp.log_marginal_likelihood()
    mask = np.array([True, True, False, True, True])
    fixed = gp.theta[2]
    seen = []
    result = gp.optimize(method=method, max_iter=60, trainable=mask, lr=0.05, callback=lambda i, loss: seen.append(loss))
    assert result.log_marginal_likelihood > start + 1.0
    assert gp.theta[2] == fixed
    assert len(seen) == result.n_iter > 0
    assert_close(gp.log_marginal_likelihood(), ref.lml("SquaredExponential", X, y, gp.theta, True), 1e-9, "lml at optimum")


def test_lbfgsb_reaches_scipy_dense_optimum(rng):
    import scipy.optimize

    X, y, _ = problem(rng, n=80)
    gp = model("Matern32", False, 16).fit(X, y)
    theta0 = gp.theta.copy()  # the kernel's initial theta: where gprat starts, not where it ends
    gp.optimize(max_iter=200)
    # SciPy's Nelder-Mead (no gradients, so none of gprat's) on the dense LML, from gprat's start
    # and from four other starts; every start lies inside gprat's default bounds and so does the
    # optimum (noise ~1e-3 > 1e-9).
    starts = [theta0] + [theta0 + np.array(shift) for shift in ([1, 0, 0], [0, 1, -1], [-1, -1, -1], [-1, 0, 2])]
    dense = [scipy.optimize.minimize(lambda t: -ref.lml("Matern32", X, y, t, False), start, method="Nelder-Mead",
                                     options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000}) for start in starts]
    best = min(dense, key=lambda result: result.fun)
    # One optimum for all starts (so gprat has no other to reach from theta0)...
    for result in dense:
        assert abs(result.fun - best.fun) <= 1e-8 and np.abs(result.x - best.x).max() <= 1e-5, (result.x, best.x)
    # ... and gprat reaches it. L-BFGS-B stops at a projected gradient below SciPy's pgtol = 1e-5;
    # the smallest eigenvalue of -Hessian(LML) there is ~0.18, so |theta - theta*| <~ 1e-5 / 0.18
    # = 6e-5 and |LML - LML*| <~ 1e-10 / (2 * 0.18): 1e-3 and 1e-6 leave a wide margin.
    assert gp.log_marginal_likelihood() >= -best.fun - 1e-6
    assert abs(gp.log_marginal_likelihood() + best.fun) <= 1e-6
    np.testing.assert_allclose(gp.theta, best.x, rtol=0, atol=1e-3)


def test_theta_setter_refits_lazily(rng):
    X, y, Xs = problem(rng)
    gp = model("Matern12", True, 32).fit(X, y)
    theta = gp.theta - 0.2
    gp.theta = theta
    np.testing.assert_allclose(gp.theta, theta)
    mean_ref, var_ref, _ = ref.predict("Matern12", X, y, Xs, theta, True)
    mean, std = gp.predict(Xs, return_std=True)
    assert_close(mean, mean_ref, 1e-9, "mean after theta change")
    assert_close(gp.log_marginal_likelihood(), ref.lml("Matern12", X, y, theta, True), 1e-9, "lml after theta change")


def test_zero_copy_of_c_contiguous_input(rng):
    X, y, _ = problem(rng)
    gp = model("SquaredExponential", False, None).fit(X, y)
    assert np.shares_memory(gp.X_train_, X) and np.shares_memory(gp.y_train_, y)
    gp = model("SquaredExponential", False, None).fit(np.asfortranarray(X), list(y))
    assert not np.shares_memory(gp.X_train_, X)


def test_errors(rng):
    X, y, Xs = problem(rng)
    gp = model("SquaredExponential", False, None)
    with pytest.raises(gprat.NotFittedError):
        gp.predict(Xs)
    with pytest.raises(ValueError, match="one entry per row"):
        gp.fit(X, y[:-1])
    gp.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        gp.predict(Xs[:, :2])
    with pytest.raises(ValueError, match="at most one"):
        gp.predict(Xs, return_std=True, return_cov=True)
    with pytest.raises(ValueError, match="theta"):
        gp.log_marginal_likelihood(np.zeros(gp.n_params + 2))
    with pytest.raises(ValueError):
        gp.log_marginal_likelihood(np.full(gp.n_params, np.nan))
    with pytest.raises(TypeError):
        gprat.ExactGP("rbf")
    with pytest.raises(ValueError):
        gprat.ExactGP(kernels.SquaredExponential(), noise_variance=-1.0)  # 0.0 is allowed (issue #13)
    with pytest.raises(ValueError):
        gprat.ExactGP(kernels.SquaredExponential(), tile_size=0)


def test_not_positive_definite_keeps_previous_fit(rng):
    X, y, Xs = problem(rng, n=40)
    gp = model("SquaredExponential", False, 16).fit(X, y)
    mean = gp.predict(Xs)
    bad = np.vstack([X, X[:1]])
    gp.kernel = kernels.SquaredExponential(lengthscale=50.0, signal_variance=1e6)
    gp.noise_variance = 1e-12
    gp.max_jitter = 0.0  # jitter would rescue this fit (tests/python/test_reliability.py covers that)
    with pytest.raises(gprat.NotPositiveDefiniteError) as excinfo:
        gp.fit(bad, np.append(y, y[0]))
    assert excinfo.value.order >= 1
    np.testing.assert_allclose(gp.predict(Xs), mean, rtol=1e-12)
