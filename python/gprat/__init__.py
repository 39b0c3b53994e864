"""gprat: fast exact Gaussian-process regression on a tiled, task-parallel Cholesky core.

The package is layered (see docs/architecture.md): kernels, optim, models, then the faces
(the estimator, the GPRat API, io and the command line) on top; this module only re-exports.

Quick start
-----------
>>> import numpy as np, gprat
>>> X = np.random.default_rng(0).uniform(size=(200, 2)); y = np.sin(4 * X).sum(axis=1)
>>> gp = gprat.ExactGP(gprat.kernels.SquaredExponential([0.5, 0.5])).fit(X, y)
>>> mean, std = gp.predict(X[:3], return_std=True)
"""

from . import kernels, linalg
from ._version import __version__
from .backends import cuda_available, cuda_device_count, cuda_status
from .exceptions import (
    BackendUnavailableError,
    NotFittedError,
    NotPositiveDefiniteError,
    NumericalWarning,
    RuntimeStateError,
)
from .compat.gprat import (
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
from .models import SGPR, SVGP, ExactGP, KissGP, KissGridWarning
from .optim import OptimizationResult
from .runtime import is_running, num_threads, resume, start, stop, suspend, task_graph, trace

__all__ = [
    "ExactGP",
    "SGPR",
    "SVGP",
    "KissGP",
    "KissGridWarning",
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
    "cuda_device_count",
    "cuda_status",
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


def __getattr__(name):
    # scikit-learn is optional: the estimator loads it on first use.
    if name == "GaussianProcessRegressor":
        from .estimator import GaussianProcessRegressor

        return GaussianProcessRegressor
    if name == "SparseGaussianProcessRegressor":
        from .sparse_estimator import SparseGaussianProcessRegressor

        return SparseGaussianProcessRegressor
    raise AttributeError(f"module 'gprat' has no attribute {name!r}")
