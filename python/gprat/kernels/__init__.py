"""Covariance functions of the engine.

Each kernel is stationary, ``k(x, x') = signal_variance * f(r2)`` with the scaled squared
distance ``r2 = sum_k ((x_k - x'_k) / lengthscale_k)^2``; a scalar lengthscale is isotropic, a
1-D array gives one lengthscale per feature (ARD). Hyperparameters are exposed in log space as
``theta = log([lengthscale..., signal_variance])``; the GP appends ``log(noise_variance)``.

Layout: :mod:`~gprat.kernels.base` (the base class), :mod:`~gprat.kernels.stationary` (the
families), :mod:`~gprat.kernels.registry` (the one name <-> class table) and
:mod:`~gprat.kernels.sklearn` (scikit-learn spellings for :class:`gprat.GaussianProcessRegressor`).

The scikit-learn spellings ``RBF``, ``Matern``, ``ConstantKernel`` and ``WhiteKernel`` are
available here too when scikit-learn is installed.
"""

from .base import Kernel
from .stationary import Matern12, Matern32, Matern52, SquaredExponential

__all__ = ["Kernel", "SquaredExponential", "Matern12", "Matern32", "Matern52"]

_SKLEARN_NAMES = ("RBF", "Matern", "ConstantKernel", "WhiteKernel")


def __getattr__(name):
    # scikit-learn is optional: its kernel spellings load on first use.
    if name in _SKLEARN_NAMES:
        from . import sklearn

        return getattr(sklearn, name)
    raise AttributeError(f"module 'gprat.kernels' has no attribute {name!r}")
