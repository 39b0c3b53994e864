"""KissGP against independent dense references.

The references are built here from the definitions, not from the engine: W from Keys' cubic
convolution kernel evaluated on every grid point (no stencil indexing), K_UU from the kernel's
dense evaluation on the grid points (the tile assembler, another code path than the engine's
per-dimension Toeplitz columns), and dense NumPy solves, log-determinants and traces.
"""

import numpy as np
import pytest

import gprat
from gprat import _core

SE = gprat.kernels.SquaredExponential


def keys(s):
    """Keys' cubic convolution kernel, a = -1/2 (Keys 1981, eq. 15)."""
    s = np.abs(s)
    a = -0.5
    inner = (a + 2) * s**3 - (a + 3) * s**2 + 1
    outer = a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a
    return np.where(s <= 1, inner, np.where(s < 2, outer, 0.0))


def dense_W(X, grid):
    """(n, m) interpolation matrix: products over dimensions of keys((x_k - u_k) / h_k), last dimension fastest."""
    n = X.shape[0]
    W = np.ones((n, 1))
    for k, (lo, h, m) in enumerate(grid):
        u = lo + h * np.arange(m)
        Wk = keys((X[:, k:k + 1] - u[None, :]) / h)
        W = np.einsum("ia,ib->iab", W, Wk).reshape(n, -1)
    return W


def grid_points(grid):
    axes = [lo + h * np.arange(m) for lo, h, m in grid]
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.reshape(-1) for g in mesh], axis=1)


def interpolated(gp, X):
    """Dense W, K_UU and dK_UU/dtheta of the fitted model (SE: exactly separable)."""
    W = dense_W(X, gp.grid_)
    U = grid_points(gp.grid_)
    return W, gp.kernel(U), gp.kernel.gradient(U)


