"""The base classes of the engine's kernels: parameters, theta, composition and dense evaluation.

A kernel is a *family* (one covariance function with its own parameters, a leaf) or a
composition of kernels: ``k1 + k2`` (:class:`Sum`), ``k1 * k2`` (:class:`Product`) and
``c * k`` with a number ``c`` (the product ``Constant(c) * k``, as in scikit-learn), nested to
any depth. Every kernel exposes its parameters in log space as ``theta`` (leaves left to right,
each family in its own order), ``with_theta``, ``bounds`` (the default optimization box),
``trainable`` (False for parameters given in ``fixed=``) and ``param_names``; the GP appends
``log(noise_variance)``. A family acts on all features or on those listed in ``active_dims``.

Evaluation runs in the C++ core: the four stationary families alone take their vectorized
single-family path, everything else one ``KernelTree`` evaluated per pair of points.
"""

import numbers

import numpy as np

from .. import _core
from .._validation import as_matrix, check_dtype, check_hyperparameter, check_theta
from ..runtime import wait_for_lifecycle

__all__ = ["Kernel", "Family", "Sum", "Product", "DEFAULT_BOUNDS"]

#: Default optimization box of every kernel parameter (not in log space).
DEFAULT_BOUNDS = (1e-5, 1e5)


def _is_number(value):
    return isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))


class Kernel:
    """Base class of the engine's covariance functions (families and their compositions).

    Subclasses provide ``theta``, ``with_theta``, ``param_names``, ``trainable``,
    ``_tree_spec``, ``input_scales`` and ``check_features``; this class adds the operators,
    the default bounds and the evaluation in the core.
    """

    #: Name of the C++ family in gprat._core, short name in model files and on the command line,
    #: and the Matérn smoothness nu (None for other families): set by each family.
    _core_name = None
    short_name = None
    matern_nu = None
    #: Whether model files and the command line take the family (lengthscale + signal_variance).
    in_model_files = False
    #: Lets ``numpy_scalar * kernel`` reach __rmul__ instead of numpy broadcasting.
    __array_ufunc__ = None

    # ------------------------------------------------------------ parameters
    @property
    def n_params(self):
        """int: number of parameters, the length of ``theta``."""
        return len(self.param_names)

    @property
    def bounds(self):
        """ndarray of shape (n_params, 2): the default optimization box of theta (log space)."""
        return np.tile(np.log(DEFAULT_BOUNDS), (self.n_params, 1))

    def lengthscale_spans(self, feature_spans):
        """Per theta entry: the data span a distance lengthscale divides, NaN for other entries.

        A lengthscale l of a family that reads ``d / l`` (d a distance over its active features)
        switches those features off once l is far above the largest d in the data: for
        l > 1e3 d the kernel varies by less than 1e-6 of its variance across the data for the
        squared exponential, Matérn-5/2 and rational quadratic families (it falls as (d / l)^2;
        Matérn-3/2 1.5e-6, and Matérn-1/2, linear in d / l, 1e-3). The span of an ARD
        lengthscale is its feature's span; that of an isotropic one the Euclidean norm of the
        spans of its active features (the data's bounding-box diagonal). :meth:`gprat.ExactGP.optimize`
        uses it to recognise a lengthscale that ran off to its box edge.

        Parameters
        ----------
        feature_spans : array-like of shape (n_features,)
            ``max - min`` of each feature over the training inputs.

        Returns
        -------
        ndarray of shape (n_params,)
        """
        return np.full(self.n_params, np.nan)

    # ------------------------------------------------------------ composition
    def __add__(self, other):
        return Sum(self, _as_kernel(other, "+"))

    def __radd__(self, other):
        return Sum(_as_kernel(other, "+"), self)

    def __mul__(self, other):
        return Product(self, _as_kernel(other, "*"))

    def __rmul__(self, other):
        return Product(_as_kernel(other, "*"), self)

    # ------------------------------------------------------------ evaluation
    def _to_core(self):
        return _core.Kernel.tree(self._tree_spec())

    @staticmethod
    def _points(X, Y, dtype):
        dtype = check_dtype(dtype)
        X = as_matrix(X, "X", dtype)
        return X, (None if Y is None else as_matrix(Y, "Y", dtype, n_features=X.shape[1]))

    def __call__(self, X, Y=None, dtype=np.float64):
        """Covariance matrix ``K(X, Y)``; ``K(X)`` when Y is None.

        ``K(X)`` and ``K(X, X)`` differ for :class:`~gprat.kernels.White`, which adds its noise
        on the diagonal of ``K(X)`` only (scikit-learn's semantics).

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Y : array-like of shape (n_samples_Y, n_features), default=None
        dtype : {numpy.float64, numpy.float32}, default=numpy.float64

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples_Y)
        """
        return self._evaluate("matrix", X, Y, dtype)

    def gradient(self, X, Y=None, dtype=np.float64):
        """Derivatives ``dK(X, Y) / dtheta`` with respect to every log-parameter.

        Takes the arguments of :meth:`__call__`; returns an ndarray of shape
        (n_params, n_samples_X, n_samples_Y).
        """
        return self._evaluate("gradient", X, Y, dtype)

    def input_gradient(self, X, Z, dtype=np.float64):
        """Derivatives ``dk(x_i, z_j) / dz_j`` with respect to the second point set.

        What SGPR and SVGP need for their inducing points. Entry ``(c, i, j)`` is the derivative
        of ``k(x_i, z_j)`` with respect to feature c of ``z_j``.

        Parameters
        ----------
        X : array-like of shape (n_samples_X, n_features)
        Z : array-like of shape (n_samples_Z, n_features)
        dtype : {numpy.float64, numpy.float32}, default=numpy.float64

        Returns
        -------
        ndarray of shape (n_features, n_samples_X, n_samples_Z)
        """
        X, Z = self._points(X, Z, dtype)
        self.check_features(X.shape[1])
        wait_for_lifecycle()
        return self._to_core().input_gradient(X, Z)

    def diag(self, X):
        """Prior variances ``k(x, x)`` of the rows of X (White included), an ndarray of shape (n_samples,)."""
        return self._evaluate("diagonal", X, None, np.float64)

    def _evaluate(self, method, X, Y, dtype):
        """Dense evaluation by the core's tile assembler (`method` of gprat._core.Kernel)."""
        X, Y = self._points(X, Y, dtype)
        self.check_features(X.shape[1])
        wait_for_lifecycle()
        core = self._to_core()
        return core.diagonal(X) if method == "diagonal" else getattr(core, method)(X, Y)

    __hash__ = None


