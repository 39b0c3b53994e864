"""The models. Each has the same verbs (fit, theta, log_marginal_likelihood, optimize,
predict) and shares kernels, optimizers, validation, memory checks and the runtime.

:mod:`~gprat.models.exact` holds the exact GP; sparse and structured models join it here.
"""

from .exact import ExactGP
from .kiss import KissGP, KissGridWarning

__all__ = ["ExactGP", "KissGP", "KissGridWarning"]
