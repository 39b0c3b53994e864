"""The learned noise variance's default floor follows the data: 1e-6 of var(y) (issue #13).

References are NumPy's variance and the scale symmetry of the log marginal likelihood: with y
multiplied by c, the signal and noise variances by c^2, the LML only shifts by -n log c and its
gradient in log space is unchanged, so an optimizer whose box moves with the data takes the same
steps. An absolute floor breaks that symmetry wherever the noise ends on it (a deterministic
target), which is what the last test checks.
"""

import numpy as np
import pytest

import gprat
from gprat.models.exact import DEFAULT_BOUNDS, NOISE_FLOOR_FRACTION, noise_variance_bounds


def deterministic_problem(n=150, d=3, seed=7):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, d))
    y = np.sin(12 * X[:, 0]) + np.cos(9 * X[:, 1] * X[:, 2])
    return X, (y - y.mean()) / y.std()


def test_the_floor_is_a_fraction_of_the_targets_variance():
    rng = np.random.default_rng(0)
    y = 3.0 + 2.5 * rng.standard_normal(40)
    lo, hi = noise_variance_bounds(y)
    assert lo == pytest.approx(1e-6 * np.var(y), rel=1e-12)
    assert NOISE_FLOOR_FRACTION == 1e-6
    assert hi == DEFAULT_BOUNDS["noise_variance"][1]
    Y = np.column_stack([y, 0.1 * y, 10 * y])  # several outputs: the mean of the columns' variances
    assert noise_variance_bounds(Y)[0] == pytest.approx(1e-6 * np.mean(np.var(Y, axis=0)), rel=1e-12)


@pytest.mark.parametrize("y", [None, np.full(5, 2.0), np.array([1.0])])
def test_targets_without_spread_fall_back_to_the_fixed_box(y):
    assert noise_variance_bounds(y) == DEFAULT_BOUNDS["noise_variance"]


def test_default_bounds_use_the_floor_once_fitted():
    X, y = deterministic_problem()
    y = 4.0 * y
    gp = gprat.ExactGP(gprat.kernels.SquaredExponential(lengthscale=np.ones(3)), noise_variance=0.01)
    assert np.exp(gp.default_bounds()[-1, 0]) == pytest.approx(DEFAULT_BOUNDS["noise_variance"][0])
    gp.fit(X, y)
    assert np.exp(gp.default_bounds()[-1, 0]) == pytest.approx(1e-6 * np.var(y), rel=1e-10)
    sgpr = gprat.SGPR(gprat.kernels.SquaredExponential(lengthscale=np.ones(3)), noise_variance=0.01,
                      inducing_points=X[:20]).fit(X, y)
    optimized = sgpr.optimize(max_iter=2)
    assert np.isfinite(optimized.log_marginal_likelihood)


def test_a_rescaled_target_gives_the_same_fit():
    """Noise driven to its floor: the fit on c y is the fit on y with variances times c^2."""
    X, y = deterministic_problem()
    c = 0.01  # small: an absolute floor of 1e-9 would sit at 1e-5 of var(c y)
    fits = []
    for scale in (1.0, c):
        gp = gprat.ExactGP(gprat.kernels.Matern52(lengthscale=np.ones(3), signal_variance=scale ** 2),
                           noise_variance=0.01 * scale ** 2).fit(X, scale * y)
        result = gp.optimize()
        fits.append((gp, result))
    (a, ra), (b, rb) = fits
    floor = 1e-6 * np.var(y)
    assert a.noise_variance == pytest.approx(floor, rel=1e-6), "the deterministic target drives the noise to the floor"
    np.testing.assert_allclose(b.kernel.lengthscale, a.kernel.lengthscale, rtol=1e-6)
    assert b.kernel.signal_variance == pytest.approx(c ** 2 * a.kernel.signal_variance, rel=1e-6)
    assert b.noise_variance == pytest.approx(c ** 2 * a.noise_variance, rel=1e-6)
    assert rb.log_marginal_likelihood == pytest.approx(ra.log_marginal_likelihood - len(y) * np.log(c), abs=1e-6)