def dense_lml(W, Kuu, dKuu, noise, y):
    """LML and gradient of the dense interpolated model W K_UU W^T + noise I (R&W eq. 5.9)."""
    n = len(y)
    K = W @ Kuu @ W.T + noise * np.eye(n)
    Ki = np.linalg.inv(K)
    alpha = Ki @ y
    _, logdet = np.linalg.slogdet(K)
    lml = -0.5 * y @ alpha - 0.5 * logdet - 0.5 * n * np.log(2 * np.pi)
    grads = []
    for dK in [W @ d @ W.T for d in dKuu] + [noise * np.eye(n)]:
        grads.append(0.5 * alpha @ dK @ alpha - 0.5 * np.trace(Ki @ dK))
    return lml, np.array(grads), K


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, d))
    y = np.sin(5 * X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


def test_interpolation_weights_match_keys_including_edges():
    """mean = W* a: the engine's stencil rows against Keys' kernel on every grid point, up to the edges."""
    X, y = data(200, 2)
    gp = gprat.KissGP(SE([0.3, 0.2]), noise_variance=0.05, random_state=0).fit(X, y)
    grid = gp.grid_
    a = np.asarray(gp._core.mean_cache())
    lo = np.array([g[0] + g[1] for g in grid])            # edges of the interpolable box
    hi = np.array([g[0] + g[1] * (g[2] - 2) for g in grid])
    rng = np.random.default_rng(1)
    Xs = np.vstack([rng.uniform(lo, hi, (50, 2)), lo, hi, [lo[0], hi[1]], lo + 1e-7, hi - 1e-7,
                    [lo[0] + 0.3 * grid[0][1], hi[1] - 0.6 * grid[1][1]]])
    np.testing.assert_allclose(gp.predict(Xs), dense_W(Xs, grid) @ a, rtol=0, atol=1e-12 * np.abs(a).max())


def test_point_outside_grid_is_refused_not_snapped():
    X, y = data(100, 1)
    gp = gprat.KissGP(SE(0.2), noise_variance=0.05, random_state=0).fit(X, y)
    lo, h, m = gp.grid_[0]
    with pytest.raises(ValueError, match="outside the interpolable range"):
        gp.predict([[lo + 0.5 * h]])
    with pytest.raises(ValueError, match="outside the interpolable range"):
        gp.predict([[100.0]])
    gp.predict([[lo + h]])  # the edge itself is a real cubic
    with pytest.raises(ValueError, match="outside the interpolable range"):
        gprat.KissGP(SE(0.2), noise_variance=0.05, grid_bounds=[(0.2, 0.5)]).fit(X, y)


@pytest.mark.parametrize("d, lengthscale, grid_size", [(1, 0.1, None), (2, [0.3, 0.2], None), (3, 0.4, 9)])
def test_mvm_matches_dense(d, lengthscale, grid_size):
    X, y = data(150, d)
    gp = gprat.KissGP(SE(lengthscale, 1.3), noise_variance=0.07, grid_size=grid_size, random_state=0).fit(X, y)
    W, Kuu, _ = interpolated(gp, X)
    V = np.random.default_rng(2).standard_normal((150, 3))
    expected = W @ (Kuu @ (W.T @ V)) + 0.07 * V
    np.testing.assert_allclose(gp._core.mvm(V), expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())


def test_mvm_matern_product_of_one_dimensional_kernels():
    """For d > 1 a Matern kernel becomes the product of 1-D Materns over the features (and warns)."""
    X, y = data(120, 2)
    k = gprat.kernels.Matern32([0.3, 0.5], 0.8)
    with pytest.warns(gprat.KissGridWarning, match="product of 1-D kernels"):
        gp = gprat.KissGP(k, noise_variance=0.1, random_state=0).fit(X, y)
    grid = gp.grid_
    W = dense_W(X, grid)
    U = grid_points(grid)
    Kuu = 0.8 * np.ones((len(U), len(U)))
    for j, ls in enumerate([0.3, 0.5]):
        Kuu *= gprat.kernels.Matern32(ls, 1.0)(U[:, j:j + 1])
    V = np.random.default_rng(3).standard_normal(120)
    np.testing.assert_allclose(gp._core.mvm(V), W @ Kuu @ W.T @ V + 0.1 * V, rtol=1e-11)


def test_large_grid_toeplitz_product():
    """A 1-D grid of 9000 points (more than 8192) with a long lengthscale: a full-band Toeplitz factor,
    against SciPy's FFT Toeplitz product and a sparse W."""
    scipy_linalg = pytest.importorskip("scipy.linalg")
    sparse = pytest.importorskip("scipy.sparse")
    X, y = data(2000, 1)
    # one probe: without FFTW the full-band direct product costs m^2 per column
    gp = gprat.KissGP(SE(0.5), noise_variance=0.1, grid_size=9000, n_probes=1, random_state=0, cg_tol=1e-3).fit(X, y)
    lo, h, m = gp.grid_[0]
    assert m == 9000
    col = np.exp(-0.5 * (h * np.arange(m) / 0.5) ** 2)
    W = sparse.csr_matrix(dense_W(X, gp.grid_))
    v = np.random.default_rng(4).standard_normal(2000)
    expected = W @ scipy_linalg.matmul_toeplitz(col, W.T @ v) + 0.1 * v
    np.testing.assert_allclose(gp._core.mvm(v), expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())


def test_cg_solve_matches_dense_solve():
    X, y = data(250, 2)
    gp = gprat.KissGP(SE([0.25, 0.35]), noise_variance=0.02, cg_tol=1e-12, random_state=0).fit(X, y)
    W, Kuu, _ = interpolated(gp, X)
    K = W @ Kuu @ W.T + 0.02 * np.eye(250)
    B = np.column_stack([y, np.random.default_rng(5).standard_normal((250, 2))])
    x, iterations = gp._core.solve(B)
    np.testing.assert_allclose(x, np.linalg.solve(K, B), rtol=1e-8, atol=1e-9 * np.abs(x).max())
    assert iterations < 250


def test_fused_cg_on_an_ill_conditioned_system_matches_dense_and_its_woodbury_dot():
    """The fused CG (kiss_gp.hpp, cg) takes beta from r^T P^{-1} r by Woodbury,
    (|r|^2 - s^T M^{-1} s) / sigma2 with s = L^T r, a difference that cancels when r lies along
    the preconditioner's large directions. On a badly conditioned system (noise 1e-5, n = 1500,
    cond(K~) ~ 2e7, rank-5 preconditioner: about 460 iterations), solved to 1e-12: the solutions
    match a dense solve, and the Woodbury dot agrees with the exact r^T z of the same iteration
    (the engine records the largest relative difference; measured 2.6e-14) to 1e-11."""
    X, y = data(1500, 1, seed=11)
    noise = 1e-5
    gp = gprat.KissGP(SE(0.05), noise_variance=noise, grid_size=400, cg_tol=1e-12, max_cg_iter=3000,
                      preconditioner_rank=5, random_state=0).fit(X, y)
    W, Kuu, _ = interpolated(gp, X)
    K = W @ Kuu @ W.T + noise * np.eye(1500)
    B = np.column_stack([y, np.random.default_rng(2).standard_normal((1500, 3))])
    gp._core.reset_timings()
    x, iterations = gp._core.solve(B)
    ref = np.linalg.solve(K, B)
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-7 * np.abs(ref).max())
    t = gp._core.timings()
    assert t["cg_iterations"] == iterations and iterations > 100
    assert 0.0 < t["rz_woodbury_error"] < 1e-11, t["rz_woodbury_error"]


