"""The one table of kernel families.

Everything that names a kernel family goes through this table: the core (``_core_name``), model
files and the command line (``short_name``, for the families with ``in_model_files``), and the
scikit-learn adapter (``matern_nu``). A new family is added in C++ (``family_names`` and the
leaf code of ``kernels/kernel_tree.hpp``; a stationary one also to the ``AnyKernel`` variant),
as a class in this package, and in ``FAMILIES`` below; ``tests/python/test_kernels.py`` checks
that this table and the core's list (``gprat._core.kernel_names()``) agree. The composition
nodes (``Sum``, ``Product``) are ``OPERATORS``, checked against ``_core.kernel_operators()``.
"""

from .base import Product, Sum
from .families import Constant, Linear, Periodic, RationalQuadratic, White
from .stationary import Matern12, Matern32, Matern52, SquaredExponential

__all__ = ["FAMILIES", "OPERATORS", "by_short_name", "by_matern_nu", "short_names"]

#: Kernel families in the order of the core's list (``_core.kernel_names()``).
FAMILIES = (SquaredExponential, Matern12, Matern32, Matern52, RationalQuadratic, Periodic, Linear, Constant, White)

#: Composition classes, by their core node name.
OPERATORS = {"Sum": Sum, "Product": Product}


def short_names():
    """tuple of str: the short names model files and the command line take (``"se"``, ...), in table order."""
    return tuple(cls.short_name for cls in FAMILIES if cls.in_model_files)


def by_short_name(name):
    """The kernel class (one that model files take) whose short name is `name`.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    for cls in FAMILIES:
        if cls.in_model_files and cls.short_name == name:
            return cls
    raise ValueError(f"kernel must be one of {', '.join(short_names())}; got {name!r}")


def by_matern_nu(nu):
    """The Matérn class of smoothness `nu` (0.5, 1.5 or 2.5).

    Raises
    ------
    ValueError
        For a smoothness the engine does not implement.
    """
    for cls in FAMILIES:
        if cls.matern_nu is not None and cls.matern_nu == nu:
            return cls
    known = ", ".join(str(cls.matern_nu) for cls in FAMILIES if cls.matern_nu is not None)
    raise ValueError(f"Matern nu must be one of {known}; got {nu!r}")


def matern_nus():
    """tuple of float: the Matérn smoothness values the engine implements."""
    return tuple(cls.matern_nu for cls in FAMILIES if cls.matern_nu is not None)
