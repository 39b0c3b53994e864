"""gprat: fast exact Gaussian-process regression on a tiled, task-parallel Cholesky core.

Quick start
-----------
>>> import numpy as np, gprat
>>> X = np.random.default_rng(0).uniform(size=(200, 2)); y = np.sin(4 * X).sum(axis=1)
>>> gp = gprat.ExactGP(gprat.kernels.SquaredExponential([0.5, 0.5])).fit(X, y)
>>> mean, std = gp.predict(X[:3], return_std=True)
"""

from . import kernels, linalg
from ._core import compiled_with_cuda as _compiled_with_cuda
from ._version import __version__
from .exceptions import (
    BackendUnavailableError,
    NotFittedError,
    NotPositiveDefiniteError,
    NumericalWarning,
    RuntimeStateError,
)
from .gp import ExactGP
from .gprat_compat import (
    GP,
    AdamParams,
    GP_data,
    compiled_with_cuda,
    compute_test_tiles,
    compute_train_tile_size,
    compute_train_tiles,
    gpu_count,
    resume_hpx,
    start_hpx,
    stop_hpx,
    suspend_hpx,
)
from .optimize import OptimizationResult
from .runtime import is_running, num_threads, resume, start, stop, suspend, task_graph, trace

__all__ = [
    "ExactGP",
    "kernels",
    "linalg",
    "start",
    "stop",
    "suspend",
    "resume",
    "num_threads",
    "is_running",
    "trace",
    "task_graph",
    "cuda_available",
    "NotPositiveDefiniteError",
    "BackendUnavailableError",
    "RuntimeStateError",
    "NotFittedError",
    "NumericalWarning",
    "OptimizationResult",
    "GP",
    "GP_data",
    "AdamParams",
    "compute_train_tile_size",
    "compute_train_tiles",
    "compute_test_tiles",
    "start_hpx",
    "stop_hpx",
    "suspend_hpx",
    "resume_hpx",
    "compiled_with_cuda",
    "gpu_count",
    "__version__",
]


def cuda_available():
    """bool: whether this installation was built with the CUDA backend."""
    return bool(_compiled_with_cuda)


_LAZY = {
    # scikit-learn is optional: the estimator loads it on first use.
    "GaussianProcessRegressor": ("regressor", "GaussianProcessRegressor"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'gprat' has no attribute {name!r}")
