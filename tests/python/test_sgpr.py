"""SGPR (Titsias' collapsed bound) against the dense NumPy Titsias formulas written here from
the paper (independent of gprat), finite differences of that dense bound for every gradient
entry (theta and Z), the exact GP at Z = X, tile-size and thread-count independence, float32,
the inducing-point initialization and bad input."""

import numpy as np
import pytest

import gprat
import kernel_reference as kref
from gprat import kernels
from test_kernel_trees import to_gprat

SE_ARD = ("SquaredExponential", [0.6, 1.1, 1.7, 1.3], None)
TREE = ("Sum", ("Product", ("Matern32", [0.9, 1.3], None), ("Periodic", [1.2, 2.5], [0])),
        ("Sum", ("Linear", [0.4], [1, 2]), ("RationalQuadratic", [1.1, 0.8], None)))
DESCS = [SE_ARD, ("Matern52", [0.8, 1.5], None), ("Matern12", [1.0, 0.7, 1.4, 2.0], None), TREE]


# ------------------------------------------------------------ dense Titsias reference
def dense_bound(desc, X, y, Z, s2, jitter=0.0):
    """F = log N(y | 0, Q + s2 I) - tr(K - Q) / (2 s2), Q = K_XZ K_ZZ^{-1} K_ZX (Titsias 2009, eq. 9)."""
    n = X.shape[0]
    Kzz = kref.matrix(desc, Z) + jitter * np.eye(Z.shape[0])
    Kzx = kref.matrix(desc, Z, X)
    Q = Kzx.T @ np.linalg.solve(Kzz, Kzx)
    C = Q + s2 * np.eye(n)
    sign, logdet = np.linalg.slogdet(C)
    assert sign > 0
    kdiag = np.diag(kref.matrix(desc, X))
    return float(-0.5 * n * np.log(2 * np.pi) - 0.5 * logdet - 0.5 * y @ np.linalg.solve(C, y)
                 - (kdiag.sum() - np.trace(Q)) / (2 * s2))


def dense_predict(desc, X, y, Z, s2, Xs, jitter=0.0):
    """q(f*) of Titsias: Sigma = K_ZZ + K_ZX K_XZ / s2, mean = K_*Z Sigma^{-1} K_ZX y / s2,
    cov = K_** - K_*Z K_ZZ^{-1} K_Z* + K_*Z Sigma^{-1} K_Z*."""
    Kzz = kref.matrix(desc, Z) + jitter * np.eye(Z.shape[0])
    Kzx, Kzs = kref.matrix(desc, Z, X), kref.matrix(desc, Z, Xs)
    Sigma = Kzz + Kzx @ Kzx.T / s2
    mean = Kzs.T @ np.linalg.solve(Sigma, Kzx @ y) / s2
    cov = kref.matrix(desc, Xs, Xs) - Kzs.T @ np.linalg.solve(Kzz, Kzs) + Kzs.T @ np.linalg.solve(Sigma, Kzs)
    return mean, cov


def problem(seed=0, n=60, d=3, m=9):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, d))
    y = np.sin(X @ rng.normal(size=d)) + 0.1 * rng.normal(size=n)
    Z = rng.uniform(-2, 2, size=(m, d))
    return X, y, Z


def model(desc, Z, s2=0.05, **kw):
    return gprat.SGPR(to_gprat(desc), noise_variance=s2, inducing_points=Z, **kw)


# ---------------------------------------------------------------------------- tests
@pytest.mark.parametrize("desc", DESCS, ids=lambda d: d[0])
def test_bound_matches_dense_titsias(desc):
    X, y, Z = problem()
    m = model(desc, Z).fit(X, y)
    assert m.jitter_ == 0.0
    want = dense_bound(desc, X, y, Z, 0.05)
    np.testing.assert_allclose(m.log_marginal_likelihood(), want, rtol=1e-10)
    # at another theta, without changing the model
    t = m.theta + 0.3
    desc2 = kref.with_theta(desc, t[:-1])
    np.testing.assert_allclose(m.log_marginal_likelihood(t), dense_bound(desc2, X, y, Z, np.exp(t[-1])), rtol=1e-10)
    np.testing.assert_allclose(m.log_marginal_likelihood(), want, rtol=1e-10)