def test_cg_solved_to_rounding_stops_before_ten_iterations_without_changing_the_estimate():
    """A column whose relative residual reaches 1e-10 stops before the minimum of 10 iterations
    (kiss_gp.hpp, converged_tol). On a system the rank-15 preconditioner nearly solves (1-D, SE
    lengthscale 0.2: K_UU's numerical rank is about 15), at the benchmark's loose tolerance 1.0:
    fewer than 10 iterations, the estimate and gradient equal those of a solve to 1e-13 (same
    probes) to 1e-9 relative, and a solve at tolerance 1.0 equals a dense solve to 1e-8."""
    X, y = data(2000, 1, seed=4)
    kw = dict(noise_variance=0.01, grid_size=300, n_probes=10, preconditioner_rank=15, random_state=0)
    loose = gprat.KissGP(SE(0.2), cg_tol=1.0, **kw).fit(X, y)
    tight = gprat.KissGP(SE(0.2), cg_tol=1e-13, max_cg_iter=500, **kw).fit(X, y)
    v1, g1 = loose.log_marginal_likelihood(eval_gradient=True, random_state=9)
    its = list(loose._core.last_iterations)
    v2, g2 = tight.log_marginal_likelihood(eval_gradient=True, random_state=9)
    assert max(its) < 10, its
    assert abs(v1 - v2) <= 1e-9 * abs(v2)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * np.abs(g2).max())
    W, Kuu, _ = interpolated(loose, X)
    K = W @ Kuu @ W.T + 0.01 * np.eye(2000)
    B = np.column_stack([y, np.random.default_rng(3).standard_normal((2000, 2))])
    x, iterations = loose._core.solve(B)
    ref = np.linalg.solve(K, B)
    assert iterations < 10
    np.testing.assert_allclose(x, ref, rtol=0, atol=1e-8 * np.abs(ref).max())


@pytest.mark.parametrize("rank", [0, 10])
def test_slq_and_trace_estimates_unbiased_with_root_t_spread(rank):
    """Over S seeds: the mean estimate agrees with the dense LML and gradient within 4 standard
    errors (sd / sqrt(S)), and the spread for t = 4 probes is twice that for t = 16 (1/sqrt(t)),
    within 3.5 standard errors of a sample standard deviation ratio (~ sqrt(2 / (S - 1)))."""
    X, y = data(200, 1, seed=7)
    S = 40
    spreads = {}
    for t in (4, 16):
        gp = gprat.KissGP(SE(0.15, 1.0), noise_variance=0.05, n_probes=t, cg_tol=1e-10,
                          preconditioner_rank=rank, random_state=0).fit(X, y)
        W, Kuu, dKuu = interpolated(gp, X)
        lml_dense, grad_dense, _ = dense_lml(W, Kuu, dKuu, 0.05, y)
        values, grads = [], []
        for seed in range(S):
            v, g = gp.log_marginal_likelihood(eval_gradient=True, random_state=1000 + seed)
            values.append(v)
            grads.append(g)
        values, grads = np.array(values), np.array(grads)
        sd, gsd = values.std(ddof=1), grads.std(axis=0, ddof=1)
        assert abs(values.mean() - lml_dense) <= 4 * sd / np.sqrt(S) + 1e-8 * abs(lml_dense)
        assert np.all(np.abs(grads.mean(axis=0) - grad_dense) <= 4 * gsd / np.sqrt(S) + 1e-8 * np.abs(grad_dense))
        spreads[t] = (sd, gsd)
    rel = 3.5 * np.sqrt(2.0 / (S - 1))  # standard error of log(sd1/sd2) is about sqrt(2/(S-1)) * ... ; 3.5 of them
    for a, b in [(spreads[4][0], spreads[16][0])] + list(zip(spreads[4][1], spreads[16][1])):
        assert 2.0 * np.exp(-rel) <= a / b <= 2.0 * np.exp(rel), (a / b)


