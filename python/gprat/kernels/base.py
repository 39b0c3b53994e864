"""The base class of the engine's kernels: hyperparameters, theta, and dense evaluation in the core.

Each kernel is stationary, ``k(x, x') = signal_variance * f(r2)`` with the scaled squared
distance ``r2 = sum_k ((x_k - x'_k) / lengthscale_k)^2``; a scalar lengthscale is isotropic, a
1-D array gives one lengthscale per feature (ARD). Hyperparameters are exposed in log space as
``theta = log([lengthscale..., signal_variance])``; the GP appends ``log(noise_variance)``.

The scikit-learn spellings ``RBF``, ``Matern``, ``ConstantKernel`` and ``WhiteKernel`` (for
:class:`gprat.GaussianProcessRegressor`) are available here too when scikit-learn is installed.
"""

import numpy as np

from .. import _core
from .._validation import HYPER_MAX, HYPER_MIN, _as_numeric_array, as_matrix, check_dtype, check_hyperparameter, check_theta
from ..runtime import wait_for_lifecycle

__all__ = ["Kernel"]


class Kernel:
    """Base class of the engine's stationary kernels.

    Parameters
    ----------
    lengthscale : float or array-like of shape (n_features,), default=1.0
        Positive lengthscale(s); an array gives automatic relevance determination (ARD).
    signal_variance : float, default=1.0
        Positive variance of the latent function, ``k(x, x)``.
    """

    #: Name of the C++ family in gprat._core, short name in model files and on the command line,
    #: and the Matérn smoothness nu (None for other families): set by each family.
    _core_name = None
    short_name = None
    matern_nu = None

    def __init__(self, lengthscale=1.0, signal_variance=1.0):
        if isinstance(lengthscale, np.ndarray) and lengthscale.ndim == 0:
            lengthscale = lengthscale[()]
        if np.isscalar(lengthscale):
            self.lengthscale = check_hyperparameter(lengthscale, "lengthscale")
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
        self.signal_variance = check_hyperparameter(signal_variance, "signal_variance")

    @property
    def ard(self):
        """bool: True when there is one lengthscale per feature."""
        return not np.isscalar(self.lengthscale)

    @property
    def n_params(self):
        """int: number of hyperparameters (lengthscales, then the signal variance)."""
        return (len(self.lengthscale) if self.ard else 1) + 1

    @property
    def theta(self):
        """ndarray of shape (n_params,): log of [lengthscale(s)..., signal_variance]."""
        return np.log(np.append(np.atleast_1d(self.lengthscale), self.signal_variance))

    def with_theta(self, theta):
        """Return a copy of this kernel with hyperparameters ``exp(theta)``.

        Parameters
        ----------
        theta : array-like of shape (n_params,)
            Log of [lengthscale(s)..., signal_variance].

        Returns
        -------
        Kernel
        """
        theta = check_theta(theta, self.n_params)
        values = np.exp(theta)
        ls = values[:-1] if self.ard else float(values[0])
        return type(self)(lengthscale=ls, signal_variance=float(values[-1]))

    @staticmethod
    def _points(X, Y, dtype):
        dtype = check_dtype(dtype)
        X = as_matrix(X, "X", dtype)
        return X, (None if Y is None else as_matrix(Y, "Y", dtype, n_features=X.shape[1]))

    def _to_core(self):
        return _core.Kernel(self._core_name, list(np.atleast_1d(self.lengthscale)), self.signal_variance)

    def __call__(self, X, Y=None, dtype=np.float64):
        """Covariance matrix ``K(X, Y)`` (``K(X, X)`` when Y is None).

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
        """Derivatives ``dK(X, Y) / dtheta`` with respect to every log-hyperparameter.

        Takes the arguments of :meth:`__call__`; returns an ndarray of shape
        (n_params, n_samples_X, n_samples_Y).
        """
        return self._evaluate("gradient", X, Y, dtype)

    def _evaluate(self, method, X, Y, dtype):
        """Dense evaluation by the core's tile assembler (`method` of gprat._core.Kernel)."""
        points = self._points(X, Y, dtype)
        wait_for_lifecycle()
        return getattr(self._to_core(), method)(*points)

    def diag(self, X):
        """Prior variances ``k(x, x)`` of the rows of X (stationary: ``signal_variance``)."""
        X = as_matrix(X, "X")
        return np.full(X.shape[0], self.signal_variance)

    def get_params(self, deep=True):
        """Constructor parameters as a dict."""
        ls = self.lengthscale.copy() if self.ard else self.lengthscale
        return {"lengthscale": ls, "signal_variance": self.signal_variance}

    def __repr__(self):
        ls = np.array2string(self.lengthscale, precision=4) if self.ard else f"{self.lengthscale:.4g}"
        return f"{type(self).__name__}(lengthscale={ls}, signal_variance={self.signal_variance:.4g})"

    def __eq__(self, other):
        return (
            type(self) is type(other)
            and np.array_equal(np.atleast_1d(self.lengthscale), np.atleast_1d(other.lengthscale))
            and self.ard == other.ard
            and self.signal_variance == other.signal_variance
        )

    __hash__ = None
