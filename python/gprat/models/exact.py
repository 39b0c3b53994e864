"""ExactGP: exact Gaussian-process regression on the tiled, task-parallel Cholesky engine."""

import math
import os
import threading
import warnings
import weakref
import numbers
from collections import namedtuple

import numpy as np

from .. import _core, backends
from .._memory import check_fits
from .._validation import (
    as_matrix,
    as_vector,
    check_dtype,
    check_hyperparameter,
    check_non_negative,
    check_positive,
    check_positive_int,
    check_theta,
    HYPER_MAX,
    THETA_MAX,
)
from ..exceptions import NotFittedError, NotPositiveDefiniteError, NumericalWarning
from ..kernels import Kernel
from ..optim import Objective, OptimizationResult, Progress, minimize_adam
from ..optim.objective import no_good_point_error, warn_failed_points
from ..optim.switched_off import recheck_switched_off as _recheck_switched_off
from ..runtime import wait_for_lifecycle

__all__ = ["ExactGP", "JITTER_START", "JITTER_GROWTH", "DEFAULT_MAX_JITTER", "noise_variance_bounds"]

#: Name of the compiled engine class per precision, in every backend module.
_ENGINE_NAME = {np.float64: "ExactGP64", np.float32: "ExactGP32"}

#: Default optimization box in hyperparameter space (not log space), per kind of parameter. A
#: fitted model's learned noise uses :func:`gprat.models.exact.noise_variance_bounds` instead:
#: its floor follows the data; this (1e-9, 1e5) is the fallback where the targets have no spread.
DEFAULT_BOUNDS = {"kernel": (1e-5, 1e5), "noise_variance": (1e-9, 1e5)}

#: Lower bound of a learned noise variance, as a fraction of the targets' variance.
NOISE_FLOOR_FRACTION = 1e-6


def noise_variance_bounds(y):
    """``(low, high)``: the default box of a learned noise variance for training targets y.

    ``low = NOISE_FLOOR_FRACTION * var(y)`` (the mean of the columns' variances for several
    outputs), ``high = 1e5``; where y is None (a model not fitted yet) or has no spread (a single
    point, constant targets) the fixed ``DEFAULT_BOUNDS["noise_variance"]``.

    Why a floor relative to the data. The noise enters the posterior only next to var(y): one of
    1e-6 var(y) moves the predictive variance by 1e-6 of the data's. But an optimizer in log
    space pays for every e-fold below that: near zero noise the log marginal likelihood is
    linear in it, LML(s) ~ LML(0) + c s, so its gradient in u = log s is c e^u and its curvature
    the same, and a (quasi-)Newton step in u is one unit per iteration. With the old absolute
    floor 1e-9, a deterministic target (Hartmann-6, y standardized, ARD Matern-5/2, n = 1000,
    from noise 0.01) took 40 training steps, 14 of them walking the noise from 1e-2 to 6e-9
    for +0.003 nats; with 1e-6 var(y), 30 steps and LML -265.809 against -265.806
    (benchmarks/bo_small_n.py). A floor relative to var(y) also keeps the fit the same when y is
    rescaled. Interpolating a deterministic function exactly: fix the noise at 0
    (``noise_variance=0.0``, the jitter policy keeps the factor honest) or pass ``bounds``.
    """
    lo, hi = DEFAULT_BOUNDS["noise_variance"]
    if y is None:
        return lo, hi
    y = np.asarray(y, dtype=np.float64)
    spread = float(np.mean(np.var(y.reshape(y.shape[0], -1), axis=0))) if y.size > 1 else 0.0
    if np.isfinite(spread) and spread > 0.0:
        lo = min(NOISE_FLOOR_FRACTION * spread, hi)
    return lo, hi

#: Jitter policy (see ExactGP, Notes). First jitter tried, relative to the mean diagonal of K:
#: about the rounding error of a Cholesky factorization of order n <= 1e5 in float64
#: (n * eps = 2e-11), and ten float32 epsilons.
JITTER_START = {np.float64: 1e-10, np.float32: 1e-6}
#: Factor between successive jitters.
JITTER_GROWTH = 10.0
#: Largest jitter tried by default, relative to the mean diagonal of K.
DEFAULT_MAX_JITTER = 1e-4

#: Scaled inputs |x_k / lengthscale_k| above this bound (divided by sqrt(n_features)) make
#: squared distances overflow in the kernel (NaN entries in K).
_SCALED_INPUT_LIMIT = 5e149



#: What predictions read, published as one tuple so that readers need no lock: the engine,
#: the jitter in it, and the kernel, noise variance, training data, feature count and
#: per-feature max |X| of the factorization it holds.
#: ``noise`` is the learned noise variance (None: none), ``fixed`` the per-sample noise (None:
#: none), ``mean`` the constant mean (None: zero mean) and ``outputs`` p, the columns of y.
_Fitted = namedtuple("_Fitted", "core jitter kernel noise X y n_features x_abs_max fixed mean outputs")
#: Training data with new rows appended (add_observations): new_noise is the new rows' fixed noise.
_Grown = namedtuple("_Grown", "X y fixed abs_max k new_noise")

_INSTANCES = weakref.WeakSet()
#: Engines abandoned in a fork() child: their lock may be held by a thread that does not exist
#: there, so they are never used (nor destroyed) again.
_ABANDONED = []


def _reset_locks_after_fork():
    # A lock held by another thread at fork() would stay locked forever in the child; so would
    # the engine's own lock if that thread was inside the engine: such an engine is rebuilt.
    for gp in list(_INSTANCES):
        gp._lock = threading.RLock()
        gp._count_lock = threading.Lock()
        if gp._in_flight:
            gp._in_flight = 0
            gp._engine_abandoned = gp._fitted is not None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _jitter_schedule(dtype, max_jitter):
    """Relative jitters tried after a failed factorization: start, start*10, ... <= max_jitter."""
    if max_jitter <= 0:
        return []
    schedule = []
    rel = JITTER_START[dtype]
    while rel <= max_jitter * (1 + 1e-12):
        schedule.append(rel)
        rel *= JITTER_GROWTH
    if not schedule or schedule[-1] < max_jitter * (1 - 1e-12):
        schedule.append(max_jitter)
    return schedule


def _abs_max(X):
    """Per-feature max |X| (float64), for the overflow check of scaled distances."""
    return np.max(np.abs(X), axis=0).astype(np.float64)


class InputScaleError(ValueError):
    """Inputs so large relative to the lengthscale that squared distances overflow."""


def _check_scale(abs_max, kernel, what):
    """Refuse inputs whose scaled squared distances would overflow (NaN entries in K)."""
    # per feature, the smallest scale the kernel divides the inputs by (inf: not read that way)
    scaled = float(np.max(abs_max / kernel.input_scales(abs_max.size)))
    limit = _SCALED_INPUT_LIMIT / np.sqrt(abs_max.size)
    if not scaled <= limit:
        raise InputScaleError(
            f"{what}: inputs are too large for the lengthscale (max |x / lengthscale| = {scaled:.3g} > {limit:.3g}); "
            "squared distances would overflow to inf and give NaN covariances. Rescale X (e.g. standardize "
            "each feature) or use a larger lengthscale."
        )


