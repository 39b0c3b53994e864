"""scikit-learn spellings of the kernels gprat's tiled engine computes.

The classes here subclass ``sklearn.gaussian_process.kernels`` so that ``theta``,
``bounds``, ``hyperparameters``, ``get_params``/``set_params``, ``clone`` and the kernel
values themselves are scikit-learn's. What gprat adds is a guard: the engine computes
exactly the forms

    K,  C * K,  K + WhiteKernel,  C * K + WhiteKernel

with ``K`` an :class:`RBF` or a :class:`Matern` of ``nu`` 0.5, 1.5 or 2.5 and ``C`` a
:class:`ConstantKernel` (products and sums in either order), so the ``*``, ``+`` and
``**`` operators of these classes refuse anything else with a ``ValueError`` at once,
instead of at ``fit``. scikit-learn's own kernel objects of the same forms are accepted by
:class:`gprat.GaussianProcessRegressor` too; :func:`kernel_parts` checks them there.

This module imports scikit-learn, an optional dependency of gprat; nothing in gprat imports
it eagerly.
"""

from collections import namedtuple

from sklearn.gaussian_process import kernels as _skk

from . import registry
from .stationary import SquaredExponential

__all__ = ["RBF", "Matern", "ConstantKernel", "WhiteKernel", "kernel_parts", "KernelParts", "engine_family"]

ACCEPTED_FORMS = (
    "K, C * K, K + WhiteKernel or C * K + WhiteKernel, where K is RBF or "
    "Matern(nu=0.5, 1.5 or 2.5) and C is a ConstantKernel (from gprat.kernels or "
    "sklearn.gaussian_process.kernels)"
)


def _check_nu(nu):
    """Return ``float(nu)`` if gprat computes that Matern order, else raise ValueError."""
    try:
        value = float(nu)
    except (TypeError, ValueError):
        value = None
    if value not in registry.matern_nus():
        raise ValueError(
            "Matern: nu must be 0.5, 1.5 or 2.5, the orders gprat computes in closed form "
            f"(Matern12, Matern32, Matern52); got nu={nu!r}."
        )
    return value


class _FormChecked:
    """Operators that build only the compositions gprat can run."""

    def __add__(self, b):
        return _compose(Sum, self, b)

    def __radd__(self, b):
        return _compose(Sum, b, self)

    def __mul__(self, b):
        return _compose(Product, self, b)

    def __rmul__(self, b):
        return _compose(Product, b, self)

    def __pow__(self, b):
        raise ValueError(
            f"gprat kernels cannot be exponentiated (got ({self!r}) ** {b!r}); accepted forms "
            f"are {ACCEPTED_FORMS}."
        )


def _compose(operator, a, b):
    """``operator(a, b)`` with numbers promoted to ConstantKernel, if the result is accepted."""
    if not isinstance(a, _skk.Kernel):
        a = ConstantKernel(a)
    if not isinstance(b, _skk.Kernel):
        b = ConstantKernel(b)
    result = operator(a, b)
    kernel_parts(result)
    return result


class RBF(_FormChecked, _skk.RBF):
    """Radial basis function (squared-exponential) kernel, scikit-learn's spelling.

    ``k(x, x') = exp(-|x - x'|^2 / (2 l^2))`` with ``l = length_scale``, one per feature
    when an array (ARD). Runs on gprat's ``SquaredExponential``.

    Parameters
    ----------
    length_scale : float or ndarray of shape (n_features,), default=1.0
        Length scale ``l``; an array gives one length scale per feature.
    length_scale_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``length_scale`` during hyperparameter optimization; "fixed" keeps it.

    Examples
    --------
    >>> from gprat.kernels import RBF, ConstantKernel, WhiteKernel
    >>> kernel = ConstantKernel(2.0) * RBF(0.5) + WhiteKernel(0.1)
    >>> kernel.theta.round(3).tolist()
    [0.693, -0.693, -2.303]
    """


class Matern(_FormChecked, _skk.Matern):
    """Matern kernel of order ``nu`` in {0.5, 1.5, 2.5}, scikit-learn's spelling.

    Runs on gprat's ``Matern12``, ``Matern32`` and ``Matern52``; other orders are refused.

    Parameters
    ----------
    length_scale : float or ndarray of shape (n_features,), default=1.0
        Length scale; an array gives one length scale per feature.
    length_scale_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``length_scale`` during hyperparameter optimization; "fixed" keeps it.
    nu : {0.5, 1.5, 2.5}, default=1.5
        Smoothness of the Matern kernel.

    Raises
    ------
    ValueError
        If ``nu`` is not 0.5, 1.5 or 2.5.

    Examples
    --------
    >>> from gprat.kernels import Matern
    >>> Matern(length_scale=2.0, nu=2.5)
    Matern(length_scale=2, nu=2.5)
    >>> Matern(nu=1.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Matern: nu must be 0.5, 1.5 or 2.5, ... got nu=1.0.
    """

    def __init__(self, length_scale=1.0, length_scale_bounds=(1e-5, 1e5), nu=1.5):
        _check_nu(nu)
        super().__init__(length_scale=length_scale, length_scale_bounds=length_scale_bounds, nu=nu)


