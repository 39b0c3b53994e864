"""scikit-learn spellings of the kernels gprat's tiled engine computes, and the one conversion.

The classes here subclass ``sklearn.gaussian_process.kernels`` so that ``theta``,
``bounds``, ``hyperparameters``, ``get_params``/``set_params``, ``clone`` and the kernel
values themselves are scikit-learn's. The engine computes any tree of the nodes

==============================  =============================================  =============
scikit-learn node               gprat engine node                              theta (log)
==============================  =============================================  =============
RBF                             SquaredExponential(signal_variance=1 fixed)    length_scale
Matern(nu=0.5, 1.5, 2.5)        Matern12, Matern32, Matern52                   length_scale
RationalQuadratic               RationalQuadratic(lengthscale, alpha)          alpha, l
ExpSineSquared                  Periodic(lengthscale, period)                  l, periodicity
DotProduct                      Linear(sigma_0)                                sigma_0
ConstantKernel                  Constant(constant_value)                       constant_value
WhiteKernel                     White(noise_level)                             noise_level
Sum, Product                    Sum, Product                                   k1's, k2's
==============================  =============================================  =============

(RBF and Matern isotropic or anisotropic, the others isotropic, as in scikit-learn), nested to
any depth. ``ConstantKernel * RBF`` (either order, RBF or Matern) becomes one stationary leaf
whose ``signal_variance`` is the constant, and a WhiteKernel that is an addend of the root sum
becomes the engine's noise (learned when free, fixed when its bounds are "fixed"), so that
``C * K + WhiteKernel`` keeps the engine's single-family path. scikit-learn orders theta by
hyperparameter name inside a node (RationalQuadratic: ``[alpha, length_scale]``), gprat by
its own parameter order (``[lengthscale, alpha]``): :class:`EngineKernel` holds the index map
from one to the other, built once per kernel structure.

The ``*`` and ``+`` operators of these classes accept any tree of accepted nodes (a number
is a ConstantKernel) and refuse anything else at once with a ``ValueError``, as does ``**``
(scikit-learn's Exponentiation). scikit-learn's own kernel objects of the same classes are
accepted by :class:`gprat.GaussianProcessRegressor` too; :func:`check_kernel` checks them
there, at ``fit``. Subclasses of these classes other than the ones here are refused: their
values may differ from the node the engine would compute.

This module imports scikit-learn, an optional dependency of gprat; nothing in gprat imports
it eagerly.
"""

import numpy as np
from sklearn.gaussian_process import kernels as _skk

from . import registry
from .base import Product as _EngineProduct
from .base import Sum as _EngineSum
from .families import Constant, Linear, Periodic, White
from .families import RationalQuadratic as _EngineRationalQuadratic
from .stationary import SquaredExponential

__all__ = [
    "RBF", "Matern", "RationalQuadratic", "ExpSineSquared", "DotProduct", "ConstantKernel", "WhiteKernel",
    "Sum", "Product", "ACCEPTED", "check_kernel", "EngineKernel",
]

ACCEPTED = (
    "RBF, Matern(nu=0.5, 1.5 or 2.5), RationalQuadratic, ExpSineSquared, DotProduct, "
    "ConstantKernel and WhiteKernel, combined by + (Sum) and * (Product) to any depth, from "
    "gprat.kernels.sklearn or sklearn.gaussian_process.kernels"
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


class _TreeChecked:
    """Operators that build only trees gprat can run."""

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
            f"gprat kernels cannot be exponentiated (got ({self!r}) ** {b!r}); accepted are {ACCEPTED}."
        )


def _compose(operator, a, b):
    """``operator(a, b)`` with numbers promoted to ConstantKernel, if the tree is accepted."""
    if not isinstance(a, _skk.Kernel):
        a = ConstantKernel(a)
    if not isinstance(b, _skk.Kernel):
        b = ConstantKernel(b)
    result = operator(a, b)
    check_kernel(result)
    return result


class RBF(_TreeChecked, _skk.RBF):
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


