"""Hyperparameter optimizers driven by the engine's value and closed-form gradient.

Both minimize the negative log marginal likelihood over the unconstrained vector theta (log
hyperparameters), restricted to the entries marked trainable. L-BFGS-B is SciPy's; Adam is the
usual bias-corrected first-order method (Kingma & Ba 2015). A step whose covariance matrix is
not positive definite is treated as a failed trial point: L-BFGS-B receives a large finite
value (its line search backtracks), Adam halves its learning rate and retries from the best
point, and neither ever returns NaN.
"""

import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize

from .exceptions import NotPositiveDefiniteError, NumericalWarning

__all__ = ["OptimizationResult", "minimize_lbfgsb", "minimize_adam", "Progress"]


@dataclass
class OptimizationResult:
    """Outcome of an optimization.

    Attributes
    ----------
    theta : ndarray
        Best log-hyperparameters found (all entries, trainable or not).
    log_marginal_likelihood : float
        Value at `theta`.
    n_iter : int
        Iterations done.
    history : list of float
        Negative log marginal likelihood after each iteration.
    converged : bool
    message : str
    """

    theta: np.ndarray
    log_marginal_likelihood: float
    n_iter: int
    history: list = field(default_factory=list)
    converged: bool = False
    message: str = ""


class Progress:
    """One-line progress report on stderr: iteration, loss and elapsed time."""

    def __init__(self, enabled, total, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(enabled)
        self.total = total
        self.t0 = time.perf_counter()

    def update(self, iteration, loss):
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        width = 24
        done = int(width * min(iteration, self.total) / max(self.total, 1))
        bar = "#" * done + "." * (width - done)
        self.stream.write(f"\r[{bar}] iter {iteration:4d}/{self.total}  loss {loss: .6e}  {elapsed:7.2f}s")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class _Objective:
    """Negative LML and gradient over the trainable entries; remembers the best point seen."""

    def __init__(self, value_and_grad, theta0, mask):
        self.value_and_grad = value_and_grad
        self.theta0 = np.array(theta0, dtype=np.float64)
        self.mask = mask
        self.best_theta = self.theta0.copy()
        self.best_loss = np.inf
        self.last_loss = np.inf
        self.failures = 0

    def full(self, x):
        theta = self.theta0.copy()
        theta[self.mask] = x
        return theta

    def __call__(self, x):
        theta = self.full(x)
        try:
            lml, grad = self.value_and_grad(theta)
        except NotPositiveDefiniteError:
            self.failures += 1
            return None
        loss = -float(lml)
        if not np.isfinite(loss) or not np.all(np.isfinite(grad)):
            self.failures += 1
            return None
        self.last_loss = loss
        if loss < self.best_loss:
            self.best_loss, self.best_theta = loss, theta.copy()
        return loss, -np.asarray(grad, dtype=np.float64)[self.mask]


def minimize_lbfgsb(value_and_grad, theta0, mask, bounds, max_iter, progress=None, callback=None):
    """Minimize -LML with SciPy's L-BFGS-B.

    Parameters
    ----------
    value_and_grad : callable
        theta -> (lml, gradient of lml).
    theta0 : ndarray of shape (n_params,)
    mask : ndarray of bool, shape (n_params,)
        Trainable entries.
    bounds : ndarray of shape (n_params, 2)
        Box constraints in theta space.
    max_iter : int
    progress : Progress or None
    callback : callable or None
        ``callback(iteration, loss)`` after every iteration.

    Returns
    -------
    OptimizationResult
    """
    objective = _Objective(value_and_grad, theta0, mask)
    history = []

    def fun(x):
        out = objective(x)
        if out is None:  # not SPD / non-finite: a huge value makes the line search back off
            base = objective.best_loss if np.isfinite(objective.best_loss) else 0.0
            return abs(base) * 10.0 + 1e10, np.zeros_like(x)
        return out

    def on_iteration(intermediate_result):
        history.append(objective.last_loss)
        if progress is not None:
            progress.update(len(history), objective.last_loss)
        if callback is not None:
            callback(len(history), objective.last_loss)

    x0 = np.asarray(theta0, dtype=np.float64)[mask]
    res = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds[mask], callback=on_iteration,
        options={"maxiter": int(max_iter)},
    )
    if not np.isfinite(objective.best_loss):
        raise NotPositiveDefiniteError(
            "the optimizer found no hyperparameters with a positive definite covariance matrix; "
            "increase noise_variance or rescale the inputs"
        )
    if objective.failures:
        warnings.warn(
            f"{objective.failures} trial point(s) gave a covariance matrix that is not positive definite "
            "(or a non-finite value); "
            "the optimizer backtracked from them",
            NumericalWarning, stacklevel=3,
        )
    return OptimizationResult(
        theta=objective.best_theta, log_marginal_likelihood=-objective.best_loss, n_iter=int(res.nit),
        history=history, converged=bool(res.success), message=str(res.message),
    )


def minimize_adam(value_and_grad, theta0, mask, bounds, max_iter, lr=0.05, beta1=0.9, beta2=0.999,
                  epsilon=1e-8, progress=None, callback=None):
    """Minimize -LML with Adam: m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2,
    theta <- theta - lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps), clipped to `bounds`.

    Parameters are as for :func:`minimize_lbfgsb`, plus Adam's `lr`, `beta1`, `beta2`, `epsilon`.

    Returns
    -------
    OptimizationResult
    """
    objective = _Objective(value_and_grad, theta0, mask)
    x = np.asarray(theta0, dtype=np.float64)[mask].copy()
    lo, hi = bounds[mask, 0], bounds[mask, 1]
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    history = []
    t = 0
    while t < int(max_iter):
        out = objective(x)
        if out is None:
            if not np.isfinite(objective.best_loss):
                raise NotPositiveDefiniteError(
                    "Adam started at hyperparameters whose covariance matrix is not positive definite; "
                    "increase noise_variance or rescale the inputs"
                )
            lr *= 0.5  # back off to the best point with a smaller step
            x = objective.best_theta[mask].copy()
            m[:] = 0.0
            v[:] = 0.0
            if lr < 1e-12:
                break
            continue
        loss, g = out
        t += 1
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        step = lr * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
        x = np.clip(x - step * m / (np.sqrt(v) + epsilon), lo, hi)
        history.append(loss)
        if progress is not None:
            progress.update(t, loss)
        if callback is not None:
            callback(t, loss)
    final = objective(x)  # the point after the last step may be the best
    if objective.failures:
        warnings.warn(
            f"{objective.failures} Adam step(s) gave a covariance matrix that is not positive definite "
            "(or a non-finite value); "
            "the step size was halved", NumericalWarning, stacklevel=3,
        )
    del final
    return OptimizationResult(
        theta=objective.best_theta, log_marginal_likelihood=-objective.best_loss, n_iter=t,
        history=history, converged=t >= int(max_iter), message="maximum number of iterations reached",
    )