def test_estimate_is_seeded_and_thread_count_independent():
    X, y = data(20000, 2)
    before = gprat.num_threads()
    try:
        out = []
        for threads in (1, 2):
            gprat.start(threads)
            gp = gprat.KissGP(SE([0.2, 0.3]), noise_variance=0.05, random_state=3).fit(X, y)
            out.append((gp.log_marginal_likelihood(eval_gradient=True), gp.predict(X[:50], return_std=True),
                        gp.predict(X[:50], return_std=True, variance="exact")[1]))
    finally:
        gprat.start(before)
    (l1, g1), (m1, s1), e1 = out[0]
    (l2, g2), (m2, s2), e2 = out[1]
    assert l1 == l2 and np.array_equal(g1, g2) and np.array_equal(m1, m2) and np.array_equal(s1, s2)
    assert np.array_equal(e1, e2)
    gp = gprat.KissGP(SE([0.2, 0.3]), noise_variance=0.05, random_state=3).fit(X[:500], y[:500])
    assert gp.log_marginal_likelihood(random_state=4) != gp.log_marginal_likelihood(random_state=5)


@pytest.mark.parametrize("d, lengthscale, grid_size", [(1, 0.15, None), (2, [0.3, 0.25], None), (3, 0.5, 10)])
def test_predictions_match_dense_interpolated_gp(d, lengthscale, grid_size):
    X, y = data(200, d)
    noise = 0.03
    gp = gprat.KissGP(SE(lengthscale, 1.2), noise_variance=noise, grid_size=grid_size, cg_tol=1e-13,
                      random_state=0).fit(X, y)
    W, Kuu, _ = interpolated(gp, X)
    K = W @ Kuu @ W.T + noise * np.eye(200)
    Xs = np.random.default_rng(8).uniform(0.02, 0.98, (30, d))
    Ws = dense_W(Xs, gp.grid_)
    Ks = Ws @ Kuu @ W.T
    mean_ref = Ks @ np.linalg.solve(K, y)
    var_ref = np.einsum("ij,jk,ik->i", Ws, Kuu, Ws) - np.einsum("ij,ji->i", Ks, np.linalg.solve(K, Ks.T))
    mean, std = gp.predict(Xs, return_std=True, variance="exact")
    np.testing.assert_allclose(mean, mean_ref, rtol=0, atol=1e-8)
    np.testing.assert_allclose(std**2, var_ref, rtol=0, atol=1e-8)
    _, std_noisy = gp.predict(Xs, return_std=True, include_noise=True, variance="exact")
    np.testing.assert_allclose(std_noisy**2, var_ref + noise, rtol=0, atol=1e-8)
    # LOVE with as many Lanczos steps as rows: the Krylov space is everything, so exact too
    _, std_love = gp.predict(Xs, return_std=True, love_rank=200)
    np.testing.assert_allclose(std_love**2, var_ref, rtol=0, atol=1e-8)
    # the default rank: an overestimate only, small against the prior variance (measured)
    _, std_love = gp.predict(Xs, return_std=True)
    prior = np.einsum("ij,jk,ik->i", Ws, Kuu, Ws)
    assert np.all(std_love**2 >= var_ref - 1e-8)
    assert np.max(std_love**2 - var_ref) < LOVE_BOUND[d] * prior.max(), np.max(std_love**2 - var_ref) / prior.max()


