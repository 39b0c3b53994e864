"""scikit-learn estimator face of gprat: :class:`GaussianProcessRegressor`.

The estimator has scikit-learn's signature and semantics and runs on gprat's tiled exact-GP
engine (:class:`gprat.ExactGP`). Any tree of RBF, Matern (nu 0.5, 1.5, 2.5),
RationalQuadratic, ExpSineSquared, DotProduct, ConstantKernel and WhiteKernel under Sum and
Product runs there, converted once per fit (:class:`gprat.kernels.sklearn.EngineKernel`)::

    each node                     -> the engine node of the same kernel (C * RBF/Matern: one leaf
                                     with signal_variance=C)
    alpha (scalar or per sample)  -> the engine's fixed per-sample noise
    WhiteKernel addend of the root -> the engine's learned noise (fixed bounds: added to alpha)

and scikit-learn's ``theta`` (log of the free hyperparameters, in the kernel's own order)
maps onto the engine's ``theta`` (log of its parameters, in its order, then the noise) by an
index map; fixed hyperparameters keep their values. Several targets are several outputs of
one engine.

This module imports scikit-learn, an optional dependency of gprat.
"""

import copy
import warnings

import numpy as np
import scipy.linalg
import scipy.optimize
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.utils import check_random_state

try:
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # scikit-learn < 1.6

    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)


from ._memory import check_fits
from .exceptions import NotPositiveDefiniteError
from .kernels import sklearn as _skk
from ._validation import ThetaRangeError, check_int
from .models.exact import ExactGP, InputScaleError
from .optim.lbfgsb import lbfgsb_with_failed_points

__all__ = ["GaussianProcessRegressor"]


def _not_positive_definite(kernel, cause):
    """The error ``fit`` raises when K + alpha I cannot be factored (scikit-learn's advice)."""
    return NotPositiveDefiniteError(
        f"The kernel, {kernel}, is not returning a positive definite matrix "
        f"({cause}). Try gradually increasing the 'alpha' parameter of your "
        "GaussianProcessRegressor estimator.",
        getattr(cause, "order", None),
    )


