"""SciPy's L-BFGS-B on an :class:`~gprat.optim.objective.Objective` (exact objectives only)."""

import threading

import numpy as np
import scipy.optimize
from threadpoolctl import ThreadpoolController

from .objective import Objective, OptimizationResult, failed_point_value, no_good_point_error

__all__ = ["minimize_lbfgsb", "lbfgsb_with_failed_points"]

_controller = None
_controller_lock = threading.Lock()


def _single_threaded_blas():
    """A context in which NumPy's and SciPy's BLAS run on one thread.

    SciPy's L-BFGS-B makes small BLAS/LAPACK calls on every iteration; with SciPy's OpenBLAS on
    several threads its pool wakes and then spins after each call, taking cores from gprat's
    workers during the next training step. Measured on 2 cores, Hartmann-6 at n = 50: 76 ms per
    fit (median) with SciPy's BLAS on 2 threads, 27 ms on one (benchmarks/bo_small_n.py). The
    controller (a scan of the loaded libraries) is made once.
    """
    global _controller
    with _controller_lock:
        if _controller is None:
            _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def lbfgsb_with_failed_points(fun, x0, bounds, max_iter, callback=None):
    """Run SciPy's L-BFGS-B where ``fun(x)`` may return None for a failed trial point.

    A failed point is reported as :func:`failed_point_value` of the best loss seen (with a zero
    gradient), so the line search backs off from it. Used by :func:`minimize_lbfgsb` and by
    the scikit-learn estimator's optimizer.

    Parameters
    ----------
    fun : callable
        ``x -> (loss, gradient)`` or None.
    x0 : ndarray of shape (k,)
    bounds : array-like of shape (k, 2) or None
    max_iter : int
    callback : callable or None
        SciPy's ``callback(intermediate_result)``.

    Returns
    -------
    scipy.optimize.OptimizeResult
        With ``ended_on_failed_point``: whether the value it reports is one of the stand-in
        values given for failed points (its true value is then unknown).
    """
    best = [np.inf]
    stand_ins = set()

    def wrapped(x):
        out = fun(x)
        if out is None:
            value = failed_point_value(best[0])
            stand_ins.add(value)
            return value, np.zeros_like(x)
        best[0] = min(best[0], out[0])
        return out

    with _single_threaded_blas():
        result = scipy.optimize.minimize(
            wrapped, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=callback,
            options={"maxiter": int(max_iter)},
        )
    result.ended_on_failed_point = float(result.fun) in stand_ins
    return result


def minimize_lbfgsb(objective, bounds=None, max_iter=100, progress=None, callback=None, scale=1.0,
                    first_iteration=0):
    """Minimize an exact objective with SciPy's L-BFGS-B.

    L-BFGS-B sees ``loss / scale`` and its gradient. Its first step is a gradient step of length
    about ``1/|g|`` and its stopping tests are tuned for values and gradients of order one; a log
    marginal likelihood summed over n samples has gradients of order n, so models pass the
    number of samples (times outputs) as `scale`: the per-sample objective that GPyTorch and
    BoTorch optimize. Reported values (history, callback, result) stay unscaled.

    Parameters
    ----------
    objective : Objective
        Must not be stochastic: L-BFGS-B's line search assumes exact values.
    bounds : ndarray of shape (n_params, 2) or None
        Box constraints over the full vector; None is unbounded.
    max_iter : int, default=100
    progress : gprat.optim.progress.Progress or None
    callback : callable or None
        ``callback(iteration, loss)`` after every iteration.
    scale : float or None, default=1.0
        Positive divisor of the loss (and gradient) that L-BFGS-B sees; None takes the largest
        entry of the first good point's gradient (at least 1).
    first_iteration : int, default=0
        Iterations are numbered from ``first_iteration + 1`` for `progress` and `callback` (a
        run that continues another).

    Returns
    -------
    OptimizationResult
        At the best point seen.

    Raises
    ------
    ValueError
        For a stochastic objective.
    NotPositiveDefiniteError
        If no trial point succeeded.
    """
    if objective.stochastic:
        raise ValueError("L-BFGS-B needs an exact objective; use method='adam' for a stochastic one")
    history = []

    def on_iteration(intermediate_result):
        history.append(objective.last_loss)
        if progress is not None:
            progress.update(first_iteration + len(history), objective.last_loss)
        if callback is not None:
            callback(first_iteration + len(history), objective.last_loss)

    mask = objective.mask
    if scale is not None:
        scale = float(scale)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be None or a positive finite number; got {scale!r}")
    divisor = [scale]

    def scaled(x):
        out = objective(x)
        if out is None:
            return None
        if divisor[0] is None:  # the first good point (x0 unless it failed) fixes the scale
            divisor[0] = max(1.0, float(np.max(np.abs(out[1]), initial=0.0)))
        return out[0] / divisor[0], out[1] / divisor[0]

    res = lbfgsb_with_failed_points(scaled, objective.x0[mask], None if bounds is None else bounds[mask],
                                    max_iter, on_iteration)
    if not objective.evaluated():
        raise no_good_point_error()
    objective.warn_failures("the optimizer backtracked from them")
    x, loss = objective.returned_point()
    return OptimizationResult(
        theta=x, log_marginal_likelihood=objective.sign * loss, n_iter=int(res.nit), history=history,
        converged=bool(res.success), message=str(res.message), n_failed=objective.failures,
        n_eval=objective.evaluations,
    )