@pytest.mark.parametrize("desc", DESCS, ids=lambda d: d[0])
def test_gradients_match_finite_differences_of_the_dense_bound(desc):
    X, y, Z = problem(1)
    s2 = 0.05
    m = model(desc, Z, s2).fit(X, y)
    F, gt, gz = m.log_marginal_likelihood(m.theta, eval_gradient=True, return_inducing_gradient=True)
    t0, h = m.theta, 1e-5

    def dense_at(t, Zt):
        return dense_bound(kref.with_theta(desc, t[:-1]), X, y, Zt, np.exp(t[-1]))

    fd_t = np.array([(dense_at(t0 + h * e, Z) - dense_at(t0 - h * e, Z)) / (2 * h) for e in np.eye(t0.size)])
    fd_z = np.zeros_like(Z)
    for j in range(Z.shape[0]):
        for c in range(Z.shape[1]):
            zp, zm = Z.copy(), Z.copy()
            zp[j, c] += h
            zm[j, c] -= h
            fd_z[j, c] = (dense_at(t0, zp) - dense_at(t0, zm)) / (2 * h)
    scale = max(1.0, np.abs(fd_t).max(), np.abs(fd_z).max())
    np.testing.assert_allclose(gt, fd_t, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(gz, fd_z, rtol=1e-5, atol=1e-6 * scale)
    # the gradient-free value agrees with the one returned with it
    np.testing.assert_allclose(F, m.log_marginal_likelihood(m.theta), rtol=1e-13)


@pytest.mark.parametrize("desc", DESCS, ids=lambda d: d[0])
def test_predictions_match_dense_titsias(desc):
    X, y, Z = problem(2)
    Xs = np.random.default_rng(9).uniform(-2.5, 2.5, size=(17, 3))
    m = model(desc, Z).fit(X, y)
    mean_ref, cov_ref = dense_predict(desc, X, y, Z, 0.05, Xs)
    mean, cov = m.predict(Xs, return_cov=True)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cov, cov_ref, rtol=1e-8, atol=1e-10)
    _, std = m.predict(Xs, return_std=True)
    np.testing.assert_allclose(std, np.sqrt(np.clip(np.diag(cov_ref), 0, None)), rtol=1e-7, atol=1e-8)
    _, std_y = m.predict(Xs, return_std=True, include_noise=True)
    np.testing.assert_allclose(std_y, np.sqrt(np.diag(cov_ref) + 0.05), rtol=1e-8)
    _, cov_y = m.predict(Xs, return_cov=True, include_noise=True)
    np.testing.assert_allclose(cov_y, cov_ref + 0.05 * np.eye(17), rtol=1e-8, atol=1e-10)