def _as_kernel(value, op):
    """A kernel operand: a Kernel as it is, a positive number as Constant(number)."""
    if isinstance(value, Kernel):
        return value
    if _is_number(value):
        from .families import Constant  # families.py imports this module

        return Constant(value)
    raise TypeError(f"kernels combine with '{op}' with kernels or positive numbers; got {type(value).__name__} {value!r}")


class Family(Kernel):
    """A covariance family (a leaf of a kernel tree) with its parameters.

    Subclasses set ``_core_name`` and implement ``_values`` (parameter values in the core's
    order), ``param_names``, ``_from_values`` and ``input_scales``.

    Parameters
    ----------
    active_dims : sequence of int or None, default=None
        Features the kernel acts on (distinct, non-negative); None means all.
    fixed : iterable of str or bool, default=()
        Names of parameters kept fixed by optimizers (their ``trainable`` entry is False);
        True fixes all of them.
    """

    def __init__(self, active_dims=None, fixed=()):
        self.active_dims = _check_active_dims(active_dims, type(self).__name__)
        self.fixed = self._check_fixed(fixed)

    def _check_fixed(self, fixed):
        names = self._base_names()
        if fixed is True:
            return tuple(names)
        if fixed is False or fixed is None:
            return ()
        if isinstance(fixed, str):
            fixed = (fixed,)
        fixed = tuple(fixed)
        for name in fixed:
            if name not in names:
                raise ValueError(f"{type(self).__name__}: fixed names unknown parameter {name!r}; "
                                 f"its parameters are {', '.join(names)}")
        return fixed

    def _base_names(self):
        """Parameter names without ARD indices (what ``fixed`` takes)."""
        return tuple(dict.fromkeys(n.split("[")[0] for n in self.param_names))

    @property
    def trainable(self):
        """ndarray of bool, shape (n_params,): False for the parameters named in ``fixed``."""
        return np.array([n.split("[")[0] not in self.fixed for n in self.param_names], dtype=bool)

    @property
    def theta(self):
        """ndarray of shape (n_params,): log of the parameters, in ``param_names`` order."""
        return np.log(np.asarray(self._values(), dtype=np.float64))

    def with_theta(self, theta):
        """Return a copy of this kernel with parameters ``exp(theta)``.

        Parameters
        ----------
        theta : array-like of shape (n_params,)

        Returns
        -------
        Kernel
        """
        theta = check_theta(theta, self.n_params)
        return self._from_values(np.exp(theta))

    def _tree_spec(self):
        return [(self._core_name, [float(v) for v in self._values()], list(self.active_dims or ()))]

    def _active_features(self, n_features):
        """The active features below `n_features`, in active_dims order (all when None)."""
        dims = self.active_dims if self.active_dims is not None else range(n_features)
        return [d for d in dims if d < n_features]

    def _on_active(self, n_features, scale):
        """Per-feature array: `scale` on the active features, inf elsewhere."""
        out = np.full(n_features, np.inf)
        out[self._active_features(n_features)] = scale
        return out

    def _active_spans(self, feature_spans):
        """The entries of `feature_spans` on the active features, in active_dims order."""
        feature_spans = np.asarray(feature_spans, dtype=np.float64)
        return feature_spans[self._active_features(feature_spans.size)]

    def input_scales(self, n_features):
        """Per-feature scale dividing the inputs before distances or products are formed.

        The engine's overflow guard divides ``max |X|`` by it; inf marks a feature the kernel
        does not use that way.

        Parameters
        ----------
        n_features : int

        Returns
        -------
        ndarray of shape (n_features,)
        """
        return self._on_active(n_features, 1.0)

    def check_features(self, n_features):
        """Raise ValueError if the kernel cannot take data with `n_features` features."""
        for d in self.active_dims or ():
            if d >= n_features:
                raise ValueError(f"{type(self).__name__}: active_dims entry {d} is out of range for X with "
                                 f"{n_features} features")

    def _extra_repr(self):
        out = ""
        if self.active_dims is not None:
            out += f", active_dims={list(self.active_dims)}"
        if self.fixed:
            out += f", fixed={self.fixed!r}"
        return out

    def __eq__(self, other):
        return (type(self) is type(other) and self.active_dims == other.active_dims and self.fixed == other.fixed
                and np.array_equal(self._values(), other._values()))

    __hash__ = None


