"""What every optimizer of gprat minimizes: an objective over a flat parameter vector.

Models hand the optimizers a function ``fun(x) -> (value, gradient)`` over their whole
parameter vector ``x`` (log-hyperparameters, and for the coming models inducing locations,
variational parameters or unbounded means), a mask of the trainable entries, and whether the
value is exact (the exact log marginal likelihood, SGPR's collapsed bound) or a stochastic
estimate (SVGP's minibatch ELBO, KISS-GP's stochastic log-determinant).

A trial point whose covariance matrix is not positive definite (``NotPositiveDefiniteError``),
or whose value or gradient is not finite, is a *failed* point: it is counted, never returned.

Which point the optimizer returns depends on the kind of objective:

* exact objectives: the best point seen. Every value is exact, so the minimum over evaluated
  points is a true improvement (L-BFGS-B's line search may end on a worse trial point);
* stochastic objectives: the last iterate. The minimum of noisy estimates is biased low (it
  picks the luckiest minibatch or probe set, not the best parameters), so "keep the best point
  seen" is not used for them.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import NotPositiveDefiniteError, NumericalWarning

__all__ = ["Objective", "OptimizationResult", "failed_point_value", "no_good_point_error", "warn_failed_points"]


@dataclass
class OptimizationResult:
    """Outcome of an optimization.

    Attributes
    ----------
    theta : ndarray
        The parameters returned (all entries, trainable or not): the best point seen for an
        exact objective, the last iterate for a stochastic one.
    log_marginal_likelihood : float
        The objective's value (as the model states it: the log marginal likelihood, a bound or
        an estimate) at `theta`. For a stochastic objective, the estimate at the last
        evaluation.
    n_iter : int
        Iterations done.
    history : list of float
        The loss (negative value) at each iteration.
    converged : bool
        Whether the optimizer's own stopping test was met (not merely ``max_iter`` reached).
    message : str
    n_failed : int
        Trial points that failed (not positive definite, or non-finite).
    n_eval : int
        Trial points evaluated, failed ones included (0 where not counted).
    """

    theta: np.ndarray
    log_marginal_likelihood: float
    n_iter: int
    history: list = field(default_factory=list)
    converged: bool = False
    message: str = ""
    n_failed: int = 0
    n_eval: int = 0


def failed_point_value(best_loss):
    """The finite loss reported to a line search for a failed trial point.

    L-BFGS-B needs a finite number: far above the best loss seen (ten times its magnitude plus
    1e10), so the line search backtracks, with a zero gradient so nothing else is learned from it.
    """
    base = best_loss if np.isfinite(best_loss) else 0.0
    return abs(base) * 10.0 + 1e10


class Objective:
    """Loss ``-fun(x)`` (or ``fun(x)``) and its gradient over the trainable entries of x.

    Parameters
    ----------
    fun : callable
        ``fun(x, eval_gradient)`` over the full vector: ``(value, gradient)`` when
        `eval_gradient`, else the value alone. It may raise
        ``NotPositiveDefiniteError`` or return non-finite numbers for a failed point.
    x0 : array-like of shape (n_params,)
        Starting point; untrainable entries keep these values.
    mask : array-like of bool, shape (n_params,), or None
        Trainable entries; None means all.
    maximize : bool, default=True
        ``fun`` gives a value to maximize (a log likelihood or a bound): the loss is its negative.
    stochastic : bool, default=False
        ``fun`` is a stochastic estimate; see the module docstring for what that changes.
    """

    def __init__(self, fun, x0, mask=None, maximize=True, stochastic=False):
        self.fun = fun
        self.x0 = np.array(x0, dtype=np.float64)
        self.mask = np.ones(self.x0.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        self._all_trainable = bool(self.mask.all())
        self.sign = -1.0 if maximize else 1.0
        self.stochastic = bool(stochastic)
        self.best_x, self.best_loss = self.x0.copy(), np.inf
        self.last_x, self.last_loss = self.x0.copy(), np.inf
        self.failures = 0
        self.evaluations = 0

    def full(self, x):
        """The full parameter vector with trainable entries `x` (a new array)."""
        if self._all_trainable:
            return np.array(x, dtype=np.float64)
        out = self.x0.copy()
        out[self.mask] = x
        return out

    def __call__(self, x):
        """(loss, gradient over the trainable entries) at trainable entries `x`, or None if failed."""
        return self._evaluate(x, True)

    def value_only(self, x):
        """The loss at trainable entries `x` without its gradient (None if failed); counts for the best point."""
        return self._evaluate(x, False)

    def _evaluate(self, x, eval_gradient):
        """One trial point: a failed one is counted and gives None; a good one updates last and best.

        Runs once per trial point of every optimizer (a small-n fit makes ~40 of ~50 us each in
        the engine), so it does each thing once: one copy of x, one sign flip, one finiteness
        test of the gradient.
        """
        full = self.full(x)
        self.evaluations += 1
        try:
            out = self.fun(full, eval_gradient)
        except NotPositiveDefiniteError:
            self.failures += 1
            return None
        value, grad = out if eval_gradient else (out, 0.0)
        loss = self.sign * float(value)
        grad = np.multiply(self.sign, grad, dtype=np.float64)
        if not math.isfinite(loss) or not np.isfinite(grad).all():
            self.failures += 1
            return None
        # `full` is this point's own array and is never written to: last and best may share it.
        self.last_x, self.last_loss = full, loss
        if loss < self.best_loss:
            self.best_x, self.best_loss = full, loss
        if not eval_gradient:
            return loss
        return (loss, grad) if self._all_trainable else (loss, grad[self.mask])

    def evaluated(self):
        """Whether any trial point succeeded."""
        return np.isfinite(self.best_loss)

    def returned_point(self):
        """(x, loss) to return: the best point seen (exact) or the last one (stochastic)."""
        if self.stochastic:
            return self.last_x.copy(), self.last_loss
        return self.best_x.copy(), self.best_loss

    def warn_failures(self, what, stacklevel=4):
        """One NumericalWarning saying how many trial points failed and what was done about it."""
        warn_failed_points(self.failures, what, stacklevel=stacklevel + 1)


def no_good_point_error():
    """The error of an optimization in which no trial point succeeded."""
    return NotPositiveDefiniteError(
        "the optimizer found no hyperparameters with a positive definite covariance matrix; "
        "increase noise_variance or rescale the inputs"
    )


def warn_failed_points(count, what, stacklevel=4):
    """One NumericalWarning saying that `count` trial points failed and `what` was done about it."""
    if count:
        warnings.warn(
            f"{count} trial point(s) gave a covariance matrix that is not positive definite "
            f"(or a non-finite value); {what}",
            NumericalWarning, stacklevel=stacklevel,
        )
