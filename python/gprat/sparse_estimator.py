"""scikit-learn estimator face of gprat's sparse GPs: :class:`SparseGaussianProcessRegressor`.

A separate class rather than an option of :class:`gprat.GaussianProcessRegressor`: the sparse
models have parameters the exact one has not (the inducing points, SVGP's minibatches) and
lack some it has (``alpha``, a fixed per-sample noise: the sparse models have one noise
variance, which a WhiteKernel gives; ``L_``, ``alpha_``, ``sample_y`` from the exact
posterior), so one class with both would read as two with ``if`` between them.

The kernel is converted as the exact estimator converts it
(:class:`gprat.kernels.sklearn.EngineKernel`), so the same kernel trees run here::

    each node of the tree                    -> the engine kernel node
    a free WhiteKernel addend of the root    -> the sparse model's learned noise_variance
    fixed WhiteKernels of the root           -> its noise_variance, held fixed (when there is
                                                no free one)

and ``kernel_.theta[i] = model.theta[theta_index[i]]`` (both logs of the same value).

This module imports scikit-learn, an optional dependency of gprat.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import NotFittedError

from .estimator import _check_kernel_values, _param_int, _refuse_bool_and_strings, _validate_data
from .kernels import sklearn as _skk
from .models.sgpr import SGPR
from .models.svgp import SVGP

__all__ = ["SparseGaussianProcessRegressor"]

_METHODS = ("sgpr", "svgp")


class SparseGaussianProcessRegressor(RegressorMixin, BaseEstimator):
    """Sparse GP regression (SGPR or SVGP) with scikit-learn's estimator interface.

    ``method="sgpr"`` maximizes Titsias' collapsed bound over the hyperparameters (and the
    inducing points) with L-BFGS-B (:class:`gprat.SGPR`); ``method="svgp"`` trains a
    stochastic variational GP on minibatches (:class:`gprat.SVGP`). Both cost O(n M^2) per
    pass over the data for M inducing points, never O(n^2) memory.

    Parameters
    ----------
    kernel : kernel object, default=None
        A tree the exact estimator accepts (:class:`gprat.GaussianProcessRegressor`). None
        means ``ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(1e-2)``: a sparse GP needs a
        noise variance, and a free WhiteKernel of the root sum is the one it learns.
    n_inducing : int or array-like of shape (M, n_features), default=64
        A count M: Z is chosen from the training inputs by k-means++ seeding, with M lowered to
        the number of distinct training rows when there are fewer (``n_inducing_`` holds the
        value used); an array: Z itself.
    method : {"sgpr", "svgp"}, default="sgpr"
    optimizer : "fmin_l_bfgs_b" or None, default="fmin_l_bfgs_b"
        SGPR: None keeps the hyperparameters and Z. SVGP: None trains only q (the
        hyperparameters and Z stay as given).
    max_iter : int, default=100
        SGPR's L-BFGS-B iterations.
    learn_inducing_points : bool, default=True
        Optimize Z with the hyperparameters.
    normalize_y : bool, default=False
        Subtract the mean of y and divide by its standard deviation before fitting.
    batch_size, epochs : int, default=1024, 10
        SVGP's minibatch size and number of passes.
    lr : float, default=0.01
        SVGP's Adam learning rate.
    random_state : None or int, default=None
        Seed of the inducing-point initialization (and of SVGP's minibatch order).
    tile_size : int or None, default=None
        SGPR's rows per task (tuning only).

    Attributes
    ----------
    kernel_ : kernel object
        The kernel at the fitted hyperparameters (the WhiteKernel holds the learned noise).
    model_ : gprat.SGPR or gprat.SVGP
        The fitted sparse model.
    inducing_points_ : ndarray of shape (``n_inducing_``, n_features)
    n_inducing_ : int
    n_iter_ : int
        SGPR: L-BFGS-B iterations; SVGP: minibatch steps.
    log_marginal_likelihood_value_ : float
        The bound (SGPR) or the ELBO (SVGP) on the training data at the fitted parameters.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from gprat import SparseGaussianProcessRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 5, size=(300, 1)); y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(300)
    >>> est = SparseGaussianProcessRegressor(n_inducing=16, random_state=0).fit(X, y)
    >>> mean, std = est.predict(X[:3], return_std=True)
    >>> mean.shape, std.shape
    ((3,), (3,))
    """

    def __init__(self, kernel=None, *, n_inducing=64, method="sgpr", optimizer="fmin_l_bfgs_b",
                 max_iter=100, learn_inducing_points=True, normalize_y=False, batch_size=1024, epochs=10, lr=0.01,
                 random_state=None, tile_size=None):
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.method = method
        self.optimizer = optimizer
        self.max_iter = max_iter
        self.learn_inducing_points = learn_inducing_points
        self.normalize_y = normalize_y
        self.batch_size = batch_size
        self.epochs = epochs
        self.lr = lr
        self.random_state = random_state
        self.tile_size = tile_size

    # ------------------------------------------------------------------ checks
    def _check_params(self):
        from sklearn.gaussian_process.kernels import Kernel

        if self.kernel is not None and not isinstance(self.kernel, Kernel):
            raise TypeError(f"kernel must be None or a kernel object; got {type(self.kernel).__name__}.")
        if self.method not in _METHODS:
            raise ValueError(f"method must be 'sgpr' or 'svgp'; got {self.method!r}.")
        if self.optimizer not in (None, "fmin_l_bfgs_b"):
            raise ValueError(f"optimizer must be 'fmin_l_bfgs_b' or None; got {self.optimizer!r}.")
        for name in ("normalize_y", "learn_inducing_points"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool; got {getattr(self, name)!r}.")
        _param_int(self.max_iter, "max_iter", 1)
        _param_int(self.batch_size, "batch_size", 1)
        _param_int(self.epochs, "epochs", 1)
        _param_int(self.tile_size, "tile_size", 1, allow_none=True)
        if isinstance(self.n_inducing, (bool, np.bool_)) or not (
                isinstance(self.n_inducing, numbers.Integral) or np.ndim(self.n_inducing) == 2):
            raise ValueError(f"n_inducing must be a positive int or an array of shape (M, n_features); got "
                             f"{self.n_inducing!r}.")
        if isinstance(self.n_inducing, numbers.Integral):
            _param_int(self.n_inducing, "n_inducing", 1)
        lr = self.lr
        if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real) or not (np.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive finite number; got {lr!r}.")

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    # --------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Fit the sparse GP: choose Z, then optimize (SGPR) or train (SVGP).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : SparseGaussianProcessRegressor

        Raises
        ------
        ValueError
            For an unaccepted kernel (the message names the node), a noise that is not
            positive (no WhiteKernel in the root sum), fixed and free WhiteKernels together,
            inducing points with another feature count, or invalid data or parameters.
        NotPositiveDefiniteError
            If K_ZZ is not positive definite even with the models' jitter.

        Notes
        -----
        A fit that fails or is interrupted (KeyboardInterrupt) leaves the estimator as it was.
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
        kernel = _skk.ConstantKernel(1.0) * _skk.RBF(1.0) + _skk.WhiteKernel(1e-2) if self.kernel is None \
            else clone(self.kernel)
        _check_kernel_values(kernel)
        _refuse_bool_and_strings(X, "X")
        _refuse_bool_and_strings(y, "y")
        X, y = _validate_data(self, X, y, y_numeric=True, ensure_2d=True, dtype=np.float64)
        if self.normalize_y:
            mean, std = float(np.mean(y)), float(np.std(y))
            self._y_mean, self._y_std = mean, (std if std >= 10 * np.finfo(float).eps else 1.0)
        else:
            self._y_mean, self._y_std = 0.0, 1.0
        target = (y - self._y_mean) / self._y_std
        converted = _skk.EngineKernel(kernel, X.shape[1])
        learned = converted.learned_noise is not None
        if learned and converted.fixed_noise > 0:
            raise ValueError("the kernel has WhiteKernels with fixed and with free bounds; a sparse GP has one noise "
                             "variance: keep one WhiteKernel in the root sum.")
        noise = converted.learned_noise if learned else converted.fixed_noise
        if not noise > 0:
            raise ValueError(f"a sparse GP needs a noise variance: add a WhiteKernel to the root sum of the kernel "
                             f"(noise_level_bounds='fixed' to keep it fixed); got {kernel}.")
        Z = self._inducing_spec(X)
        trainable = np.concatenate([converted.kernel.trainable, [learned]])
        if self.optimizer is None:
            trainable[:] = False
        learn_z = bool(self.learn_inducing_points) and self.optimizer is not None
        if self.method == "sgpr":
            model = SGPR(converted.kernel, noise_variance=noise, inducing_points=Z, tile_size=self.tile_size,
                         random_state=self.random_state).fit(X, target)
            n_iter = 0
            if trainable.any() or learn_z:
                n_iter = model.optimize(max_iter=int(self.max_iter), trainable=trainable,
                                        learn_inducing_points=learn_z).n_iter
            value = model.log_marginal_likelihood()
        else:
            model = SVGP(converted.kernel, noise_variance=noise, inducing_points=Z)
            model.fit(X, target, batch_size=int(self.batch_size), epochs=int(self.epochs), lr=float(self.lr),
                      random_state=self.random_state, trainable=trainable, learn_inducing_points=learn_z)
            n_iter = len(model.elbo_history_)
            value = model.log_marginal_likelihood()
        self.model_ = model
        self._theta_index = converted.theta_index
        self.n_iter_ = n_iter
        self.kernel_ = kernel
        if kernel.n_dims:
            self.kernel_.theta = np.asarray(model.theta)[self._theta_index]
        self.inducing_points_ = np.array(model.inducing_points_)
        self.n_inducing_ = self.inducing_points_.shape[0]
        self.log_marginal_likelihood_value_ = float(value)
        self.X_train_, self.y_train_ = X, target
        return self

    def _inducing_spec(self, X):
        """The count (at most the distinct rows of X) or the array, as the model takes it."""
        if isinstance(self.n_inducing, numbers.Integral):
            distinct = np.unique(X, axis=0).shape[0]
            return int(min(self.n_inducing, distinct))
        Z = np.asarray(self.n_inducing, dtype=np.float64)
        if Z.shape[1] != X.shape[1]:
            raise ValueError(f"n_inducing, an array of inducing points, must have {X.shape[1]} columns (the features "
                             f"of X); got shape {Z.shape}.")
        return Z

    # ----------------------------------------------------------------- predict
    def predict(self, X, return_std=False, return_cov=False):
        """Predictive mean, with the standard deviation or the covariance of y.

        As in scikit-learn, the spread is that of y: it includes the WhiteKernel's noise.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
        return_std, return_cov : bool, default=False
            At most one of them.

        Returns
        -------
        y_mean : ndarray of shape (n_queries,)
        y_std : ndarray of shape (n_queries,), with `return_std`
        y_cov : ndarray of shape (n_queries, n_queries), with `return_cov`

        Raises
        ------
        RuntimeError
            If both ``return_std`` and ``return_cov`` are True.
        NotFittedError
            Before ``fit``.
        """
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        self._check_fitted()
        _refuse_bool_and_strings(X, "X")
        X = _validate_data(self, X, ensure_2d=True, dtype=np.float64, reset=False)
        # the spread of y: the model's noise variance is the WhiteKernel's
        out = self._get_model().predict(X, return_std=return_std, return_cov=return_cov, include_noise=True)
        if not (return_std or return_cov):
            return np.asarray(out, dtype=np.float64) * self._y_std + self._y_mean
        mean = np.asarray(out[0], dtype=np.float64) * self._y_std + self._y_mean
        return mean, np.asarray(out[1], dtype=np.float64) * (self._y_std if return_std else self._y_std ** 2)

    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        """The sparse model's bound on the log marginal likelihood (SGPR: Titsias'; SVGP: the ELBO).

        Parameters
        ----------
        theta : array-like of shape (n_kernel_params,) or None
            Log hyperparameters in the order of ``kernel_.theta`` (Z and, for SVGP, q as fitted).
            None: ``log_marginal_likelihood_value_``.
        eval_gradient : bool, default=False

        Returns
        -------
        float, or (float, ndarray of shape (n_kernel_params,))
        """
        self._check_fitted()
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.kernel_.n_dims,):
            raise ValueError(f"theta must have shape ({self.kernel_.n_dims},), one entry per free hyperparameter of "
                             f"kernel_ {self.kernel_}; got shape {theta.shape}.")
        model = self._get_model()
        full = np.asarray(model.theta, dtype=np.float64).copy()
        full[self._theta_index] = theta
        if not eval_gradient:
            return float(model.log_marginal_likelihood(full))
        value, grad = model.log_marginal_likelihood(full, eval_gradient=True)
        return float(value), np.asarray(grad, dtype=np.float64)[self._theta_index]

    # ------------------------------------------------------------ persistence
    def _get_model(self):
        """The fitted model; after unpickling rebuilt from the stored parameters."""
        if self.__dict__.get("model_") is None:
            state = self._saved
            if state["method"] == "sgpr":
                model = SGPR(state["kernel"], noise_variance=state["noise"], inducing_points=state["Z"],
                             tile_size=self.tile_size).fit(self.X_train_, self.y_train_)
            else:
                model = SVGP(state["kernel"], noise_variance=state["noise"])
                model._restore(state["Z"], state["q_mean"], state["q_sqrt"], state["n_samples"])
                model._X_train, model._y_train = self.X_train_, self.y_train_
            self.model_ = model
        return self.model_

    def __getstate__(self):
        state = dict(super().__getstate__())
        model = state.pop("model_", None)
        if model is not None:
            saved = dict(method="sgpr" if isinstance(model, SGPR) else "svgp", kernel=model.kernel,
                         noise=model.noise_variance, Z=np.array(model.inducing_points_))
            if saved["method"] == "svgp":
                saved.update(q_mean=np.array(model.q_mean_), q_sqrt=np.array(model.q_sqrt_),
                             n_samples=model.n_samples_)
            state["_saved"] = saved
            state["model_"] = None
        return state