def test_optimal_q_is_titsias():
    """mean_u = K_ZZ Sigma^{-1} K_ZX y / s2, S = K_ZZ Sigma^{-1} K_ZZ."""
    X, y, Z = problem(3)
    m = model(SE_ARD, Z).fit(X, y)
    Kzz, Kzx = kref.matrix(SE_ARD, Z), kref.matrix(SE_ARD, Z, X)
    Sigma = Kzz + Kzx @ Kzx.T / 0.05
    mu, S = m.optimal_q()
    np.testing.assert_allclose(mu, Kzz @ np.linalg.solve(Sigma, Kzx @ y) / 0.05, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(S, Kzz @ np.linalg.solve(Sigma, Kzz), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", kref.STATIONARY)
def test_inducing_points_at_the_data_equal_the_exact_gp(name):
    """With Z = X, Q = K and tr(K - Q) = 0: the bound is the exact LML, predictions are the exact GP's."""
    rng = np.random.default_rng(4)
    X = rng.uniform(-3, 3, size=(40, 2))
    y = np.cos(X[:, 0]) * X[:, 1] + 0.1 * rng.normal(size=40)
    k = getattr(kernels, name)(lengthscale=[0.4, 0.6], signal_variance=1.3)
    sg = gprat.SGPR(k, noise_variance=0.1, inducing_points=X).fit(X, y)
    ex = gprat.ExactGP(k, noise_variance=0.1).fit(X, y)
    assert sg.jitter_ == 0.0
    np.testing.assert_allclose(sg.log_marginal_likelihood(), ex.log_marginal_likelihood(), rtol=1e-8)
    Xs = rng.uniform(-3, 3, size=(12, 2))
    m1, s1 = sg.predict(Xs, return_std=True)
    m2, s2 = ex.predict(Xs, return_std=True)
    np.testing.assert_allclose(m1, m2, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(s1, s2, rtol=1e-7, atol=1e-8)
    # the count M = n also takes Z = X
    sg2 = gprat.SGPR(k, noise_variance=0.1, inducing_points=40).fit(X, y)
    np.testing.assert_array_equal(np.sort(sg2.inducing_points_, axis=0), np.sort(X, axis=0))


def test_tile_size_and_thread_count_do_not_matter():
    X, y, Z = problem(5, n=301)
    ref = None
    for nb in (1, 7, 64, 301, None):
        m = model(SE_ARD, Z, tile_size=nb).fit(X, y)
        out = m.log_marginal_likelihood(m.theta, eval_gradient=True, return_inducing_gradient=True)
        if ref is None:
            ref = out
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-12)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(out[2], ref[2], rtol=1e-9, atol=1e-10)
    before = gprat.num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            gprat.start(threads)
            m = model(SE_ARD, Z, tile_size=16).fit(X, y)
            results.append(m.log_marginal_likelihood(m.theta, eval_gradient=True, return_inducing_gradient=True))
    finally:
        gprat.start(before)
    for r in results[1:]:  # fixed accumulator slots: bitwise the same for every thread count
        assert r[0] == results[0][0]
        np.testing.assert_array_equal(r[1], results[0][1])
        np.testing.assert_array_equal(r[2], results[0][2])


def test_float32_agrees_with_float64():
    X, y, Z = problem(6)
    m64 = model(SE_ARD, Z).fit(X, y)
    m32 = model(SE_ARD, Z, dtype=np.float32).fit(X.astype(np.float32), y.astype(np.float32))
    X32, y32 = X.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(m32.log_marginal_likelihood(), dense_bound(SE_ARD, X32, y32, Z, 0.05), rtol=1e-9)
    np.testing.assert_allclose(m32.log_marginal_likelihood(), m64.log_marginal_likelihood(), rtol=1e-5)
    mean32 = m32.predict(X[:5])
    assert mean32.dtype == np.float32
    np.testing.assert_allclose(mean32, m64.predict(X[:5]), rtol=1e-4, atol=1e-5)


def test_optimize_raises_the_bound_and_moves_z():
    X, y, _ = problem(7, n=120)
    m = gprat.SGPR(kernels.SquaredExponential([1.0, 1.0, 1.0]), noise_variance=0.2, inducing_points=10,
                   random_state=0).fit(X, y)
    F0, Z0 = m.log_marginal_likelihood(), m.inducing_points_
    res = m.optimize(max_iter=60)
    assert m.log_marginal_likelihood() > F0 + 1.0
    np.testing.assert_allclose(m.log_marginal_likelihood(), res.log_marginal_likelihood, rtol=1e-10)
    assert not np.allclose(m.inducing_points_, Z0)
    # the bound is a lower bound of the exact LML at the same hyperparameters
    ex = gprat.ExactGP(m.kernel, noise_variance=m.noise_variance).fit(X, y)
    assert m.log_marginal_likelihood() <= ex.log_marginal_likelihood() + 1e-8
    # fixed Z: only theta moves
    Zb = m.inducing_points_
    m.optimize(max_iter=5, learn_inducing_points=False)
    np.testing.assert_array_equal(m.inducing_points_, Zb)
    # adam runs too
    F1 = m.log_marginal_likelihood()
    m.optimize(method="adam", max_iter=5, lr=0.01)
    assert np.isfinite(m.log_marginal_likelihood()) and m.log_marginal_likelihood() > F1 - 1.0


def test_kmeans_plus_plus_initialization():
    X, y, _ = problem(8, n=200)
    Z1 = gprat.SGPR(kernels.SquaredExponential(), inducing_points=15, random_state=3).fit(X, y).inducing_points_
    Z2 = gprat.SGPR(kernels.SquaredExponential(), inducing_points=15, random_state=3).fit(X, y).inducing_points_
    np.testing.assert_array_equal(Z1, Z2)
    rows = {tuple(r) for r in X}
    assert all(tuple(z) in rows for z in Z1)
    assert len({tuple(z) for z in Z1}) == 15
    # duplicated rows: only distinct ones can be drawn
    Xd = np.repeat(X[:4], 10, axis=0)
    with pytest.raises(ValueError, match="distinct rows"):
        gprat.SGPR(kernels.SquaredExponential(), inducing_points=5).fit(Xd, np.zeros(40))


def test_bad_input():
    X, y, Z = problem(9, n=20)
    k = kernels.SquaredExponential()
    with pytest.raises(ValueError, match="more than the number of training points"):
        gprat.SGPR(k, inducing_points=21).fit(X, y)
    with pytest.raises(ValueError, match="at most as many inducing points"):
        gprat.SGPR(k, inducing_points=np.zeros((21, 3))).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        gprat.SGPR(k, inducing_points=np.zeros((4, 2))).fit(X, y)
    with pytest.raises(ValueError, match="finite|NaN"):
        gprat.SGPR(k, inducing_points=np.full((4, 3), np.nan)).fit(X, y)
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError):
        gprat.SGPR(k, inducing_points=4).fit(Xn, y)
    with pytest.raises(ValueError, match="one entry per row"):
        gprat.SGPR(k, inducing_points=4).fit(X, y[:-1])
    with pytest.raises(ValueError):
        gprat.SGPR(k, inducing_points=0).fit(X, y)
    with pytest.raises(gprat.NotFittedError):
        gprat.SGPR(k).predict(X)
    # duplicated inducing points without jitter: a clear NotPositiveDefiniteError with a fix
    Zd = np.vstack([Z[:3], Z[:3]])
    with pytest.raises(gprat.NotPositiveDefiniteError, match="inducing points.*Fix"):
        gprat.SGPR(k, inducing_points=Zd, max_jitter=0.0).fit(X, y)
    # with jitter allowed it is reported
    with pytest.warns(gprat.NumericalWarning, match="jitter"):
        m = gprat.SGPR(k, inducing_points=Zd).fit(X, y)
    assert m.jitter_ > 0
    m = gprat.SGPR(k, inducing_points=Z).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(np.zeros((3, 2)))
    with pytest.raises(ValueError):
        m.log_marginal_likelihood(np.zeros(5))


def test_bad_input_audit():
    """The rest of issue #10's bad-input list for SGPR: NaN targets, booleans, Z of another d
    through the setter and the bound, and an interrupted optimize leaving the model as it was."""
    X, y, Z = problem(10, n=30)
    k = kernels.SquaredExponential()
    yn = y.copy()
    yn[4] = np.nan
    with pytest.raises(ValueError, match="y must contain only finite values; found nan at index 4"):
        gprat.SGPR(k, inducing_points=4).fit(X, yn)
    with pytest.raises(TypeError, match="boolean"):
        gprat.SGPR(k, inducing_points=X[:4] > 0).fit(X, y)
    with pytest.raises(ValueError, match="noise_variance"):
        gprat.SGPR(k, noise_variance=0.0, inducing_points=4).fit(X, y)
    with pytest.raises(TypeError, match="gprat.kernels kernel"):
        gprat.SGPR("rbf", inducing_points=4).fit(X, y)
    m = gprat.SGPR(k, inducing_points=Z).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.inducing_points_ = np.zeros((9, 2))
    with pytest.raises(ValueError, match="features"):
        m.log_marginal_likelihood(m.theta, inducing_points=np.zeros((9, 2)))
    with pytest.raises(ValueError, match="9 rows"):
        m.log_marginal_likelihood(m.theta, inducing_points=Z[:5])
    with pytest.raises(ValueError, match="trainable must be 3 booleans"):
        m.optimize(trainable=[True])
    with pytest.raises(ValueError, match="method"):
        m.optimize(method="sgd")
    # Ctrl-C in the middle of optimize: the model is unchanged and usable
    theta, Zb, F, pred = m.theta, m.inducing_points_, m.log_marginal_likelihood(), m.predict(X[:4])

    def stop(iteration, loss):
        if iteration == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        m.optimize(max_iter=20, callback=stop)
    np.testing.assert_array_equal(m.theta, theta)
    np.testing.assert_array_equal(m.inducing_points_, Zb)
    assert m.log_marginal_likelihood() == F
    np.testing.assert_array_equal(m.predict(X[:4]), pred)