#: Excess of the LOVE variance at love_rank=100 over the exact one (n = 200), relative to the
#: prior variance: measured 1e-15 (d=1, grid of 32: Lanczos reaches an invariant subspace),
#: 1.3e-14 (d=2), 6.7e-8 (d=3; 2.5e-4 at rank 50, 5.5e-2 at rank 20); bounds about 100x that.
LOVE_BOUND = {1: 1e-10, 2: 1e-9, 3: 1e-5}


def test_loose_training_tolerance_still_predicts_accurately():
    """GPyTorch trains at cg_tol=1.0; with that tolerance alpha must still be solved for the mean
    (regression: the mean was the CG iterate at residual |b|, test RMSE 0.85 against 0.013)."""
    X, y = data(2000, 2)
    gp = gprat.KissGP(SE([0.2, 0.2]), noise_variance=0.01, grid_size=30, cg_tol=1.0, random_state=0).fit(X, y)
    W, Kuu, _ = interpolated(gp, X)
    Xs = np.random.default_rng(11).uniform(0.1, 0.9, (50, 2))
    Ws = dense_W(Xs, gp.grid_)
    mean_ref = Ws @ Kuu @ W.T @ np.linalg.solve(W @ Kuu @ W.T + 0.01 * np.eye(2000), y)
    # predict_cg_tol = 1e-4: relative residual 1e-4, mean error far below the noise level
    assert np.abs(gp.predict(Xs) - mean_ref).max() < 1e-3 * np.abs(mean_ref).max()


def test_prediction_does_not_depend_on_other_test_points():
    X, y = data(300, 2)
    gp = gprat.KissGP(SE([0.3, 0.3]), noise_variance=0.05, random_state=0).fit(X, y)
    Xs = np.random.default_rng(9).uniform(0.1, 0.9, (40, 2))
    for variance in ("exact", "love"):
        mean_all, std_all = gp.predict(Xs, return_std=True, variance=variance)
        for i in (0, 17, 39):
            mean_one, std_one = gp.predict(Xs[i:i + 1], return_std=True, variance=variance)
            assert mean_one[0] == mean_all[i] and std_one[0] == std_all[i]


# Interpolation error against the exact GP on the TRUE kernel (measured; see the report in
# benchmarks/kiss_gp.py): max |mean difference| / std(y) and max |std difference| / signal sd.
INTERPOLATION_BOUNDS = {1: 2e-3, 2: 5e-3, 3: 2e-2}


@pytest.mark.parametrize("d, lengthscale, grid_size", [(1, 0.15, None), (2, [0.3, 0.25], None), (3, 0.5, None)])
def test_predictions_close_to_exact_gp_on_true_kernel(d, lengthscale, grid_size):
    X, y = data(400, d)
    k = SE(lengthscale, 1.0)
    gp = gprat.KissGP(k, noise_variance=0.05, grid_size=grid_size, cg_tol=1e-10, random_state=0).fit(X, y)
    ex = gprat.ExactGP(k, noise_variance=0.05).fit(X, y)
    Xs = np.random.default_rng(10).uniform(0.05, 0.95, (50, d))
    m1, s1 = gp.predict(Xs, return_std=True)
    m2, s2 = ex.predict(Xs, return_std=True)
    err_mean = np.abs(m1 - m2).max() / y.std()
    err_std = np.abs(s1 - s2).max()
    print(f"d={d}: grid {gp.grid_points_} points, mean error {err_mean:.2e} (of std y), std error {err_std:.2e}")
    assert err_mean < INTERPOLATION_BOUNDS[d] and err_std < INTERPOLATION_BOUNDS[d]


