"""ExactGP.add_observations and condition_on (issue #13): the block update of the Cholesky factor
against independent dense references (tests/reference.py: scipy.stats densities, numpy.linalg.solve,
numpy.linalg.cholesky of the grown matrix), with ragged tiles, k larger than a tile, several outputs,
per-sample noise, a constant mean, zero noise with jitter; bad input leaves the model unchanged."""

import warnings

import numpy as np
import pytest

import gprat
import reference as ref
from checks import close
from gprat import kernels

D = 2
LS = np.array([0.6, 0.9])
S2 = 1.4
RTOL = 1e-8


def data(rng, n, p=1):
    X = rng.uniform(-1.5, 1.5, size=(n, D))
    Y = np.stack([np.sin(2 * X[:, 0] + j) + np.cos(X[:, 1]) for j in range(p)], axis=1)
    Y += 0.1 * rng.standard_normal(Y.shape)
    return X, (Y[:, 0] if p == 1 else Y)


def check_against_dense(gp, X, Y, Xs, fixed=None, learned=0.0, mean=None, jitter=0.0):
    """gp (fitted on X, Y by any route) equals the dense reference of K + diag(fixed) + (learned + jitter) I."""
    if jitter:  # scipy.stats refuses a matrix this close to singular: LU (numpy.linalg) instead
        K = ref.noisy_covariance("SquaredExponential", X, LS, S2, fixed, learned + jitter)
        logdet = np.linalg.slogdet(K)[1]
        want = -0.5 * Y @ np.linalg.solve(K, Y) - 0.5 * logdet - 0.5 * len(Y) * np.log(2 * np.pi)
    else:
        want = ref.general_lml("SquaredExponential", X, Y, LS, S2, fixed, learned + jitter, mean)
    # With jitter K is nearly singular: both sides carry errors of order cond(K) eps (forward
    # error of a backward-stable solve), the bound used; without, RTOL.
    K = ref.noisy_covariance("SquaredExponential", X, LS, S2, fixed, learned + jitter)
    rtol = max(RTOL, np.linalg.cond(K) * np.finfo(np.float64).eps) if jitter else RTOL
    close(gp.log_marginal_likelihood(), want, rtol, "lml")
    mu, var, cov = ref.general_predict("SquaredExponential", X, Y, Xs, LS, S2, fixed, learned + jitter, mean)
    m, c = gp.predict(Xs, return_cov=True)
    close(np.asarray(m).reshape(mu.shape), mu, rtol, "mean")
    close(c, cov, max(1e-7, rtol), "covariance")
    close(gp.cholesky_factor(), np.linalg.cholesky(K), RTOL, "factor")


# (n0, k, tile): n0 ragged and not, k = 1, k larger than a tile, k spanning several tiles, one tile
CASES = [(37, 1, 8), (40, 1, 8), (37, 5, 8), (40, 8, 8), (37, 20, 8), (21, 64, 8), (50, 10, 64), (64, 3, 16)]


@pytest.mark.parametrize("n0,k,tile", CASES)
def test_block_update_equals_dense_reference_and_refit(n0, k, tile, rng):
    X, y = data(rng, n0 + k)
    Xs = rng.uniform(-1.7, 1.7, size=(9, D))
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.03, tile_size=tile).fit(X[:n0], y[:n0])
    assert gp.add_observations(X[n0:], y[n0:]) is gp
    assert gp.X_train_.shape == (n0 + k, D) and gp.y_train_.shape == (n0 + k,)
    assert gp.tile_size_ == min(tile, n0)  # the update kept the factor's tiling
    check_against_dense(gp, X, y, Xs, learned=0.03)
    refit = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.03, tile_size=tile).fit(X, y)
    close(gp.log_marginal_likelihood(), refit.log_marginal_likelihood(), RTOL, "lml vs refit")
    close(gp.predict(Xs, return_std=True)[1], refit.predict(Xs, return_std=True)[1], RTOL, "std vs refit")
    # the gradient after the update is that of the grown data
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    want = ref.general_lml_gradient("SquaredExponential", X, y, LS, S2, True, learned=0.03)
    close(grad, want, 1e-7, "gradient")


