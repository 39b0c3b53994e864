"""SVGP: stochastic variational GP regression on minibatches, on the C++ core.

The engine (``cpp/include/gprat/gp/svgp.hpp``, whose header comment holds the mathematics)
evaluates the minibatch ELBO of a whitened q(v) = N(m, C C^T) and its closed-form gradient with
respect to every parameter (kernel, noise, inducing points Z, m, C), and the natural-gradient
step for q. This module owns the parameters and the training loop.
"""

import threading
import warnings

import numpy as np

from .. import _core
from .._validation import as_matrix, as_vector, check_dtype, check_non_negative, check_positive, \
    check_positive_int, check_theta, THETA_MAX
from ..exceptions import NotPositiveDefiniteError, NumericalWarning
from ..optim import AdamState, Progress
from ..runtime import wait_for_lifecycle
from .exact import DEFAULT_MAX_JITTER, _jitter_schedule
from ._kernel_noise import KernelNoiseModel

__all__ = ["SVGP"]

_ENGINE_NAME = {np.float64: "SVGP64", np.float32: "SVGP32"}
#: Smallest noise variance the training loop lets theta reach (its log is clipped there).
_NOISE_FLOOR = 1e-6


def _too_many(m, n):
    return (f"inducing_points={m} is more than the {n} points available to choose them from; give fewer inducing "
            "points or a larger first batch")


