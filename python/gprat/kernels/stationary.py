"""Stationary kernel families ``k(x, x') = signal_variance * f(r2)`` of the engine.

Each class names its C++ family (``_core_name``, the same name as the class), its short name in
model files and on the command line (``short_name``) and, for Matérn kernels, its
smoothness (``matern_nu``); :mod:`gprat.kernels.registry` collects them.
"""

from .base import Kernel

__all__ = ["SquaredExponential", "Matern12", "Matern32", "Matern52"]


class SquaredExponential(Kernel):
    """Squared exponential (RBF) kernel ``k(x, x') = s2 * exp(-r2 / 2)``.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> k = gprat.kernels.SquaredExponential(lengthscale=2.0, signal_variance=1.5)
    >>> float(k(np.zeros((1, 1)), np.full((1, 1), 2.0))[0, 0])  # 1.5 * exp(-0.5)
    0.9097959895689501
    """

    _core_name = "SquaredExponential"
    short_name = "se"
    matern_nu = None


class Matern12(Kernel):
    """Matérn kernel with nu = 1/2 (exponential): ``k = s2 * exp(-r)``, ``r = sqrt(r2)``."""

    _core_name = "Matern12"
    short_name = "matern12"
    matern_nu = 0.5


class Matern32(Kernel):
    """Matérn kernel with nu = 3/2: ``k = s2 * (1 + sqrt(3) r) * exp(-sqrt(3) r)``."""

    _core_name = "Matern32"
    short_name = "matern32"
    matern_nu = 1.5


class Matern52(Kernel):
    """Matérn kernel with nu = 5/2: ``k = s2 * (1 + sqrt(5) r + 5 r^2 / 3) * exp(-sqrt(5) r)``."""

    _core_name = "Matern52"
    short_name = "matern52"
    matern_nu = 2.5