class Matern(_TreeChecked, _skk.Matern):
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


class RationalQuadratic(_TreeChecked, _skk.RationalQuadratic):
    """Rational quadratic kernel, scikit-learn's spelling; runs on gprat's ``RationalQuadratic``.

    ``k(x, x') = (1 + d^2 / (2 alpha l^2))^(-alpha)`` with ``d = |x - x'|``. Its theta is
    ``log([alpha, length_scale])`` (scikit-learn's order; gprat's family orders them
    ``[lengthscale, alpha]``). Not exported by :mod:`gprat.kernels`, whose ``RationalQuadratic``
    is the engine's family.

    Parameters
    ----------
    length_scale : float, default=1.0
        Length scale ``l`` (isotropic only, as in scikit-learn).
    alpha : float, default=1.0
        Scale-mixture parameter, > 0.
    length_scale_bounds, alpha_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds during hyperparameter optimization; "fixed" keeps the value.

    Examples
    --------
    >>> from gprat.kernels.sklearn import RationalQuadratic, RBF
    >>> kernel = RationalQuadratic(length_scale=2.0, alpha=0.5) + RBF(1.0)
    >>> kernel.theta.round(3).tolist()
    [-0.693, 0.693, 0.0]
    """


class ExpSineSquared(_TreeChecked, _skk.ExpSineSquared):
    """Periodic kernel, scikit-learn's spelling; runs on gprat's ``Periodic``.

    ``k(x, x') = exp(-2 sin^2(pi d / p) / l^2)`` with ``d = |x - x'|``, ``p = periodicity``.

    Parameters
    ----------
    length_scale : float, default=1.0
        Length scale ``l`` (isotropic only, as in scikit-learn).
    periodicity : float, default=1.0
        Period ``p``, > 0.
    length_scale_bounds, periodicity_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds during hyperparameter optimization; "fixed" keeps the value.

    Examples
    --------
    >>> from gprat.kernels import ExpSineSquared, RBF
    >>> RBF(100.0) * ExpSineSquared(1.0, 1.0, periodicity_bounds="fixed")
    RBF(length_scale=100) * ExpSineSquared(length_scale=1, periodicity=1)
    """


class DotProduct(_TreeChecked, _skk.DotProduct):
    """Dot-product kernel ``k(x, x') = sigma_0^2 + x . x'``, scikit-learn's spelling; runs on gprat's ``Linear``.

    Parameters
    ----------
    sigma_0 : float, default=1.0
        Inhomogeneity, > 0 (gprat computes in log space, so ``sigma_0 = 0`` is refused).
    sigma_0_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds during hyperparameter optimization; "fixed" keeps the value.

    Examples
    --------
    >>> from gprat.kernels import DotProduct, WhiteKernel
    >>> DotProduct(0.5) + WhiteKernel(0.1)
    DotProduct(sigma_0=0.5) + WhiteKernel(noise_level=0.1)
    """


class ConstantKernel(_TreeChecked, _skk.ConstantKernel):
    """Constant kernel, scikit-learn's spelling; ``C * K`` scales ``K`` (a signal variance).

    Parameters
    ----------
    constant_value : float, default=1.0
        The constant (the signal variance in ``C * K``).
    constant_value_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``constant_value`` during hyperparameter optimization; "fixed" keeps it.

    Examples
    --------
    >>> from gprat.kernels import ConstantKernel, RBF
    >>> ConstantKernel(2.0) * RBF(1.5)
    1.41**2 * RBF(length_scale=1.5)
    """