def test_optimize_adam_and_lbfgsb_improve_the_fit():
    X, y = data(500, 1)
    gp = gprat.KissGP(SE(0.5, 0.3), noise_variance=0.5, random_state=0).fit(X, y)
    start = gp.log_marginal_likelihood()
    res = gp.optimize(max_iter=40, lr=0.1)
    assert res.log_marginal_likelihood > start + 50 and gp.noise_variance < 0.5
    gp2 = gprat.KissGP(SE(0.5, 0.3), noise_variance=0.5, random_state=0).fit(X, y)
    res2 = gp2.optimize(method="L-BFGS-B", max_iter=30)
    ex = gprat.ExactGP(SE(0.5, 0.3), noise_variance=0.5).fit(X, y)
    ex.optimize()
    assert abs(res2.log_marginal_likelihood - ex.log_marginal_likelihood()) < 2.0
    # KissGP's optimum, scored by the exact LML, within half a nat of the exact optimum: the cost of
    # a one-standard-deviation move of the Laplace approximation in one direction. (Closeness in
    # theta is not the test: the signal variance is flat here, its Laplace sd ~0.9 in log units,
    # so the stochastic estimates move it by ~0.15 with no loss of fit: 0.04 nats measured.)
    assert ex.log_marginal_likelihood(gp2.theta) > ex.log_marginal_likelihood() - 0.5


def test_bad_input_gives_clear_errors():
    X, y = data(50, 1)
    with pytest.raises(ValueError, match="stationary"):
        gprat.KissGP(gprat.kernels.Linear(), noise_variance=0.1)
    with pytest.raises(ValueError, match="sum of kernels over different features"):
        gprat.KissGP(SE(0.1) + SE(0.2), noise_variance=0.1).fit(np.column_stack([X, X[::-1]]), y)
    with pytest.raises(ValueError):
        gprat.KissGP(SE(0.1), noise_variance=0.0)
    gp = gprat.KissGP(SE(0.1), noise_variance=0.1).fit(X, y)
    with pytest.raises(ValueError, match="return_std"):
        gp.predict(X, return_cov=True)
    with pytest.raises(ValueError, match="grid_size"):
        gprat.KissGP(SE(0.1), noise_variance=0.1, grid_size=[10, 10]).fit(X, y)
    with pytest.raises(ValueError, match="at least 8"):
        gprat.KissGP(SE(0.1), noise_variance=0.1, grid_size=5).fit(X, y)
    with pytest.raises(gprat.exceptions.NotFittedError):
        gprat.KissGP(SE(0.1), noise_variance=0.1).predict(X)


def test_unconverged_cg_warns():
    X, y = data(300, 1)
    with pytest.warns(gprat.NumericalWarning, match="max_cg_iter=3"):
        gprat.KissGP(SE(0.1), noise_variance=1e-4, max_cg_iter=3, preconditioner_rank=0, cg_tol=1e-12).fit(X, y)


def test_high_dimension_warns_and_memory_error_before_allocating(monkeypatch):
    X, y = data(30, 4)
    monkeypatch.setenv("GPRAT_MEMORY_LIMIT", str(10**6))
    with pytest.warns(gprat.KissGridWarning, match="grows as"), pytest.raises(MemoryError, match="KissGP"):
        gprat.KissGP(SE(0.05), noise_variance=0.1).fit(X, y)


def test_fft_build_flag_is_reported():
    assert isinstance(_core.kiss_gp_with_fft, bool)


# ---------------------------------------------------------------- kernels beyond one SE family
K = gprat.kernels

#: (d, kernel) pairs that are exactly separable, so K_UU = s0 (x)_k T_k is the kernel itself on
#: the grid and the dense reference is kernel(U) from the tile assembler.
SEPARABLE = {
    "scaled-matern-times-rq": (2, lambda: 2.0 * K.Matern32(0.3, active_dims=[0])
                               * K.RationalQuadratic(0.4, 2.0, active_dims=[1])),
    "se-times-periodic": (2, lambda: SE(0.35, active_dims=[0]) * K.Periodic(0.9, 0.8, active_dims=[1])),
    "constant-times-ard-se": (2, lambda: K.Constant(1.5) * SE([0.3, 0.25])),
    "se-on-one-of-two-features": (2, lambda: SE(0.3, 0.7, active_dims=[1])),
    "1d-sum": (1, lambda: SE(0.2) + K.Matern52(0.5, 0.3)),
    "1d-rq": (1, lambda: K.RationalQuadratic(0.2, 1.5)),
    "same-feature-sum-times-matern": (2, lambda: (SE(0.3, active_dims=[0]) + K.Matern12(0.6, 0.5, active_dims=[0]))
                                      * K.Matern52(0.4, active_dims=[1])),
}


