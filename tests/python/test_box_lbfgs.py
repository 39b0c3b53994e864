"""The C++ bound-constrained L-BFGS (cpp/include/gprat/optim/box_lbfgs.hpp) that runs
ExactGP.optimize: against closed-form minimizers, SciPy's L-BFGS-B, and failed trial points."""

import numpy as np
import pytest
import scipy.optimize

import gprat
from gprat import _core, kernels
from gprat.optim.lbfgsb import minimize_lbfgsb
from gprat.optim.objective import Objective


def run(fun, x0, lower, upper, max_iter=200):
    x, value, n_iter, n_eval, n_failed, converged, message = _core.minimize_box_lbfgs(
        fun, list(x0), list(lower), list(upper), max_iter, 10)
    return np.array(x), value, n_iter, n_eval, n_failed, converged, message


def test_separable_quadratic_lands_on_the_clipped_minimizer():
    # f = 1/2 sum a_i (x_i - c_i)^2 on a box: the minimizer is clip(c, lower, upper). The stop at a
    # projected gradient <= 1e-5 leaves a free entry within 1e-5 / a_i of it; a bound entry is exact.
    a = np.array([1.0, 10.0, 100.0, 0.5, 3.0])
    c = np.array([0.3, -2.0, 4.0, 1.5, -0.7])
    lower, upper = np.array([-1.0, -1.0, -1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    x, value, n_iter, _, n_failed, converged, _ = run(lambda x: (0.5 * a @ (x - c) ** 2, a * (x - c)),
                                                      np.zeros(5), lower, upper)
    assert converged and n_failed == 0
    assert np.all(np.abs(x - np.clip(c, lower, upper)) <= 1e-5 / a), x
    assert np.all(x[[1, 2, 3]] == np.clip(c, lower, upper)[[1, 2, 3]])


def test_coupled_quadratic_matches_scipy():
    # A unique minimizer (strictly convex), some bounds active: both optimizers must find it.
    rng = np.random.default_rng(3)
    B = rng.standard_normal((6, 6))
    H = B @ B.T + 0.5 * np.eye(6)
    c = 2.0 * rng.standard_normal(6)

    def fun(x):
        return 0.5 * (x - c) @ H @ (x - c), H @ (x - c)

    lower, upper = -np.ones(6), np.ones(6)
    x, value, *_ , converged, _ = run(fun, np.zeros(6), lower, upper)
    ref = scipy.optimize.minimize(fun, np.zeros(6), jac=True, method="L-BFGS-B", bounds=list(zip(lower, upper)),
                                  options={"ftol": 1e-15, "gtol": 1e-12})
    assert converged
    assert value <= ref.fun + 1e-8 * max(1.0, abs(ref.fun))
    np.testing.assert_allclose(x, ref.x, atol=1e-4)


def test_rosenbrock_reaches_its_minimum():
    x, value, n_iter, *_ = run(lambda x: (scipy.optimize.rosen(x), scipy.optimize.rosen_der(x)),
                               [-1.2, 1.0], [-5, -5], [5, 5])
    np.testing.assert_allclose(x, [1.0, 1.0], atol=1e-4)
    assert value < 1e-8


def test_failed_points_are_backed_off_from_and_never_returned():
    # The quadratic's minimizer (x0 = 1) lies in a region where every point fails (None):
    # the result is the best good point, at the region's edge.
    calls = []

    def fun(x):
        calls.append(x.copy())
        if x[0] > 0.5:
            return None
        return 0.5 * ((x[0] - 1.0) ** 2 + x[1] ** 2), np.array([x[0] - 1.0, x[1]])

    x, value, n_iter, n_eval, n_failed, converged, message = run(fun, [0.0, 1.0], [-3, -3], [3, 3], 50)
    assert n_failed > 0 and n_eval == len(calls)
    assert x[0] <= 0.5
    assert 0.5 - x[0] < 0.05, x  # it gets close to the edge
    assert value == pytest.approx(0.5 * ((x[0] - 1.0) ** 2 + x[1] ** 2))


def test_every_point_failing_returns_no_point():
    x, value, n_iter, n_eval, n_failed, converged, message = run(lambda x: None, [0.0], [-1], [1])
    assert x.size == 0 and n_eval == n_failed == 1 and not converged
    assert "starting point" in message


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="empty or NaN"):
        run(lambda x: (0.0, np.zeros(1)), [0.0], [1.0], [-1.0])
    with pytest.raises(ValueError, match="bounds must have"):
        run(lambda x: (0.0, np.zeros(1)), [0.0, 0.0], [0.0], [1.0])


def test_python_exceptions_in_the_objective_propagate():
    def fun(x):
        raise RuntimeError("objective broke")

    with pytest.raises(RuntimeError, match="objective broke"):
        run(fun, [0.0], [-1], [1])


# ---------------------------------------------------------------------------- ExactGP
def _hartmann(n, seed=0):
    A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
    P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
    X = np.random.default_rng([seed, n]).uniform(size=(n, 6))
    y = -(np.exp(-(((X[:, None, :] - P[None]) ** 2) * A[None]).sum(axis=2)) * [1.0, 1.2, 3.0, 3.2]).sum(axis=1)
    return X, (y - y.mean()) / y.std()


@pytest.mark.parametrize("family", [kernels.SquaredExponential, kernels.Matern52], ids=["se", "matern52"])
@pytest.mark.parametrize("n", [50, 200])
def test_exact_gp_optimize_reaches_scipys_optimum(family, n):
    # The same scaled objective under SciPy's L-BFGS-B (gprat.optim.minimize_lbfgsb): both stop
    # at a projected gradient of 1e-5 in units of the first gradient's largest entry, so the
    # log marginal likelihoods agree to far better than 1e-3 nats at a shared optimum.
    X, y = _hartmann(n)
    make = lambda: gprat.ExactGP(family(lengthscale=np.ones(6), signal_variance=1.0), noise_variance=0.01).fit(X, y)
    gp = make()
    seen = []
    # the engine's L-BFGS-B loop alone (the switched-off recheck is tested in test_fit_quality.py)
    result = gp.optimize(callback=lambda i, loss: seen.append((i, loss)), recheck_switched_off=False)
    other = make()
    ref = minimize_lbfgsb(Objective(other._optimizer_function(), other.theta, None), other.default_bounds(), 100,
                          scale=None)
    assert result.log_marginal_likelihood == pytest.approx(ref.log_marginal_likelihood, abs=1e-3)
    assert gp.log_marginal_likelihood() == pytest.approx(result.log_marginal_likelihood, abs=1e-8)
    assert [i for i, _ in seen] == list(range(1, result.n_iter + 1))
    assert len(result.history) == result.n_iter and result.history == [loss for _, loss in seen]
    assert all(b <= a + 1e-12 for a, b in zip(result.history, result.history[1:]))  # monotone
    assert result.converged and result.n_failed == 0


def test_exact_gp_optimize_keeps_fixed_entries_and_bounds():
    X, y = _hartmann(80)
    gp = gprat.ExactGP(kernels.SquaredExponential(lengthscale=np.ones(6), signal_variance=1.0),
                       noise_variance=0.01).fit(X, y)
    theta0 = gp.theta.copy()
    trainable = np.ones(gp.n_params, dtype=bool)
    trainable[2] = False  # lengthscale 3 stays
    bounds = gp.default_bounds()
    bounds[0, 1] = np.log(0.2)  # lengthscale 1 at most 0.2: active at the optimum (it wants more)
    gp.optimize(trainable=trainable, bounds=bounds)
    assert gp.theta[2] == theta0[2]
    assert gp.theta[0] <= np.log(0.2) + 1e-15
    assert np.all(gp.theta >= bounds[:, 0]) and np.all(gp.theta <= bounds[:, 1])