class WhiteKernel(_TreeChecked, _skk.WhiteKernel):
    """White-noise kernel, scikit-learn's spelling: ``noise_level`` on the diagonal of ``K(X)`` only.

    An addend of the root sum is the engine's noise (plus the estimator's ``alpha``); a
    WhiteKernel deeper in the tree is the engine's ``White`` node, with the same semantics.

    Parameters
    ----------
    noise_level : float, default=1.0
        Variance of the i.i.d. noise.
    noise_level_bounds : pair of floats >= 0 or "fixed", default=(1e-5, 1e5)
        Bounds of ``noise_level`` during hyperparameter optimization; "fixed" keeps it.

    Examples
    --------
    >>> from gprat.kernels import RBF, WhiteKernel
    >>> RBF(1.0) + WhiteKernel(0.01)
    RBF(length_scale=1) + WhiteKernel(noise_level=0.01)
    """


class Sum(_TreeChecked, _skk.Sum):
    """``k1 + k2`` built by the ``+`` operator of gprat kernels (scikit-learn's Sum)."""


class Product(_TreeChecked, _skk.Product):
    """``k1 * k2`` built by the ``*`` operator of gprat kernels (scikit-learn's Product)."""


_RBF = (RBF, _skk.RBF)
_MATERN = (Matern, _skk.Matern)
_RQ = (RationalQuadratic, _skk.RationalQuadratic)
_PERIODIC = (ExpSineSquared, _skk.ExpSineSquared)
_DOT = (DotProduct, _skk.DotProduct)
_CONSTANT = (ConstantKernel, _skk.ConstantKernel)
_WHITE = (WhiteKernel, _skk.WhiteKernel)
_SUM = (Sum, _skk.Sum)
_PRODUCT = (Product, _skk.Product)
_LEAVES = _RBF + _MATERN + _RQ + _PERIODIC + _DOT + _CONSTANT + _WHITE

#: scikit-learn hyperparameter name -> engine parameter name, per node class.
_PARAM_NAMES = {
    "length_scale": "lengthscale",
    "alpha": "alpha",
    "periodicity": "period",
    "sigma_0": "sigma_0",
    "constant_value": "constant_value",
    "noise_level": "noise_level",
}


def _nodes(kernel, path="kernel"):
    """Yield (path, node) over the tree, root first; path spells the node (``kernel.k1.k2``)."""
    yield path, kernel
    if type(kernel) in _SUM + _PRODUCT:
        yield from _nodes(kernel.k1, path + ".k1")
        yield from _nodes(kernel.k2, path + ".k2")


def check_kernel(kernel):
    """Raise ValueError unless ``kernel`` is a tree gprat's engine can run.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
        A tree of RBF, Matern (nu 0.5, 1.5, 2.5), RationalQuadratic, ExpSineSquared,
        DotProduct, ConstantKernel and WhiteKernel nodes under Sum and Product nodes
        (gprat's classes or scikit-learn's, not other subclasses).

    Raises
    ------
    ValueError
        Naming the accepted nodes and the first node that is not one (its repr and place in
        the tree), or a Matern of another ``nu``.

    Examples
    --------
    >>> from sklearn.gaussian_process.kernels import RBF, Exponentiation
    >>> check_kernel(RBF() + Exponentiation(RBF(), 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: gprat cannot run the node kernel.k2 = RBF(length_scale=1) ** 2 (Exponentiation) ...
    """
    for path, node in _nodes(kernel):
        kind = type(node)
        if kind in _SUM + _PRODUCT:
            continue
        if kind not in _LEAVES:
            raise ValueError(
                f"gprat cannot run the node {path} = {node!r} ({kind.__name__}) of the kernel {kernel!r}; "
                f"accepted are {ACCEPTED}."
            )
        if kind in _MATERN:
            try:
                _check_nu(node.nu)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
        if kind in _RQ + _PERIODIC and np.ndim(node.length_scale) != 0 and np.size(node.length_scale) != 1:
            raise ValueError(
                f"{path}: {kind.__name__} takes a scalar length_scale (isotropic, as in scikit-learn); "
                f"got {node.length_scale!r}."
            )