@pytest.mark.parametrize("steps", [[1] * 6, [3, 1, 7, 2]])
def test_repeated_updates(steps, rng):
    n0 = 29
    X, y = data(rng, n0 + sum(steps))
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.02, tile_size=8).fit(X[:n0], y[:n0])
    at = n0
    for k in steps:
        gp.add_observations(X[at:at + k], y[at:at + k])
        at += k
    check_against_dense(gp, X, y, X[:5] + 0.01, learned=0.02)


def test_several_outputs_fixed_noise_and_constant_mean(rng):
    n0, k, p = 45, 11, 3
    X, Y = data(rng, n0 + k, p)
    noise = rng.uniform(0.01, 0.2, size=n0 + k)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=noise[:n0], learned_noise=0.01,
                       mean_constant=[0.3, -0.2, 1.0], tile_size=16).fit(X[:n0], Y[:n0])
    gp.add_observations(X[n0:], Y[n0:], noise_variance=noise[n0:])
    assert gp.noise_variance.shape == (n0 + k,)
    check_against_dense(gp, X, Y, X[:6] - 0.02, fixed=noise, learned=0.01, mean=np.array([0.3, -0.2, 1.0]))
    # a refit with the grown noise array now applies to the grown data
    gp.fit(gp.X_train_, gp.y_train_)


def test_zero_noise_keeps_the_jitter(rng):
    n0, k = 30, 6
    X, _ = data(rng, n0 + k)
    X[:n0] = np.repeat(X[:n0 // 2], 2, axis=0)  # duplicate rows: K singular without jitter
    y = np.sin(2 * X[:, 0]) + np.cos(X[:, 1])  # a deterministic function (zero noise)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gprat.NumericalWarning)
        gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.0, tile_size=8).fit(X[:n0], y[:n0])
    jitter = gp.jitter_
    assert jitter > 0
    gp.add_observations(X[n0:], y[n0:])
    assert gp.jitter_ == jitter
    check_against_dense(gp, X, y, X[:4] + 0.05, jitter=jitter)


def test_new_block_not_positive_definite_refits_with_the_jitter_policy(rng):
    X, _ = data(rng, 20)
    y = np.sin(2 * X[:, 0]) + np.cos(X[:, 1])  # a deterministic function (zero noise)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.0, tile_size=8).fit(X[:15], y[:15])
    assert gp.jitter_ == 0.0
    with pytest.warns(gprat.NumericalWarning, match="jitter"):
        gp.add_observations(np.vstack([X[15:], X[:2]]), np.concatenate([y[15:], y[:2]]))  # repeats two old rows
    assert gp.jitter_ > 0
    Xa, ya = np.vstack([X, X[:2]]), np.concatenate([y, y[:2]])
    check_against_dense(gp, Xa, ya, X[:3] + 0.1, jitter=gp.jitter_)


def test_growth_from_a_few_rows_retiles(rng):
    X, y = data(rng, 150)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.05).fit(X[:2], y[:2])
    for i in range(2, 150):
        gp.add_observations(X[i:i + 1], y[i:i + 1])
    assert gp.tile_size_ * 2 >= min(gprat._core.choose_tile_size(150, gprat._core.num_threads()), 150)
    check_against_dense(gp, X, y, X[:5] + 0.03, learned=0.05)


def test_float32(rng):
    X, y = data(rng, 60)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.05, tile_size=16,
                       dtype=np.float32).fit(X[:50], y[:50])
    gp.add_observations(X[50:], y[50:])
    mu, var, _ = ref.general_predict("SquaredExponential", X, y, X[:5], LS, S2, None, 0.05)
    m, s = gp.predict(X[:5], return_std=True)
    close(m, mu[:, 0], 3e-3, "float32 mean")
    close(s, np.sqrt(var), 3e-2, "float32 std")


