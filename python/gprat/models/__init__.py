"""The models. Each has the same verbs (fit, theta, log_marginal_likelihood, optimize,
predict) and shares kernels, optimizers, validation, memory checks and the runtime.

:mod:`~gprat.models.exact` holds the exact GP, :mod:`~gprat.models.sgpr` the sparse SGPR;
the other sparse and structured models join them here.
"""

from .exact import ExactGP
from .sgpr import SGPR

__all__ = ["ExactGP", "SGPR"]