def walk(kernel, path="kernel"):
    """Yield ``(path, node)`` over a kernel tree, root first, k1 before k2.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
    path : str, default="kernel"
        How the root is spelled; a child of ``p`` is ``p.k1`` or ``p.k2``.

    Examples
    --------
    >>> from gprat.kernels import RBF, WhiteKernel
    >>> [path for path, _ in walk(RBF() + WhiteKernel())]
    ['kernel', 'kernel.k1', 'kernel.k2']
    """
    yield path, kernel
    if type(kernel) in _SUM + _PRODUCT:
        yield from walk(kernel.k1, path + ".k1")
        yield from walk(kernel.k2, path + ".k2")


def _fixed_names(node):
    return tuple(_PARAM_NAMES[h.name] for h in node.hyperparameters if h.fixed)


def _scalar(value):
    return float(np.ravel(value)[0])


def _family(node, n_features):
    """The engine family of one accepted leaf, at the leaf's values (signal_variance 1 for RBF/Matern)."""
    kind = type(node)
    fixed = _fixed_names(node)
    if kind in _RBF + _MATERN:
        length_scale = np.asarray(node.length_scale, dtype=np.float64)
        if length_scale.ndim == 1 and length_scale.size > 1:
            if length_scale.size != n_features:
                raise ValueError(
                    "An anisotropic length_scale needs one entry per feature; got "
                    f"{length_scale.size} length scales for X with {n_features} features."
                )
            lengthscale = length_scale
        else:
            lengthscale = _scalar(length_scale)
        cls = SquaredExponential if kind in _RBF else registry.by_matern_nu(_check_nu(node.nu))
        return cls(lengthscale=lengthscale, signal_variance=1.0, fixed=fixed + ("signal_variance",))
    if kind in _RQ:
        return _EngineRationalQuadratic(_scalar(node.length_scale), float(node.alpha), fixed=fixed)
    if kind in _PERIODIC:
        return Periodic(_scalar(node.length_scale), float(node.periodicity), fixed=fixed)
    if kind in _DOT:
        return Linear(float(node.sigma_0), fixed=fixed)
    if kind in _CONSTANT:
        return Constant(float(node.constant_value), fixed=fixed)
    return White(float(node.noise_level), fixed=fixed)


def _leaf_index(node, family):
    """Engine index (in ``family.theta``) of each entry of ``node.theta``, in scikit-learn's order."""
    index = []
    for hyperparameter in node.hyperparameters:
        if hyperparameter.fixed:
            continue
        name = _PARAM_NAMES[hyperparameter.name]
        if hyperparameter.n_elements > 1:  # anisotropic length_scale: lengthscale[0], ...
            index += [family.param_names.index(f"{name}[{k}]") for k in range(hyperparameter.n_elements)]
        else:
            index.append(family.param_names.index(name))
    return index


def _scaled_stationary(node):
    """(constant, base) of ``C * K`` / ``K * C`` with K an RBF or Matern, else None."""
    if type(node) not in _PRODUCT:
        return None
    k1, k2 = node.k1, node.k2
    if type(k1) in _CONSTANT and type(k2) in _RBF + _MATERN:
        return k1, k2
    if type(k2) in _CONSTANT and type(k1) in _RBF + _MATERN:
        return k2, k1
    return None


def _convert(node, n_features, path):
    """(engine kernel, engine theta index of each entry of ``node.theta``) of an accepted node."""
    kind = type(node)
    scaled = _scaled_stationary(node)
    if scaled is not None:
        # C * K: one stationary leaf, signal_variance = C (no Product node, the single-family path)
        constant, base = scaled
        family = _family(base, n_features)
        fixed = tuple(n for n in family.fixed if n != "signal_variance") + tuple(
            "signal_variance" for _ in _fixed_names(constant)
        )
        family = type(family)(lengthscale=family.lengthscale, signal_variance=float(constant.constant_value),
                              fixed=fixed)
        constant_index = [family.param_names.index("signal_variance")] * int(constant.n_dims)
        base_index = _leaf_index(base, family)
        index = constant_index + base_index if constant is node.k1 else base_index + constant_index
        return family, index
    if kind in _SUM + _PRODUCT:
        a, index_a = _convert(node.k1, n_features, path + ".k1")
        b, index_b = _convert(node.k2, n_features, path + ".k2")
        combined = (_EngineSum if kind in _SUM else _EngineProduct)(a, b)
        return combined, index_a + [a.n_params + i for i in index_b]
    try:
        family = _family(node, n_features)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{path} = {node!r}: {err}") from None
    return family, _leaf_index(node, family)


