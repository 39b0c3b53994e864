"""The shared optimizers on closed-form objectives: what they return, when they say converged,
how many evaluations they spend, and how they treat failed points and stochastic objectives."""

import numpy as np
import pytest

import gprat
from gprat.optim import Objective, minimize_adam, minimize_lbfgsb

CENTER = np.array([0.3, -1.2, 2.0])


class Quadratic:
    """value = -1/2 |x - CENTER|^2 (to maximize); counts evaluations with and without gradient."""

    def __init__(self, fail_beyond=None):
        self.with_gradient = 0
        self.value_only = 0
        self.fail_beyond = fail_beyond

    def __call__(self, x, eval_gradient):
        if self.fail_beyond is not None and np.abs(x).max() > self.fail_beyond:
            raise gprat.NotPositiveDefiniteError("not SPD here", 1)
        d = x - CENTER
        if eval_gradient:
            self.with_gradient += 1
            return -0.5 * d @ d, -d
        self.value_only += 1
        return -0.5 * d @ d


def test_adam_reaches_the_maximum_and_says_converged():
    f = Quadratic()
    result = minimize_adam(Objective(f, np.zeros(3)), max_iter=5000, lr=0.05, gtol=1e-6)
    assert result.converged and result.message.startswith("converged")
    np.testing.assert_allclose(result.theta, CENTER, atol=1e-5)
    assert result.log_marginal_likelihood == pytest.approx(0.0, abs=1e-10)


def test_adam_stopped_by_max_iter_is_not_converged_and_spends_one_value_only_evaluation():
    # The defect: converged was t >= max_iter (True exactly when it had NOT converged), the message
    # always said "maximum number of iterations reached", and one more full step was spent at the end.
    f = Quadratic()
    result = minimize_adam(Objective(f, np.zeros(3)), max_iter=7, lr=0.01)
    assert not result.converged and "max_iter=7" in result.message
    assert result.n_iter == 7 and len(result.history) == 7
    assert f.with_gradient == 7 and f.value_only == 1  # the point after the last step: its value only
    # Exact objective: the best point evaluated is returned, here the last one (monotone descent).
    d = result.theta - CENTER
    assert result.log_marginal_likelihood == pytest.approx(-0.5 * d @ d, rel=1e-14)


def test_adam_first_step_is_the_learning_rate_per_entry():
    # With zero moments, Adam's first step is lr * g / (|g| + eps / sqrt(1 - beta2)) = lr * sign(g).
    f = Quadratic()
    result = minimize_adam(Objective(f, np.zeros(3)), max_iter=1, lr=0.1)
    # eps / sqrt(1 - beta2) = 3.2e-7 next to |g| >= 0.3: relative deviation below 1.1e-6.
    np.testing.assert_allclose(result.theta, 0.1 * np.sign(CENTER), rtol=2e-6)


def test_trainable_mask_keeps_fixed_entries():
    result = minimize_adam(Objective(Quadratic(), np.zeros(3), mask=[True, False, True]), max_iter=3000, lr=0.05)
    assert result.theta[1] == 0.0
    np.testing.assert_allclose(result.theta[[0, 2]], CENTER[[0, 2]], atol=1e-4)
    result = minimize_lbfgsb(Objective(Quadratic(), np.zeros(3), mask=[True, False, True]))
    assert result.theta[1] == 0.0 and result.converged
    np.testing.assert_allclose(result.theta[[0, 2]], CENTER[[0, 2]], atol=1e-6)


def test_failed_points_halve_adams_step_and_are_never_returned():
    f = Quadratic(fail_beyond=1.0)  # the maximum (|CENTER| up to 2) lies in the failing region
    with pytest.warns(gprat.NumericalWarning, match="step size was halved"):
        result = minimize_adam(Objective(f, np.zeros(3)), max_iter=200, lr=0.5)
    assert np.abs(result.theta).max() <= 1.0
    assert result.n_failed > 0


def test_lbfgsb_backs_off_from_failed_points():
    f = Quadratic(fail_beyond=1.5)
    bounds = np.tile([-5.0, 5.0], (3, 1))
    with pytest.warns(gprat.NumericalWarning, match="backtracked"):
        result = minimize_lbfgsb(Objective(f, np.zeros(3)), bounds)
    assert np.abs(result.theta).max() <= 1.5 and np.isfinite(result.log_marginal_likelihood)


def test_lbfgsb_numbers_a_continuations_iterations_from_first_iteration():
    """What the switched-off recheck's second run relies on: callback and progress continue."""
    seen, shown = [], []

    class Bar:
        def update(self, iteration, loss=None):
            shown.append(iteration)

    result = minimize_lbfgsb(Objective(Quadratic(), np.zeros(3)), np.tile([-5.0, 5.0], (3, 1)), progress=Bar(),
                             callback=lambda i, loss: seen.append(i), first_iteration=7)
    assert result.n_iter >= 1 and seen == shown == list(range(8, 8 + result.n_iter))
    np.testing.assert_allclose(result.theta, CENTER, atol=1e-5)


def test_a_failing_start_raises():
    with pytest.raises(gprat.NotPositiveDefiniteError):
        minimize_adam(Objective(Quadratic(fail_beyond=0.5), np.ones(3)), max_iter=3)
    with pytest.raises(gprat.NotPositiveDefiniteError):
        minimize_lbfgsb(Objective(Quadratic(fail_beyond=0.5), np.ones(3)), max_iter=3)


class NoisyQuadratic:
    """A stochastic estimate: the quadratic plus seeded noise of standard deviation 1."""

    def __init__(self):
        self.rng = np.random.default_rng(0)
        self.points = []

    def __call__(self, x, eval_gradient):
        self.points.append(np.array(x))
        d = x - CENTER
        noise = self.rng.standard_normal(4)
        value = -0.5 * d @ d + noise[0]
        return (value, -d + noise[1:]) if eval_gradient else value


def test_stochastic_objectives_return_the_last_iterate_not_the_luckiest():
    f = NoisyQuadratic()
    objective = Objective(f, np.zeros(3), stochastic=True)
    result = minimize_adam(objective, max_iter=300, lr=0.05)
    # The point returned is the last one evaluated (no extra evaluation after the last step) ...
    assert f.points[-1] is not None and len(f.points) == 300
    np.testing.assert_array_equal(result.theta, f.points[-1])
    # ... not the point of the best (luckiest) estimate, which "keep the best point" would pick.
    assert not np.array_equal(result.theta, objective.best_x)
    assert result.log_marginal_likelihood < -objective.best_loss
    with pytest.raises(ValueError, match="exact objective"):
        minimize_lbfgsb(Objective(NoisyQuadratic(), np.zeros(3), stochastic=True))