class SVGP(KernelNoiseModel):
    """Stochastic variational GP regression (Hensman et al. 2013), whitened, on minibatches.

    The ELBO of a minibatch B of b out of N points is
    ``(N/b) sum_B E_q[log N(y_i | f_i, sigma2)] - KL(q(v) || N(0, I))`` with ``u = L v``,
    ``L L^T = K_ZZ``. Two training methods:

    * ``"ngd"`` (default): a natural-gradient step of size `gamma` for q (Salimbeni et al. 2018),
      then an Adam step for the hyperparameters and Z, on each minibatch;
    * ``"adam"``: Adam on every parameter (q's mean and Cholesky factor included).

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
    noise_variance : float, default=1e-2
    inducing_points : int or array-like of shape (M, n_features), default=64
        A count (chosen from the first data seen by k-means++ seeding) or Z itself.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
    method : {"ngd", "adam"}, default="ngd"
    gamma : float, default=0.1
        Natural-gradient step size for q (method "ngd").
    max_jitter : float, default=1e-4
        Largest jitter relative to mean(diag K_ZZ) (policy as in :class:`gprat.SGPR`).

    Attributes
    ----------
    inducing_points_ : ndarray (M, n_features)
    q_mean_ : ndarray (M,)
        Mean m of the whitened q(v).
    q_sqrt_ : ndarray (M, M)
        Lower-triangular C, S = C C^T.
    n_samples_ : int
        N, the data size the ELBO is scaled to.
    jitter_ : float
    elbo_history_ : list of float
        Minibatch ELBO estimate of every step.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> rng = np.random.default_rng(0); X = rng.uniform(0, 1, (500, 1)); y = np.sin(6 * X[:, 0])
    >>> m = gprat.SVGP(gprat.kernels.SquaredExponential(0.2), inducing_points=10)
    >>> m = m.fit(X, y, batch_size=100, epochs=2, random_state=0)
    >>> m.predict(X[:2]).shape
    (2,)
    """

    _NAME = "SVGP"
    _FIT_HINT = "call fit or partial_fit first"

    def __init__(self, kernel, *, noise_variance=1e-2, inducing_points=64, dtype=np.float64, method="ngd", gamma=0.1,
                 max_jitter=DEFAULT_MAX_JITTER):
        self.kernel = kernel
        self.noise_variance = noise_variance
        self.inducing_points = inducing_points
        self.dtype = check_dtype(dtype)
        self.method = method
        self.gamma = gamma
        self.max_jitter = check_non_negative(max_jitter, "max_jitter")
        self._core = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ state
    def _params(self):
        return (list(self.theta), self.inducing_points_, self.q_mean_, self.q_sqrt_)

    def _initialize(self, X, random_state):
        """Engine, Z (from X if a count was given) and q = prior, for data with X's features."""
        self._check_kernel_and_noise()
        if str(self.method).lower() not in ("ngd", "adam"):
            raise ValueError(f"method must be 'ngd' or 'adam'; got {self.method!r}")
        gamma = float(self.gamma)
        if not (0.0 < gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1]; got {self.gamma!r}")
        d = X.shape[1]
        self.kernel.check_features(d)
        Z = self._inducing_points_for(X, random_state, _too_many)
        M = Z.shape[0]
        wait_for_lifecycle()
        core = getattr(_core, _ENGINE_NAME[self.dtype])(self.kernel._to_core(), d, M)
        self._core = core
        self.inducing_points_ = np.ascontiguousarray(Z, dtype=np.float64)
        self.q_mean_ = np.zeros(M)
        self.q_sqrt_ = np.eye(M)
        self.n_features_in_ = d
        self.jitter_ = 0.0
        self.elbo_history_ = []
        self._adam = None
        self._t = 0

    def _restore(self, inducing_points, q_mean, q_sqrt, n_samples):
        """Set the fitted state from saved parameters (model files): Z, m, C and N."""
        Z = as_matrix(inducing_points, "inducing_points", np.float64)
        M, d = Z.shape
        q_mean = np.ascontiguousarray(q_mean, dtype=np.float64)
        q_sqrt = np.ascontiguousarray(np.tril(q_sqrt), dtype=np.float64)
        if q_mean.shape != (M,) or q_sqrt.shape != (M, M):
            raise ValueError(f"q_mean must have shape ({M},) and q_sqrt ({M}, {M}); got {q_mean.shape}, {q_sqrt.shape}")
        self.kernel.check_features(d)
        wait_for_lifecycle()
        self._core = getattr(_core, _ENGINE_NAME[self.dtype])(self.kernel._to_core(), d, M)
        self.inducing_points_, self.q_mean_, self.q_sqrt_ = np.ascontiguousarray(Z), q_mean, q_sqrt
        self.n_features_in_, self.n_samples_ = d, int(n_samples)
        self.jitter_, self.elbo_history_, self._adam, self._t = 0.0, [], None, 0
        self._X_train = self._y_train = None
        return self

    # ------------------------------------------------------------- training
    def fit(self, X, y=None, batch_size=1024, epochs=10, lr=0.01, random_state=None, progress=False, callback=None,
            trainable=None, learn_inducing_points=True, n_samples=None):
        """Train from scratch on minibatches.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or an iterable of (X_batch, y_batch)
            With an iterable (the data need not fit in memory), `y` is None and `n_samples` the
            total number of rows; each epoch iterates it again (a one-shot iterator gives one epoch).
        y : array-like of shape (n_samples,) or None
        batch_size : int, default=1024
        epochs : int, default=10
        lr : float, default=0.01
            Adam's learning rate (hyperparameters in log units, Z in input units).
        random_state : None, int or numpy.random.Generator
            Minibatch order and inducing-point initialization.
        progress : bool, default=False
        callback : callable or None
            ``callback(step, elbo_estimate)`` after every step.
        trainable : array-like of bool (n_params,) or None
        learn_inducing_points : bool, default=True
        n_samples : int or None
            N; the number of rows of X by default.

        Returns
        -------
        self : SVGP

        Notes
        -----
        An interrupted fit (KeyboardInterrupt) leaves the model at its last completed step.
        """
        rng = np.random.default_rng(random_state)
        batch_size = check_positive_int(batch_size, "batch_size", allow_none=False)
        epochs = check_positive_int(epochs, "epochs", allow_none=False)
        lr = check_positive(lr, "lr")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None; got {callback!r}")
        if y is None:
            return self._fit_stream(X, batch_size, epochs, lr, rng, progress, callback, trainable,
                                    learn_inducing_points, n_samples)
        X = as_matrix(X, "X", self.dtype)
        y = as_vector(y, "y", self.dtype, length=X.shape[0])
        N = X.shape[0] if n_samples is None else check_positive_int(n_samples, "n_samples", allow_none=False)
        self._initialize(X, rng)
        self.n_samples_ = N
        self._X_train, self._y_train = X, y
        steps = epochs * -(-X.shape[0] // batch_size)
        with Progress(progress, steps, desc="SVGP") as bar:
            for _ in range(epochs):
                order = rng.permutation(X.shape[0])
                for s in range(0, X.shape[0], batch_size):
                    idx = np.sort(order[s:s + batch_size])
                    value = self._step(X[idx], y[idx], N, lr, trainable, learn_inducing_points)
                    bar.update(self._t, -value)
                    if callback is not None:
                        callback(self._t, value)
        return self

    def _fit_stream(self, batches, batch_size, epochs, lr, rng, progress, callback, trainable, learn_z, n_samples):
        if n_samples is None:
            raise ValueError("fit on an iterable of (X_batch, y_batch) needs n_samples, the total number of rows")
        N = check_positive_int(n_samples, "n_samples", allow_none=False)
        try:
            iter(batches)
        except TypeError:
            raise TypeError(f"X must be an array (with y) or an iterable of (X_batch, y_batch); got "
                            f"{type(batches).__name__}") from None
        self._core = None
        with Progress(progress, None, desc="SVGP") as bar:
            for _ in range(epochs):
                seen = 0
                for item in batches:
                    Xb, yb = self._check_batch(item)
                    if self._core is None:
                        self._initialize(Xb, rng)
                        self.n_samples_ = N
                        self._X_train = self._y_train = None
                    value = self._step(Xb, yb, N, lr, trainable, learn_z)
                    seen += 1
                    bar.update(self._t, -value)
                    if callback is not None:
                        callback(self._t, value)
                if seen == 0:
                    break  # a one-shot iterator is exhausted
        if self._core is None:
            raise ValueError("the iterable of minibatches yielded nothing")
        return self

    def _check_batch(self, item):
        try:
            Xb, yb = item
        except (TypeError, ValueError):
            raise ValueError(f"each minibatch must be a pair (X_batch, y_batch); got {type(item).__name__}") from None
        Xb = as_matrix(Xb, "X_batch", self.dtype, n_features=getattr(self, "n_features_in_", None)
                       if self._core is not None else None)
        yb = as_vector(yb, "y_batch", self.dtype, length=Xb.shape[0])
        return Xb, yb

    def partial_fit(self, X_batch, y_batch, n_samples=None, lr=0.01, trainable=None, learn_inducing_points=True,
                    random_state=None):
        """One training step on one minibatch (streams). The first call initializes the model.

        Parameters
        ----------
        X_batch : array-like of shape (b, n_features)
        y_batch : array-like of shape (b,)
        n_samples : int or None
            N, the size of the data the minibatches come from; required on the first call,
            kept afterwards.
        lr : float, default=0.01
        trainable, learn_inducing_points
            As in :meth:`fit`.
        random_state : None, int or numpy.random.Generator
            Inducing-point initialization on the first call.

        Returns
        -------
        self : SVGP
        """
        Xb, yb = self._check_batch((X_batch, y_batch))
        if self._core is None:
            if n_samples is None:
                raise ValueError("the first partial_fit needs n_samples, the total number of rows of the data")
            self._initialize(Xb, np.random.default_rng(random_state))
            self._X_train = self._y_train = None
        if n_samples is not None:
            self.n_samples_ = check_positive_int(n_samples, "n_samples", allow_none=False)
        self._step(Xb, yb, self.n_samples_, check_positive(lr, "lr"), trainable, learn_inducing_points)
        return self

    def _step(self, Xb, yb, N, lr, trainable, learn_z):
        """One minibatch step; the parameters change only once it has completed."""
        mt, learn_z = self._trainable_mask(trainable), bool(learn_z)
        M, d = self.inducing_points_.shape
        npar = self.n_params
        tril = np.tril_indices(M)
        ngd = str(self.method).lower() == "ngd"
        size = npar + M * d + (0 if ngd else M + tril[0].size)
        if self._adam is None or self._adam.m.size != size or self._adam.lr != lr:
            self._adam, self._t = AdamState(size, lr), 0
        scale = N / Xb.shape[0]
        theta, Z, qm, qs = self._params()
        for attempt in range(len(_jitter_schedule(self.dtype, self.max_jitter)) + 1):
            try:
                if ngd:  # the natural step for q, then the gradient at the new q (one factorization)
                    value, gt, gz, gm, gc, qm, qs = self._core.natural_step_and_elbo(theta, Z, qm, qs, Xb, yb, scale,
                                                                                     float(self.gamma), False)
                else:
                    value, gt, gz, gm, gc = self._core.elbo(theta, Z, qm, qs, Xb, yb, scale, True, True)
                break
            except NotPositiveDefiniteError as err:
                self._grow_jitter(err)
                theta, Z, qm, qs = self._params()
        if not (np.isfinite(value) and np.all(np.isfinite(gt))):
            raise FloatingPointError(f"the minibatch ELBO or its gradient is not finite (ELBO {value}); lower lr")
        parts = [gt, gz.ravel()] if ngd else [gt, gz.ravel(), gm, gc[tril]]
        x = np.concatenate([np.asarray(theta)] + [Z.ravel()] + ([] if ngd else [qm, qs[tril]]))
        mask = np.concatenate([mt, np.full(M * d, learn_z)] + ([] if ngd else [np.ones(M + tril[0].size, bool)]))
        self._t += 1
        x_new = x + self._adam.step(np.concatenate(parts), self._t, mask)  # ascent on the ELBO
        t_new = np.clip(x_new[:npar], -THETA_MAX, THETA_MAX)
        t_new[-1] = max(t_new[-1], np.log(_NOISE_FLOOR))
        Z_new = x_new[npar:npar + M * d].reshape(M, d)
        if not ngd:
            qm = x_new[npar + M * d:npar + M * d + M]
            qs = np.zeros((M, M))
            qs[tril] = x_new[npar + M * d + M:]
        with self._lock:
            self.kernel = self.kernel.with_theta(t_new[:-1])
            self.noise_variance = float(np.exp(t_new[-1]))
            self.inducing_points_ = np.ascontiguousarray(Z_new)
            self.q_mean_, self.q_sqrt_ = np.ascontiguousarray(qm), np.ascontiguousarray(qs)
            self.elbo_history_.append(float(value))
        return float(value)

    def _grow_jitter(self, err):
        """The next jitter of the policy after K_ZZ failed, or NotPositiveDefiniteError with a fix."""
        mean_diag = float(np.mean(self.kernel.diag(self.inducing_points_)))
        for rel in _jitter_schedule(self.dtype, self.max_jitter):
            if rel * mean_diag > self.jitter_ * (1 + 1e-12):
                self.jitter_ = rel * mean_diag
                self._core.jitter = self.jitter_
                warnings.warn(f"K_ZZ is not numerically positive definite ({err}); jitter raised to "
                              f"{self.jitter_:.3g} ({rel:.0e} x mean(diag K_ZZ)), stored as jitter_",
                              NumericalWarning, stacklevel=4)
                return
        raise NotPositiveDefiniteError(
            f"K_ZZ of the {self.inducing_points_.shape[0]} inducing points is not positive definite even with jitter "
            f"{self.jitter_:.3g}: {err}. Fix: fewer or more spread-out inducing points, a lower learning rate, or "
            "SVGP(max_jitter=...) larger.", getattr(err, "order", None)) from err

    # ------------------------------------------------------------ evaluation
    def elbo(self, X, y, batch_size=65536):
        """The full-data ELBO: sum over the rows of E_q[log N(y_i | f_i, sigma2)] - KL.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        batch_size : int, default=65536
            Rows per engine call (memory only; the value does not depend on it beyond rounding).

        Returns
        -------
        float
        """
        self._require_fit("elbo")
        X = as_matrix(X, "X", self.dtype, n_features=self.n_features_in_)
        y = as_vector(y, "y", self.dtype, length=X.shape[0])
        theta, Z, qm, qs = self._params()
        total = 0.0
        n = X.shape[0]
        for s in range(0, n, batch_size):
            last = s + batch_size >= n
            total += self._core.elbo(theta, Z, qm, qs, X[s:s + batch_size], y[s:s + batch_size], 1.0, last, False)
        return float(total)

    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        """The ELBO on the training data (a lower bound of the log marginal likelihood).

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None
            Hyperparameters to evaluate at (q and Z as fitted); None: the model's.
        eval_gradient : bool, default=False
            Also return d ELBO / d theta.

        Returns
        -------
        float, or (float, ndarray of shape (n_params,))
        """
        self._require_fit("log_marginal_likelihood")
        if self._X_train is None:
            raise ValueError("the model was trained on a stream; call elbo(X, y) with the data")
        t = self.theta if theta is None else check_theta(theta, self.n_params)
        _, Z, qm, qs = self._params()
        X, y = self._X_train, self._y_train
        value, grad = 0.0, np.zeros(self.n_params)
        step = 65536
        for s in range(0, X.shape[0], step):
            last = s + step >= X.shape[0]
            out = self._core.elbo(list(t), Z, qm, qs, X[s:s + step], y[s:s + step], 1.0, last, bool(eval_gradient))
            if eval_gradient:
                value += out[0]
                grad += out[1]
            else:
                value += out
        return (float(value), grad) if eval_gradient else float(value)

    def predict(self, X, return_std=False, return_cov=False, include_noise=False):
        """Predictive mean (and std or covariance) of f (with `include_noise`: of y).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        return_std, return_cov : bool, default=False
        include_noise : bool, default=False

        Returns
        -------
        mean : ndarray of shape (n_samples,)
        std : ndarray of shape (n_samples,), with `return_std`
        cov : ndarray of shape (n_samples, n_samples), with `return_cov`
        """
        self._require_fit("predict")
        self._check_predict_flags(return_std, return_cov)
        X = as_matrix(X, "X", self.dtype, n_features=self.n_features_in_)
        theta, Z, qm, qs = self._params()
        mean, var, cov = self._core.predict(theta, Z, qm, qs, X, bool(return_std), bool(return_cov), bool(include_noise))
        return self._predict_result(mean, var, cov, return_std, return_cov)

    def __repr__(self):
        return (f"SVGP({self.kernel!r}, noise_variance={self.noise_variance:.4g}, "
                f"inducing_points={self._repr_inducing()}, "
                f"method={self.method!r}, dtype={np.dtype(self.dtype).name})")
