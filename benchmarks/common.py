"""Shared pieces of the benchmark harness: problem data, timing, system facts.

Every library gets the same problem at a given ``n``: inputs ``X`` of shape (n, d) and
``Xs`` of shape (m, d) drawn from a standard normal, targets ``y`` from a smooth function
plus noise, and one ARD squared-exponential kernel

    k(x, x') = signal_variance * exp(-1/2 sum_j (x_j - x'_j)^2 / lengthscale_j^2)

with ``lengthscale = linspace(0.5, 2.0, d)``, ``signal_variance = 1`` and
``noise_variance = 1e-2``. The Cholesky cases factor ``A = k(X, X) + noise_variance * I``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

SIGNAL_VARIANCE = 1.0
NOISE_VARIANCE = 1e-2


@dataclass
class Problem:
    """Training and test data plus the true hyperparameters for one ``n``."""

    X: np.ndarray
    y: np.ndarray
    Xs: np.ndarray
    lengthscale: np.ndarray
    signal_variance: float = SIGNAL_VARIANCE
    noise_variance: float = NOISE_VARIANCE

    @property
    def theta(self) -> np.ndarray:
        """log of [lengthscale..., signal_variance, noise_variance] (gprat's order)."""
        return np.log(np.r_[self.lengthscale, self.signal_variance, self.noise_variance])


def make_problem(n: int, m: int, d: int, seed: int = 0) -> Problem:
    """Deterministic data for one size; identical in every worker process."""
    rng = np.random.default_rng([seed, n, m, d])
    X = rng.standard_normal((n, d))
    Xs = rng.standard_normal((m, d))
    y = np.sin(X).sum(axis=1) / np.sqrt(d) + 0.1 * rng.standard_normal(n)
    lengthscale = np.linspace(0.5, 2.0, d)
    return Problem(X=X, y=y, Xs=Xs, lengthscale=lengthscale)


def kernel_matrix(p: Problem) -> np.ndarray:
    """``A = k(X, X) + noise_variance * I``, C-ordered float64 (n, n)."""
    Z = p.X / p.lengthscale
    sq = np.einsum("ij,ij->i", Z, Z)
    D = sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T)
    np.maximum(D, 0.0, out=D)
    D *= -0.5
    np.exp(D, out=D)
    D *= p.signal_variance
    D[np.diag_indices_from(D)] += p.noise_variance
    return D


def timed_call(fn, setup=None):
    """One call of ``fn`` (after an untimed ``setup()``, whose result it receives).

    Garbage collection is off inside the timed region. Returns (seconds, result).
    """
    arg = setup() if setup is not None else None
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        r = fn(arg) if setup is not None else fn()
        t = time.perf_counter() - t0
    finally:
        gc.enable()
    return t, r


def measure(fn, *, repeats: int, warmup: int = 1, setup=None, min_time: float = 0.0,
            max_repeats: int = 200, max_call_s: float | None = None):
    """Time ``fn`` after ``warmup`` untimed calls.

    ``setup()`` (untimed) runs before every call and its result is passed to ``fn``.
    At least ``repeats`` timed calls are made; more (up to ``max_repeats``) while their total
    is below ``min_time`` seconds, so that millisecond cases get a stable minimum.
    If the first warm-up call takes longer than ``max_call_s``, no timed call is made.

    Returns
    -------
    dict with ``times_s`` (list, empty if too slow), ``min_s``, ``median_s``, ``warmup_s``
    (list), ``too_slow`` (bool) and ``result`` (what the first warm-up call returned, for
    sanity checks).
    """
    warm = []
    result = None
    for i in range(warmup):
        t, r = timed_call(fn, setup)
        warm.append(t)
        if i == 0:
            result = r
        del r
        if max_call_s is not None and t > max_call_s:
            return {"times_s": [], "min_s": None, "median_s": None, "warmup_s": warm,
                    "too_slow": True, "result": result}
    times = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_repeats):
        t, r = timed_call(fn, setup)
        times.append(t)
        del r
    return {
        "times_s": times,
        "min_s": min(times),
        "median_s": statistics.median(times),
        "warmup_s": warm,
        "too_slow": False,
        "result": result,
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """SIMD flags that matter for BLAS kernels."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                keep = ("avx", "avx2", "fma", "avx512f", "avx512dq", "avx512vl", "avx512_bf16")
                return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


def cgroup_cpu_limit() -> str | None:
    try:
        return Path("/sys/fs/cgroup/cpu.max").read_text().strip()
    except OSError:
        return None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


THREAD_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", "GPRAT_NUM_THREADS", "PYTHONPATH")


def package_versions() -> dict:
    """Versions of the libraries involved, without importing the heavy ones."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "scikit-learn", "threadpoolctl", "psutil", "torch",
                 "gpytorch", "linear_operator", "gprat", "scipy-openblas32"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_revision() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                           check=False, capture_output=True, text=True, timeout=10)
        rev = r.stdout.strip()
        if r.returncode != 0 or not rev:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO_DIR), "status", "--porcelain"],
                               check=False, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def write_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def eprint(*a):
    print(*a, file=sys.stderr, flush=True)


def import_gprat():
    """gprat as installed, else from python/ of this checkout (for the in-process scripts)."""
    try:
        import gprat  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_DIR / "python"))
    import gprat

    return gprat


def gpytorch_svgp_model(z):
    """The GPyTorch SVGP the sparse benchmarks compare against, at inducing points z (a tensor):
    ApproximateGP with a CholeskyVariationalDistribution, a whitened VariationalStrategy with
    learned inducing locations, zero mean, ScaleKernel(RBF with ARD) -- GPyTorch's standard SVGP."""
    import gpytorch

    class Model(gpytorch.models.ApproximateGP):
        def __init__(self, z):
            q = gpytorch.variational.CholeskyVariationalDistribution(z.shape[0])
            s = gpytorch.variational.VariationalStrategy(self, z, q, learn_inducing_locations=True)
            super().__init__(s)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=z.shape[1]))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    return Model(z)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (empty where /proc is missing)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []
