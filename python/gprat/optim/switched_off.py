"""The recheck of a lengthscale that an optimizer walked off to the box edge.

In log space, the log marginal likelihood along a lengthscale l far above the span s of the
data it divides tends to a plateau: the feature's contribution to K is of order (s / l)^2, and so
is the gradient in log l. Once that gradient points outward, L-BFGS-B walks out along the plateau
and stops where it is below tolerance, switching the feature off; from there it cannot see a
finite lengthscale that explains the data better. On Hartmann-6 with an ARD Matérn-5/2 at
n = 100 it switched feature 3 off at LML -108.149, where l = 6.0 gives -108.123
(benchmarks/bo_small_n.py). The recheck runs the optimizer once more from its result with those
lengthscales put back at their spans, and keeps the better of the two optima: it costs a second
run only in fits that switch a feature off, and never returns a worse optimum.

Used by :meth:`gprat.ExactGP.optimize` and :meth:`gprat.distributed.ExactGP.optimize`.
"""

import numpy as np

from .objective import OptimizationResult

__all__ = ["SWITCHED_OFF_SPAN_RATIO", "recheck_switched_off"]

#: A lengthscale above this multiple of the data span it divides has switched its features off:
#: the kernel varies by less than 1e-6 of its variance across the data for the smooth families
#: (see :meth:`gprat.kernels.Kernel.lengthscale_spans`).
SWITCHED_OFF_SPAN_RATIO = 1e3


def recheck_switched_off(result, run, kernel, X, mask, bounds, max_iter):
    """`result`, or the better optimum of a second run from it with each trainable lengthscale
    that switched its features off put back at its data span.

    Parameters
    ----------
    result : OptimizationResult
        The first run's, over theta whose first ``kernel.n_params`` entries are the kernel's.
    run : callable
        ``run(start, max_iter, first_iteration)`` runs the optimizer from `start` for at most
        `max_iter` iterations, numbering them from ``first_iteration + 1``.
    kernel : gprat.kernels.Kernel
    X : ndarray of shape (n_samples, n_features)
        The training inputs.
    mask : ndarray of bool
        The trainable entries of theta.
    bounds : ndarray of shape (n_params, 2)
    max_iter : int
        The iterations allowed to both runs together.

    Returns
    -------
    OptimizationResult
        With the two runs' iterations, evaluations and histories added up, and a message that
        names the lengthscales rechecked and which optimum was kept.
    """
    X = np.asarray(X, dtype=np.float64)
    spans = np.full(len(mask), np.nan)
    spans[:kernel.n_params] = kernel.lengthscale_spans(X.max(axis=0) - X.min(axis=0))
    theta = np.asarray(result.theta, dtype=np.float64)
    off = np.zeros(len(mask), dtype=bool)
    measurable = np.asarray(mask, dtype=bool) & np.isfinite(spans) & (spans > 0)
    off[measurable] = theta[measurable] > np.log(SWITCHED_OFF_SPAN_RATIO * spans[measurable])
    remaining = max_iter - result.n_iter
    if not off.any() or remaining < 1:
        return result
    start = theta.copy()
    start[off] = np.clip(np.log(spans[off]), bounds[off, 0], bounds[off, 1])
    second = run(start, remaining, result.n_iter)
    best = second if second.log_marginal_likelihood > result.log_marginal_likelihood else result
    names = ", ".join(kernel.param_names[i] for i in np.flatnonzero(off))
    return OptimizationResult(
        theta=best.theta, log_marginal_likelihood=best.log_marginal_likelihood,
        n_iter=result.n_iter + second.n_iter, history=list(result.history) + list(second.history),
        converged=best.converged, n_failed=result.n_failed + second.n_failed, n_eval=result.n_eval + second.n_eval,
        message=f"{best.message}; {names} had switched off at LML {result.log_marginal_likelihood:.6g}: rerun "
                f"from the data span reached {second.log_marginal_likelihood:.6g}, kept the "
                f"{'rerun' if best is second else 'first'} optimum")