class _EngineModel:
    """A fitted estimator's engine side: ONE :class:`ExactGP` for all targets, and the theta map.

    The targets are the engine's outputs (one kernel, one factor, one training step; the log
    marginal likelihood is the sum over targets, as in scikit-learn). The kernel tree is
    converted once (:class:`gprat.kernels.sklearn.EngineKernel`): ``alpha`` (scalar or per
    sample) and the fixed WhiteKernels of the root sum are the engine's fixed per-sample
    noise; a free WhiteKernel of the root sum is its learned noise, so the engine's noise
    entry is ``log(noise_level)`` itself and needs no chain rule. With neither, the engine's
    theta has no noise entry (``alpha=0`` is a zero noise; as in scikit-learn there is no
    jitter).

    Parameters
    ----------
    kernel : sklearn.gaussian_process.kernels.Kernel
        An accepted kernel tree; its structure and fixed hyperparameters are read once.
    alpha : float or ndarray of shape (n_samples,)
        Value(s) added to the diagonal of K.
    X : ndarray of shape (n_samples, n_features)
    Y : ndarray of shape (n_samples, n_targets)
    tile_size : int or None
    """

    def __init__(self, kernel, alpha, X, Y, tile_size):
        self.alpha = alpha
        self.X, self.Y, self.tile_size = X, Y, tile_size
        converted = _skk.EngineKernel(kernel, X.shape[1])
        # engine theta index of each entry of the kernel's theta (one-to-one), built once
        self.theta_index = converted.theta_index
        self.learned_white = converted.learned_noise is not None
        self.n_dims = int(kernel.n_dims)
        self.gp = None
        self.white_noise = 0.0
        self.set_kernel(kernel, converted)

    def set_kernel(self, kernel, converted=None):
        """Take hyperparameter values from ``kernel`` (same structure) and fit the engine.

        Raises
        ------
        NotPositiveDefiniteError
            If K + alpha I (+ WhiteKernel) is not positive definite.
        """
        if converted is None:
            converted = _skk.EngineKernel(kernel, self.X.shape[1])
        learned = converted.learned_noise
        # the noise scikit-learn's kernel_.diag adds at new points: the root sum's WhiteKernels
        self.white_noise = converted.fixed_noise + (0.0 if learned is None else learned)
        n, n_targets = self.Y.shape
        # The estimator's fit keeps the previous fit's model until it succeeds; the factor at
        # this model's previous hyperparameters is not needed any more.
        self.gp = None
        check_fits(
            ExactGP.fit_bytes(n, self.tile_size, n_outputs=n_targets),
            f"fitting {n_targets} target(s) on n={n} samples",
        )
        fixed = np.broadcast_to(np.asarray(self.alpha, dtype=np.float64), (n,))
        self.fixed_white = converted.fixed_noise
        fixed = fixed + converted.fixed_noise  # a fixed WhiteKernel is a fixed noise
        # No automatic jitter: as in scikit-learn, alpha is the user's jitter.
        gp = ExactGP(
            converted.kernel,
            noise_variance=np.array(fixed, dtype=np.float64),
            learned_noise=learned,
            tile_size=self.tile_size,
            max_jitter=0.0,
        )
        try:
            gp.fit(self.X, self.Y if n_targets > 1 else self.Y[:, 0])
        except np.linalg.LinAlgError as exc:
            raise _not_positive_definite(kernel, exc) from exc
        self.gp = gp
        self.base_theta = np.array(gp.theta, dtype=np.float64)

    def engine_theta(self, theta):
        """The engine's theta for the kernel theta ``theta`` (fixed values from the kernel)."""
        engine_theta = self.base_theta.copy()
        engine_theta[self.theta_index] = theta
        return engine_theta

    def log_marginal_likelihood(self, theta, eval_gradient=False):
        """LML summed over targets at kernel theta ``theta`` (and its gradient), one training step.

        Returns ``-inf`` (and a zero gradient) where K is not positive definite, as
        scikit-learn does.
        """
        engine_theta = self.engine_theta(theta)
        try:
            if not eval_gradient:
                return float(self.gp.log_marginal_likelihood(engine_theta))
            value, engine_gradient = self.gp.log_marginal_likelihood(engine_theta, eval_gradient=True)
        except (NotPositiveDefiniteError, ThetaRangeError, InputScaleError, FloatingPointError):
            # K not positive definite, theta beyond the representable range, or overflowing inputs:
            # the likelihood is -inf there, as in scikit-learn. Any other error propagates.
            return (-np.inf, np.zeros_like(theta)) if eval_gradient else -np.inf
        # d LML / d theta_i = d LML / d engine_theta[theta_index[i]]: the same log-parameter
        return float(value), np.asarray(engine_gradient, dtype=np.float64)[self.theta_index]

    def grown(self, X, Y, alpha, in_place):
        """This model with the rows X, Y (per-sample alpha, or the scalar one) added by the
        engine's block update: itself (in_place) or a copy with its own engine."""
        noise = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (X.shape[0],)) + self.fixed_white
        target = Y if Y.shape[1] > 1 else Y[:, 0]
        model = self if in_place else copy.copy(self)
        if in_place:
            self.gp.add_observations(X, target, noise_variance=noise)
        else:
            model.gp = self.gp.condition_on(X, target, noise_variance=noise)
        grown_alpha = alpha if np.ndim(alpha) == 0 else np.concatenate([np.broadcast_to(self.alpha, (self.Y.shape[0],)), alpha])
        model.X, model.Y, model.alpha = model.gp.X_train_, np.vstack([self.Y, Y]), grown_alpha
        return model

    def fitted_log_marginal_likelihood(self):
        """LML summed over targets at the fitted hyperparameters."""
        return float(self.gp.log_marginal_likelihood())

    def predict(self, X, return_std, return_cov):
        """Latent mean per target, plus the variance or covariance including WhiteKernel noise.

        Returns
        -------
        mean : ndarray of shape (n_queries, n_targets)
        spread : None, ndarray of shape (n_queries,) (variance) or (n_queries, n_queries)
        """
        spread = None
        if return_cov:
            mean, cov = self.gp.predict(X, return_cov=True)
            spread = np.array(cov, dtype=np.float64)
            spread[np.diag_indices_from(spread)] += self.white_noise
        elif return_std:
            mean, std = self.gp.predict(X, return_std=True)
            spread = np.square(np.asarray(std, dtype=np.float64)) + self.white_noise  # the engine clamps var >= 0
        else:
            mean = self.gp.predict(X)
        return np.asarray(mean, dtype=np.float64).reshape(X.shape[0], -1), spread

    def cholesky_factor(self):
        """Dense lower Cholesky factor of K + noise_variance I, ndarray of shape (n, n)."""
        return np.asarray(self.gp.cholesky_factor())


