"""SGPR: sparse GP regression with Titsias' collapsed variational bound, on the C++ core.

The engine (``cpp/include/gprat/gp/sgpr.hpp``, whose header comment holds the mathematics)
evaluates the bound and its closed-form gradient with respect to the hyperparameters and the
inducing points in O(n M^2 + M^3), tiled over the training points: no n x n and no n x M
matrix is ever formed.
"""

import threading
import warnings

import numpy as np

from .. import _core
from .._memory import check_fits
from .._validation import as_matrix, as_vector, check_dtype, check_non_negative, check_positive, \
    check_positive_int, check_theta, THETA_MAX
from ..exceptions import NotPositiveDefiniteError, NumericalWarning
from ..optim import Objective, OptimizationResult, Progress, minimize_adam, minimize_lbfgsb
from ..runtime import num_threads, wait_for_lifecycle
from ._kernel_noise import KernelNoiseModel, factor_with_jitter
from .exact import DEFAULT_MAX_JITTER, noise_variance_bounds

__all__ = ["SGPR", "initial_inducing_points"]

_ENGINE_NAME = {np.float64: "SGPR64", np.float32: "SGPR32"}


def initial_inducing_points(X, m, random_state=None, chunk=65536):
    """m rows of X chosen by k-means++ seeding (D^2 sampling, Arthur and Vassilvitskii 2007).

    The first row is drawn uniformly; each next one with probability proportional to its
    squared distance to the nearest row chosen so far. O(n m d) time and O(n) memory (the
    distances are updated one new point at a time, in chunks of rows), so it runs at any n.
    Greedy pivoted Cholesky (Burt et al. 2020's "greedy variance") picks the row of largest
    conditional variance instead; it needs the kernel and an n x m factor (8 GB at n = 1e6,
    m = 1024), which is why k-means++ is the default here. Rows already chosen have distance
    zero and are never drawn again, so Z has no duplicate rows.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    m : int
        1 <= m <= number of distinct rows of X.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    ndarray of shape (m, n_features), float64

    Raises
    ------
    ValueError
        If X has fewer than m distinct rows.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    rng = np.random.default_rng(random_state)
    if m == n:
        return X.copy()
    chosen = np.empty(m, dtype=np.int64)
    chosen[0] = rng.integers(n)
    d2 = np.empty(n)
    for s in range(0, n, chunk):
        d2[s:s + chunk] = np.sum((X[s:s + chunk] - X[chosen[0]]) ** 2, axis=1)
    for j in range(1, m):
        total = d2.sum()
        if not total > 0:
            raise ValueError(f"X has only {j} distinct rows, fewer than inducing_points={m}; use fewer inducing points")
        u = rng.random() * total
        idx = int(np.searchsorted(np.cumsum(d2), u, side="right"))
        idx = min(idx, n - 1)
        while d2[idx] == 0.0:  # rounding at the end of the cumulative sum
            idx -= 1
        chosen[j] = idx
        for s in range(0, n, chunk):
            np.minimum(d2[s:s + chunk], np.sum((X[s:s + chunk] - X[idx]) ** 2, axis=1), out=d2[s:s + chunk])
    return X[chosen].copy()


def _too_many(m, n):
    return (f"inducing_points={m} is more than the number of training points n_samples={n}; SGPR needs M <= n "
            "(use an ExactGP for that few points)")


class SGPR(KernelNoiseModel):
    """Sparse GP regression with Titsias' (2009) collapsed variational bound.

    With M inducing points Z, ``Q = K_XZ K_ZZ^{-1} K_ZX`` and noise variance sigma2, the model
    maximizes ``F = log N(y | 0, Q + sigma2 I) - tr(K_XX - Q) / (2 sigma2)`` over the kernel's
    hyperparameters, sigma2 and (optionally) Z. ``log_marginal_likelihood`` returns F, a lower
    bound of the exact log marginal likelihood that equals it when Z = X. Cost O(n M^2 + M^3)
    per evaluation, memory O(M^2) plus O(M * tile_size) per thread.

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
    noise_variance : float, default=1e-2
        Initial sigma2 (learned: last entry of theta).
    inducing_points : int or array-like of shape (M, n_features), default=64
        A count M (1 <= M <= n_samples): Z is chosen from the training inputs at ``fit`` by
        k-means++ seeding (:func:`~gprat.models.sgpr.initial_inducing_points`); an array: Z itself (float64).
    tile_size : int or None, default=None
        Training rows per task (results do not depend on it beyond rounding).
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the stored training data; the algebra always runs in float64.
    max_jitter : float, default=1e-4
        Largest jitter, relative to mean(diag K_ZZ), that ``fit`` may add to diag(K_ZZ).
    random_state : None, int or numpy.random.Generator
        Seed of the inducing-point initialization.

    Attributes
    ----------
    inducing_points_ : ndarray of shape (M, n_features)
    jitter_ : float
        Jitter in K_ZZ + jitter I (0.0 if none was needed).
    log_marginal_likelihood_ : float
        The bound at the fitted parameters.

    Notes
    -----
    Jitter: when K_ZZ is not numerically positive definite (inducing points too close for the
    lengthscale), ``fit`` retries with ``jitter = c * mean(diag K_ZZ)``, c = 1e-10 (float64) or
    1e-6 (float32), growing tenfold up to ``max_jitter``, warns with a
    :class:`gprat.NumericalWarning` and stores the value in ``jitter_``; beyond that it raises
    :class:`gprat.NotPositiveDefiniteError` with a fix. Optimization keeps ``jitter_`` and
    treats points whose K_ZZ fails as failed trial points.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> X = np.linspace(0, 1, 200).reshape(-1, 1); y = np.sin(6 * X[:, 0])
    >>> m = gprat.SGPR(gprat.kernels.SquaredExponential(0.2), noise_variance=1e-2, inducing_points=8,
    ...                random_state=0).fit(X, y)
    >>> m.predict(X[:3]).shape
    (3,)
    """

    _NAME = "SGPR"

    def __init__(self, kernel, *, noise_variance=1e-2, inducing_points=64, tile_size=None, dtype=np.float64,
                 max_jitter=DEFAULT_MAX_JITTER, random_state=None):
        self.kernel = kernel
        self.noise_variance = noise_variance
        self.inducing_points = inducing_points
        self.tile_size = tile_size
        self.dtype = check_dtype(dtype)
        self.max_jitter = check_non_negative(max_jitter, "max_jitter")
        self.random_state = random_state
        self._core = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ state
    def _theta_changed(self):
        if self._core is not None:
            self._refit()

    @property
    def inducing_points_(self):
        """ndarray of shape (M, n_features): the inducing points Z; assigning new ones refits."""
        self._require_fit("inducing_points_")
        return np.array(self._core.inducing_points)

    @inducing_points_.setter
    def inducing_points_(self, Z):
        self._require_fit("inducing_points_")
        Z = self._check_Z(Z, self._core.n, self._core.d)
        with self._lock:
            old = self._core.inducing_points
            self._core.inducing_points = Z
            try:
                self._refit()
            except BaseException:
                self._core.inducing_points = old
                raise

    @staticmethod
    def _check_Z(Z, n, d):
        Z = as_matrix(Z, "inducing_points", np.float64, n_features=d)
        if Z.shape[0] > n:
            raise ValueError(f"SGPR needs at most as many inducing points as training points; got "
                             f"{Z.shape[0]} inducing points for n_samples={n}")
        return Z

    # -------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Choose Z (if a count was given), factor K_ZZ (jitter policy) and cache the posterior.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : SGPR

        Raises
        ------
        ValueError, TypeError
            For unusable X, y or inducing_points (shape, NaN, more inducing points than samples,
            another feature count).
        NotPositiveDefiniteError
            If K_ZZ is not positive definite even with ``max_jitter``.
        """
        noise = self._check_kernel_and_noise()
        X = as_matrix(X, "X", self.dtype)
        y = as_vector(y, "y", self.dtype, length=X.shape[0])
        n, d = X.shape
        self.kernel.check_features(d)
        Z = self._check_Z(self._inducing_points_for(X, self.random_state, _too_many), n, d)
        tile_size = check_positive_int(self.tile_size, "tile_size")
        engine = getattr(_core, _ENGINE_NAME[self.dtype])
        check_fits(engine.evaluation_bytes(n, Z.shape[0], tile_size or min(n, 256), d, self.n_params, num_threads()),
                   f"an SGPR evaluation with M={Z.shape[0]} inducing points")
        wait_for_lifecycle()
        core = engine(self.kernel._to_core(), X, y, Z, float(noise), tile_size)
        jitter, lml = self._factorize(core, Z)
        with self._lock:
            self._core, self._X, self._y = core, X, y
            self.jitter_, self.log_marginal_likelihood_ = jitter, lml
            self.n_features_in_ = d
            self.noise_variance = float(noise)
        return self

    def _factorize(self, core, Z):
        """fit() the engine with the jitter policy; (jitter, bound)."""
        mean_diag = float(np.mean(self.kernel.diag(Z)))

        def attempt(jitter):
            core.jitter = jitter
            return core.fit()

        def failure(first_error, last_error, largest):
            tail = (f" even with jitter up to {largest * mean_diag:.3g} ({largest:.0e} x mean(diag K_ZZ)); last "
                    f"failure: {last_error}" if largest is not None else " (jitter is disabled: max_jitter=0)")
            return NotPositiveDefiniteError(
                f"K_ZZ, the covariance of the {Z.shape[0]} inducing points, is not positive definite: {first_error}"
                f"{tail}. Fix: remove duplicate or near-duplicate inducing points, use fewer inducing points, a "
                "shorter lengthscale, or allow more jitter with SGPR(max_jitter=...).",
                getattr(first_error, "order", None))

        out = factor_with_jitter(attempt, mean_diag, self.dtype, self.max_jitter, failure)
        if out.jitter > 0:
            warnings.warn(
                f"K_ZZ of the {Z.shape[0]} inducing points is not numerically positive definite ({out.first_error}); "
                f"added jitter {out.jitter:.3g} ({out.relative:.0e} x mean(diag K_ZZ)) to its diagonal, stored as "
                "jitter_. Fewer or more spread-out inducing points avoid it.", NumericalWarning, stacklevel=3)
        return out.jitter, out.value

    def _refit(self):
        """Refactor at the current theta (jitter policy afresh)."""
        with self._lock:
            core = self._core
            old = core.theta
            core.theta = list(self.theta)
            try:
                self.jitter_, self.log_marginal_likelihood_ = self._factorize(core, np.array(core.inducing_points))
            except BaseException:
                core.theta = old
                raise

    # ------------------------------------------------------------ the bound
    def log_marginal_likelihood(self, theta=None, eval_gradient=False, inducing_points=None,
                                return_inducing_gradient=False):
        """Titsias' collapsed bound F (a lower bound of the log marginal likelihood) and its gradient.

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None
            Where to evaluate (None: the model's); the model is not changed.
        eval_gradient : bool, default=False
        inducing_points : array-like of shape (M, n_features) or None
            Z to evaluate at (None: the model's), same M.
        return_inducing_gradient : bool, default=False
            With `eval_gradient`, also return dF/dZ.

        Returns
        -------
        float, or (float, ndarray of shape (n_params,)) with `eval_gradient`, or
        (float, ndarray (n_params,), ndarray (M, n_features)) with `return_inducing_gradient`.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        NotPositiveDefiniteError
            If K_ZZ (plus ``jitter_``) is not positive definite there.
        """
        self._require_fit("log_marginal_likelihood")
        core = self._core
        if theta is None and inducing_points is None and not eval_gradient:
            return float(self.log_marginal_likelihood_)
        theta = self.theta if theta is None else check_theta(theta, self.n_params)
        Z = None
        if inducing_points is not None:
            Z = self._check_Z(inducing_points, core.n, core.d)
            if Z.shape[0] != core.m:
                raise ValueError(f"inducing_points must have {core.m} rows (as the model's); got {Z.shape[0]}")
        out = core.bound(list(theta), Z, bool(eval_gradient))
        if not eval_gradient:
            return float(out)
        F, gt, gz = out
        if return_inducing_gradient:
            return float(F), np.asarray(gt), np.asarray(gz)
        return float(F), np.asarray(gt)

    # --------------------------------------------------------------- optimize
    def optimize(self, method="L-BFGS-B", max_iter=100, trainable=None, learn_inducing_points=True, progress=False,
                 lr=0.05, callback=None):
        """Maximize the bound over theta and (with `learn_inducing_points`) Z.

        Parameters
        ----------
        method : {"L-BFGS-B", "adam"}, default="L-BFGS-B"
        max_iter : int, default=100
        trainable : array-like of bool, shape (n_params,), or None
            Which entries of theta to optimize (None: the kernel's mask, and the noise).
        learn_inducing_points : bool, default=True
        progress : bool, default=False
        lr : float, default=0.05
            Adam's learning rate.
        callback : callable or None
            ``callback(iteration, loss)``, loss = -bound.

        Returns
        -------
        OptimizationResult
            ``theta`` holds the full vector [theta, Z.ravel()]. The model is left at the best
            point found and refitted; an interrupted or failed run leaves it unchanged.
        """
        self._require_fit("optimize")
        max_iter = check_positive_int(max_iter, "max_iter", allow_none=False)
        core = self._core
        npar, M, d = self.n_params, core.m, core.d
        mask_t = self._trainable_mask(trainable)
        mask = np.concatenate([mask_t, np.full(M * d, bool(learn_inducing_points))])
        method_key = str(method).lower()
        if method_key not in ("l-bfgs-b", "lbfgsb", "fmin_l_bfgs_b", "adam"):
            raise ValueError(f"method must be 'L-BFGS-B' or 'adam'; got {method!r}")
        if method_key == "adam":
            lr = check_positive(lr, "lr")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None; got {callback!r}")
        nlo, nhi = noise_variance_bounds(self._y)
        bounds = np.full((npar + M * d, 2), (-np.inf, np.inf))
        bounds[:npar - 1] = np.clip(self.kernel.bounds, -THETA_MAX, THETA_MAX)
        bounds[npar - 1] = np.log([nlo, nhi])
        x0 = np.concatenate([self.theta, np.asarray(core.inducing_points).ravel()])
        x0[:npar] = np.clip(x0[:npar], bounds[:npar, 0], bounds[:npar, 1])

        def fun(x, eval_gradient=True):
            theta, Z = x[:npar], x[npar:].reshape(M, d)
            if np.any(np.abs(theta) > THETA_MAX):
                return (np.nan, np.full(x.size, np.nan)) if eval_gradient else np.nan
            out = core.bound(list(theta), Z, bool(eval_gradient))
            if not eval_gradient:
                return float(out)
            F, gt, gz = out
            return float(F), np.concatenate([gt, np.asarray(gz).ravel()])

        objective = Objective(fun, x0, mask, maximize=True)
        if not mask.any():
            return OptimizationResult(theta=x0, log_marginal_likelihood=self.log_marginal_likelihood(), n_iter=0,
                                      converged=True, message="nothing to optimize")
        with Progress(progress, max_iter) as bar:
            if method_key == "adam":
                result = minimize_adam(objective, bounds, max_iter, lr=lr, progress=bar, callback=callback)
            else:
                result = minimize_lbfgsb(objective, bounds, max_iter, progress=bar, callback=callback, scale=None)
        self._apply(result.theta[:npar], result.theta[npar:].reshape(M, d))
        return result

    def _apply(self, theta, Z):
        with self._lock:
            core = self._core
            old_theta, old_Z, old_kernel, old_noise = core.theta, core.inducing_points, self.kernel, self.noise_variance
            try:
                self.kernel = self.kernel.with_theta(theta[:-1])
                self.noise_variance = float(np.exp(theta[-1]))
                core.inducing_points = np.ascontiguousarray(Z)
                self._refit()
            except BaseException:
                self.kernel, self.noise_variance = old_kernel, old_noise
                core.theta, core.inducing_points = old_theta, old_Z
                core.fit()
                raise

    # ---------------------------------------------------------------- predict
    def predict(self, X, return_std=False, return_cov=False, include_noise=False):
        """Predictive mean (and std or covariance) of the latent f (with `include_noise`: of y).

        ``mean = K_*Z a``, ``var = k(x, x) - |L^{-1} k_*|^2 + |L_B^{-1} L^{-1} k_*|^2``
        (``cpp/include/gprat/gp/sgpr.hpp``); ``include_noise`` adds noise_variance.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std, return_cov : bool, default=False
            At most one of them.
        include_noise : bool, default=False

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        std : ndarray of shape (n_samples,), with `return_std`
        cov : ndarray of shape (n_samples, n_samples), with `return_cov`
        """
        self._require_fit("predict")
        self._check_predict_flags(return_std, return_cov)
        X = as_matrix(X, "X", self.dtype, n_features=self._core.d)
        if return_cov:
            check_fits(X.shape[0] ** 2 * 16, f"a {X.shape[0]} x {X.shape[0]} predictive covariance")
        mean, var, cov = self._core.predict(X, bool(return_std), bool(return_cov), bool(include_noise))
        return self._predict_result(mean, var, cov, return_std, return_cov)

    def optimal_q(self):
        """Titsias' optimal q(u) = N(mean, cov) over u = f(Z) at the fitted parameters.

        Returns
        -------
        mean : ndarray of shape (M,)
        cov : ndarray of shape (M, M)
        """
        self._require_fit("optimal_q")
        return self._core.optimal_q()

    def __repr__(self):
        return (f"SGPR({self.kernel!r}, noise_variance={self.noise_variance:.4g}, "
                f"inducing_points={self._repr_inducing()}, "
                f"tile_size={self.tile_size}, dtype={np.dtype(self.dtype).name})")
