"""ExactGP: exact Gaussian-process regression on the tiled, task-parallel Cholesky engine."""

import numpy as np

from . import _core
from ._memory import check_fits
from ._validation import as_matrix, as_vector, check_dtype, check_positive, check_positive_int, check_theta
from .exceptions import NotFittedError
from .kernels import Kernel
from .optimize import Progress, minimize_adam, minimize_lbfgsb

__all__ = ["ExactGP"]

_CORE = {np.float64: _core.ExactGP64, np.float32: _core.ExactGP32}

#: Default optimization box in hyperparameter space (not log space), per kind of parameter.
DEFAULT_BOUNDS = {"kernel": (1e-5, 1e5), "noise_variance": (1e-9, 1e5)}


class ExactGP:
    """Exact Gaussian process regression on a tiled Cholesky factorization.

    The model is ``y = f(X) + eps`` with ``f ~ GP(0, kernel)`` and ``eps ~ N(0, noise_variance)``.
    ``fit`` assembles ``K = k(X, X) + noise_variance * I`` tile by tile, factors it and caches
    ``L`` and ``alpha = K^{-1} y``; predictions reuse them (R&W Algorithm 2.1).

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
        Covariance function (SquaredExponential, Matern12, Matern32 or Matern52).
    noise_variance : float, default=1e-2
        Variance of i.i.d. Gaussian observation noise, added to diag(K).
    tile_size : int or None, default=None
        Rows per tile (tuning only; results do not depend on it beyond rounding). None chooses
        from n and the thread count; a tile size larger than n is clamped to n.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Working precision. float32 halves memory; expect about 1e-4 relative agreement with
        float64 on well-conditioned problems.

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs (the caller's array when it was C-contiguous of `dtype`: not copied).
    y_train_ : ndarray of shape (n_samples,)
    n_features_in_ : int

    Raises
    ------
    NotPositiveDefiniteError
        In ``fit`` if K + noise_variance * I is not positive definite.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> X = np.linspace(0, 1, 50).reshape(-1, 1); y = np.sin(6 * X[:, 0])
    >>> gp = gprat.ExactGP(gprat.kernels.SquaredExponential(0.2), noise_variance=1e-4).fit(X, y)
    >>> mean, std = gp.predict([[0.5]], return_std=True)
    >>> bool(abs(mean[0] - np.sin(3.0)) < 1e-3)
    True
    """

    def __init__(self, kernel, *, noise_variance=1e-2, tile_size=None, dtype=np.float64):
        if not isinstance(kernel, Kernel):
            raise TypeError(
                "kernel must be a gprat.kernels kernel (SquaredExponential, Matern12, Matern32, Matern52); "
                f"got {type(kernel).__name__}"
            )
        self.kernel = kernel
        self.noise_variance = check_positive(noise_variance, "noise_variance")
        self.tile_size = check_positive_int(tile_size, "tile_size")
        self.dtype = check_dtype(dtype)
        self._core = None

    # ------------------------------------------------------------------ state
    @property
    def fitted(self):
        """bool: whether ``fit`` has succeeded."""
        return self._core is not None

    def _require_fit(self, what):
        if self._core is None:
            raise NotFittedError(f"this ExactGP is not fitted yet; call fit(X, y) before {what}")

    @property
    def n_params(self):
        """int: number of hyperparameters (kernel's, then the noise variance)."""
        return self.kernel.n_params + 1

    @property
    def theta(self):
        """ndarray: log of [lengthscale(s)..., signal_variance, noise_variance].

        Setting it changes the hyperparameters; the factorization is redone lazily.
        """
        return np.append(self.kernel.theta, np.log(self.noise_variance))

    @theta.setter
    def theta(self, theta):
        theta = check_theta(theta, self.n_params)
        kernel = self.kernel.with_theta(theta[:-1])
        if self._core is not None:
            self._core.theta = list(theta)
        self.kernel, self.noise_variance = kernel, float(np.exp(theta[-1]))

    # -------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Assemble and factor K, and solve for alpha.

        A failed fit leaves a previously fitted model unchanged.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : ExactGP

        Raises
        ------
        NotPositiveDefiniteError
            If K + noise_variance * I is not positive definite.
        MemoryError
            If the factor would not fit in the memory available, before allocating it.
        """
        X = as_matrix(X, "X", self.dtype)
        y = as_vector(y, "y", self.dtype, length=X.shape[0])
        if self.kernel.ard and len(self.kernel.lengthscale) != X.shape[1]:
            raise ValueError(
                f"the kernel has {len(self.kernel.lengthscale)} ARD lengthscales but X has {X.shape[1]} features"
            )
        core = _CORE[self.dtype](self.kernel._to_core(), X, y, self.noise_variance, self.tile_size)
        check_fits(_CORE[self.dtype].fit_bytes(X.shape[0], core.tile_size), f"fitting n={X.shape[0]} samples")
        core.fit()
        self._core = core
        self.X_train_, self.y_train_ = X, y
        self.n_features_in_ = X.shape[1]
        return self

    @property
    def tile_size_(self):
        """int: the tile size in use (after ``fit``)."""
        self._require_fit("tile_size_")
        return self._core.tile_size

    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        """Log marginal likelihood ``log p(y | X, theta)`` and optionally its gradient.

        ``-1/2 y^T alpha - sum(log diag L) - n/2 log(2 pi)``; the gradient is
        ``1/2 tr((alpha alpha^T - K^{-1}) dK/dtheta_j)``, computed in closed form with K^{-1}
        formed in place of L and the dK/dtheta tiles regenerated on the fly.

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None, default=None
            Log-hyperparameters at which to evaluate; None means the model's. The model's own
            hyperparameters are not changed.
        eval_gradient : bool, default=False

        Returns
        -------
        float, or (float, ndarray of shape (n_params,)) when `eval_gradient`

        Raises
        ------
        NotFittedError
            Before ``fit``.
        NotPositiveDefiniteError
            If K at `theta` is not positive definite.
        """
        self._require_fit("log_marginal_likelihood")
        if theta is None and not eval_gradient:
            return float(self._core.log_marginal_likelihood())
        theta = self.theta if theta is None else check_theta(theta, self.n_params)
        out = self._core.training_step(list(theta), bool(eval_gradient))
        if eval_gradient:
            return float(out[0]), np.asarray(out[1])
        return float(out)

    # ---------------------------------------------------------------- predict
    def predict(self, X, return_std=False, return_cov=False, include_noise=False):
        """Posterior predictive mean, and optionally standard deviation or covariance.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
        return_std : bool, default=False
            Also return the standard deviation of the latent f (plus noise with `include_noise`).
        return_cov : bool, default=False
            Also return the full posterior covariance (n_test x n_test).
        include_noise : bool, default=False
            Add noise_variance: the predictive distribution of new observations y*.

        Returns
        -------
        mean : ndarray of shape (n_test,)
        std : ndarray of shape (n_test,), if `return_std`
        cov : ndarray of shape (n_test, n_test), if `return_cov`

        Raises
        ------
        NotFittedError
            Before ``fit``.
        """
        self._require_fit("predict")
        if return_std and return_cov:
            raise ValueError("at most one of return_std and return_cov can be requested")
        X = as_matrix(X, "X", self.dtype, n_features=self.n_features_in_)
        if return_cov:
            check_fits(X.shape[0] ** 2 * np.dtype(self.dtype).itemsize * 2
                       + X.shape[0] * self.X_train_.shape[0] * np.dtype(self.dtype).itemsize,
                       f"a full covariance of {X.shape[0]} test points")
        mean, var, cov = self._core.predict(X, bool(return_std), bool(return_cov), bool(include_noise))
        if return_std:
            return mean, np.sqrt(var)
        if return_cov:
            return mean, cov
        return mean

    def cholesky_factor(self):
        """ndarray of shape (n_samples, n_samples): the lower Cholesky factor L of K (dense copy)."""
        self._require_fit("cholesky_factor")
        return self._core.cholesky_factor()

    # --------------------------------------------------------------- optimize
    def default_bounds(self):
        """ndarray of shape (n_params, 2): the default optimization box in theta (log) space."""
        lo, hi = DEFAULT_BOUNDS["kernel"]
        nlo, nhi = DEFAULT_BOUNDS["noise_variance"]
        b = np.tile(np.log([lo, hi]), (self.n_params, 1))
        b[-1] = np.log([nlo, nhi])
        return b

    def optimize(self, method="L-BFGS-B", max_iter=100, trainable=None, progress=False, lr=0.05,
                 bounds=None, callback=None):
        """Maximize the log marginal likelihood over the hyperparameters.

        Parameters
        ----------
        method : {"L-BFGS-B", "adam"}, default="L-BFGS-B"
            SciPy's L-BFGS-B fed by the closed-form gradient, or Adam.
        max_iter : int, default=100
        trainable : array-like of bool, shape (n_params,), or None, default=None
            Which entries of theta to optimize; None means all.
        progress : bool, default=False
            Print iteration, loss and elapsed time to stderr.
        lr : float, default=0.05
            Adam's learning rate (in log-hyperparameter units).
        bounds : array-like of shape (n_params, 2) or None
            Box in theta (log) space; None uses :meth:`default_bounds`.
        callback : callable or None
            ``callback(iteration, loss)`` after each iteration, loss = -log marginal likelihood.

        Returns
        -------
        OptimizationResult
            The model is left at the best hyperparameters found, refitted.
        """
        self._require_fit("optimize")
        max_iter = check_positive_int(max_iter, "max_iter", allow_none=False)
        if trainable is None:
            mask = np.ones(self.n_params, dtype=bool)
        else:
            mask = np.asarray(trainable)
            if mask.dtype != bool or mask.shape != (self.n_params,):
                raise ValueError(f"trainable must be {self.n_params} booleans; got {trainable!r}")
        bounds = self.default_bounds() if bounds is None else np.asarray(bounds, dtype=np.float64)
        if bounds.shape != (self.n_params, 2) or not np.all(np.isfinite(bounds)) or np.any(bounds[:, 0] > bounds[:, 1]):
            raise ValueError(f"bounds must be finite (low, high) pairs of shape ({self.n_params}, 2); got {bounds}")
        theta0 = np.clip(self.theta, bounds[:, 0], bounds[:, 1])
        if not mask.any():
            return minimize_adam(self._value_and_grad, theta0, mask, bounds, 0)
        bar = Progress(progress, max_iter)
        method_key = str(method).lower()
        try:
            if method_key in ("l-bfgs-b", "lbfgsb", "fmin_l_bfgs_b"):
                result = minimize_lbfgsb(self._value_and_grad, theta0, mask, bounds, max_iter, bar, callback)
            elif method_key == "adam":
                lr = check_positive(lr, "lr")
                result = minimize_adam(self._value_and_grad, theta0, mask, bounds, max_iter, lr=lr,
                                       progress=bar, callback=callback)
            else:
                raise ValueError(f"method must be 'L-BFGS-B' or 'adam'; got {method!r}")
        finally:
            bar.close()
        self.theta = result.theta
        self._core.fit()
        return result

    def _value_and_grad(self, theta):
        lml, grad = self._core.training_step(list(theta), True)
        return lml, np.asarray(grad)

    def __repr__(self):
        return (f"ExactGP({self.kernel!r}, noise_variance={self.noise_variance:.4g}, "
                f"tile_size={self.tile_size}, dtype={np.dtype(self.dtype).name})")