def _addends(node, path="kernel", offset=0):
    """Yield (node, path, offset in the root's theta) of the addends of the root sum."""
    if type(node) in _SUM:
        yield from _addends(node.k1, path + ".k1", offset)
        yield from _addends(node.k2, path + ".k2", offset + int(node.k1.n_dims))
    else:
        yield node, path, offset


class EngineKernel:
    """A scikit-learn kernel tree converted to the engine's, with the theta index map.

    The root sum's WhiteKernel addends leave the tree when something else remains: those with
    fixed bounds become a fixed noise (``fixed_noise``, their sum), the first one with free
    bounds the engine's learned noise (``learned_noise``; engine theta entry
    ``kernel.n_params``). Every other node becomes one engine node (``C * K`` one stationary
    leaf). The engine's theta is ``[kernel.theta..., log(learned_noise)]``.

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
        An accepted tree (see :func:`check_kernel`).
    n_features : int
        Features of the data (anisotropic length scales must have that many entries).

    Attributes
    ----------
    kernel : gprat.kernels.Kernel
        The engine's kernel at the values of ``kernel``; fixed hyperparameters are in its
        ``fixed`` (and RBF/Matern leaves without a constant keep ``signal_variance=1`` fixed).
    theta_index : ndarray of int of shape (kernel.n_dims,)
        ``engine_theta[theta_index[i]]`` is scikit-learn's ``theta[i]`` (both logs of the same
        value); the map is one-to-one, so gradients map back by
        ``gradient = engine_gradient[theta_index]``.
    learned_noise : float or None
        The noise_level of the WhiteKernel that is the engine's learned noise.
    fixed_noise : float
        The sum of the noise_level of fixed-bounds WhiteKernels of the root sum.

    Raises
    ------
    ValueError
        If the tree is not accepted (see :func:`check_kernel`), or a hyperparameter value is
        one the engine refuses (the message names the node).

    Examples
    --------
    >>> from gprat.kernels import ConstantKernel, RBF, WhiteKernel
    >>> converted = EngineKernel(ConstantKernel(2.0) * RBF(0.5) + WhiteKernel(0.1), n_features=1)
    >>> converted.kernel
    SquaredExponential(lengthscale=0.5, signal_variance=2)
    >>> converted.theta_index.tolist(), converted.learned_noise
    ([1, 0, 2], 0.1)
    """

    def __init__(self, kernel, n_features):
        check_kernel(kernel)
        addends = list(_addends(kernel))
        self.learned_noise, self.fixed_noise = None, 0.0
        learned_offset = None
        keep = [True] * len(addends)
        if any(type(node) not in _WHITE for node, _, _ in addends):
            for i, (node, _, offset) in enumerate(addends):
                if type(node) not in _WHITE:
                    continue
                if int(node.n_dims) == 0:
                    self.fixed_noise += float(node.noise_level)
                    keep[i] = False
                elif self.learned_noise is None:
                    self.learned_noise, learned_offset = float(node.noise_level), offset
                    keep[i] = False
        kept = [addend for addend, k in zip(addends, keep) if k]
        tree, index = None, np.empty(int(kernel.n_dims), dtype=np.intp)
        for node, path, offset in kept:
            converted, node_index = _convert(node, n_features, path)
            start = 0 if tree is None else tree.n_params
            index[offset:offset + len(node_index)] = np.asarray(node_index, dtype=np.intp) + start
            tree = converted if tree is None else _EngineSum(tree, converted)
        if learned_offset is not None:
            index[learned_offset] = tree.n_params
        self.kernel = tree
        self.theta_index = index
