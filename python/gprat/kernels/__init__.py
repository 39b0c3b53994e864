"""Covariance functions of the engine.

Families: the stationary ``k(x, x') = signal_variance * f(r2)`` (SquaredExponential, Matern12,
Matern32, Matern52; ``r2 = sum_k ((x_k - x'_k) / lengthscale_k)^2``, isotropic or ARD), and
RationalQuadratic, Periodic, Linear, Constant and White as scikit-learn defines them. Kernels
compose with ``+``, ``*`` and scaling by a number (``2.0 * k``), to any depth; a family may act
on a subset of the features (``active_dims=``) and keep parameters fixed (``fixed=``).
Parameters are exposed in log space as ``theta``; the GP appends ``log(noise_variance)``.

Layout: :mod:`~gprat.kernels.base` (the base classes, Sum and Product),
:mod:`~gprat.kernels.stationary` and :mod:`~gprat.kernels.families` (the families),
:mod:`~gprat.kernels.registry` (the one name <-> class table) and
:mod:`~gprat.kernels.sklearn` (scikit-learn spellings for :class:`gprat.GaussianProcessRegressor`).

The scikit-learn spellings ``RBF``, ``Matern``, ``ExpSineSquared``, ``DotProduct``,
``ConstantKernel`` and ``WhiteKernel`` are available here too when scikit-learn is installed;
scikit-learn's ``RationalQuadratic`` is :class:`gprat.kernels.sklearn.RationalQuadratic` (here
the name is the engine's family).
"""

from .base import Family, Kernel, Product, Sum
from .families import Constant, Linear, Periodic, RationalQuadratic, White
from .stationary import Matern12, Matern32, Matern52, SquaredExponential, Stationary

__all__ = ["Kernel", "Family", "Stationary", "Sum", "Product", "SquaredExponential", "Matern12", "Matern32",
           "Matern52", "RationalQuadratic", "Periodic", "Linear", "Constant", "White"]

_SKLEARN_NAMES = ("RBF", "Matern", "ExpSineSquared", "DotProduct", "ConstantKernel", "WhiteKernel")


def __getattr__(name):
    # scikit-learn is optional: its kernel spellings load on first use.
    if name in _SKLEARN_NAMES:
        from . import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module 'gprat.kernels' has no attribute {name!r}")