def _check_noise(value):
    """noise_variance as a float (positive, or 0.0) or a 1-D float64 array of entries >= 0."""
    if np.ndim(value) == 0:
        if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)) \
                and float(value) == 0.0:
            return 0.0
        return check_hyperparameter(value, "noise_variance")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"noise_variance must be a number or an array of numbers; got {value!r}") from None
    if arr.ndim != 1 or arr.shape[0] == 0:
        raise ValueError(f"a per-sample noise_variance must be 1-D of shape (n_samples,); got shape {arr.shape}")
    bad = ~np.isfinite(arr) | (arr < 0)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"a per-sample noise_variance must hold finite values >= 0; entry {i} is {float(arr[i])!r} "
            f"({int(bad.sum())} bad entr{'y' if bad.sum() == 1 else 'ies'} of {arr.size})"
        )
    if np.any(arr > HYPER_MAX):
        raise ValueError(f"a per-sample noise_variance must be at most {HYPER_MAX:g}; got max {arr.max():g}")
    return arr


def _check_mean(value):
    """mean_constant as None, a finite float or a 1-D float64 array of finite values."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"mean_constant must be None, a number or an array of numbers; got {value!r}")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"mean_constant must be None, a number or an array of numbers; got {value!r}") from None
    if arr.ndim > 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"mean_constant must be a finite number or a 1-D array of finite numbers (one per output); "
                         f"got {value!r}")
    return float(arr) if arr.ndim == 0 else arr


def _as_targets(y, dtype, n):
    """y as a C-contiguous (n,) or (n, p) array of `dtype` (a column (n, 1) becomes (n,))."""
    if np.ndim(y) > 2:
        raise ValueError(f"y must be of shape (n_samples,) or (n_samples, n_outputs); got shape {np.shape(y)}")
    if np.ndim(y) == 2 and np.shape(y)[1] > 1:
        Y = as_matrix(y, "y", dtype)
        if Y.shape[0] != n:
            raise ValueError(f"y must have one row per row of X; got y.shape={Y.shape}, X.shape[0]={n}")
        return Y
    return as_vector(y, "y", dtype, length=n)



class _EngineCall:
    """``with model._engine_call():`` counts the calls into the compiled engine now running (a
    fork() child rebuilds an engine that was busy). A plain class, not a generator-based
    contextmanager: a small-n BO fit enters it on every trial point, and this costs a fifth."""

    __slots__ = ("model",)

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        wait_for_lifecycle()
        with self.model._count_lock:
            self.model._in_flight += 1

    def __exit__(self, *exc):
        with self.model._count_lock:
            self.model._in_flight -= 1
        return False

class ExactGP:
    """Exact Gaussian process regression on a tiled Cholesky factorization.

    The model is ``y = c + f(X) + eps`` with ``f ~ GP(0, kernel)``, ``eps ~ N(0, noise)`` and a
    mean ``c`` (zero by default). ``fit`` assembles ``K = k(X, X) + diag(noise)`` tile by tile,
    factors it and caches ``L`` and ``alpha = K^{-1} (y - c)``; predictions reuse them (R&W
    Algorithm 2.1). Several outputs (``y`` of shape (n, p)) share the kernel, the noise and the
    factor: the log marginal likelihood is the sum over outputs.

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
        Covariance function: a family (SquaredExponential, Matern12/32/52, RationalQuadratic, Periodic,
        Linear, Constant, White) or a sum or product of kernels, nested to any depth.
    noise_variance : float or array-like of shape (n_samples,), default=1e-2
        Observation noise variance added to diag(K). A positive float (between 1e-300 and
        1e300) is the learned i.i.d. noise variance: theta holds its log. ``0.0`` means no noise
        (interpolation of a deterministic function; the jitter policy keeps the factorization
        honest): theta has no noise entry. An array gives known per-sample (heteroscedastic)
        noise variances, finite and >= 0, one per training row (checked at ``fit``); they are
        fixed, not learned, and have no theta entry.
    learned_noise : float or None, default=None
        A learned i.i.d. noise variance added on top of a per-sample (or zero)
        ``noise_variance``; theta holds its log. Not allowed with a positive scalar
        ``noise_variance`` (that one is already the learned noise).
    mean_constant : float, array-like of shape (n_outputs,) or None, default=None
        None: zero mean. A number or one number per output: the initial value of a learned
        constant mean (GPyTorch's ConstantMean), one constant per output; its theta entries
        are the constants themselves (not logarithms) and the optimizer leaves them unbounded.
    tile_size : int or None, default=None
        Rows per tile (tuning only; results do not depend on it beyond rounding). None chooses
        from n and the thread count; a tile size larger than n is clamped to n.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Working precision. float32 halves memory; expect about 1e-3 relative agreement with
        float64 on the mean and 1e-2 on the standard deviation for well-conditioned problems.
    max_jitter : float, default=1e-4
        Largest jitter (relative to the mean diagonal of K) that ``fit`` may add to the
        diagonal when K is not numerically positive definite; 0 disables jitter. See Notes.
    device : str, default="cpu"
        Where to compute: ``"cpu"``, or ``"cuda"`` / ``"cuda:N"`` where the CUDA backend is
        built and a GPU is present (see :mod:`gprat.backends`).

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_features)
        Training inputs (the caller's array when it was C-contiguous of `dtype`: not copied,
        so it must not be modified in place while the model is in use).
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        A column (n_samples, 1) is stored as (n_samples,).
    n_features_in_ : int
    jitter_ : float
        Jitter added to the diagonal of K by the last factorization (0.0 when none was
        needed), in the units of K.

    Raises
    ------
    NotPositiveDefiniteError
        In ``fit`` if K + noise_variance * I is not positive definite even with the largest
        jitter allowed.
    BackendUnavailableError
        At construction, for a device this installation cannot compute on.

    Notes
    -----
    **Jitter policy.** When the Cholesky factorization of ``K + noise_variance I`` fails
    (duplicate inputs with tiny noise, a huge signal variance next to a tiny noise, inputs
    much closer together than the lengthscale...), the factorization is retried with
    ``K + (noise_variance + jitter) I`` for ``jitter = c * mean(diag K)``, ``c`` = 1e-10
    (float64) or 1e-6 (float32), then growing tenfold while ``c <= max_jitter``. The first
    jitter that succeeds is kept: it is stored as ``jitter_`` and reported by a
    :class:`gprat.NumericalWarning`. Beyond ``max_jitter`` fit raises
    :class:`gprat.NotPositiveDefiniteError` with ``.order``, the order of the failing leading
    minor without jitter, and a suggested fix. A factorization whose log marginal likelihood
    is not finite counts as failed too.

    With ``jitter_ > 0`` the model is that of ``K + (noise_variance + jitter_) I``:
    ``noise_variance`` and ``theta`` stay the values you gave, the posterior mean, variances,
    log marginal likelihood and its gradient are those of the jittered matrix, and
    ``include_noise=True`` adds the learned noise variance (not the jitter, nor a per-sample
    noise, which is unknown at new points) to predictive variances. With
    ``noise_variance=0.0`` the mean diagonal of K is the kernel's mean prior variance
    ``mean(kernel.diag(X))``; jitter is then the
    usual outcome for points closer than the lengthscale.
    ``log_marginal_likelihood(theta)`` and the optimizer evaluate other hyperparameters with
    the same ``jitter_`` added and do not search for a new one: a trial point whose matrix is
    not positive definite is a failed step (L-BFGS-B backtracks, Adam halves its step).
    Changing ``theta`` or refitting starts the policy afresh (from no jitter).

    **theta.** ``theta = [kernel theta..., log noise, c_1..c_p]``, the kernel entries being the
    logs of its parameters in ``kernel.param_names`` order (for a family such as
    SquaredExponential: log lengthscale(s)..., log signal_variance), where the noise entry
    exists only for a learned noise (a positive scalar ``noise_variance``, or ``learned_noise``)
    and the mean entries only with ``mean_constant``.
    The default model (scalar noise, zero mean) keeps
    ``theta = [kernel theta..., log noise_variance]``. The gradient of the
    noise entry is ``1/2 sum_a (alpha_a^2 - K^{-1}_aa) sigma2`` (summed over outputs with the
    ``alpha alpha^T - p K^{-1}`` weight), that of mean entry j is ``1^T alpha_j``.

    **Several outputs.** ``alpha`` is (n, p), solved with all right-hand sides at once; the
    gradient is ``1/2 tr((alpha alpha^T - p K^{-1}) dK)``. ``predict`` returns a mean of shape
    (n_test, p) and one standard deviation or covariance shared by all outputs.

    **Memory.** ``fit``, the training step and ``predict`` estimate what they will allocate
    and raise MemoryError before allocating when it exceeds the memory available (environment
    variable ``GPRAT_MEMORY_LIMIT``, in bytes, overrides the detected amount).

    **Threads.** Any number of threads may predict at once, on one model or several, and fit
    other models meanwhile; ``fit`` on a model replaces it atomically for predictions that
    start afterwards. Ctrl-C interrupts fit, optimize and predict with KeyboardInterrupt and
    leaves the previous state usable. After ``os.fork()`` (multiprocessing's fork start method)
    models work in the child; one whose engine another thread of the parent was using at that
    moment is refactored in the child on first use.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> X = np.linspace(0, 1, 50).reshape(-1, 1); y = np.sin(6 * X[:, 0])
    >>> gp = gprat.ExactGP(gprat.kernels.SquaredExponential(0.2), noise_variance=1e-4).fit(X, y)
    >>> mean, std = gp.predict([[0.5]], return_std=True)
    >>> bool(abs(mean[0] - np.sin(3.0)) < 1e-3)
    True
    """

    def __init__(self, kernel, *, noise_variance=1e-2, learned_noise=None, mean_constant=None, tile_size=None,
                 dtype=np.float64, max_jitter=DEFAULT_MAX_JITTER, device="cpu"):
        if not isinstance(kernel, Kernel):
            raise TypeError(
                "kernel must be a gprat.kernels kernel (a family such as SquaredExponential, or a sum or "
                f"product of them); got {type(kernel).__name__}"
            )
        self.kernel = kernel
        self.noise_variance = _check_noise(noise_variance)
        self.learned_noise = None if learned_noise is None else check_hyperparameter(learned_noise, "learned_noise")
        self.mean_constant = _check_mean(mean_constant)
        self._noise_parts()  # refuses a learned noise on top of a learned scalar noise
        self.tile_size = check_positive_int(tile_size, "tile_size")
        self.dtype = check_dtype(dtype)
        self.max_jitter = check_non_negative(max_jitter, "max_jitter")
        self.device = backends.require(device)
        self._fitted = None
        self._stale = False  # theta changed since the last factorization
        self._lock = threading.RLock()  # taken by writers only (fit, refactorizations)
        self._count_lock = threading.Lock()
        self._in_flight = 0  # calls into the engine now running (for fork())
        self._engine_abandoned = False  # set in a fork() child: rebuild the engine before use
        _INSTANCES.add(self)

    def __getstate__(self):
        if self._fitted is not None:
            raise TypeError(
                "a fitted ExactGP cannot be pickled (its factor lives in the compiled engine); pickle the "
                "kernel, noise_variance and training data and call fit again"
            )
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_count_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._count_lock = threading.Lock()
        _INSTANCES.add(self)

    def _engine_call(self):
        """Mark a call into the compiled engine (which may hold the engine's lock): a context manager."""
        return _EngineCall(self)

    def _state(self):
        """The fitted state; in a fork() child, first rebuild an engine that was busy at fork."""
        if self._engine_abandoned:
            with self._lock:
                if self._engine_abandoned:
                    state = self._fitted
                    core = self._make_core(state.kernel, state.X, state.y, state.noise, state.fixed, state.mean,
                                           state.core.tile_size)
                    core.jitter = state.jitter
                    core.fit()
                    _ABANDONED.append(state.core)
                    self._fitted = state._replace(core=core)
                    self._engine_abandoned = False
        return self._fitted

    def _engine_type(self):
        """The compiled engine class for this model's device and dtype."""
        return backends.engine_class(self.device, _ENGINE_NAME[self.dtype])

    def _make_core(self, kernel, X, y, learned, fixed, mean, tile_size):
        """A compiled engine for these data, noise parts and mean (not yet fitted)."""
        return self._engine_type()(kernel._to_core(), X, y, learned, tile_size,
                                   None if fixed is None else fixed,
                                   None if mean is None else [float(c) for c in mean])

    def _noise_parts(self):
        """(fixed, learned): the per-sample noise array or None, and the learned noise or None.

        A positive scalar ``noise_variance`` is the learned noise; ``0.0`` or an array is fixed
        (no theta entry) and ``learned_noise`` may add a learned one on top.
        """
        nv, learned = self.noise_variance, self.learned_noise
        if np.ndim(nv) == 0:
            if nv > 0:
                if learned is not None:
                    raise ValueError(
                        f"learned_noise={learned!r} needs a per-sample (array) or zero noise_variance; a positive "
                        f"scalar noise_variance ({nv!r}) is itself the learned noise variance"
                    )
                return None, float(nv)
            return None, learned
        return nv, learned

    def _set_learned(self, learned):
        """Store a new value of the learned noise where it came from."""
        if learned is None:
            return
        if np.ndim(self.noise_variance) == 0 and self.noise_variance > 0:
            self.noise_variance = learned
        else:
            self.learned_noise = learned

    def _n_outputs(self):
        """p: the fitted number of outputs, or before fit the length of mean_constant (else 1)."""
        if self._fitted is not None:
            return self._fitted.outputs
        return 1 if np.ndim(self.mean_constant) == 0 else len(self.mean_constant)

    def _mean_values(self, outputs):
        """The constant mean as an array of `outputs` entries, or None for a zero mean."""
        if self.mean_constant is None:
            return None
        mean = np.asarray(_check_mean(self.mean_constant), dtype=np.float64)
        if mean.ndim == 1 and mean.shape[0] != outputs:
            raise ValueError(
                f"mean_constant must be a number or have one entry per output; got {mean.shape[0]} entries "
                f"for {outputs} output(s)"
            )
        return np.array(np.broadcast_to(mean, (outputs,)))

    @staticmethod
    def _theta_of(kernel, learned, mean):
        """theta = [kernel theta, log learned (if any), mean constants (if any)]."""
        parts = [np.asarray(kernel.theta, dtype=np.float64)]
        if learned is not None:
            parts.append([np.log(learned)])
        if mean is not None:
            parts.append(mean)
        return np.concatenate(parts).astype(np.float64)

    @staticmethod
    def _split_theta(theta, kernel, learned, mean):
        """(kernel, learned, mean) at `theta`, with the layout of (kernel, learned, mean)."""
        kp = kernel.n_params
        new_kernel = kernel.with_theta(theta[:kp])
        new_learned = None if learned is None else float(np.exp(theta[kp]))
        new_mean = None if mean is None else np.array(theta[kp + (learned is not None):], dtype=np.float64)
        return new_kernel, new_learned, new_mean

    def _n_log(self):
        """Entries of theta that are logarithms (kernel and learned noise)."""
        return self.kernel.n_params + (self._noise_parts()[1] is not None)

    # ------------------------------------------------------------------ state
    @property
    def fitted(self):
        """bool: whether ``fit`` has succeeded."""
        return self._fitted is not None

    @property
    def _core(self):
        """The compiled engine of the current factorization (None before fit)."""
        return None if self._fitted is None else self._fitted.core

    @property
    def jitter_(self):
        """float: jitter added to diag(K) by the current factorization (0.0 if none)."""
        return 0.0 if self._fitted is None else self._fitted.jitter

    def _require_fit(self, what):
        if self._fitted is None:
            raise NotFittedError(f"this ExactGP is not fitted yet; call fit(X, y) before {what}")

    @property
    def n_params(self):
        """int: number of entries of theta (kernel's, the learned noise's if any, the means if any)."""
        learned = self._noise_parts()[1]
        return self.kernel.n_params + (learned is not None) + (0 if self.mean_constant is None else self._n_outputs())

    @property
    def theta(self):
        """ndarray: [kernel theta..., log noise, mean constants...].

        The kernel entries are the logs of its parameters (see ``kernel.param_names``).

        The noise entry exists only for a learned noise, the mean entries (not logarithms) only
        with ``mean_constant`` (see Notes). The default model's theta is
        [kernel theta..., log noise_variance]. Setting it changes the
        hyperparameters; the factorization is redone lazily (with the jitter policy) on the next use.
        """
        return self._theta_of(self.kernel, self._noise_parts()[1], self._mean_values(self._n_outputs()))

    @theta.setter
    def theta(self, theta):
        theta = check_theta(theta, self.n_params, self._n_log())
        kernel, learned, mean = self._split_theta(theta, self.kernel, self._noise_parts()[1],
                                                  self._mean_values(self._n_outputs()))
        with self._lock:
            self.kernel = kernel
            self._set_learned(learned)
            if mean is not None:
                self.mean_constant = mean
            if self._fitted is not None:
                self._stale = True

    def _factorize(self, core, kernel, learned, fixed, mean, set_theta, X):
        """Factor `core` at (kernel, learned noise, mean) following the jitter policy; return the
        jitter used (the fixed noise is the engine's own).

        Raises NotPositiveDefiniteError beyond ``max_jitter``.
        """
        theta = self._theta_of(kernel, learned, mean)
        noise = (0.0 if learned is None else learned) + (0.0 if fixed is None else float(np.mean(fixed)))
        prior_variance = float(np.mean(kernel.diag(X)))  # mean k(x, x) over the training points
        mean_diag = prior_variance + noise
        first_error, last_error, tried = None, None, []
        for rel in [0.0] + _jitter_schedule(self.dtype, self.max_jitter):
            jitter = rel * mean_diag
            try:
                with self._engine_call():
                    if set_theta:
                        core.theta = list(theta)
                    core.jitter = jitter
                    lml = core.fit()
            except NotPositiveDefiniteError as err:
                first_error = first_error or err
                last_error = err
                tried.append(rel)
                continue
            if not np.isfinite(lml):
                first_error = first_error or NotPositiveDefiniteError(
                    f"the log marginal likelihood is {lml} (K is numerically singular)", None)
                last_error = first_error
                tried.append(rel)
                continue
            if jitter > 0:
                warnings.warn(
                    f"K + noise_variance * I is not numerically positive definite ({first_error}); "
                    f"added jitter {jitter:.3g} ({rel:.0e} x mean(diag K)) to its diagonal. The model is that of "
                    f"noise variance {noise:.6g} + {jitter:.3g}; stored as jitter_. Increase noise_variance, remove "
                    "duplicate rows of X or rescale the inputs to avoid it.",
                    NumericalWarning, stacklevel=3,
                )
            return jitter
        order = getattr(first_error, "order", None)
        if len(tried) > 1:
            tail = (f" even with jitter up to {tried[-1] * mean_diag:.3g} (= {tried[-1]:.0e} x mean(diag K), "
                    f"mean(diag K) = {mean_diag:.3g}; last failure: {last_error})")
        else:
            tail = " (jitter is disabled: max_jitter=0)"
        raise NotPositiveDefiniteError(
            f"K + noise_variance * I is not positive definite: {first_error}{tail}. Fix: increase noise_variance "
            f"(now {noise:.3g}; mean prior variance {prior_variance:.3g}), remove duplicate rows of X, rescale "
            "the inputs or targets, or allow more jitter with ExactGP(max_jitter=...).",
            order,
        ) from first_error

    def _refresh(self):
        """Apply a pending theta change: refactor the existing engine (jitter policy)."""
        if not self._stale:
            return
        with self._lock:
            if not self._stale:
                return
            state, kernel = self._state(), self.kernel
            learned, mean = self._noise_parts()[1], self._mean_values(state.outputs)
            _check_scale(state.x_abs_max, kernel, "hyperparameters set through theta")
            jitter = self._factorize(state.core, kernel, learned, state.fixed, mean, set_theta=True, X=state.X)
            self._fitted = state._replace(jitter=jitter, kernel=kernel, noise=learned, mean=mean)
            self._stale = False

    def _restore_engine_theta(self, state):
        """Point the engine back at `state`'s theta and jitter (it refactors lazily)."""
        with self._engine_call():
            state.core.theta = list(self._theta_of(state.kernel, state.noise, state.mean))
            state.core.jitter = state.jitter

    # -------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Assemble and factor K, and solve for alpha.

        A failed or interrupted fit leaves a previously fitted model unchanged and usable.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Several outputs share the kernel, the noise and one factorization.

        Returns
        -------
        self : ExactGP

        Warns
        -----
        NumericalWarning
            If jitter had to be added to the diagonal of K (see Notes).

        Raises
        ------
        ValueError, TypeError
            For unusable X or y (wrong shape, NaN or infinity, non-numeric dtype...), a
            per-sample noise_variance of another length than y, or a mean_constant with
            another number of entries than outputs.
        NotPositiveDefiniteError
            If K + noise_variance * I is not positive definite even with jitter.
        MemoryError
            If the factor would not fit in the memory available, before allocating it.
        """
        kernel = self.kernel
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a gprat.kernels kernel; got {type(kernel).__name__}")
        self.noise_variance = _check_noise(self.noise_variance)
        if self.learned_noise is not None:
            self.learned_noise = check_hyperparameter(self.learned_noise, "learned_noise")
        fixed, learned = self._noise_parts()
        self.max_jitter = check_non_negative(self.max_jitter, "max_jitter")
        X = as_matrix(X, "X", self.dtype)
        y = _as_targets(y, self.dtype, X.shape[0])
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if fixed is not None and fixed.shape[0] != X.shape[0]:
            raise ValueError(
                f"a per-sample noise_variance must have one entry per row of X; got len(noise_variance)="
                f"{fixed.shape[0]}, X.shape[0]={X.shape[0]}"
            )
        mean = self._mean_values(outputs)
        kernel.check_features(X.shape[1])  # ValueError: ARD lengthscale count, active_dims range
        abs_max = _abs_max(X)
        _check_scale(abs_max, kernel, "fit")
        engine = self._engine_type()
        core = self._make_core(kernel, X, y, learned, fixed, mean, self.tile_size)
        check_fits(engine.fit_bytes(X.shape[0], core.tile_size, outputs), f"fitting n={X.shape[0]} samples")
        jitter = self._factorize(core, kernel, learned, fixed, mean, set_theta=False, X=X)
        with self._lock:
            if self._engine_abandoned:
                _ABANDONED.append(self._fitted.core)
                self._engine_abandoned = False
            self.kernel = kernel
            self.X_train_, self.y_train_ = X, y
            self.n_features_in_ = X.shape[1]
            self._fitted = _Fitted(core, jitter, kernel, learned, X, y, X.shape[1], abs_max, fixed, mean, outputs)
            self._stale = False
        return self

    # ------------------------------------------------------- new observations
    def add_observations(self, X, y, noise_variance=None):
        """Add training points without refactoring: a block update of the Cholesky factor.

        With ``L`` the current factor, ``B = L^{-1} K(X, X_new)`` and
        ``C = chol(K(X_new, X_new) + noise - B^T B)``, the factor of the grown matrix is
        ``[[L, 0], [B^T, C]]``, and alpha follows from one triangular solve: O(n^2 k) work for
        k new points instead of O(n^3). The hyperparameters (and ``jitter_``) do not change; the
        result equals ``fit`` on the combined data at the same hyperparameters up to rounding.

        Two cases refit instead, with the jitter policy, and give what ``fit`` would: when the new
        block is not numerically positive definite at the current jitter (e.g. a new point
        duplicates an old one with zero noise), and when the model has grown to more than twice
        the rows its tiles were chosen for (the tile size stays that of the first fit otherwise,
        and a model grown point by point from a handful of rows would run on tiny tiles). Both are
        rare in a BO loop: the second happens about once per doubling of n.

        Parameters
        ----------
        X : array-like of shape (n_new, n_features)
        y : array-like of shape (n_new,) or (n_new, n_outputs), as the training targets
        noise_variance : array-like of shape (n_new,) or None, default=None
            The new rows' per-sample noise variances; required when the model has a per-sample
            ``noise_variance``, refused otherwise (a scalar noise applies to the new rows too).

        Returns
        -------
        self : ExactGP
            ``X_train_``, ``y_train_`` and a per-sample ``noise_variance`` now include the new rows.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError, TypeError
            For unusable X, y or noise_variance (another feature or output count, mismatched
            rows, NaN, negative noise...). The model is unchanged, as after any failure.
        NotPositiveDefiniteError
            If the grown matrix is not positive definite even with jitter (from the refit).
        """
        with self._lock:
            state = self._snapshot("add_observations")
            grown = self._grown(state, X, y, noise_variance)
            self._fitted = self._extended_state(state, grown, in_place=True)
            self.X_train_, self.y_train_ = grown.X, grown.y
            if grown.fixed is not None:
                self.noise_variance = grown.fixed
        return self

    def condition_on(self, X, y, noise_variance=None):
        """A new model conditioned on more observations (a "fantasy" model for batch BO).

        The same block update as :meth:`add_observations`, applied to a copy of this model's
        factor: the new model has the combined data and this model's hyperparameters, and this
        model is left unchanged. Costs a copy of the factor (O(n^2) memory traffic) plus the
        O(n^2 k) update.

        Parameters
        ----------
        X, y, noise_variance
            As for :meth:`add_observations`.

        Returns
        -------
        ExactGP
            A fitted model (same kernel, noise, mean, dtype, device and options as this one).
        """
        state = self._snapshot("condition_on")
        grown = self._grown(state, X, y, noise_variance)
        noise = self.noise_variance if grown.fixed is None else grown.fixed
        model = ExactGP(state.kernel, noise_variance=noise, learned_noise=self.learned_noise,
                        mean_constant=state.mean, tile_size=self.tile_size, dtype=self.dtype,
                        max_jitter=self.max_jitter, device=self.device)
        model._fitted = model._extended_state(state, grown, in_place=False)
        model.X_train_, model.y_train_ = grown.X, grown.y
        model.n_features_in_ = state.n_features
        return model

    def _grown(self, state, X, y, noise_variance):
        """The training data with the new rows appended, after checking them against `state`."""
        X = as_matrix(X, "X", self.dtype, n_features=state.n_features)
        k = X.shape[0]
        y = _as_targets(y, self.dtype, k)
        outputs = 1 if y.ndim == 1 else y.shape[1]
        if outputs != state.outputs:
            raise ValueError(f"y must have {state.outputs} output(s) as at fit; got y.shape={y.shape}")
        if state.fixed is None:
            if noise_variance is not None:
                raise ValueError(
                    "noise_variance for the new rows is for a model with a per-sample noise_variance; this one has "
                    f"noise_variance={self.noise_variance!r}, which applies to the new rows too: pass None"
                )
            fixed = None
        else:
            if noise_variance is None:
                raise ValueError(f"this model has a per-sample noise_variance: give noise_variance for the {k} new row(s)")
            new_noise = _check_noise(noise_variance)
            if np.ndim(new_noise) == 0 or new_noise.shape[0] != k:
                raise ValueError(f"noise_variance must have one entry per new row; got {np.shape(noise_variance)} for "
                                 f"{k} row(s)")
            fixed = np.concatenate([state.fixed, new_noise])
        abs_max = np.maximum(state.x_abs_max, _abs_max(X))
        _check_scale(abs_max, state.kernel, "add_observations")
        X_all = np.ascontiguousarray(np.concatenate([state.X, X]))
        y_all = np.ascontiguousarray(np.concatenate([state.y, y]))
        n = X_all.shape[0]
        nb = state.core.tile_size
        # new bytes: the grown tiles (the kept ones move) and the update's B (n x k)
        check_fits(self._engine_type().fit_bytes(n, nb, outputs) - self._engine_type().fit_bytes(state.X.shape[0], nb, outputs)
                   + state.X.shape[0] * k * np.dtype(self.dtype).itemsize, f"adding {k} observations")
        return _Grown(X_all, y_all, fixed, abs_max, k, None if fixed is None else [float(v) for v in fixed[-k:]])

    def _extended_state(self, state, grown, in_place):
        """The fitted state with `grown`'s rows: a block update of state's engine (in place, or of
        a copy), or a refit where the update does not apply (see add_observations)."""
        n = grown.X.shape[0]
        wanted = self.tile_size or _core.choose_tile_size(n, _core.num_threads())
        if 2 * state.core.tile_size >= min(wanted, n):
            try:
                with self._engine_call():
                    if in_place:
                        state.core.add_observations(grown.X, grown.y, grown.new_noise or [])
                        core = state.core
                    else:
                        core = state.core.conditioned_on(grown.X, grown.y, grown.new_noise or [])
                return state._replace(core=core, X=grown.X, y=grown.y, x_abs_max=grown.abs_max, fixed=grown.fixed)
            except NotPositiveDefiniteError:
                pass  # the new block needs another jitter: refit below, with the policy
        core = self._make_core(state.kernel, grown.X, grown.y, state.noise, grown.fixed, state.mean, self.tile_size)
        jitter = self._factorize(core, state.kernel, state.noise, grown.fixed, state.mean, set_theta=False, X=grown.X)
        return state._replace(core=core, jitter=jitter, X=grown.X, y=grown.y, x_abs_max=grown.abs_max, fixed=grown.fixed)

    @staticmethod
    def fit_bytes(n_samples, tile_size=None, dtype=np.float64, n_outputs=1):
        """Bytes ``fit`` allocates for `n_samples` samples (lower tiles of K, and alpha).

        Parameters
        ----------
        n_samples : int
        tile_size : int or None, default=None
            None: the tile size fit would choose with the current thread count.
        dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        n_outputs : int, default=1
            Columns of y (of alpha).

        Returns
        -------
        int
        """
        n = check_positive_int(n_samples, "n_samples", allow_none=False)
        nb = check_positive_int(tile_size, "tile_size")
        if nb is None:
            nb = _core.choose_tile_size(n, _core.num_threads())
        p = check_positive_int(n_outputs, "n_outputs", allow_none=False)
        return int(getattr(_core, _ENGINE_NAME[check_dtype(dtype)]).fit_bytes(n, min(nb, n), p))

    @property
    def tile_size_(self):
        """int: the tile size in use (after ``fit``)."""
        self._require_fit("tile_size_")
        return self._fitted.core.tile_size

    def _snapshot(self, what):
        """The fitted state, after applying a pending theta change."""
        self._require_fit(what)
        self._refresh()
        return self._state()

    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        """Log marginal likelihood ``log p(y | X, theta)`` and optionally its gradient.

        ``sum_j [-1/2 (y_j - c_j)^T alpha_j] - p sum(log diag L) - p n/2 log(2 pi)`` over the
        p outputs; the gradient is ``1/2 tr((alpha alpha^T - p K^{-1}) dK/dtheta_j)`` for the
        kernel and learned-noise entries and ``1^T alpha_j`` for mean entry j, computed in
        closed form with K^{-1} formed in place of L and the dK/dtheta tiles regenerated on the fly. With
        ``jitter_ > 0`` these are the values for the jittered matrix (see Notes of the class).

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None, default=None
            Hyperparameters (layout of :attr:`theta`) at which to evaluate; None means the
            model's. The model's own hyperparameters are not changed.
        eval_gradient : bool, default=False

        Returns
        -------
        float, or (float, ndarray of shape (n_params,)) when `eval_gradient`

        Raises
        ------
        NotFittedError
            Before ``fit``.
        NotPositiveDefiniteError
            If K at `theta` (plus ``jitter_``) is not positive definite.
        MemoryError
            If the training step would not fit in memory.
        """
        state = self._snapshot("log_marginal_likelihood")
        if theta is None and not eval_gradient:
            with self._engine_call():
                return float(state.core.log_marginal_likelihood())
        theta_now = self._theta_of(state.kernel, state.noise, state.mean)
        if theta is None:
            theta = theta_now
        n_log = state.kernel.n_params + (state.noise is not None)
        theta = check_theta(theta, theta_now.shape[0], n_log)
        _check_scale(state.x_abs_max, state.kernel.with_theta(theta[:state.kernel.n_params]), "log_marginal_likelihood")
        return self._training_step(state, theta, bool(eval_gradient))

    def _training_step(self, state, theta, eval_gradient):
        core, jitter = state.core, state.jitter
        # The engine owns the estimate (cpp: ExactGP::training_step_bytes, next to the rule it describes).
        check_fits(self._engine_type().training_step_bytes(core.n, core.tile_size, len(theta)), "a training step")
        try:
            with self._engine_call():
                if core.jitter != jitter:
                    core.jitter = jitter
                out = core.training_step(list(theta), eval_gradient)
        except NotPositiveDefiniteError as err:
            raise NotPositiveDefiniteError(
                f"K + noise_variance * I is not positive definite at theta={np.array2string(theta, precision=4)}"
                f"{f' (with jitter_ {jitter:.3g})' if jitter else ''}: {err}. Fix: a larger noise variance "
                "(last entry of theta) or rescaled inputs.",
                err.order,
            ) from err
        if not eval_gradient:
            lml = float(out)
            if math.isnan(lml):
                raise FloatingPointError(f"the log marginal likelihood at theta={theta} is NaN")
            return lml
        # The jitter is the engine's own diagonal term, outside theta: the noise entry's gradient is
        # d/dlog(sigma2) with dK/dlog(sigma2) = sigma2 I, jitter or not.
        lml, grad = float(out[0]), np.array(out[1], dtype=np.float64)
        if math.isnan(lml) or not np.isfinite(grad).all():
            raise FloatingPointError(f"the log marginal likelihood or its gradient at theta={theta} is not finite")
        return lml, grad

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
            Add the learned noise variance: the predictive distribution of new observations y*
            (a per-sample noise is known at the training points only and is not added).

        Returns
        -------
        mean : ndarray of shape (n_test,), or (n_test, n_outputs) when y had several columns
        std : ndarray of shape (n_test,), if `return_std` (shared by the outputs)
        cov : ndarray of shape (n_test, n_test), if `return_cov` (shared by the outputs)

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError, TypeError
            For unusable X (other feature count than at fit, NaN, ...).
        MemoryError
            If the prediction would not fit in memory (mostly ``return_cov`` for many points).
        """
        self._require_fit("predict")
        if return_std and return_cov:
            raise ValueError("at most one of return_std and return_cov can be requested")
        state = self._snapshot("predict")
        core = state.core
        X = as_matrix(X, "X", self.dtype, n_features=state.n_features)
        _check_scale(np.maximum(_abs_max(X), state.x_abs_max), state.kernel, "predict")
        what = f"a full covariance of {X.shape[0]} test points" if return_cov else f"predicting {X.shape[0]} points"
        needed = self._engine_type().predict_bytes(core.n, X.shape[0], core.tile_size, bool(return_std), bool(return_cov),
                                                   outputs=state.outputs)
        check_fits(needed, what)
        # The engine adds the learned noise only (not the jitter, nor the fixed per-sample noise).
        # With jitter, K is often badly conditioned and var small next to k(x, x): adding the
        # noise afterwards keeps it exact (inside, k(x, x) + noise would round it away).
        jitter, noise = state.jitter, state.noise
        engine_noise = bool(include_noise) and not jitter
        with self._engine_call():
            mean, var, cov = core.predict(X, bool(return_std), bool(return_cov), engine_noise)
        if include_noise and jitter and noise is not None:
            if var is not None:
                var += self.dtype(noise)
            if cov is not None:
                cov[np.diag_indices_from(cov)] += self.dtype(noise)
        for name, value in (("mean", mean), ("variance", var), ("covariance", cov)):
            if value is not None and not np.all(np.isfinite(value)):
                raise FloatingPointError(
                    f"the predicted {name} is not finite; the inputs or hyperparameters are out of the range "
                    "the kernel can evaluate (rescale X)"
                )
        if return_std:
            return mean, np.sqrt(var)
        if return_cov:
            return mean, cov
        return mean

    def cholesky_factor(self):
        """ndarray of shape (n_samples, n_samples): the lower Cholesky factor L of K (dense copy).

        With ``jitter_ > 0``, the factor of ``K + (noise_variance + jitter_) I``.
        """
        core = self._snapshot("cholesky_factor").core
        n = core.n
        check_fits(n * n * np.dtype(self.dtype).itemsize, f"a dense copy of the {n} x {n} Cholesky factor")
        with self._engine_call():
            return core.cholesky_factor()

    # --------------------------------------------------------------- optimize
    def default_bounds(self):
        """ndarray of shape (n_params, 2): the default optimization box in theta space.

        The kernel's own box (``kernel.bounds``, log space), the noise box (log space) for a learned
        noise, and ``(-inf, inf)`` for the constant mean entries, which are not logarithms and are
        left unbounded. Once fitted, the noise box is
        :func:`gprat.models.exact.noise_variance_bounds` of the training targets (its floor 1e-6 of
        their variance); before, ``DEFAULT_BOUNDS["noise_variance"]``.
        """
        fitted = self._fitted
        nlo, nhi = noise_variance_bounds(None if fitted is None else fitted.y)
        kp = self.kernel.n_params
        b = np.empty((self.n_params, 2))
        b[:kp] = self.kernel.bounds
        if self._noise_parts()[1] is not None:
            b[kp] = np.log([nlo, nhi])
        b[self._n_log():] = (-np.inf, np.inf)
        return b

    def optimize(self, method="L-BFGS-B", max_iter=100, trainable=None, progress=False, lr=0.05,
                 bounds=None, callback=None, recheck_switched_off=True):
        """Maximize the log marginal likelihood over the hyperparameters.

        Trial points whose covariance matrix (plus ``jitter_``) is not positive definite, or
        whose value or gradient is not finite, count as failed: L-BFGS-B backtracks from them,
        Adam halves its step; a :class:`gprat.NumericalWarning` says how many there were. The
        optimizer never returns or steps to a non-finite point.

        Parameters
        ----------
        method : {"L-BFGS-B", "adam"}, default="L-BFGS-B"
            Bound-constrained L-BFGS on the closed-form gradient, run in the compiled engine
            (SciPy's L-BFGS-B stopping tests and line-search constants, no Python per trial
            point), or Adam.
        max_iter : int, default=100
        trainable : array-like of bool, shape (n_params,), or None, default=None
            Which entries of theta to optimize; None means the kernel's ``trainable`` mask (False
            for parameters it keeps ``fixed``), then every noise and mean entry.
        progress : bool, default=False
            Print iteration, loss and elapsed time to stderr.
        lr : float, default=0.05
            Adam's learning rate (in log-hyperparameter units).
        bounds : array-like of shape (n_params, 2) or None
            Box in theta space; None uses :meth:`default_bounds`. Rows of log entries must be
            finite; rows of constant mean entries may be infinite (unbounded).
        callback : callable or None
            ``callback(iteration, loss)`` after each iteration, loss = -log marginal likelihood.
        recheck_switched_off : bool, default=True
            L-BFGS-B only: when it ends with a trainable lengthscale above
            ``SWITCHED_OFF_SPAN_RATIO`` (1e3) times the data span it divides (its features
            switched off, see :meth:`gprat.kernels.Kernel.lengthscale_spans`), run it once more
            from that result with those lengthscales set to their spans, within the remaining
            ``max_iter``, and keep the better of the two optima (:mod:`gprat.optim.switched_off`
            says why). The result's counts and history then cover both runs. False skips it.

        Notes
        -----
        The recheck: in log space the likelihood along a lengthscale far above its data span
        tends to a plateau, and L-BFGS-B can walk out along it to the box edge past a better
        finite optimum. On Hartmann-6 with Matérn-5/2 at n = 100 it switched feature 3 off at
        LML -108.149, where lengthscale 6.0 gives -108.123; the rerun finds that in 22 more
        evaluations. It costs a second run only in fits that switch a feature off.

        L-BFGS-B minimizes the negative log marginal likelihood divided by the largest entry of
        its gradient at the start (at least 1): the first step then moves no entry by more than
        one log unit. Unscaled, that step is the raw gradient, of order n, and throws the
        lengthscales to the box edge (a white-noise model): on Hartmann-6 at n = 1000 from
        lengthscale 1, it stopped at LML -1419 against -226 scaled (benchmarks/bo_small_n.py).
        Trainable constant-mean entries start at their generalized-least-squares value for the
        starting kernel (see ``_mean_warm_start``). The L-BFGS loop is C++
        (``cpp/include/gprat/optim/box_lbfgs.hpp``): a Bayesian-optimization fit at n = 50 makes
        ~40 training steps of ~50 us, and SciPy's driver plus a Python objective around each cost
        ~120 us more; it reaches the same optimum as SciPy's L-BFGS-B on the same scaled objective
        (tests/python/test_box_lbfgs.py). Adam's loop runs in Python.

        Returns
        -------
        OptimizationResult
            The model is left at the best hyperparameters found, refitted (jitter policy
            applied afresh). If the optimization fails or is interrupted (KeyboardInterrupt),
            the model keeps its previous hyperparameters and factor.
        """
        self._require_fit("optimize")
        max_iter = check_positive_int(max_iter, "max_iter", allow_none=False)
        if trainable is None:
            # the kernel's mask (False where it keeps a parameter fixed), then noise and mean entries
            mask = np.concatenate([self.kernel.trainable, np.ones(self.n_params - self.kernel.n_params, dtype=bool)])
        else:
            mask = np.asarray(trainable)
            if mask.dtype != bool or mask.shape != (self.n_params,):
                raise ValueError(f"trainable must be {self.n_params} booleans; got {trainable!r}")
        if bounds is None:
            bounds = self.default_bounds()
        else:
            try:
                bounds = np.array(bounds, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"bounds must be ({self.n_params}, 2) numbers (low, high) in theta space; {err}") from None
        n_log = self._n_log()
        if bounds.shape != (self.n_params, 2) or np.any(np.isnan(bounds)) or not np.all(np.isfinite(bounds[:n_log])) \
                or np.any(bounds[:, 0] > bounds[:, 1]):
            raise ValueError(f"bounds must be finite (low, high) pairs of shape ({self.n_params}, 2) (infinite "
                             f"allowed for constant mean entries only, low <= high); got {bounds}")
        if np.any(np.abs(bounds[:n_log]) > THETA_MAX):
            raise ValueError(f"bounds are log-hyperparameters and must lie in [-{THETA_MAX:.1f}, {THETA_MAX:.1f}]; got {bounds}")
        method_key = str(method).lower()
        if method_key not in ("l-bfgs-b", "lbfgsb", "fmin_l_bfgs_b", "adam"):
            raise ValueError(f"method must be 'L-BFGS-B' or 'adam'; got {method!r}")
        if method_key == "adam":
            lr = check_positive(lr, "lr")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None; got {callback!r}")
        self._refresh()
        theta0 = np.clip(self._mean_warm_start(self.theta, mask), bounds[:, 0], bounds[:, 1])
        if not mask.any():
            lml = self.log_marginal_likelihood(theta0)
            return OptimizationResult(theta=theta0, log_marginal_likelihood=lml, n_iter=0, converged=True,
                                      message="nothing to optimize: no entry of theta is trainable")
        with Progress(progress, max_iter) as bar:
            if method_key == "adam":
                objective = Objective(self._optimizer_function(), theta0, mask, maximize=True)
                result = minimize_adam(objective, bounds, max_iter, lr=lr, progress=bar, callback=callback)
            else:
                result = self._maximize_lbfgs(theta0, mask, bounds, max_iter, bar, callback)
                if recheck_switched_off:
                    result = _recheck_switched_off(
                        result, lambda start, iters, done: self._maximize_lbfgs(start, mask, bounds, iters, bar, callback,
                                                                                first_iteration=done),
                        self.kernel, self._state().X, mask, bounds, max_iter)
        self._apply_theta(result.theta)
        return result

    def _maximize_lbfgs(self, theta0, mask, bounds, max_iter, bar, callback, first_iteration=0):
        """L-BFGS on the engine: the whole loop in C++ (``gprat._core`` ``maximize_lbfgs``).

        The same scaled objective as :func:`gprat.optim.minimize_lbfgsb` (the loss divided by the
        largest entry of its first gradient) and the same stopping tests and line-search constants
        as SciPy's L-BFGS-B (cpp/include/gprat/optim/box_lbfgs.hpp), without a Python call per
        trial point: at n = 50 SciPy's driver and the Python objective cost more than the training
        steps themselves (benchmarks/bo_small_n.py).
        """
        core = self._core_for_training_steps()
        history = []

        def on_iteration(iteration, lml):
            history.append(-lml)
            bar.update(first_iteration + iteration, -lml)
            if callback is not None:
                callback(first_iteration + iteration, -lml)

        with self._engine_call():
            theta, lml, n_iter, n_eval, n_failed, converged, message = core.maximize_lbfgs(
                np.asarray(theta0, dtype=np.float64).tolist(), np.asarray(mask, dtype=bool).tolist(),
                bounds[:, 0].tolist(), bounds[:, 1].tolist(), int(max_iter), on_iteration)
        if n_eval == n_failed:
            raise no_good_point_error()
        if n_failed:
            warn_failed_points(n_failed, "the optimizer backtracked from them", stacklevel=4)
        return OptimizationResult(theta=np.array(theta), log_marginal_likelihood=float(lml), n_iter=int(n_iter),
                                  history=history, converged=bool(converged), message=str(message),
                                  n_failed=int(n_failed), n_eval=int(n_eval))

    def _mean_warm_start(self, theta, mask):
        """theta with its trainable constant-mean entries at their optimum for the other entries.

        For fixed kernel and noise, the log marginal likelihood is a concave quadratic in c_j,
        maximized by the generalized least-squares mean c_j = 1^T K^{-1} y_j / 1^T K^{-1} 1
        (one solve with the current factor). Starting there keeps the kernel from absorbing an
        offset of y in its first steps: from c = 0 under an offset, the signal variance grows to
        explain it and L-BFGS-B can settle in that basin (tests/python/test_exact_gp_noise_outputs.py,
        y + 250).
        """
        state = self._state()
        if state.mean is None:
            return theta
        first = len(theta) - state.outputs
        if not np.any(mask[first:]):
            return theta
        ones = np.ones(state.X.shape[0], dtype=self.dtype)
        with self._engine_call():
            u = np.asarray(state.core.solve(ones), dtype=np.float64)  # K^{-1} 1
        Y = np.asarray(state.y, dtype=np.float64).reshape(state.X.shape[0], -1)
        denominator = float(u.sum())
        if not (np.isfinite(denominator) and denominator > 0):
            return theta
        best = (u @ Y) / denominator
        out = np.array(theta, dtype=np.float64)
        out[first:] = np.where(mask[first:], best, out[first:])
        return out

    def _apply_theta(self, theta):
        """Set theta and refactor now (jitter policy); on failure keep the jitter the optimizer used."""
        with self._lock:
            state = self._state()
            kernel, learned, mean = self._split_theta(theta, state.kernel, state.noise, state.mean)
            try:
                try:
                    jitter = self._factorize(state.core, kernel, learned, state.fixed, mean, set_theta=True, X=state.X)
                except NotPositiveDefiniteError:
                    # The optimizer evaluated this theta with state.jitter added: that factorization works.
                    with self._engine_call():
                        state.core.theta = list(theta)
                        state.core.jitter = state.jitter
                        state.core.fit()
                    jitter = state.jitter
            except BaseException:  # interrupted: keep the previous hyperparameters
                self._restore_engine_theta(state)
                raise
            self.kernel = kernel
            self._set_learned(learned)
            if mean is not None:
                self.mean_constant = mean
            self._fitted = state._replace(jitter=jitter, kernel=kernel, noise=learned, mean=mean)
            self._stale = False

    def _core_for_training_steps(self):
        """The engine, ready for an optimization's training steps: what is the same for every
        trial point, done once (the memory check, a step allocating the same at every theta; the
        model's jitter, fixed while it optimizes)."""
        state = self._state()
        core = state.core
        check_fits(self._engine_type().training_step_bytes(core.n, core.tile_size, core.n_params), "a training step")
        if core.jitter != state.jitter:
            core.jitter = state.jitter
        return core

    def _optimizer_function(self):
        """``fun(theta, eval_gradient)`` for the optimizers: the engine's training step at theta.

        Everything that is the same for every trial point is done here, once per optimization,
        not per point (a small-n BO fit makes ~40 steps of ~50 us each, and per-point Python
        around them cost more than the steps): the memory check (a step allocates the same at
        every theta), the jitter the steps use (the model's, fixed while it optimizes), the engine
        lookup. No input-scale check either (it rebuilt the kernel on every point): inputs that
        overflow the scaled distances give a K with zeros (exp(-inf), the right limit) or NaN
        entries, and NaN makes the Cholesky or the Objective's finiteness test fail, so such a
        point fails all the same. A NotPositiveDefiniteError, or a non-finite value or gradient,
        is a failed trial point, counted by the Objective.
        """
        core = self._core_for_training_steps()
        step = core.training_step
        engine_call = self._engine_call()

        def fun(theta, eval_gradient=True):
            with engine_call:
                return step(theta.tolist(), eval_gradient)

        return fun

    def __repr__(self):
        nv = self.noise_variance
        noise = f"{nv:.4g}" if np.ndim(nv) == 0 else f"<per-sample array of {len(nv)}>"
        extra = "" if self.learned_noise is None else f", learned_noise={self.learned_noise:.4g}"
        if self.mean_constant is not None:
            extra += f", mean_constant={np.array2string(np.asarray(self.mean_constant), precision=4)}"
        return (f"ExactGP({self.kernel!r}, noise_variance={noise}{extra}, "
                f"tile_size={self.tile_size}, dtype={np.dtype(self.dtype).name}, device={str(self.device)!r})")