class ConstantKernel(_FormChecked, _skk.ConstantKernel):
    """Constant kernel, scikit-learn's spelling; used as the signal variance ``C`` in ``C * K``.

    Parameters
    ----------
    constant_value : float, default=1.0
        The signal variance that multiplies ``K``.
    constant_value_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``constant_value`` during hyperparameter optimization; "fixed" keeps it.

    Examples
    --------
    >>> from gprat.kernels import ConstantKernel, RBF
    >>> ConstantKernel(2.0) * RBF(1.5)
    1.41**2 * RBF(length_scale=1.5)
    """


class WhiteKernel(_FormChecked, _skk.WhiteKernel):
    """White-noise kernel, scikit-learn's spelling; the trainable noise in ``K + WhiteKernel``.

    Its ``noise_level`` plus the estimator's ``alpha`` is the engine's noise variance.

    Parameters
    ----------
    noise_level : float, default=1.0
        Variance of the i.i.d. observation noise.
    noise_level_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``noise_level`` during hyperparameter optimization; "fixed" keeps it.

    Examples
    --------
    >>> from gprat.kernels import RBF, WhiteKernel
    >>> RBF(1.0) + WhiteKernel(0.01)
    RBF(length_scale=1) + WhiteKernel(noise_level=0.01)
    """


class Sum(_FormChecked, _skk.Sum):
    """``k1 + k2`` built by the ``+`` operator of gprat kernels (scikit-learn's Sum)."""


class Product(_FormChecked, _skk.Product):
    """``k1 * k2`` built by the ``*`` operator of gprat kernels (scikit-learn's Product)."""


_BASE_RBF = (RBF, _skk.RBF)
_BASE_MATERN = (Matern, _skk.Matern)
_CONSTANT = (ConstantKernel, _skk.ConstantKernel)
_WHITE = (WhiteKernel, _skk.WhiteKernel)
_SUM = (Sum, _skk.Sum)
_PRODUCT = (Product, _skk.Product)

KernelParts = namedtuple("KernelParts", ["base", "constant", "white", "order"])
KernelParts.__doc__ = """A kernel of an accepted form taken apart.

base : RBF or Matern (gprat's or scikit-learn's)
constant : ConstantKernel or None
white : WhiteKernel or None
order : tuple of "base", "constant", "white", in the order their hyperparameters appear in
    the kernel's ``theta`` (scikit-learn concatenates ``k1.theta`` then ``k2.theta``).
"""


def _role(kernel):
    kind = type(kernel)
    if kind in _BASE_RBF:
        return "base"
    if kind in _BASE_MATERN:
        _check_nu(kernel.nu)
        return "base"
    if kind in _CONSTANT:
        return "constant"
    if kind in _WHITE:
        return "white"
    return None


def _product_parts(kernel):
    """(constant, base, order) of ``C * K`` / ``K * C``, or None."""
    if type(kernel) not in _PRODUCT:
        return None
    roles = (_role(kernel.k1), _role(kernel.k2))
    if roles == ("constant", "base"):
        return kernel.k1, kernel.k2, roles
    if roles == ("base", "constant"):
        return kernel.k2, kernel.k1, roles
    return None


def _scaled_parts(kernel):
    """(constant or None, base, order) of ``K``, ``C * K`` or ``K * C``, or None."""
    if _role(kernel) == "base":
        return None, kernel, ("base",)
    return _product_parts(kernel)


def kernel_parts(kernel):
    """Take a kernel of an accepted form apart.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
        ``K``, ``C * K``, ``K + WhiteKernel`` or ``C * K + WhiteKernel`` (either order in
        products and sums), with ``K`` an RBF or a Matern of nu 0.5, 1.5 or 2.5.

    Returns
    -------
    parts : KernelParts
        The base kernel, the constant (or None), the white kernel (or None), and the order
        of their hyperparameters in ``kernel.theta``.

    Raises
    ------
    ValueError
        If the kernel is of another form, or a Matern has another ``nu``.

    Examples
    --------
    >>> from gprat.kernels import RBF, ConstantKernel, WhiteKernel
    >>> kernel_parts(WhiteKernel(0.1) + ConstantKernel(2.0) * RBF(1.0)).order
    ('white', 'constant', 'base')
    """
    found = _scaled_parts(kernel)
    if found is not None:
        constant, base, order = found
        return KernelParts(base, constant, None, order)
    if type(kernel) in _SUM:
        for white, other, white_first in (
            (kernel.k1, kernel.k2, True),
            (kernel.k2, kernel.k1, False),
        ):
            if _role(white) != "white":
                continue
            found = _scaled_parts(other)
            if found is not None:
                constant, base, order = found
                order = ("white",) + order if white_first else order + ("white",)
                return KernelParts(base, constant, white, order)
    raise ValueError(
        f"gprat cannot run the kernel {kernel!r}: accepted forms are {ACCEPTED_FORMS}."
    )


def engine_family(base):
    """The engine's kernel class for the base kernel of an accepted form (RBF or Matern).

    Parameters
    ----------
    base : RBF or Matern (gprat's or scikit-learn's)

    Returns
    -------
    type
        :class:`gprat.kernels.SquaredExponential` or the Matérn class of ``base.nu``.
    """
    if type(base) in _BASE_RBF:
        return SquaredExponential
    return registry.by_matern_nu(_check_nu(base.nu))
