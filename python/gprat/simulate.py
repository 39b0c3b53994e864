"""Non-linear mass-spring-damper chain: a simulator for system-identification examples.

``N`` carts of mass ``m`` sit in a row. A spring and a damper join the wall to cart 0 and
each cart to the next one. The springs harden, ``f(e) = k1 e + k3 e^3`` for an extension
``e``; the dampers are linear, ``c de/dt``. A force ``u`` pushes cart 0, and the position of
the last cart is observed with Gaussian noise. The task -- predict the last cart's position
from past forces and past observations -- is the non-linear system-identification problem
GPRat's examples use.

Equations of motion, with ``x_{-1} = 0`` (the wall), ``e_i = x_i - x_{i-1}`` and the link
tension ``T_i = k1 e_i + k3 e_i^3 + c (v_i - v_{i-1})``::

    m dv_i/dt = -T_i + T_{i+1} + [i == 0] u        (T_N = 0: the last cart is free)
    dx_i/dt   = v_i

The input is applied with a zero-order hold: ``u_k`` acts during ``[t_k, t_k + dt)``, as a
digital controller drives an actuator. Each sampling interval is integrated by ``substeps``
classical Runge-Kutta (RK4) steps of size ``dt / substeps``.

Examples
--------
>>> data = generate_dataset(200, seed=0)
>>> X, y, names = lagged_features(data.u, data.y, input_lags=3, output_lags=2)
>>> X.shape, y.shape, names
((197, 5), (197,), ['u[k-1]', 'u[k-2]', 'u[k-3]', 'y[k-1]', 'y[k-2]'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Dataset",
    "MassSpringDamperChain",
    "generate_dataset",
    "lagged_features",
    "multisine",
    "random_multilevel",
    "simulate",
]


@dataclass(frozen=True)
class MassSpringDamperChain:
    """A chain of carts joined by hardening springs and linear dampers.

    Parameters
    ----------
    n_carts : int, default=4
        Number of carts ``N``.
    mass : float, default=1.0
        Mass of every cart.
    k_linear : float, default=1.0
        Linear spring constant ``k1``.
    k_cubic : float, default=1.0
        Cubic spring constant ``k3`` (``> 0``: hardening springs).
    damping : float, default=0.5
        Damper constant ``c``.
    """

    n_carts: int = 4
    mass: float = 1.0
    k_linear: float = 1.0
    k_cubic: float = 1.0
    damping: float = 0.5

    def __post_init__(self):
        if int(self.n_carts) != self.n_carts or self.n_carts < 1:
            raise ValueError(f"n_carts must be a positive integer; got {self.n_carts!r}.")
        if not self.mass > 0:
            raise ValueError(f"mass must be positive; got {self.mass!r}.")
        for name in ("k_linear", "k_cubic", "damping"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative; got {getattr(self, name)!r}.")

    def derivative(self, state, force):
        """Time derivative of the state ``[x_0..x_{N-1}, v_0..v_{N-1}]`` under ``force``.

        Parameters
        ----------
        state : array-like of shape (2 * n_carts,)
            Positions, then velocities.
        force : float
            Force on cart 0.

        Returns
        -------
        ndarray of shape (2 * n_carts,)
            Velocities, then accelerations.
        """
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (2 * self.n_carts,):
            raise ValueError(f"state must have shape ({2 * self.n_carts},); got {state.shape}.")
        return np.array(self._derivative(state.tolist(), float(force)))

    def _derivative(self, state, force):
        # Plain floats: for a handful of carts this is several times faster than NumPy.
        n = self.n_carts
        k1, k3, c, inv_m = self.k_linear, self.k_cubic, self.damping, 1.0 / self.mass
        tension = []
        x_prev = v_prev = 0.0  # the wall
        for x, v in zip(state[:n], state[n:]):
            e = x - x_prev
            tension.append((k1 + k3 * e * e) * e + c * (v - v_prev))  # T_i
            x_prev, v_prev = x, v
        tension.append(0.0)  # T_N: the last cart is free
        acceleration = [(tension[i + 1] - tension[i]) * inv_m for i in range(n)]
        acceleration[0] += force * inv_m
        return state[n:] + acceleration


@dataclass(frozen=True)
class Dataset:
    """A simulated record, sampled every ``dt`` seconds.

    Attributes
    ----------
    t : ndarray of shape (n_samples,)
        Sample times ``k dt``.
    u : ndarray of shape (n_samples,)
        Force on cart 0, held during ``[t_k, t_k + dt)``.
    positions : ndarray of shape (n_samples, n_carts)
        Noise-free positions of all carts at ``t_k``.
    y_true : ndarray of shape (n_samples,)
        Noise-free position of the last cart.
    y : ndarray of shape (n_samples,)
        ``y_true`` plus Gaussian noise of standard deviation ``noise_std``.
    noise_std : float
    """

    t: np.ndarray
    u: np.ndarray
    positions: np.ndarray
    y_true: np.ndarray
    y: np.ndarray
    noise_std: float


def _check_count(value, name):
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def multisine(n_samples, dt=0.1, *, n_components=8, amplitude=1.0, f_min=0.05, f_max=0.5, seed=None):
    """Sampled sum of sinusoids with random frequencies and phases.

    ``u_k = amplitude / sqrt(n_components / 2) * sum_j sin(2 pi f_j k dt + phi_j)``, so the
    standard deviation of ``u`` is about ``amplitude``.

    Parameters
    ----------
    n_samples : int
    dt : float, default=0.1
        Sampling interval in seconds.
    n_components : int, default=8
    amplitude : float, default=1.0
        Approximate standard deviation of the signal.
    f_min, f_max : float, default=0.05, 0.5
        Frequency band in Hz, drawn log-uniformly.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    n_samples = _check_count(n_samples, "n_samples")
    n_components = _check_count(n_components, "n_components")
    if not 0 < f_min <= f_max:
        raise ValueError(f"need 0 < f_min <= f_max; got f_min={f_min}, f_max={f_max}.")
    rng = np.random.default_rng(seed)
    frequencies = np.exp(rng.uniform(np.log(f_min), np.log(f_max), n_components))
    phases = rng.uniform(0.0, 2.0 * np.pi, n_components)
    t = np.arange(n_samples) * dt
    waves = np.sin(2.0 * np.pi * frequencies[:, None] * t[None, :] + phases[:, None])
    return amplitude / np.sqrt(n_components / 2.0) * waves.sum(axis=0)


