"""The models. Each has the same verbs (fit, theta, log_marginal_likelihood, optimize,
predict) and shares kernels, optimizers, validation, memory checks and the runtime.

:mod:`~gprat.models.exact` holds the exact GP, :mod:`~gprat.models.sgpr` and
:mod:`~gprat.models.svgp` the sparse SGPR and SVGP;
the other sparse and structured models join them here.
"""

from .exact import ExactGP
from .sgpr import SGPR
from .svgp import SVGP
from .kiss import KissGP, KissGridWarning

__all__ = ["ExactGP", "SGPR", "SVGP", "KissGP", "KissGridWarning"]
