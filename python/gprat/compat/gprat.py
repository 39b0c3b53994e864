"""GPRat-compatible API: ``GP``, ``GP_data``, ``AdamParams`` and GPRat's helper functions.

Scripts written for GPRat (SC-SGS/GPRat, "GPRat: Gaussian Process Regression with
Asynchronous Tasks") keep working with ``import gprat``. Everything here is a thin layer
over the native engine (:class:`gprat.ExactGP` with an isotropic
:class:`gprat.kernels.SquaredExponential` kernel); only GPRat's conventions live here:

- a one-dimensional series is turned into samples by a sliding window: sample ``i`` has the
  feature vector ``input_data[i : i + n_reg]`` and the target ``output_data[i]``;
- ``kernel_params = [lengthscale l, vertical_lengthscale v, noise_variance s]`` with
  ``k(x, x') = v * exp(-|x - x'|^2 / (2 l^2))`` and ``s`` added to the diagonal of ``K``;
- the loss is the negative log marginal likelihood divided by ``n`` (constant included);
- Adam runs on unconstrained parameters ``p`` with ``value = softplus(p)`` (``+ 1e-6`` for
  the noise), bias correction folded into the step size;
- results are plain Python lists, and ``n = n_tiles * n_tile_size`` exactly.

These are GPRat's limitations kept on purpose (see DESIGN.md, "GPRat compatibility"); the
native API (:class:`gprat.ExactGP`) takes NumPy arrays of any size and reports the full
log marginal likelihood.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from .. import backends, runtime
from .._validation import check_int, check_real
from ..exceptions import BackendUnavailableError, NumericalWarning
from ..kernels import SquaredExponential
from ..models.exact import ExactGP
from ..optim import AdamState

__all__ = [
    "GP",
    "AdamParams",
    "GP_data",
    "compiled_with_cuda",
    "compute_test_tiles",
    "compute_train_tile_size",
    "compute_train_tiles",
    "gpu_count",
    "resume_hpx",
    "start_hpx",
    "stop_hpx",
    "suspend_hpx",
]

#: Offset GPRat adds to the softplus of the noise parameter, keeping the noise away from 0.
NOISE_JITTER = 1e-6

_PARAM_NAMES = ("lengthscale", "vertical_lengthscale", "noise_variance")


def _check_adam(params):
    """The AdamParams given to optimize/optimize_step, checked for the attributes Adam reads."""
    names = ("learning_rate", "beta1", "beta2", "epsilon", "opt_iter")
    if not all(hasattr(params, name) for name in names):
        raise TypeError(f"expected an AdamParams object; got {type(params).__name__} {params!r}.")
    if isinstance(params, AdamParams):
        # Attributes may have been reassigned since construction: check them again.
        AdamParams(*(getattr(params, name) for name in names))
        return params
    return AdamParams(*(getattr(params, name) for name in names))


# --------------------------------------------------------------------------------------------
# Parameter transform used by GPRat's Adam.
# --------------------------------------------------------------------------------------------


def _to_constrained(p, noise):
    """value = softplus(p) = log(1 + exp(p)), plus 1e-6 for the noise."""
    value = math.log1p(math.exp(p)) if p < 30.0 else p + math.log1p(math.exp(-p))
    return value + NOISE_JITTER if noise else value


def _to_unconstrained(value, noise):
    """Inverse of :func:`_to_constrained`: p = log(exp(value) - 1)."""
    if noise:
        value = value - NOISE_JITTER
    return math.log(math.expm1(value)) if value < 30.0 else value + math.log(-math.expm1(-value))


def _sigmoid(p):
    """d softplus(p) / dp."""
    return 1.0 / (1.0 + math.exp(-p))


# --------------------------------------------------------------------------------------------
# Helper functions
# --------------------------------------------------------------------------------------------


def compute_train_tiles(n_samples, n_tile_size):
    """Number of training tiles per dimension for a given tile size.

    Parameters
    ----------
    n_samples : int
        Number of training samples.
    n_tile_size : int
        Rows per tile.

    Returns
    -------
    int
        ``n_samples // n_tile_size`` (GPRat drops the remainder).

    Raises
    ------
    ValueError
        If ``n_tile_size`` is not positive.

    Examples
    --------
    >>> compute_train_tiles(128, 32)
    4
    """
    return int(n_samples) // check_int(n_tile_size, "n_tile_size")


def compute_train_tile_size(n_samples, n_tiles):
    """Tile size ``n_samples // n_tiles`` for ``n_tiles`` training tiles per dimension (GPRat
    drops the remainder); ``n_tiles`` must be a positive integer (ValueError otherwise).

    Examples
    --------
    >>> compute_train_tile_size(128, 4)
    32
    """
    return int(n_samples) // check_int(n_tiles, "n_tiles")


def compute_test_tiles(m_samples, n_tiles, n_tile_size):
    """Number of test tiles and test tile size, GPRat's rule.

    If ``m_samples`` is a multiple of ``n_tile_size`` the training tile size is kept;
    otherwise the test data is split into ``n_tiles`` tiles.

    Parameters
    ----------
    m_samples : int
        Number of test samples (GPRat's documentation calls it ``n_test``).
    n_tiles : int
        Number of training tiles per dimension.
    n_tile_size : int
        Training tile size.

    Returns
    -------
    m_tiles : int
        Number of test tiles.
    m_tile_size : int
        Rows per test tile.

    Raises
    ------
    ValueError
        If ``n_tiles`` or ``n_tile_size`` is not positive.

    Examples
    --------
    >>> compute_test_tiles(128, 4, 32)
    (4, 32)
    >>> compute_test_tiles(100, 4, 32)
    (4, 25)
    """
    m_samples = int(m_samples)
    n_tiles = check_int(n_tiles, "n_tiles")
    n_tile_size = check_int(n_tile_size, "n_tile_size")
    if m_samples % n_tile_size > 0:
        return n_tiles, m_samples // n_tiles
    return m_samples // n_tile_size, n_tile_size


def start_hpx(args, n_cores):
    """Start the task runtime with ``n_cores`` worker threads (GPRat started HPX here).

    Parameters
    ----------
    args : list of str
        HPX command-line arguments. Accepted for compatibility and ignored: gprat's runtime
        is its own and takes no command line.
    n_cores : int
        Number of worker threads.

    Raises
    ------
    ValueError
        If ``n_cores`` is not positive.
    """
    if args is not None and (isinstance(args, str) or not all(isinstance(a, str) for a in args)):
        raise TypeError(f"args must be a list of str (HPX command-line arguments); got {args!r}.")
    runtime.start(check_int(n_cores, "n_cores"))


def stop_hpx():
    """Stop the task runtime (waits for running tasks)."""
    runtime.stop()


def suspend_hpx():
    """Suspend the task runtime's worker threads until :func:`resume_hpx`."""
    runtime.suspend()


def resume_hpx():
    """Resume the task runtime after :func:`suspend_hpx`."""
    runtime.resume()


def compiled_with_cuda():
    """Whether this build of gprat includes the CUDA backend.

    Returns
    -------
    bool
    """
    return backends.cuda_built()


def gpu_count():
    """Number of CUDA devices visible to gprat (0 in a build without CUDA, or without a GPU).

    Returns
    -------
    int
    """
    return backends.cuda_device_count()


# --------------------------------------------------------------------------------------------
# Data and optimizer settings
# --------------------------------------------------------------------------------------------


class GP_data:
    """A series of numbers read from a text file, padded for GPRat's sliding window.

    Reads the first ``n_samples`` numbers of the file (whitespace separated, usually one per
    line) and prepends ``n_regressors - 1`` zeros, so that ``len(data) == n_samples +
    n_regressors - 1`` and every sample has a full window of regressors.

    Parameters
    ----------
    file_path : str or path-like
        Text file with at least ``n_samples`` numbers.
    n_samples : int
        Number of numbers to read.
    n_regressors : int
        Window length of the GP that will use the data (``n_reg`` of :class:`GP`).

    Attributes
    ----------
    file_path : str
    n_samples : int
    n_regressors : int
    data : list of float
        ``n_regressors - 1`` zeros followed by the numbers read.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file holds fewer than ``n_samples`` numbers, or something that is not a number
        among them, or if a size is not positive.
    """

    def __init__(self, file_path, n_samples, n_regressors):
        self._file_path = str(file_path)
        self._n_samples = check_int(n_samples, "n_samples")
        self._n_regressors = check_int(n_regressors, "n_regressors")
        path = Path(file_path)
        if not path.is_file():
            raise FileNotFoundError(f"GP_data: file not found: {self._file_path}")
        values = []
        with path.open() as handle:
            for line_number, line in enumerate(handle, start=1):
                for token in line.split():
                    try:
                        values.append(float(token))
                    except ValueError:
                        raise ValueError(
                            f"GP_data: {self._file_path}, line {line_number}: expected a number, got {token!r}."
                        ) from None
                    if len(values) == self._n_samples:
                        break
                if len(values) == self._n_samples:
                    break
        if len(values) < self._n_samples:
            raise ValueError(
                f"GP_data: {self._file_path} holds {len(values)} numbers; expected at least "
                f"n_samples={self._n_samples}."
            )
        self._data = [0.0] * (self._n_regressors - 1) + values

    @property
    def file_path(self):
        """str: Path of the file the data was read from."""
        return self._file_path

    @property
    def n_samples(self):
        """int: Number of values read from the file."""
        return self._n_samples

    @property
    def n_regressors(self):
        """int: Window length the data is padded for."""
        return self._n_regressors

    @property
    def data(self):
        """list of float: ``n_regressors - 1`` zeros, then the values read."""
        return list(self._data)

    def __repr__(self):
        return f"GP_data(file_path={self._file_path!r}, n_samples={self._n_samples}, n_regressors={self._n_regressors})"


class AdamParams:
    """Settings of GPRat's Adam optimizer.

    Parameters
    ----------
    learning_rate : float, default=0.001
    beta1 : float, default=0.9
        Decay of the first-moment estimate.
    beta2 : float, default=0.999
        Decay of the second-moment estimate.
    epsilon : float, default=1e-8
        Added to the square root of the second moment.
    opt_iter : int, default=0
        Number of steps :meth:`GP.optimize` runs.

    Examples
    --------
    >>> AdamParams(learning_rate=0.1, opt_iter=3)
    AdamParams(learning_rate=0.1, beta1=0.9, beta2=0.999, epsilon=1e-08, opt_iter=3)
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8, opt_iter=0):
        self.learning_rate = check_real(learning_rate, "learning_rate")
        self.beta1 = check_real(beta1, "beta1")
        self.beta2 = check_real(beta2, "beta2")
        self.epsilon = check_real(epsilon, "epsilon")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive and finite; got {learning_rate!r}.")
        for name, value in (("beta1", self.beta1), ("beta2", self.beta2)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be positive and finite; got {epsilon!r}.")
        if (
            isinstance(opt_iter, (bool, np.bool_))
            or not isinstance(opt_iter, (int, np.integer, float, np.floating))
            or not math.isfinite(opt_iter)
            or int(opt_iter) != opt_iter
            or opt_iter < 0
        ):
            raise ValueError(f"opt_iter must be a non-negative integer; got {opt_iter!r}.")
        self.opt_iter = int(opt_iter)

    def __repr__(self):
        return (
            f"AdamParams(learning_rate={self.learning_rate!r}, beta1={self.beta1!r}, "
            f"beta2={self.beta2!r}, epsilon={self.epsilon!r}, opt_iter={self.opt_iter!r})"
        )


# --------------------------------------------------------------------------------------------
# GP
# --------------------------------------------------------------------------------------------


def _series(values, name):
    from .._validation import _as_numeric_array

    array = np.asarray(_as_numeric_array(values, name), dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat list of numbers; got an array of shape {array.shape}.")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} contains NaN or infinite values (first at index {bad[0]}: {array[bad[0]]}).")
    return array


def _windows(series, n_samples, n_reg, name):
    """Sliding-window features: row i is series[i : i + n_reg]."""
    needed = n_samples + n_reg - 1
    if series.size < needed:
        raise ValueError(
            f"{name} is too short: {n_samples} samples with n_reg={n_reg} need "
            f"{needed} values (n_samples + n_reg - 1, as GP_data pads them); got {series.size}."
        )
    windows = np.lib.stride_tricks.sliding_window_view(series, n_reg)[:n_samples]
    return np.ascontiguousarray(windows)


class GP:
    """GPRat's Gaussian process on a sliding window of a one-dimensional series.

    Parameters
    ----------
    input_data : list of float
        Input series, usually ``GP_data.data`` (padded with ``n_reg - 1`` leading zeros).
        Sample ``i`` has the features ``input_data[i : i + n_reg]``.
    output_data : list of float
        Output series; sample ``i`` has the target ``output_data[i]``.
    n_tiles : int
        Tiles per dimension.
    n_tile_size : int
        Rows per tile; the GP uses ``n = n_tiles * n_tile_size`` samples.
    n_reg : int, default=8
        Number of regressors (window length).
    kernel_params : sequence of 3 floats, default=(1.0, 1.0, 0.1)
        ``[lengthscale, vertical_lengthscale, noise_variance]``, all positive.
    trainable : sequence of 3 bools, default=(True, True, True)
        Which of the three parameters :meth:`optimize` changes.
    gpu_id : int, optional
        GPU to run on. Only in a build with CUDA.
    n_units : int, optional
        Number of CUDA streams. Only in a build with CUDA.

    Attributes
    ----------
    n_reg : int
    kernel_params : list of float
        The current ``[lengthscale, vertical_lengthscale, noise_variance]``; assigning a new
        list also resets the optimizer's moment estimates.

    Raises
    ------
    ValueError
        If a size is not positive, the series are too short for ``n`` samples, or a kernel
        parameter is not positive.
    BackendUnavailableError
        If ``gpu_id`` or ``n_units`` is given in a build without CUDA.

    Examples
    --------
    >>> gp = GP([0.0] * 7 + [0.1, 0.4, 0.2, 0.3], [0.0] * 7 + [1.0, 2.0, 1.5, 1.7],
    ...         n_tiles=2, n_tile_size=2)
    >>> gp.n_reg, gp.kernel_params
    (8, [1.0, 1.0, 0.1])
    """

    def __init__(
        self,
        input_data,
        output_data,
        n_tiles,
        n_tile_size,
        n_reg=8,
        kernel_params=(1.0, 1.0, 0.1),
        trainable=(True, True, True),
        gpu_id=None,
        n_units=None,
    ):
        self._n_tiles = check_int(n_tiles, "n_tiles")
        self._n_tile_size = check_int(n_tile_size, "n_tile_size")
        self._n_reg = check_int(n_reg, "n_reg")
        self._input = _series(input_data, "input_data")
        self._output = _series(output_data, "output_data")
        n = self._n_tiles * self._n_tile_size
        if self._output.size < n:
            raise ValueError(
                f"output_data is too short: n_tiles * n_tile_size = {n} samples need {n} "
                f"values; got {self._output.size}."
            )
        self._X = _windows(self._input, n, self._n_reg, "input_data")
        self._y = np.ascontiguousarray(self._output[:n])
        trainable = list(trainable)
        if len(trainable) != 3:
            raise ValueError(
                "trainable must hold 3 flags (lengthscale, vertical_lengthscale, "
                f"noise_variance); got {len(trainable)}."
            )
        for flag in trainable:
            if not (isinstance(flag, (bool, np.bool_)) or (isinstance(flag, (int, np.integer)) and flag in (0, 1))):
                raise TypeError(f"trainable must hold 3 booleans; got {trainable!r}.")
        self._trainable = [bool(t) for t in trainable]
        self._device = "cpu"
        if gpu_id is not None or n_units is not None:
            self._device = self._select_gpu(gpu_id, n_units)
        self._gp = None
        self.kernel_params = kernel_params

    # -- attributes ------------------------------------------------------------------------

    @property
    def n_reg(self):
        """int: Number of regressors (window length)."""
        return self._n_reg

    @n_reg.setter
    def n_reg(self, value):
        value = check_int(value, "n_reg")
        n = self._n_tiles * self._n_tile_size
        self._X = _windows(self._input, n, value, "input_data")
        self._n_reg = value
        self._gp = None

    @property
    def kernel_params(self):
        """list of float: ``[lengthscale, vertical_lengthscale, noise_variance]``."""
        return list(self._params)

    @kernel_params.setter
    def kernel_params(self, values):
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"kernel_params must be a sequence of 3 numbers; got {values!r}.")
        values = list(values)
        for value in values:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"kernel_params must hold 3 real numbers; got {values!r}.")
        values = [float(v) for v in values]
        if len(values) != 3:
            raise ValueError(
                "kernel_params must hold 3 values [lengthscale, vertical_lengthscale, "
                f"noise_variance]; got {len(values)}."
            )
        for name, value in zip(_PARAM_NAMES, values):
            if not (value > 0.0 and math.isfinite(value)):
                raise ValueError(f"kernel_params: {name} must be positive and finite; got {value}.")
        self._params = values
        self._step_refused = False
        self._adam = AdamState(3)  # Adam's moments over the unconstrained parameters
        self._gp = None

    def get_input_data(self):
        """Return the training input series as given (list of float)."""
        return self._input.tolist()

    def get_output_data(self):
        """Return the training output series as given (list of float)."""
        return self._output.tolist()

    def __repr__(self):
        l, v, s = self._params
        t = [int(flag) for flag in self._trainable]
        return (
            f"Kernel_Params: [lengthscale={l:.12f}, vertical_lengthscale={v:.12f}, "
            f"noise_variance={s:.12f}, n_regressors={self._n_reg}], Trainable_Params: "
            f"[trainable_params l={t[0]}, trainable_params v={t[1]}, trainable_params n={t[2]}], "
            f"Target: [{self._device}], n_tiles={self._n_tiles}, n_tile_size={self._n_tile_size}"
        )

    # -- engine ------------------------------------------------------------------------------

    @staticmethod
    def _select_gpu(gpu_id, n_units):
        """The device for GPRat's ``gpu_id`` / ``n_units`` (n_units: GPRat's CUDA streams, checked, not used)."""
        if n_units is not None:
            check_int(n_units, "n_units")
        index = 0 if gpu_id is None else check_int(gpu_id, "gpu_id", 0)
        if not backends.cuda_built():
            raise BackendUnavailableError(
                f"Cannot create a GP on a GPU (gpu_id={gpu_id}, n_units={n_units}): this build "
                "of gprat has no CUDA backend. Remove gpu_id and n_units to compute on the CPU."
            )
        return str(backends.require(f"cuda:{index}"))

    def _engine(self):
        """The native ExactGP fitted at the current kernel_params (built lazily, cached)."""
        if self._gp is None:
            lengthscale, signal_variance, noise_variance = self._params
            kernel = SquaredExponential(lengthscale=lengthscale, signal_variance=signal_variance)
            self._gp = ExactGP(kernel, noise_variance=noise_variance, tile_size=self._n_tile_size,
                               device=self._device).fit(self._X, self._y)
        return self._gp

    def _test_features(self, test_data, m_tiles, m_tile_size):
        m = check_int(m_tiles, "m_tiles") * check_int(m_tile_size, "m_tile_size")
        return _windows(_series(test_data, "test_data"), m, self._n_reg, "test_data")

    # -- GPRat methods ---------------------------------------------------------------------

    def compute_loss(self):
        """Negative log marginal likelihood divided by ``n`` at the current parameters.

        Returns
        -------
        float
            ``(1/2 y^T K^{-1} y + 1/2 log det K + n/2 log(2 pi)) / n``.
        """
        return -self._engine().log_marginal_likelihood() / self._y.size

    def optimize_step(self, AdamParams, iter):
        """Run one Adam step and return the loss before it.

        Parameters
        ----------
        AdamParams : AdamParams
            Optimizer settings (``opt_iter`` is ignored).
        iter : int
            Zero-based step number; the bias correction uses ``t = iter + 1``.

        Returns
        -------
        float
            The loss (see :meth:`compute_loss`) at the parameters before the step.

        Notes
        -----
        With ``p = softplus^{-1}(value)`` (noise: ``value - 1e-6``) and ``g = d loss / d p``:
        ``m <- beta1 m + (1 - beta1) g``, ``w <- beta2 w + (1 - beta2) g^2``,
        ``p <- p - lr sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(w) + epsilon)``.
        The moments persist between calls; assigning ``kernel_params`` resets them.

        The GP is refitted at the new parameters at once (with ExactGP's jitter policy). A step
        that would give non-finite parameters, or a covariance matrix that cannot be factored
        even with jitter, is not taken: parameters and moments stay as they were and a
        ``gprat.NumericalWarning`` says so.
        """
        adam = _check_adam(AdamParams)
        if isinstance(iter, (bool, np.bool_)) or not isinstance(iter, (int, np.integer)) or iter < 0:
            raise ValueError(f"iter must be a non-negative integer; got {iter!r}.")
        step = int(iter)
        if self._trainable[2] and self._params[2] <= NOISE_JITTER:
            raise ValueError(
                f"a trainable noise_variance must exceed {NOISE_JITTER:g} (GPRat's Adam keeps noise = softplus(p) "
                f"+ {NOISE_JITTER:g}); got {self._params[2]:g}. Raise it or set trainable[2] = False."
            )
        self._step_refused = False
        n = self._y.size
        gp = self._engine()
        lml, gradient_log = gp.log_marginal_likelihood(np.log(self._params), eval_gradient=True)
        loss = -float(lml) / n
        state = self._adam
        state.lr, state.beta1, state.beta2, state.epsilon = adam.learning_rate, adam.beta1, adam.beta2, adam.epsilon
        p = np.array([_to_unconstrained(value, j == 2) for j, value in enumerate(self._params)])
        # d loss / d p = d loss / d log(value) * d log(value) / d p
        g = np.array([-float(gradient_log[j]) / n * _sigmoid(p[j]) / self._params[j] for j in range(3)])
        moments = (state.m.copy(), state.v.copy())
        p = p - state.step(g, step + 1, mask=self._trainable)
        updated = [_to_constrained(p[j], j == 2) if self._trainable[j] else self._params[j] for j in range(3)]
        if updated != self._params:
            refused = None
            if not all(math.isfinite(v) and 1e-300 <= v <= 1e300 for v in updated):
                refused = f"it would give kernel_params {updated}"
            else:
                previous = (self._params, self._gp)
                self._params, self._gp = updated, None
                try:
                    self._engine()  # fit now: a failure leaves the previous parameters in place
                except (ValueError, FloatingPointError) as error:  # NotPositiveDefiniteError included
                    self._params, self._gp = previous
                    refused = f"the covariance matrix at kernel_params {updated} cannot be factored ({error})"
            if refused is not None:
                state.m, state.v = moments
                self._step_refused = True
                warnings.warn(
                    f"Adam step {step} not taken: {refused}; kernel_params stay {self._params}. "
                    "Try a smaller learning_rate.",
                    NumericalWarning, stacklevel=2,
                )
        return loss

    def optimize(self, AdamParams):
        """Run ``AdamParams.opt_iter`` Adam steps.

        Parameters
        ----------
        AdamParams : AdamParams
            Optimizer settings.

        Returns
        -------
        list of float
            The loss before each step (see :meth:`optimize_step`). Shorter than ``opt_iter``
            when a step could not be taken (non-finite parameters, or a covariance matrix
            that cannot be factored even with jitter): the optimization stops there with a
            ``gprat.NumericalWarning`` and the parameters of the last good step.
        """
        adam = _check_adam(AdamParams)
        losses = []
        for step in range(adam.opt_iter):
            losses.append(self.optimize_step(adam, step))
            if self._step_refused:
                break
        return losses

    def predict(self, test_data, m_tiles, m_tile_size):
        """Posterior mean at ``m = m_tiles * m_tile_size`` test windows.

        Parameters
        ----------
        test_data : list of float
            Test input series, padded like ``input_data``.
        m_tiles : int
            Number of test tiles.
        m_tile_size : int
            Rows per test tile.

        Returns
        -------
        list of float
            Mean, length ``m``.
        """
        mean = self._engine().predict(self._test_features(test_data, m_tiles, m_tile_size))
        return np.asarray(mean, dtype=np.float64).tolist()

    def predict_with_uncertainty(self, test_data, m_tiles, m_tile_size):
        """Posterior mean and latent variance (noise not added), as ``[mean, variance]``.

        Takes the arguments of :meth:`predict`; returns two lists of length ``m``.
        """
        return self._mean_and_variance(test_data, m_tiles, m_tile_size, full_cov=False)

    def predict_with_full_cov(self, test_data, m_tiles, m_tile_size):
        """Posterior mean and the variance ``diag(K** - V^T V)`` taken from the full posterior
        covariance, as ``[mean, variance]``.

        Takes the arguments of :meth:`predict`; returns two lists of length ``m``.
        """
        return self._mean_and_variance(test_data, m_tiles, m_tile_size, full_cov=True)

    def _mean_and_variance(self, test_data, m_tiles, m_tile_size, full_cov):
        features = self._test_features(test_data, m_tiles, m_tile_size)
        if full_cov:
            mean, cov = self._engine().predict(features, return_cov=True)
            variance = np.diagonal(np.asarray(cov, dtype=np.float64)).copy()
        else:
            mean, std = self._engine().predict(features, return_std=True)
            variance = np.square(np.asarray(std, dtype=np.float64))
        return [np.asarray(mean, dtype=np.float64).tolist(), variance.tolist()]

    def cholesky(self):
        """Tiles of the Cholesky factor ``L`` of ``K`` at the current parameters.

        Returns
        -------
        list of list of float
            ``n_tiles**2`` tiles in row-major tile order, each ``n_tile_size**2`` values in
            row-major order; tiles above the diagonal are empty lists. Unlike GPRat, the
            diagonal tiles hold zeros above their diagonal.
        """
        L = np.asarray(self._engine().cholesky_factor(), dtype=np.float64)
        nt, nb = self._n_tiles, self._n_tile_size
        tiles = []
        for i in range(nt):
            for j in range(nt):
                if j > i:
                    tiles.append([])
                else:
                    tiles.append(L[i * nb : (i + 1) * nb, j * nb : (j + 1) * nb].ravel().tolist())
        return tiles