def random_multilevel(n_samples, *, n_levels=5, hold=20, amplitude=1.0, seed=None):
    """Random multi-level signal: a level drawn uniformly from ``n_levels`` values in
    ``[-amplitude, amplitude]``, held for a random number of samples (1 to ``2 hold``).

    Parameters
    ----------
    n_samples : int
    n_levels : int, default=5
    hold : int, default=20
        Mean number of samples a level is held.
    amplitude : float, default=1.0
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    n_samples = _check_count(n_samples, "n_samples")
    n_levels = _check_count(n_levels, "n_levels")
    hold = _check_count(hold, "hold")
    rng = np.random.default_rng(seed)
    levels = np.linspace(-amplitude, amplitude, n_levels) if n_levels > 1 else np.zeros(1)
    signal = np.empty(n_samples)
    k = 0
    while k < n_samples:
        length = int(rng.integers(1, 2 * hold + 1))
        signal[k : k + length] = rng.choice(levels)
        k += length
    return signal


def simulate(system, u, dt=0.1, *, substeps=10, initial_state=None):
    """Integrate the chain under a zero-order-hold input with fixed-step RK4.

    Parameters
    ----------
    system : MassSpringDamperChain
    u : array-like of shape (n_samples,)
        Force on cart 0; ``u[k]`` acts during ``[k dt, (k + 1) dt)``.
    dt : float, default=0.1
        Sampling interval in seconds.
    substeps : int, default=10
        RK4 steps per sampling interval.
    initial_state : array-like of shape (2 * n_carts,), optional
        Positions then velocities at ``t = 0``; at rest by default.

    Returns
    -------
    ndarray of shape (n_samples, 2 * n_carts)
        The state at each sample time ``k dt``, before ``u[k]`` acts.
    """
    u = np.asarray(u, dtype=np.float64)
    if u.ndim != 1:
        raise ValueError(f"u must be one-dimensional; got shape {u.shape}.")
    if not dt > 0:
        raise ValueError(f"dt must be positive; got {dt!r}.")
    substeps = _check_count(substeps, "substeps")
    size = 2 * system.n_carts
    state = np.zeros(size) if initial_state is None else np.array(initial_state, dtype=np.float64)
    if state.shape != (size,):
        raise ValueError(f"initial_state must have shape ({size},); got {state.shape}.")
    h = dt / substeps
    f = system._derivative
    states = np.empty((u.size, size))
    y = state.tolist()
    for k, force in enumerate(u.tolist()):
        states[k] = y
        for _ in range(substeps):
            # Classical RK4: y <- y + h/6 (k1 + 2 k2 + 2 k3 + k4)
            k1 = f(y, force)
            k2 = f([a + 0.5 * h * b for a, b in zip(y, k1)], force)
            k3 = f([a + 0.5 * h * b for a, b in zip(y, k2)], force)
            k4 = f([a + h * b for a, b in zip(y, k3)], force)
            y = [a + (h / 6.0) * (b1 + 2.0 * b2 + 2.0 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4)]
        if not all(map(math.isfinite, y)):
            raise FloatingPointError(
                f"the simulation diverged at t={(k + 1) * dt:g} s; use a smaller dt or more substeps."
            )
    return states


def generate_dataset(
    n_samples,
    *,
    dt=0.1,
    system=None,
    signal="multisine",
    amplitude=1.0,
    noise_std=0.05,
    seed=None,
    substeps=10,
):
    """Simulate the chain under a random input and observe the last cart with noise.

    Parameters
    ----------
    n_samples : int
    dt : float, default=0.1
        Sampling interval in seconds.
    system : MassSpringDamperChain, optional
        Default: ``MassSpringDamperChain()``.
    signal : {"multisine", "multilevel"}, default="multisine"
        Input signal (see :func:`multisine` and :func:`random_multilevel`).
    amplitude : float, default=1.0
        Scale of the input force.
    noise_std : float, default=0.05
        Standard deviation of the observation noise.
    seed : int, optional
        Seeds the input signal and the noise; equal seeds give equal data.
    substeps : int, default=10
        RK4 steps per sampling interval.

    Returns
    -------
    Dataset
    """
    system = MassSpringDamperChain() if system is None else system
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be non-negative; got {noise_std!r}.")
    signal_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    if signal == "multisine":
        u = multisine(n_samples, dt, amplitude=amplitude, seed=signal_rng)
    elif signal == "multilevel":
        u = random_multilevel(n_samples, amplitude=amplitude, seed=signal_rng)
    else:
        raise ValueError(f"signal must be 'multisine' or 'multilevel'; got {signal!r}.")
    states = simulate(system, u, dt, substeps=substeps)
    positions = states[:, : system.n_carts]
    y_true = positions[:, -1].copy()
    y = y_true + noise_std * noise_rng.standard_normal(y_true.size)
    return Dataset(np.arange(u.size) * dt, u, positions, y_true, y, float(noise_std))


def lagged_features(u, y, input_lags=8, output_lags=8):
    """NARX regressors: predict ``y[k]`` from past inputs and past outputs.

    Row ``r`` (time ``k = r + max(input_lags, output_lags)``) is
    ``[u[k-1], ..., u[k-input_lags], y[k-1], ..., y[k-output_lags]]`` and its target is
    ``y[k]``. With ``output_lags=0`` the model is an NFIR model on inputs only.

    Parameters
    ----------
    u : array-like of shape (n_samples,)
        Input series.
    y : array-like of shape (n_samples,)
        Output series.
    input_lags : int, default=8
    output_lags : int, default=8

    Returns
    -------
    X : ndarray of shape (n_samples - max_lag, input_lags + output_lags)
    target : ndarray of shape (n_samples - max_lag,)
    names : list of str
        Column names such as ``"u[k-1]"`` and ``"y[k-2]"``.

    Raises
    ------
    ValueError
        If the series differ in length, a lag count is negative, both are zero, or the
        series is not longer than the largest lag.
    """
    u = np.asarray(u, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if u.ndim != 1 or y.shape != u.shape:
        raise ValueError(f"u and y must be 1-D of equal length; got shapes {u.shape} and {y.shape}.")
    for name, lags in (("input_lags", input_lags), ("output_lags", output_lags)):
        if isinstance(lags, bool) or int(lags) != lags or lags < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {lags!r}.")
    if input_lags + output_lags == 0:
        raise ValueError("input_lags and output_lags are both 0: no regressors.")
    max_lag = max(input_lags, output_lags)
    n = u.size - max_lag
    if n < 1:
        raise ValueError(f"the series has {u.size} samples; need more than the largest lag {max_lag}.")
    columns = [u[max_lag - j : max_lag - j + n] for j in range(1, input_lags + 1)]
    columns += [y[max_lag - j : max_lag - j + n] for j in range(1, output_lags + 1)]
    names = [f"u[k-{j}]" for j in range(1, input_lags + 1)] + [f"y[k-{j}]" for j in range(1, output_lags + 1)]
    return np.column_stack(columns), y[max_lag:].copy(), names