def test_condition_on_returns_a_new_model_and_leaves_this_one(rng):
    n0, k = 40, 7
    X, y = data(rng, n0 + k)
    Xs = rng.uniform(-1, 1, size=(6, D))
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.03, mean_constant=0.2,
                       tile_size=16).fit(X[:n0], y[:n0])
    before = (gp.log_marginal_likelihood(), gp.predict(Xs, return_std=True), gp.cholesky_factor())
    fantasy = gp.condition_on(X[n0:], y[n0:])
    assert fantasy is not gp and fantasy.X_train_.shape == (n0 + k, D)
    np.testing.assert_array_equal(gp.predict(Xs, return_std=True)[0], before[1][0])
    np.testing.assert_array_equal(gp.predict(Xs, return_std=True)[1], before[1][1])
    np.testing.assert_array_equal(gp.cholesky_factor(), before[2])
    assert gp.log_marginal_likelihood() == before[0] and gp.X_train_.shape == (n0, D)
    check_against_dense(fantasy, X, y, Xs, learned=0.03, mean=0.2)
    np.testing.assert_array_equal(fantasy.theta, gp.theta)
    # the fantasy is a full model: it optimizes and takes more observations without touching gp
    fantasy.add_observations(X[:1] + 0.5, y[:1])
    np.testing.assert_array_equal(gp.cholesky_factor(), before[2])


def test_after_a_training_step_and_a_theta_change(rng):
    X, y = data(rng, 50)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS * 2, S2), noise_variance=0.03, tile_size=8).fit(X[:40], y[:40])
    gp.log_marginal_likelihood(gp.theta + 0.1, eval_gradient=True)  # K^{-1} in place of L
    gp.theta = np.concatenate([np.log(LS), [np.log(S2), np.log(0.03)]])  # pending change
    gp.add_observations(X[40:], y[40:])
    check_against_dense(gp, X, y, X[:3] * 0.5, learned=0.03)


# ------------------------------------------------------------------------------ bad input
def _unchanged(gp, Xs, before):
    np.testing.assert_array_equal(gp.predict(Xs, return_std=True)[1], before[0])
    assert gp.X_train_.shape == before[1] and gp.log_marginal_likelihood() == before[2]


@pytest.mark.parametrize("bad,match", [
    (lambda X, y: (X[:, :1], y), "features"),
    (lambda X, y: (X, y[:-1]), "per row of X"),
    (lambda X, y: (X, np.stack([y, y], axis=1)), "output"),
    (lambda X, y: (np.where(X > 0, np.nan, X), y), "finite|NaN"),
    (lambda X, y: (X, np.full_like(y, np.inf)), "finite|inf"),
])
def test_bad_observations_leave_the_model_unchanged(bad, match, rng):
    X, y = data(rng, 30)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.03, tile_size=8).fit(X[:25], y[:25])
    Xs = X[:4] + 0.1
    before = (gp.predict(Xs, return_std=True)[1], gp.X_train_.shape, gp.log_marginal_likelihood())
    Xn, yn = bad(X[25:], y[25:])
    with pytest.raises(ValueError, match=match):
        gp.add_observations(Xn, yn)
    with pytest.raises(ValueError, match=match):
        gp.condition_on(Xn, yn)
    _unchanged(gp, Xs, before)


@pytest.mark.parametrize("noise,match", [
    (None, "give noise_variance for the 5 new row"),
    (np.full(4, 0.1), "one entry per new row"),
    (np.array([0.1, -0.1, 0.1, 0.1, 0.1]), "finite values >= 0"),
    (np.array([0.1, np.nan, 0.1, 0.1, 0.1]), "finite values >= 0"),
])
def test_bad_noise_for_new_rows(noise, match, rng):
    X, y = data(rng, 30)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=np.full(25, 0.05),
                       tile_size=8).fit(X[:25], y[:25])
    Xs = X[:4] + 0.1
    before = (gp.predict(Xs, return_std=True)[1], gp.X_train_.shape, gp.log_marginal_likelihood())
    with pytest.raises(ValueError, match=match):
        gp.add_observations(X[25:], y[25:], noise_variance=noise)
    _unchanged(gp, Xs, before)
    assert gp.noise_variance.shape == (25,)


def test_noise_for_new_rows_of_a_scalar_noise_model_is_refused(rng):
    X, y = data(rng, 30)
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2), noise_variance=0.05).fit(X[:25], y[:25])
    with pytest.raises(ValueError, match="applies to the new rows too"):
        gp.add_observations(X[25:], y[25:], noise_variance=np.full(5, 0.1))


def test_before_fit():
    gp = gprat.ExactGP(kernels.SquaredExponential(LS, S2))
    with pytest.raises(gprat.NotFittedError):
        gp.add_observations(np.zeros((1, D)), [0.0])
    with pytest.raises(gprat.NotFittedError):
        gp.condition_on(np.zeros((1, D)), [0.0])