def _check_active_dims(active_dims, owner):
    """Return active_dims as a tuple of distinct non-negative ints, or None."""
    if active_dims is None:
        return None
    try:
        dims = list(active_dims)
    except TypeError:
        raise TypeError(f"{owner}: active_dims must be a sequence of feature indices or None; "
                        f"got {active_dims!r}") from None
    if not dims:
        raise ValueError(f"{owner}: active_dims must name at least one feature (or be None for all)")
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, (numbers.Integral, np.integer)):
            raise TypeError(f"{owner}: active_dims entries must be integers; got {d!r}")
        if d < 0:
            raise ValueError(f"{owner}: active_dims entries must be non-negative; got {d}")
        if int(d) in out:
            raise ValueError(f"{owner}: active_dims entry {d} is duplicated")
        out.append(int(d))
    return tuple(out)


def _check_parameter(value, owner, name):
    """A positive finite parameter; the message names the family and the parameter."""
    try:
        return check_hyperparameter(value, name)
    except (TypeError, ValueError) as err:
        raise type(err)(f"{owner}: {err}") from None


class _Composite(Kernel):
    """Two kernels combined by an operator (``_op``, ``_core_op``)."""

    _op = None
    _core_op = None

    def __init__(self, k1, k2):
        for k in (k1, k2):
            if not isinstance(k, Kernel):
                raise TypeError(f"{type(self).__name__} combines gprat kernels; got {type(k).__name__} {k!r}")
        self.k1, self.k2 = k1, k2

    @property
    def param_names(self):
        """list of str: ``k1.<name>`` then ``k2.<name>``."""
        return [f"k1.{n}" for n in self.k1.param_names] + [f"k2.{n}" for n in self.k2.param_names]

    @property
    def theta(self):
        """ndarray of shape (n_params,): theta of k1, then of k2."""
        return np.concatenate([self.k1.theta, self.k2.theta])

    @property
    def trainable(self):
        """ndarray of bool, shape (n_params,): the children's masks, k1 then k2."""
        return np.concatenate([self.k1.trainable, self.k2.trainable])

    @property
    def bounds(self):
        """ndarray of shape (n_params, 2): the children's boxes, k1 then k2."""
        return np.vstack([self.k1.bounds, self.k2.bounds])

    def with_theta(self, theta):
        """A copy with ``theta`` (array-like of shape (n_params,)) split between k1 and k2."""
        theta = check_theta(theta, self.n_params)
        p = self.k1.n_params
        return type(self)(self.k1.with_theta(theta[:p]), self.k2.with_theta(theta[p:]))

    def _tree_spec(self):
        return [(self._core_op, [], [])] + self.k1._tree_spec() + self.k2._tree_spec()

    def lengthscale_spans(self, feature_spans):
        """The children's spans, k1 then k2 (see :meth:`Kernel.lengthscale_spans`)."""
        return np.concatenate([self.k1.lengthscale_spans(feature_spans), self.k2.lengthscale_spans(feature_spans)])

    def input_scales(self, n_features):
        """Per-feature smallest input scale of the two kernels (see :meth:`Family.input_scales`)."""
        return np.minimum(self.k1.input_scales(n_features), self.k2.input_scales(n_features))

    def check_features(self, n_features):
        """Raise ValueError if either kernel cannot take data with `n_features` features."""
        self.k1.check_features(n_features)
        self.k2.check_features(n_features)

    def __eq__(self, other):
        return type(self) is type(other) and self.k1 == other.k1 and self.k2 == other.k2

    __hash__ = None