def _check_alpha(alpha, n_samples):
    """scikit-learn's ``alpha`` as a float (engine) or an ndarray of shape (n_samples,)."""
    if isinstance(alpha, (bool, np.bool_)):
        raise TypeError(f"alpha must be a number or an array of numbers; got {alpha!r}.")
    try:
        values = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"alpha must be a non-negative number or an array of shape (n_samples,); got {alpha!r}."
        ) from None
    if values.ndim > 1:
        raise ValueError(
            f"alpha must be a scalar or an array of shape (n_samples,); got shape {values.shape}."
        )
    if values.ndim == 1 and values.shape[0] not in (1, n_samples):
        raise ValueError(
            "alpha must be a scalar or an array with same number of entries as y. "
            f"({values.shape[0]} != {n_samples})"
        )
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"alpha must be finite and >= 0; got {alpha!r}.")
    if values.ndim == 0 or np.all(values == values.flat[0]):
        return float(values.flat[0])
    return values


def _refuse_bool_and_strings(data, name):
    """scikit-learn converts booleans and numeric strings silently; gprat refuses them.

    Object arrays of numbers stay accepted, as scikit-learn's estimator checks require.
    """
    dtype = getattr(data, "dtype", None)
    if dtype is None and isinstance(data, (list, tuple)):
        try:
            dtype = np.asarray(data).dtype
        except (TypeError, ValueError):
            return  # scikit-learn's validation reports it
    kind = getattr(dtype, "kind", None)
    if kind == "b":
        raise TypeError(
            f"{name} must hold real numbers; got a boolean array (convert it explicitly, e.g. "
            f"{name}.astype(float))."
        )
    if kind in ("U", "S"):
        raise TypeError(f"{name} must hold real numbers; got strings (dtype {dtype}).")


def _check_kernel_values(kernel):
    """Hyperparameter values > 0 and finite; bounds of free ones >= 0 with low <= high.

    A lower bound of 0 is scikit-learn's "no lower bound" (log bound -inf). The message names
    the node's place in the tree and the hyperparameter (``kernel.k1.k2: ExpSineSquared.periodicity``).
    """
    _skk.check_kernel(kernel)
    for path, leaf in _skk.walk(kernel):
        if hasattr(leaf, "k1"):  # Sum, Product: their hyperparameters are the leaves'
            continue
        for hyperparameter in leaf.hyperparameters:
            name = f"{path}: {type(leaf).__name__}.{hyperparameter.name}"
            try:
                value = np.asarray(getattr(leaf, hyperparameter.name), dtype=np.float64)
            except (TypeError, ValueError):
                raise TypeError(
                    f"{name} must be a positive number; got {getattr(leaf, hyperparameter.name)!r}."
                ) from None
            if value.size == 0 or not np.all(np.isfinite(value)) or np.any(value <= 0):
                raise ValueError(f"{name} must be positive and finite; got {value.tolist()}.")
            if hyperparameter.fixed:
                continue
            try:
                bounds = np.asarray(hyperparameter.bounds, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{name}: bounds must be a pair of positive numbers or 'fixed'; "
                    f"got {hyperparameter.bounds!r}."
                ) from None
            if bounds.shape[-1:] != (2,) or np.any(np.isnan(bounds)) or np.any(bounds < 0):
                raise ValueError(
                    f"{name}: bounds must be pairs (low, high) of numbers >= 0 (0: no lower bound), "
                    "or 'fixed'; "
                    f"got {np.asarray(hyperparameter.bounds).tolist()}."
                )
            if np.any(bounds[..., 0] > bounds[..., 1]):
                raise ValueError(f"{name}: the lower bound exceeds the upper bound; got {bounds.tolist()}.")


def _param_int(value, name, minimum, allow_none=False):
    """The shared integer check, with scikit-learn's convention: an invalid parameter is a ValueError."""
    try:
        return check_int(value, name, minimum, allow_none)
    except TypeError as err:
        raise ValueError(str(err)) from None


class GaussianProcessRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Gaussian process regression (R&W Alg. 2.1) on gprat's tiled exact-GP engine.

    A drop-in for :class:`sklearn.gaussian_process.GaussianProcessRegressor`: same
    parameters, methods, fitted attributes and results (to rounding), for the kernels gprat
    computes.

    Parameters
    ----------
    kernel : kernel object, default=None
        Any tree of ``RBF``, ``Matern`` (nu 0.5, 1.5 or 2.5), ``RationalQuadratic``,
        ``ExpSineSquared``, ``DotProduct``, ``ConstantKernel`` and ``WhiteKernel`` combined
        by ``+`` and ``*``, from :mod:`gprat.kernels.sklearn` or
        :mod:`sklearn.gaussian_process.kernels`; anything else is refused at ``fit``. None means
        ``ConstantKernel(1.0) * RBF(1.0)``. The hyperparameters are optimized during
        fitting unless their bounds are "fixed".
    alpha : float or ndarray of shape (n_samples,), default=1e-10
        Value added to the diagonal of the kernel matrix during fitting: the variance of
        additional Gaussian measurement noise on the training targets, not optimized.
        A per-sample array with unequal entries runs on a dense NumPy path (see Notes).
    optimizer : "fmin_l_bfgs_b", callable or None, default="fmin_l_bfgs_b"
        How to maximize the log-marginal likelihood. A callable is called as
        ``theta_opt, func_min = optimizer(obj_func, initial_theta, bounds=bounds)`` where
        ``obj_func(theta, eval_gradient=True)`` returns the negative log-marginal
        likelihood (and its gradient). None keeps the kernel's hyperparameters.
    n_restarts_optimizer : int, default=0
        Extra optimizer runs from initial theta drawn log-uniformly within the bounds
        (which must then be finite).
    normalize_y : bool, default=False
        Subtract the mean and divide by the standard deviation of each target before
        fitting; predictions are transformed back.
    copy_X_train : bool, default=True
        Store copies of the training data in ``X_train_`` and ``y_train_``.
    n_targets : int or None, default=None
        Number of targets; used by ``predict`` and ``sample_y`` before ``fit``, and checked
        against ``y`` in ``fit``.
    random_state : int, RandomState instance or None, default=None
        Draws the initial theta of the optimizer restarts.
    tile_size : int or None, default=None
        Rows per tile in the engine (tuning only; results do not depend on it).

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs.
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        Training targets (normalized when ``normalize_y``).
    kernel_ : kernel object
        The kernel with the optimized hyperparameters.
    L_ : ndarray of shape (n_samples, n_samples)
        Lower Cholesky factor of ``kernel_(X_train_) + alpha I``; computed from the
        engine's factor on first access.
    alpha_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        ``K^{-1} y_train_``; computed on first access.
    log_marginal_likelihood_value_ : float
        Log-marginal likelihood of ``kernel_.theta`` (summed over targets).
    n_features_in_ : int
        Number of features seen during ``fit``.

    Notes
    -----
    * Several targets share the kernel, as in scikit-learn: the log-marginal likelihood
      and its gradient are sums over targets. The engine takes one target per model, so
      each target gets its own engine model; a likelihood step costs ``n_targets`` engine
      steps and memory holds ``n_targets`` factors.
    * The engine's noise variance is a single number (``alpha`` plus the WhiteKernel's
      ``noise_level``). An ``alpha`` array with unequal entries cannot be expressed that
      way, and neither can a noise variance of exactly 0 (``alpha=0`` without a
      WhiteKernel; the engine keeps the noise positive), so such models are computed exactly
      on a dense NumPy/SciPy path (scikit-learn's algorithm on the same kernel objects)
      instead of the tiled engine; an array of equal entries runs on the engine.
    * Predicted standard deviations and covariances include the WhiteKernel noise but not
      ``alpha``, as in scikit-learn.
    * Pickles hold the hyperparameters and training data, not the factor; an unpickled
      model refactors on first use.
    * No automatic jitter, as in scikit-learn: ``alpha`` is what is added to the diagonal.
      When ``kernel_(X) + alpha I`` is not positive definite, ``fit`` raises
      :class:`gprat.NotPositiveDefiniteError` (a ``numpy.linalg.LinAlgError``) advising a
      larger ``alpha``, and ``log_marginal_likelihood`` returns ``-inf``; the L-BFGS-B
      optimizer backs off from such points (it sees a large finite value, never inf or NaN).
      :class:`gprat.ExactGP` adds jitter by itself instead (its ``max_jitter``).
    * Input is validated as in scikit-learn, and more strictly: boolean and string arrays
      are refused (TypeError; object arrays of numbers are converted, as scikit-learn's
      checks require), hyperparameter values must be positive and finite and the bounds of
      free hyperparameters non-negative (0 meaning no lower bound, as in scikit-learn). A
      problem whose factors would not fit in memory is refused with MemoryError before
      anything is allocated, and a fit that fails or is interrupted leaves the estimator as
      it was.

    Examples
    --------
    >>> import numpy as np
    >>> from gprat import GaussianProcessRegressor
    >>> from gprat.kernels import ConstantKernel, RBF, WhiteKernel
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 5, size=(40, 1))
    >>> y = np.sin(X[:, 0]) + 0.05 * rng.standard_normal(40)
    >>> kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.01)
    >>> gpr = GaussianProcessRegressor(kernel, random_state=0).fit(X, y)
    >>> mean, std = gpr.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    def __init__(
        self,
        kernel=None,
        *,
        alpha=1e-10,
        optimizer="fmin_l_bfgs_b",
        n_restarts_optimizer=0,
        normalize_y=False,
        copy_X_train=True,
        n_targets=None,
        random_state=None,
        tile_size=None,
    ):
        self.kernel = kernel
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.copy_X_train = copy_X_train
        self.n_targets = n_targets
        self.random_state = random_state
        self.tile_size = tile_size

    def _check_params(self):
        from sklearn.gaussian_process.kernels import Kernel

        if self.kernel is not None and not isinstance(self.kernel, Kernel):
            raise TypeError(
                f"kernel must be None or a kernel object; got {type(self.kernel).__name__}."
            )
        if not (
            self.optimizer is None or self.optimizer == "fmin_l_bfgs_b" or callable(self.optimizer)
        ):
            raise ValueError(
                f"optimizer must be 'fmin_l_bfgs_b', a callable or None; got {self.optimizer!r}."
            )
        _param_int(self.n_restarts_optimizer, "n_restarts_optimizer", 0)
        for name in ("normalize_y", "copy_X_train"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool; got {getattr(self, name)!r}.")
        _param_int(self.n_targets, "n_targets", 1, allow_none=True)
        _param_int(self.tile_size, "tile_size", 1, allow_none=True)

    def fit(self, X, y):
        """Fit the Gaussian process regression model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        Returns
        -------
        self : GaussianProcessRegressor
            The fitted estimator.

        Raises
        ------
        ValueError
            If the kernel is not an accepted tree (the message names the node), a
            hyperparameter value or bound is invalid (it names the hyperparameter), or
            another argument is invalid.
        NotPositiveDefiniteError
            If ``kernel_(X) + alpha I`` is not positive definite at the final
            hyperparameters (a ``numpy.linalg.LinAlgError``).
        MemoryError
            If the factors would not fit in memory (checked before allocating them).

        Notes
        -----
        A fit that fails or is interrupted (KeyboardInterrupt) leaves the estimator as it
        was: a previously fitted model stays fitted and usable.
        """
        saved = dict(self.__dict__)
        try:
            return self._fit(X, y)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit(self, X, y):
        self._check_params()
        if self.kernel is None:
            self.kernel_ = _skk.ConstantKernel(1.0) * _skk.RBF(1.0)
        else:
            self.kernel_ = clone(self.kernel)
        _check_kernel_values(self.kernel_)
        self._rng = check_random_state(self.random_state)
        _refuse_bool_and_strings(X, "X")
        _refuse_bool_and_strings(y, "y")
        X, y = _validate_data(
            self, X, y, multi_output=True, y_numeric=True, ensure_2d=True, dtype=np.float64
        )
        n_targets_seen = y.shape[1] if y.ndim > 1 else 1
        if self.n_targets is not None and n_targets_seen != self.n_targets:
            raise ValueError(
                "The number of targets seen in `y` is different from the parameter "
                f"`n_targets`. Got {n_targets_seen} != {self.n_targets}."
            )
        if self.normalize_y:
            self._y_train_mean = np.mean(y, axis=0)
            std = np.atleast_1d(np.std(y, axis=0))
            std[std < 10 * np.finfo(std.dtype).eps] = 1.0  # constant targets keep scale 1
            self._y_train_std = std if y.ndim > 1 else std[0]
            y = (y - self._y_train_mean) / self._y_train_std
        else:
            shape = (y.shape[1],) if y.ndim == 2 else 1
            self._y_train_mean = np.zeros(shape=shape)
            self._y_train_std = np.ones(shape=shape)
        self._alpha = _check_alpha(self.alpha, X.shape[0])
        self.X_train_ = np.copy(X) if self.copy_X_train else X
        self.y_train_ = np.copy(y) if self.copy_X_train else y
        self.__dict__.pop("_cache", None)
        self._model = self._make_model()

        if self.optimizer is not None and self.kernel_.n_dims > 0:

            def obj_func(theta, eval_gradient=True):
                if eval_gradient:
                    lml, grad = self.log_marginal_likelihood(
                        theta, eval_gradient=True, clone_kernel=False
                    )
                    return -lml, -grad
                return -self.log_marginal_likelihood(theta, clone_kernel=False)

            optima = [
                self._constrained_optimization(obj_func, self.kernel_.theta, self.kernel_.bounds)
            ]
            if self.n_restarts_optimizer > 0:
                bounds = self.kernel_.bounds
                if not np.isfinite(bounds).all():
                    raise ValueError(
                        "Multiple optimizer restarts (n_restarts_optimizer>0) "
                        "requires that all bounds are finite."
                    )
                for _ in range(self.n_restarts_optimizer):
                    theta_initial = self._rng.uniform(bounds[:, 0], bounds[:, 1])
                    optima.append(self._constrained_optimization(obj_func, theta_initial, bounds))
            values = [value for _, value in optima]
            self.kernel_.theta = optima[int(np.argmin(values))][0]
            if hasattr(self.kernel_, "_check_bounds_params"):
                self.kernel_._check_bounds_params()
            self._model.set_kernel(self.kernel_)
            self.log_marginal_likelihood_value_ = -float(np.min(values))
        else:
            self.log_marginal_likelihood_value_ = self._model.fitted_log_marginal_likelihood()
        return self

    def add_observations(self, X, y, alpha=None):
        """Add training points at the fitted hyperparameters, without refitting.

        The engine extends its Cholesky factor by a block update (O(n^2 k) for k points instead
        of O(n^3), see :meth:`gprat.ExactGP.add_observations`); ``kernel_`` does not change. The
        result equals ``fit`` on the combined data with ``optimizer=None`` and ``kernel_`` as the
        kernel, to rounding. With ``normalize_y``, the new targets are normalized with the mean
        and standard deviation of the first fit (the hyperparameters refer to them).

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)
        y : array-like of shape (n_new,) or (n_new, n_targets)
        alpha : array-like of shape (n_new,) or None, default=None
            The new points' values added to the diagonal, required when ``alpha`` was an array at
            fit; None otherwise (the scalar ``alpha`` applies).

        Returns
        -------
        self : GaussianProcessRegressor
            ``X_train_``, ``y_train_`` and ``log_marginal_likelihood_value_`` (now the value of the
            grown data at ``kernel_``) include the new points.

        Raises
        ------
        ValueError
            For unusable X, y or alpha (another feature or target count, NaN...); the estimator is
            then unchanged.
        """
        grown = self._grown(X, y, alpha, in_place=True)
        self.__dict__.update(grown)
        return self

    def condition_on(self, X, y, alpha=None):
        """A new fitted estimator with more training points (a "fantasy" model); this one is unchanged.

        Parameters and the update are those of :meth:`add_observations`.

        Returns
        -------
        GaussianProcessRegressor
        """
        grown = self._grown(X, y, alpha, in_place=False)
        model = copy.copy(self)
        model.__dict__.pop("_cache", None)
        model.kernel_ = clone(self.kernel_)
        model.__dict__.update(grown)
        return model

    def _grown(self, X, y, alpha, in_place):
        """The fitted attributes after adding (X, y): checks first, then one engine update."""
        self._check_fitted()
        _refuse_bool_and_strings(X, "X")
        _refuse_bool_and_strings(y, "y")
        X, y = _validate_data(self, X, y, multi_output=True, y_numeric=True, ensure_2d=True, dtype=np.float64,
                              reset=False)
        targets = 1 if self.y_train_.ndim == 1 else self.y_train_.shape[1]
        y = y.reshape(y.shape[0], -1)
        if y.shape[1] != targets:
            raise ValueError(f"y must have {targets} target(s) as at fit; got shape {y.shape}")
        y = (y - np.reshape(self._y_train_mean, (1, -1))) / np.reshape(self._y_train_std, (1, -1))
        if np.ndim(self._alpha) == 0:
            if alpha is not None:
                raise ValueError(f"alpha for new points needs an array alpha at fit; this estimator was fitted with "
                                 f"alpha={self._alpha!r}, which applies to the new points: pass None")
            new_alpha = self._alpha
        else:
            if alpha is None:
                raise ValueError(f"alpha was an array at fit: give alpha for the {X.shape[0]} new point(s)")
            new_alpha = _check_alpha(np.atleast_1d(alpha), X.shape[0])
            new_alpha = np.array(np.broadcast_to(new_alpha, (X.shape[0],)), dtype=np.float64)
        model = self._get_model().grown(X, y, new_alpha, in_place)
        y_train = np.vstack([self.y_train_.reshape(self.y_train_.shape[0], -1), y])
        return {
            "_model": model,
            "X_train_": np.vstack([self.X_train_, X]),
            "y_train_": y_train if self.y_train_.ndim == 2 else y_train[:, 0],
            "_alpha": model.alpha,
            "log_marginal_likelihood_value_": model.fitted_log_marginal_likelihood(),
            "_cache": {},
        }

    def _make_model(self):
        Y = self.y_train_.reshape(self.y_train_.shape[0], -1)
        return _EngineModel(self.kernel_, self._alpha, self.X_train_, Y, self.tile_size)

    def _get_model(self):
        """The fitted model, rebuilt from the fitted attributes after unpickling."""
        model = self.__dict__.get("_model")
        if model is None:
            model = self._make_model()
            self._model = model
        return model

    def _constrained_optimization(self, obj_func, initial_theta, bounds):
        if self.optimizer == "fmin_l_bfgs_b":
            # A theta where K is not positive definite has LML -inf: the shared L-BFGS-B driver
            # reports a large finite value there so that its line search backs off (the value
            # returned for such a point stays inf).
            def finite_obj_func(theta):
                value, grad = obj_func(theta, eval_gradient=True)
                return (value, grad) if np.isfinite(value) and np.all(np.isfinite(grad)) else None

            result = lbfgsb_with_failed_points(finite_obj_func, initial_theta, bounds, max_iter=15000)
            if not result.success:
                warnings.warn(
                    f"lbfgs failed to converge (status={result.status}): {result.message}. "
                    "Increase the number of restarts or rescale the data.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            return result.x, (np.inf if result.ended_on_failed_point else result.fun)
        if callable(self.optimizer):
            theta_opt, func_min = self.optimizer(obj_func, initial_theta, bounds=bounds)
            theta_opt = np.asarray(theta_opt, dtype=np.float64)
            if theta_opt.shape != np.shape(initial_theta) or not np.all(np.isfinite(theta_opt)):
                raise ValueError(
                    "the optimizer callable must return (theta_opt, func_min) with a finite theta_opt "
                    f"of shape {np.shape(initial_theta)}; got theta_opt={theta_opt!r}."
                )
            return theta_opt, func_min
        raise ValueError(f"Unknown optimizer {self.optimizer}.")

    def _check_fitted(self):
        if not hasattr(self, "X_train_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def log_marginal_likelihood(self, theta=None, eval_gradient=False, clone_kernel=True):
        """Log-marginal likelihood of ``theta`` for the training data.

        Parameters
        ----------
        theta : array-like of shape (n_kernel_params,), default=None
            Log-transformed free hyperparameters, in the order of ``kernel_.theta``. None
            returns ``log_marginal_likelihood_value_``.
        eval_gradient : bool, default=False
            Also return the gradient with respect to ``theta`` (``theta`` must be given).
        clone_kernel : bool, default=True
            If False, ``kernel_.theta`` is set to ``theta`` (the fitted factor is unchanged).

        Returns
        -------
        log_likelihood : float
            Log-marginal likelihood, summed over targets; ``-inf`` where the kernel matrix
            is not positive definite.
        log_likelihood_gradient : ndarray of shape (n_kernel_params,), optional
            Its gradient with respect to ``theta``; only when ``eval_gradient`` is True.

        Raises
        ------
        ValueError
            If ``eval_gradient`` is True without ``theta``, or ``theta`` has the wrong shape.
        """
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            self._check_fitted()
            return self.log_marginal_likelihood_value_
        self._check_fitted()
        try:
            theta = np.asarray(theta, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"theta must be an array of numbers; got {theta!r}.") from None
        n_dims = self.kernel_.n_dims
        if theta.shape != (n_dims,):
            raise ValueError(
                f"theta must have shape ({n_dims},), one entry per free hyperparameter of "
                f"kernel_ {self.kernel_}; got shape {theta.shape}."
            )
        if not np.all(np.isfinite(theta)):
            raise ValueError(f"theta must be finite (log-hyperparameters); got {theta}.")
        if not clone_kernel:
            self.kernel_.theta = theta
        return self._get_model().log_marginal_likelihood(theta, eval_gradient)

    def predict(self, X, return_std=False, return_cov=False):
        """Predict with the Gaussian process (its prior when not fitted).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        return_std : bool, default=False
            Also return the standard deviation of the predictive distribution.
        return_cov : bool, default=False
            Also return the covariance of the joint predictive distribution.

        Returns
        -------
        y_mean : ndarray of shape (n_queries,) or (n_queries, n_targets)
            Predictive mean.
        y_std : ndarray of shape (n_queries,) or (n_queries, n_targets), optional
            Predictive standard deviation; only when ``return_std`` is True.
        y_cov : ndarray of shape (n_queries, n_queries) or (n_queries, n_queries, n_targets), optional
            Predictive covariance; only when ``return_cov`` is True.

        Raises
        ------
        RuntimeError
            If both ``return_std`` and ``return_cov`` are True.
        """
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        _refuse_bool_and_strings(X, "X")
        X = _validate_data(self, X, ensure_2d=True, dtype=np.float64, reset=False)

        if not hasattr(self, "X_train_"):
            kernel = self.kernel
            if kernel is None:
                kernel = _skk.ConstantKernel(1.0, constant_value_bounds="fixed") * _skk.RBF(
                    1.0, length_scale_bounds="fixed"
                )
            _skk.check_kernel(kernel)
            n_targets = self.n_targets if self.n_targets is not None else 1
            y_mean = np.zeros(shape=(X.shape[0], n_targets)).squeeze()
            if return_cov:
                y_cov = kernel(X)
                if n_targets > 1:
                    y_cov = np.repeat(np.expand_dims(y_cov, -1), repeats=n_targets, axis=-1)
                return y_mean, y_cov
            if return_std:
                y_var = kernel.diag(X)
                if n_targets > 1:
                    y_var = np.repeat(np.expand_dims(y_var, -1), repeats=n_targets, axis=-1)
                return y_mean, np.sqrt(y_var)
            return y_mean

        mean, spread = self._get_model().predict(X, return_std, return_cov)
        y_mean = self._y_train_std * mean + self._y_train_mean
        if y_mean.shape[1] == 1:
            y_mean = y_mean[:, 0]
        if return_cov:
            y_cov = np.outer(spread, self._y_train_std**2).reshape(*spread.shape, -1)
            if y_cov.shape[2] == 1:
                y_cov = y_cov[:, :, 0]
            return y_mean, y_cov
        if return_std:
            y_var = spread
            negative = ~(y_var >= 0)
            if np.any(negative):
                warnings.warn(
                    "Predicted variances smaller than 0. Setting those variances to 0.",
                    stacklevel=2,
                )
                y_var = np.where(negative, 0.0, y_var)
            y_var = np.outer(y_var, self._y_train_std**2).reshape(*y_var.shape, -1)
            if y_var.shape[1] == 1:
                y_var = y_var[:, 0]
            return y_mean, np.sqrt(y_var)
        return y_mean

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw samples from the Gaussian process at ``X``.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Query points.
        n_samples : int, default=1
            Number of samples per query point.
        random_state : int, RandomState instance or None, default=0
            Seed or generator of the draws.

        Returns
        -------
        y_samples : ndarray of shape (n_queries, n_samples) or (n_queries, n_targets, n_samples)
            The samples.
        """
        rng = check_random_state(random_state)
        y_mean, y_cov = self.predict(X, return_cov=True)
        if y_mean.ndim == 1:
            return rng.multivariate_normal(y_mean, y_cov, n_samples).T
        samples = [
            rng.multivariate_normal(y_mean[:, target], y_cov[..., target], n_samples).T[
                :, np.newaxis
            ]
            for target in range(y_mean.shape[1])
        ]
        return np.hstack(samples)

    @property
    def L_(self):
        """Lower Cholesky factor of ``kernel_(X_train_) + alpha I``, ndarray of shape (n, n)."""
        self._check_fitted()
        cache = self.__dict__.setdefault("_cache", {})
        if "L" not in cache:
            cache["L"] = self._get_model().cholesky_factor()
        return cache["L"]

    @property
    def alpha_(self):
        """``K^{-1} y_train_``, ndarray of shape (n_samples,) or (n_samples, n_targets)."""
        self._check_fitted()
        cache = self.__dict__.setdefault("_cache", {})
        if "alpha" not in cache:
            cache["alpha"] = scipy.linalg.cho_solve(
                (self.L_, True), self.y_train_, check_finite=False
            )
        return cache["alpha"]

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_model", None)
        state.pop("_cache", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"requires_fit": False}
