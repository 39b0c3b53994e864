"""Stationary kernel families ``k(x, x') = signal_variance * f(r2)`` of the engine.

``r2 = sum_k ((x_k - x'_k) / lengthscale_k)^2`` over the kernel's active features; a scalar
lengthscale is isotropic, a 1-D array gives one lengthscale per active feature (ARD). theta is
``log([lengthscale..., signal_variance])``.

Each class names its C++ family (``_core_name``, the same name as the class), its short name in
model files and on the command line (``short_name``) and, for Matérn kernels, its
smoothness (``matern_nu``); :mod:`gprat.kernels.registry` collects them.
"""

import numpy as np

from .. import _core
from .._validation import HYPER_MAX, HYPER_MIN, _as_numeric_array
from .base import Family, _check_parameter

__all__ = ["Stationary", "SquaredExponential", "Matern12", "Matern32", "Matern52"]


class Stationary(Family):
    """Base class of the stationary families.

    Parameters
    ----------
    lengthscale : float or array-like of shape (n_active_features,), default=1.0
        Positive lengthscale(s); an array gives automatic relevance determination (ARD).
    signal_variance : float, default=1.0
        Positive variance of the latent function, ``k(x, x)``.
    active_dims : sequence of int or None, default=None
        Features the kernel acts on; None means all.
    fixed : iterable of str or bool, default=()
        Parameters (``"lengthscale"``, ``"signal_variance"``) kept fixed by optimizers.
    """

    in_model_files = True

    def __init__(self, lengthscale=1.0, signal_variance=1.0, active_dims=None, fixed=()):
        owner = type(self).__name__
        if isinstance(lengthscale, np.ndarray) and lengthscale.ndim == 0:
            lengthscale = lengthscale[()]
        if np.isscalar(lengthscale):
            self.lengthscale = _check_parameter(lengthscale, owner, "lengthscale")
        else:
            if isinstance(lengthscale, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in lengthscale):
                raise TypeError(f"lengthscale must hold real numbers, not booleans; got {lengthscale!r}")
            ls = _as_numeric_array(lengthscale, "lengthscale")
            if ls.ndim != 1 or ls.size == 0:
                raise ValueError(
                    f"lengthscale must be a positive number or a non-empty 1-D array; got shape {ls.shape}"
                )
            ls = np.array(ls, dtype=np.float64)
            if not np.all(np.isfinite(ls)) or np.any(ls < HYPER_MIN) or np.any(ls > HYPER_MAX):
                raise ValueError(
                    f"lengthscale entries must be positive and finite (between {HYPER_MIN:g} and {HYPER_MAX:g}); got {ls}"
                )
            self.lengthscale = ls
        self.signal_variance = _check_parameter(signal_variance, owner, "signal_variance")
        super().__init__(active_dims, fixed)
        if self.ard and self.active_dims is not None and len(self.lengthscale) != len(self.active_dims):
            raise ValueError(f"{owner}: ARD lengthscale has {len(self.lengthscale)} entries but active_dims has "
                             f"{len(self.active_dims)}")

    @property
    def ard(self):
        """bool: True when there is one lengthscale per feature."""
        return not np.isscalar(self.lengthscale)

    @property
    def param_names(self):
        """list of str: the lengthscale(s), then ``signal_variance``."""
        ls = [f"lengthscale[{i}]" for i in range(len(self.lengthscale))] if self.ard else ["lengthscale"]
        return ls + ["signal_variance"]

    def _values(self):
        return list(np.atleast_1d(self.lengthscale)) + [self.signal_variance]

    def _from_values(self, values):
        ls = values[:-1] if self.ard else float(values[0])
        return type(self)(lengthscale=ls, signal_variance=float(values[-1]), active_dims=self.active_dims,
                          fixed=self.fixed)

    def _to_core(self):
        if self.active_dims is None:  # the vectorized single-family path
            return _core.Kernel(self._core_name, list(np.atleast_1d(self.lengthscale)), self.signal_variance)
        return super()._to_core()

    def input_scales(self, n_features):
        """Per-feature lengthscale, inf on inactive features (see :meth:`Family.input_scales`): distances are of x / lengthscale."""
        if not self.ard:
            return self._on_active(n_features, self.lengthscale)
        out = np.full(n_features, np.inf)
        dims = self.active_dims if self.active_dims is not None else range(n_features)
        for d, ls in zip(dims, self.lengthscale):
            if d < n_features:
                out[d] = ls
        return out

    def lengthscale_spans(self, feature_spans):
        """Each ARD lengthscale's feature span, or the isotropic one's box diagonal, then NaN for
        the signal variance (see :meth:`Kernel.lengthscale_spans`)."""
        spans = self._active_spans(feature_spans)
        lengthscale = spans if self.ard else [float(np.linalg.norm(spans))]
        return np.append(np.asarray(lengthscale, dtype=np.float64), np.nan)

    def check_features(self, n_features):
        """Raise ValueError if the kernel cannot take data with `n_features` features."""
        super().check_features(n_features)
        if self.ard and self.active_dims is None and len(self.lengthscale) != n_features:
            raise ValueError(
                f"the kernel has {len(self.lengthscale)} ARD lengthscales but X has {n_features} features"
            )

    def diag(self, X):
        """Prior variances ``k(x, x) = signal_variance`` of the rows of X, shape (n_samples,)."""
        X = self._points(X, None, np.float64)[0]
        self.check_features(X.shape[1])
        return np.full(X.shape[0], self.signal_variance)

    def get_params(self, deep=True):
        """Constructor parameters as a dict (active_dims and fixed only when set)."""
        ls = self.lengthscale.copy() if self.ard else self.lengthscale
        out = {"lengthscale": ls, "signal_variance": self.signal_variance}
        if self.active_dims is not None:
            out["active_dims"] = list(self.active_dims)
        if self.fixed:
            out["fixed"] = self.fixed
        return out

    def __repr__(self):
        ls = np.array2string(self.lengthscale, precision=4) if self.ard else f"{self.lengthscale:.4g}"
        return f"{type(self).__name__}(lengthscale={ls}, signal_variance={self.signal_variance:.4g}{self._extra_repr()})"

    def __eq__(self, other):
        return (
            type(self) is type(other)
            and np.array_equal(np.atleast_1d(self.lengthscale), np.atleast_1d(other.lengthscale))
            and self.ard == other.ard
            and self.signal_variance == other.signal_variance
            and self.active_dims == other.active_dims
            and self.fixed == other.fixed
        )

    __hash__ = None


class SquaredExponential(Stationary):
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


class Matern12(Stationary):
    """Matérn kernel with nu = 1/2 (exponential): ``k = s2 * exp(-r)``, ``r = sqrt(r2)``."""

    _core_name = "Matern12"
    short_name = "matern12"
    matern_nu = 0.5


class Matern32(Stationary):
    """Matérn kernel with nu = 3/2: ``k = s2 * (1 + sqrt(3) r) * exp(-sqrt(3) r)``."""

    _core_name = "Matern32"
    short_name = "matern32"
    matern_nu = 1.5


class Matern52(Stationary):
    """Matérn kernel with nu = 5/2: ``k = s2 * (1 + sqrt(5) r + 5 r^2 / 3) * exp(-sqrt(5) r)``."""

    _core_name = "Matern52"
    short_name = "matern52"
    matern_nu = 2.5
