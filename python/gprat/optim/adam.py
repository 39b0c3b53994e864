"""Adam (Kingma & Ba 2015): the one implementation, used by the models and by the GPRat API.

For a gradient g at step t = 1, 2, ...:
    m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
    x <- x - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + epsilon)
"""

import math

import numpy as np

from ..exceptions import NotPositiveDefiniteError
from .objective import Objective, OptimizationResult

__all__ = ["AdamState", "minimize_adam"]


class AdamState:
    """Adam's moments over a vector of `size` parameters.

    Parameters
    ----------
    size : int
    lr : float, default=0.05
    beta1, beta2 : float, default=0.9, 0.999
    epsilon : float, default=1e-8
    """

    def __init__(self, size, lr=0.05, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.lr, self.beta1, self.beta2, self.epsilon = float(lr), float(beta1), float(beta2), float(epsilon)
        self.m = np.zeros(size)
        self.v = np.zeros(size)

    def step(self, g, t, mask=None):
        """Update the moments with gradient `g` at step `t` (>= 1); return the step to subtract.

        With a boolean `mask`, only those entries move: the others keep their moments and get a
        zero step.
        """
        g = np.asarray(g, dtype=np.float64)
        keep = slice(None) if mask is None else np.asarray(mask, dtype=bool)
        self.m[keep] = self.beta1 * self.m[keep] + (1.0 - self.beta1) * g[keep]
        self.v[keep] = self.beta2 * self.v[keep] + (1.0 - self.beta2) * g[keep] * g[keep]
        size = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        out = np.zeros_like(g)
        out[keep] = size * self.m[keep] / (np.sqrt(self.v[keep]) + self.epsilon)
        return out

    def reset(self):
        """Forget the moments (after backing off from a failed point)."""
        self.m[:] = 0.0
        self.v[:] = 0.0


def _projected_gradient_norm(x, g, lo, hi):
    """max |g| over the entries that may move: a bound that g pushes against does not count."""
    free = ~(((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0)))
    return float(np.max(np.abs(g[free]), initial=0.0))


def minimize_adam(objective, bounds=None, max_iter=100, lr=0.05, beta1=0.9, beta2=0.999, epsilon=1e-8,
                  gtol=1e-5, progress=None, callback=None):
    """Minimize an objective with Adam, each iterate clipped to `bounds`.

    Step t evaluates the loss and gradient at x_t and moves to x_{t+1}. A failed trial point
    halves the learning rate and restarts the moments from the returned point so far (the best
    one for an exact objective); below lr = 1e-12 the run stops. The run converges when the
    projected gradient is at most `gtol` in every trainable entry.

    Parameters
    ----------
    objective : Objective
    bounds : ndarray of shape (n_params, 2) or None
    max_iter : int, default=100
        Steps taken (failed points do not count).
    lr, beta1, beta2, epsilon : float
        Adam's settings.
    gtol : float, default=1e-5
        Convergence threshold on ``max |projected gradient|`` of the loss.
    progress : gprat.optim.progress.Progress or None
    callback : callable or None
        ``callback(iteration, loss)`` after every step.

    Returns
    -------
    OptimizationResult
        Exact objective: the best point evaluated; the point after the last step is
        evaluated for its value only (no gradient), so that the last step counts. Stochastic
        objective: the last iterate, not evaluated again (its estimate is that of the last step).

    Raises
    ------
    NotPositiveDefiniteError
        If the starting point fails.
    """
    mask = objective.mask
    x = objective.x0[mask].copy()
    lo = np.full(x.size, -np.inf) if bounds is None else bounds[mask, 0]
    hi = np.full(x.size, np.inf) if bounds is None else bounds[mask, 1]
    state = AdamState(x.size, lr, beta1, beta2, epsilon)
    history = []
    t = 0
    message, converged = None, False
    while t < int(max_iter):
        out = objective(x)
        if out is None:
            if not objective.evaluated():
                raise NotPositiveDefiniteError(
                    "Adam started at hyperparameters whose covariance matrix is not positive definite; "
                    "increase noise_variance or rescale the inputs"
                )
            state.lr *= 0.5  # back off to a good point with a smaller step
            if state.lr < 1e-12:
                message = "stopped: the learning rate fell below 1e-12 after failed steps"
                break
            x = objective.returned_point()[0][mask]
            state.reset()
            continue
        loss, g = out
        if _projected_gradient_norm(x, g, lo, hi) <= gtol:
            converged, message = True, f"converged: projected gradient <= gtol={gtol:g}"
            break
        t += 1
        x = np.clip(x - state.step(g, t), lo, hi)
        history.append(loss)
        if progress is not None:
            progress.update(t, loss)
        if callback is not None:
            callback(t, loss)
    else:
        message = f"stopped after max_iter={int(max_iter)} steps"
        if not objective.stochastic and t > 0:
            objective.value_only(x)
    objective.warn_failures("the step size was halved")
    theta, loss = objective.returned_point()
    return OptimizationResult(
        theta=theta, log_marginal_likelihood=objective.sign * loss, n_iter=t, history=history,
        converged=converged, message=message, n_failed=objective.failures, n_eval=objective.evaluations,
    )