class Sum(_Composite):
    """``k1 + k2``: ``k(x, y) = k1(x, y) + k2(x, y)``; theta is that of k1, then of k2.

    Examples
    --------
    >>> from gprat.kernels import SquaredExponential, White
    >>> k = SquaredExponential(lengthscale=2.0) + White(noise_level=0.1)
    >>> k.n_params, k.param_names
    (3, ['k1.lengthscale', 'k1.signal_variance', 'k2.noise_level'])
    """

    _op = "+"
    _core_op = "Sum"

    def __repr__(self):
        return f"{self.k1!r} + {self.k2!r}"


class Product(_Composite):
    """``k1 * k2``: ``k(x, y) = k1(x, y) k2(x, y)``; ``c * k`` is ``Product(Constant(c), k)``.

    Examples
    --------
    >>> from gprat.kernels import Periodic, SquaredExponential
    >>> k = 2.0 * SquaredExponential(lengthscale=50.0) * Periodic(lengthscale=1.0, period=1.0)
    >>> k
    Constant(constant_value=2) * SquaredExponential(lengthscale=50, signal_variance=1) * Periodic(lengthscale=1, period=1)
    """

    _op = "*"
    _core_op = "Product"

    def __repr__(self):
        def wrap(k):
            return f"({k!r})" if isinstance(k, Sum) else repr(k)

        return f"{wrap(self.k1)} * {wrap(self.k2)}"