@pytest.mark.parametrize("name", list(SEPARABLE))
def test_separable_kernels_match_dense_interpolated_kernel(name):
    """MVM and posterior mean against W kernel(U) W^T from the dense assembler, with no warning."""
    import warnings

    d, make = SEPARABLE[name]
    X, y = data(150, d, seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", gprat.KissGridWarning)
        gp = gprat.KissGP(make(), noise_variance=0.05, cg_tol=1e-13, random_state=0).fit(X, y)
    W = dense_W(X, gp.grid_)
    Kuu = gp.kernel(grid_points(gp.grid_))
    V = np.random.default_rng(2).standard_normal((150, 3))
    expected = W @ (Kuu @ (W.T @ V)) + 0.05 * V
    np.testing.assert_allclose(gp._core.mvm(V), expected, rtol=1e-11, atol=1e-11 * np.abs(expected).max())
    Xs = np.random.default_rng(8).uniform(0.02, 0.98, (20, d))
    Kt = W @ Kuu @ W.T + 0.05 * np.eye(150)
    mean_ref = dense_W(Xs, gp.grid_) @ Kuu @ W.T @ np.linalg.solve(Kt, y)
    np.testing.assert_allclose(gp.predict(Xs), mean_ref, rtol=0, atol=1e-8)


def test_composite_kernel_gradient_unbiased_against_dense():
    """The gradient of a product with a shared (isotropic) lengthscale over two features, a
    Constant factor and a RationalQuadratic alpha: the seed average agrees with the dense
    gradient of W kernel(U) W^T within 4 standard errors (every parameter kind of the
    ds0 / dT_{p,k} decomposition)."""
    X, y = data(150, 2, seed=9)
    kern = K.Constant(1.3) * SE(0.3) * K.RationalQuadratic(0.5, 2.0, active_dims=[1])
    gp = gprat.KissGP(kern, noise_variance=0.05, n_probes=8, cg_tol=1e-10, random_state=0).fit(X, y)
    W = dense_W(X, gp.grid_)
    U = grid_points(gp.grid_)
    lml_dense, grad_dense, _ = dense_lml(W, kern(U), kern.gradient(U), 0.05, y)
    S = 30
    out = [gp.log_marginal_likelihood(eval_gradient=True, random_state=100 + s) for s in range(S)]
    values, grads = np.array([o[0] for o in out]), np.array([o[1] for o in out])
    assert abs(values.mean() - lml_dense) <= 4 * values.std(ddof=1) / np.sqrt(S) + 1e-8 * abs(lml_dense)
    se = grads.std(axis=0, ddof=1) / np.sqrt(S)
    assert np.all(np.abs(grads.mean(axis=0) - grad_dense) <= 4 * se + 1e-8 * np.abs(grad_dense)), (
        grads.mean(axis=0), grad_dense, se)


def test_scaled_and_product_kernels_equal_the_single_family():
    """Constant(c) * SE(l) and SE(l0, dim 0) * SE(l1, dim 1) are SE([l0, l1], s2): the same
    estimate for the same seed, and the derivative in each variance factor is that in s2 (CG
    tight: at cg_tol=1e-6 the two agree to 2e-7 only, the CG residual)."""
    X, y = data(300, 2, seed=3)
    ref = gprat.KissGP(SE([0.3, 0.2], 1.5), noise_variance=0.05, grid_size=30, cg_tol=1e-11, random_state=1).fit(X, y)
    lml, g = ref.log_marginal_likelihood(eval_gradient=True)
    scaled = gprat.KissGP(K.Constant(1.5) * SE([0.3, 0.2]), noise_variance=0.05, grid_size=30, cg_tol=1e-11,
                          random_state=1).fit(X, y)
    l2, g2 = scaled.log_marginal_likelihood(eval_gradient=True)  # theta: log c, log l0, log l1, log 1, log noise
    np.testing.assert_allclose(l2, lml, rtol=1e-8)
    np.testing.assert_allclose(g2, [g[2], g[0], g[1], g[2], g[3]], rtol=1e-8, atol=1e-8 * np.abs(g).max())
    prod = gprat.KissGP(SE(0.3, 1.5, active_dims=[0]) * SE(0.2, active_dims=[1]), noise_variance=0.05, grid_size=30,
                        cg_tol=1e-11, random_state=1).fit(X, y)
    l3, g3 = prod.log_marginal_likelihood(eval_gradient=True)  # log l0, log s2a, log l1, log s2b, log noise
    np.testing.assert_allclose(l3, lml, rtol=1e-8)
    np.testing.assert_allclose(g3, [g[0], g[2], g[1], g[2], g[3]], rtol=1e-8, atol=1e-8 * np.abs(g).max())


def test_non_separable_kernels_warn_and_unsupported_ones_are_refused():
    X, y = data(80, 2)
    with pytest.warns(gprat.KissGridWarning, match="product of 1-D kernels"):
        gprat.KissGP(K.RationalQuadratic(0.3, 1.0), noise_variance=0.1, random_state=0).fit(X, y)
    with pytest.warns(gprat.KissGridWarning, match="product of 1-D kernels"):
        gprat.KissGP(2.0 * K.Matern52(0.3) * SE(0.4, active_dims=[0]), noise_variance=0.1, random_state=0).fit(X, y)
    for bad, match in [(K.Linear(), "Linear"), (K.White(0.1), "use noise_variance"),
                       (SE(0.2) * K.Linear(active_dims=[0]), "Linear"),
                       (SE(0.2, active_dims=[0]) + SE(0.3, active_dims=[1]), "sum of kernels over different features")]:
        with pytest.raises(ValueError, match=match) as info:
            gprat.KissGP(bad, noise_variance=0.1)
        assert "Accepted" in str(info.value) or "accepted" in str(info.value)
    for bad in [K.Constant(1.0) + SE(0.2), SE(0.2) + K.Matern32(0.3)]:  # not a product over the 2 features
        with pytest.raises(ValueError, match="sum of kernels over different features"):
            gprat.KissGP(bad, noise_variance=0.1).fit(X, y)


def test_default_grid_rule_from_data_range_and_lengthscales():
    """No grid_size: spacing h with 4 <= l / h < 4.5 per lengthscale l (the issue's 3-5 points per
    lengthscale), the data range plus 2 spacings each side; per feature the smallest scale of the
    leaves reading it; a feature no leaf reads gets the minimum grid. A test point one spacing
    beyond the data range still interpolates."""
    rng = np.random.default_rng(12)
    X = rng.uniform([0.0, -2.0, 5.0], [1.0, 3.0, 6.0], (200, 3))
    y = np.sin(4 * X[:, 0]) + 0.1 * rng.standard_normal(200)
    kern = K.Matern32(0.5, active_dims=[0]) * SE(0.2, active_dims=[0]) * SE(1.1, active_dims=[1])
    gp = gprat.KissGP(kern, noise_variance=0.1, random_state=0).fit(X, y)
    lo_x, hi_x = X.min(axis=0), X.max(axis=0)
    for k, ((lo, h, m), scale) in enumerate(zip(gp.grid_, [0.2, 1.1, None])):
        np.testing.assert_allclose([lo, lo + h * (m - 1)], [lo_x[k] - 2 * h, hi_x[k] + 2 * h], rtol=0, atol=1e-12)
        if scale is None:
            assert m <= 9  # constant along feature 2
        else:
            assert 4.0 <= scale / h < 4.5, (k, scale / h)
    gp.predict([[hi_x[0] + gp.grid_[0][1], 0.0, 5.5]])
    per = gprat.KissGP(K.Periodic(0.5, 0.4), noise_variance=0.1, random_state=0).fit(X[:, :1], y)
    assert 4.0 <= (0.4 * 0.5 / (2 * np.pi)) / per.grid_[0][1] < 4.5
