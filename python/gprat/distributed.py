"""Exact GP regression across MPI ranks on ScaLAPACK (docs/distributed.md).

Launch the same script on every rank (``srun python train.py``, ``mpirun -n 4 python
train.py``); every rank builds the model with the same arguments and calls the same verbs in
the same order (each verb is collective)::

    import numpy as np, gprat, gprat.distributed
    X, y = ...                                         # the full training set, on every rank
    gp = gprat.distributed.ExactGP(gprat.kernels.SquaredExponential([1.0, 1.0]), noise_variance=0.1)
    gp.fit(X, y).optimize(max_iter=50)
    mean, std = gp.predict(X_test, return_std=True)    # the same arrays on every rank
    gp.save("model.npz")                               # rank 0 writes; gprat.io.load_model on one machine

The matrix work runs in ScaLAPACK on a 2-D block-cyclic layout over a BLACS grid made from the
mpi4py communicator: K = k(X, X) + sigma2 I, L = chol(K) (pdpotrf), alpha = K^{-1} y (pdpotrs),
K^{-1} = L^{-T} L^{-1} (L^{-1} by pdtrtri, or from n = 8192 on by a 2 x 2 block recursion onto
block products; then lower(M^T M) by a 2 x 2 block recursion onto block products instead of
pdlauum; the products by gprat's panel exchange with one runtime thread per rank, else pdgemm),
V = L \\ K*^T (pdtrsm). Each rank fills only its own blocks of K and K*^T, with
the single-process engine's tile functions at global offsets (so the entries are the same
numbers), on its local gprat runtime threads. The gradient

    dlogp/dtheta_q = 1/2 sum_ab (alpha_a alpha_b - Kinv_ab) dK_ab/dtheta_q

is a fused reduction over each rank's blocks of K^{-1} that regenerates dK/dtheta on the fly
(never stored), then one allreduce. Every value a verb returns is broadcast from rank 0, so every
rank holds bitwise the same numbers and the optimizers (the same L-BFGS-B and Adam as
:class:`gprat.ExactGP`) take the same steps on every rank; each step checks that.

**Every rank passes the full X and y.** A rank's blocks of K are spread over the whole matrix
(block-cyclic: block row I lives on grid row I mod P_r), so assembling them needs the points of
nearly every block row and column anyway; X (n d doubles) and y are small next to the n^2/P
matrix entries a rank holds (n = 10^6, d = 10: 80 MB against 8 TB / P). Passing the full set
also keeps the model file and the prediction simple. ``fit`` checks (one digest per rank) that
all ranks hold the same X and y and refuses otherwise on every rank.

**Failures.** Bad input on any rank raises the same exception on every rank (the checks are
exchanged before any collective computation). A non positive definite K raises
:class:`gprat.NotPositiveDefiniteError` on every rank (pdpotrf's info is reduced over the ranks).
Importing this module installs an exception hook: an exception not caught by the script (or a
Ctrl-C) on any rank prints its traceback once and calls MPI_Abort, so the job ends instead of
hanging in a collective.

Threads: each rank's gprat runtime takes ``GPRAT_NUM_THREADS`` (else the cores the rank may run
on); ScaLAPACK's BLAS threads come from ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS``, which this module sets to ``GPRAT_NUM_THREADS`` (default 1) where they are
unset, before ScaLAPACK loads.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time

import numpy as np

from . import _core, runtime
from .exceptions import BackendUnavailableError, NotFittedError, NotPositiveDefiniteError
from .kernels import Kernel
from .optim import Objective, OptimizationResult, Progress, minimize_adam, minimize_lbfgsb
from .optim.switched_off import recheck_switched_off as _recheck_switched_off

__all__ = ["ExactGP", "available", "default_grid", "default_block_size"]

_MODULE = None
_REASON = None

#: Order of the diagonal submatrices that the recursive product L^{-T} L^{-1} leaves to pdlauum,
#: pdsyrk and pdtrmm (at least the block size); above it the work is pdgemm on large blocks.
#: Chosen by measurement on Debian's ScaLAPACK 2.2.1 + OpenBLAS (docs/distributed.md).
RECURSION_BASE = 1024

#: Order below which the recursive L^{-1} (distributed/scalapack.hpp, trtri_lower) leaves the
#: diagonal blocks to pdtrtri and the products to pdtrmm; None: pdtrtri on the whole L. Used
#: only for n >= TRTRI_RECURSION_MIN_N: on Debian's ScaLAPACK 2.2.1 + OpenBLAS it was faster than
#: pdtrtri at n = 8192 and slower at n = 4096 (two runs each, docs/distributed.md).
TRTRI_RECURSION_BASE = 512
TRTRI_RECURSION_MIN_N = 8192

#: How the two recursions multiply their blocks: "panel" by gprat's panel exchange over the
#: model's communicator and one local gemm per panel (distributed/panel_gemm.hpp), "pdgemm" by
#: PBLAS, "auto" panel with one runtime thread per rank (the layout measured: Netlib's pdgemm ran
#: at about one core's dgemm rate on 2 ranks, docs/distributed.md) and pdgemm with more, where
#: ScaLAPACK's BLAS runs its own threads (GPRAT_NUM_THREADS sets OPENBLAS/OMP/MKL_NUM_THREADS)
#: and the panel product's single-threaded local gemm would not.
BLOCK_PRODUCTS = "auto"


def _load():
    """Import mpi4py and gprat._distributed once; (MPI, module) or BackendUnavailableError."""
    global _MODULE, _REASON
    if _MODULE is not None:
        return _MODULE
    if _REASON is not None:
        raise BackendUnavailableError(_REASON)
    try:
        from mpi4py import MPI
    except ImportError as error:
        _REASON = f"gprat.distributed needs mpi4py (pip install 'gprat[mpi]'): {error}"
        raise BackendUnavailableError(_REASON) from None
    threads = os.environ.get("GPRAT_NUM_THREADS", "1")
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, threads)  # read when ScaLAPACK's BLAS loads, just below
    try:
        from . import _distributed
    except ImportError as error:
        _REASON = ("this gprat was built without MPI/ScaLAPACK (gprat._distributed is missing: "
                   f"{error}); rebuild with MPI and ScaLAPACK installed, see docs/distributed.md")
        raise BackendUnavailableError(_REASON) from None
    _MODULE = (MPI, _distributed)
    _install_abort_hook(MPI)
    return _MODULE


def available():
    """(bool, str): whether the distributed engine can run here, and if not, why."""
    try:
        _load()
    except BackendUnavailableError as error:
        return False, str(error)
    return True, ""


def _install_abort_hook(MPI):
    """Uncaught exception or Ctrl-C on a rank: print it (once for collective ones), then MPI_Abort.

    An exception that every rank raises together (marked ``_gprat_collective``) is printed by
    rank 0 only; the other ranks wait a moment before aborting so that rank 0's message gets out.
    """
    previous = sys.excepthook

    def hook(kind, value, tb):
        world = MPI.COMM_WORLD
        collective = getattr(value, "_gprat_collective", False)
        if not collective or world.Get_rank() == 0:
            previous(kind, value, tb)
            sys.stderr.write(f"gprat.distributed: rank {world.Get_rank()} ends the job (MPI_Abort) after "
                             f"{kind.__name__}\n")
        elif collective:
            time.sleep(2.0)
        sys.stderr.flush()
        sys.stdout.flush()
        if world.Get_size() > 1:
            world.Abort(1)

    sys.excepthook = hook


def default_grid(n_ranks):
    """(nprow, npcol): the most square grid with nprow <= npcol (ScaLAPACK's advice for potrf)."""
    nprow = int(math.isqrt(n_ranks))
    while n_ranks % nprow:
        nprow -= 1
    return nprow, n_ranks // nprow


def default_block_size(n, grid):
    """Rows per block: 256 for large n (OpenBLAS's dgemm is near its peak there), smaller when
    each grid row/column would otherwise get fewer than 4 blocks, at least 32, at most n."""
    per = math.ceil(n / (4 * max(grid)))
    return int(min(n, 256, max(32, per)))


def _collective(comm, func):
    """Run func() on every rank; if it raised on any rank, raise that exception on every rank.

    The exception of the lowest failing rank is raised everywhere (its type and message, with
    the rank named), so that every rank leaves the verb together, before any collective call.
    """
    try:
        result, error = func(), None
    except Exception as err:  # noqa: BLE001 - re-raised below on every rank
        result, error = None, err
    errors = comm.allgather(None if error is None else (type(error), str(error)))
    for rank, item in enumerate(errors):
        if item is not None:
            kind, message = item
            try:
                exc = kind(f"{message} (raised on rank {rank})")
            except Exception:  # noqa: BLE001 - a class with another constructor
                exc = RuntimeError(f"{kind.__name__} on rank {rank}: {message}")
            raise _mark(exc) from (error if rank == comm.Get_rank() else None)
    return result


def _mark(error):
    error._gprat_collective = True
    return error


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(a.shape).encode())
    return h.hexdigest()


class ExactGP:
    """Exact GP regression with K distributed over MPI ranks (ScaLAPACK, 2-D block-cyclic).

    The same model and verbs as :class:`gprat.ExactGP` (one output, a learned noise variance,
    zero mean), each verb collective: every rank of `comm` calls it with the same arguments.

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
        Any gprat kernel (families, sums, products).
    noise_variance : float, default=1e-2
        Learned variance of the Gaussian observation noise.
    comm : mpi4py.MPI.Comm or None, default=None
        The ranks that hold the model; None is ``MPI.COMM_WORLD``.
    block_size : int or None, default=None
        ScaLAPACK block size nb (rows and columns of a block); None is
        :func:`default_block_size`. Results do not depend on it beyond rounding.
    grid : tuple of int or None, default=None
        (nprow, npcol) with nprow * npcol = comm size; None is :func:`default_grid`.

    Raises
    ------
    BackendUnavailableError
        If mpi4py or gprat._distributed (MPI + ScaLAPACK at build time) is missing.
    """

    def __init__(self, kernel, *, noise_variance=1e-2, comm=None, block_size=None, grid=None):
        MPI, self._lib = _load()
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self._mpi = MPI
        size = self.comm.Get_size()

        def check():
            if not isinstance(kernel, Kernel):
                raise TypeError(f"kernel must be a gprat.kernels kernel; got {type(kernel).__name__}")
            nv = float(noise_variance)
            if not (np.isfinite(nv) and nv > 0):
                raise ValueError(f"noise_variance must be a positive finite number; got {noise_variance!r}")
            if block_size is not None and (isinstance(block_size, bool) or int(block_size) != block_size
                                           or block_size < 1):
                raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")
            g = default_grid(size) if grid is None else tuple(int(v) for v in grid)
            if len(g) != 2 or g[0] < 1 or g[1] < 1 or g[0] * g[1] != size:
                raise ValueError(f"grid must be (nprow, npcol) with nprow * npcol = {size} ranks; got {grid!r}")
            return nv, g

        self.noise_variance, self.grid = _collective(self.comm, check)
        self.kernel = kernel
        self.block_size = None if block_size is None else int(block_size)
        self._context, self._myrow, self._mycol = self._lib.grid_init(self.comm.py2f(), *self.grid)
        self._X = self._y = None
        self._profile = None  # a dict: _step adds each phase's seconds (benchmarks/distributed.py)
        self._factor_theta = None  # theta whose Cholesky factor self._K holds (None: it holds none)

    # ------------------------------------------------------------------ helpers
    @property
    def rank(self):
        """int: this process's rank in ``comm``."""
        return self.comm.Get_rank()

    @property
    def theta(self):
        """ndarray: log of [kernel hyperparameters..., noise_variance] (the optimizer's vector)."""
        return np.concatenate([np.asarray(self.kernel.theta, dtype=np.float64), [math.log(self.noise_variance)]])

    @theta.setter
    def theta(self, theta):
        theta = self._check_theta(theta)
        self.kernel = self.kernel.with_theta(theta[:-1])
        self.noise_variance = float(np.exp(theta[-1]))

    @property
    def n_params(self):
        """int: entries of theta."""
        return self.kernel.n_params + 1

    @property
    def tile_size_(self):
        """int: the block size in use (after fit)."""
        self._require_fit("tile_size_")
        return self._nb

    def _require_fit(self, what):
        if self._X is None:
            raise NotFittedError(f"call fit(X, y) before {what}")

    def _check_theta(self, theta):
        def check():
            t = np.array(theta, dtype=np.float64).reshape(-1)
            if t.shape != (self.n_params,) or not np.all(np.isfinite(t)) or np.any(np.abs(t) >= 700):
                raise ValueError(f"theta must hold {self.n_params} finite log-hyperparameters (|theta| < 700); "
                                 f"got {theta!r}")
            return t

        t = _collective(self.comm, check)
        self._agree(t, "theta")
        return t

    def _agree(self, array, what):
        """Every rank must hold bitwise the same array (a check, one small allgather)."""
        digests = self.comm.allgather(_digest(np.asarray(array)))
        if any(d != digests[0] for d in digests):
            bad = [r for r, d in enumerate(digests) if d != digests[0]]
            raise _mark(RuntimeError(f"{what} differs between ranks (ranks {bad} differ from rank 0): every rank "
                                     "must call the distributed model with the same arguments"))

    def _bcast(self, array):
        """rank 0's array on every rank (bitwise agreement after the allreduces)."""
        a = np.ascontiguousarray(array, dtype=np.float64)
        self.comm.Bcast(a, root=0)
        return a

    def _allreduce(self, array):
        a = np.ascontiguousarray(array, dtype=np.float64).copy()
        self.comm.Allreduce(self._mpi.IN_PLACE, a, op=self._mpi.SUM)
        return a

    def _global_info(self, info):
        """A ScaLAPACK info agreed by every rank: the largest positive one, else the most negative."""
        positive = int(self.comm.allreduce(max(int(info), 0), op=self._mpi.MAX))
        return positive or int(self.comm.allreduce(min(int(info), 0), op=self._mpi.MIN))

    def _layout(self, m, n):
        return self._lib.BlockCyclic(m, n, self._nb, self._nb, *self.grid, self._myrow, self._mycol)

    @staticmethod
    def _local_array(layout):
        return np.zeros((layout.lld, max(1, layout.local_cols)), order="F")

    # ------------------------------------------------------------------ fit
    def fit(self, X, y):
        """Distribute K, factor it and solve for alpha at the current hyperparameters.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The full training inputs, the same on every rank.
        y : array-like of shape (n_samples,)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            On every rank, if the input is malformed on any rank or differs between ranks.
        NotPositiveDefiniteError
            On every rank, if K + noise_variance I is not positive definite.
        """
        def check():
            Xa = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
            ya = np.ascontiguousarray(np.asarray(y, dtype=np.float64)).reshape(-1) if np.ndim(y) else None
            if Xa.ndim != 2 or Xa.shape[0] < 1 or Xa.shape[1] < 1:
                raise ValueError(f"X must be 2-D (n_samples, n_features) with at least one row; got shape {Xa.shape}")
            if ya is None or np.ndim(y) != 1 or ya.shape[0] != Xa.shape[0]:
                raise ValueError(f"y must have one entry per row of X; got shape {np.shape(y)}, X.shape[0]={Xa.shape[0]}")
            if not (np.all(np.isfinite(Xa)) and np.all(np.isfinite(ya))):
                raise ValueError("X and y must be finite (no NaN or inf)")
            self.kernel.check_features(Xa.shape[1])
            return Xa, ya

        Xa, ya = _collective(self.comm, check)
        digests = self.comm.allgather(_digest(Xa, ya))
        if any(d != digests[0] for d in digests):
            bad = [r for r, d in enumerate(digests) if d != digests[0]]
            raise _mark(ValueError(f"every rank must pass the full, identical X and y (gprat.distributed "
                                   f"replicates the training set); ranks {bad} differ from rank 0"))
        n = Xa.shape[0]
        self._X, self._y = Xa, ya
        self._nb = self.block_size or default_block_size(n, self.grid)
        self._nb = min(self._nb, n)
        self._KL = self._layout(n, n)
        self._K = self._local_array(self._KL)
        self._yL = self._layout(n, 1)
        self._factor_theta = None
        self.log_marginal_likelihood_ = self._step(self.theta, eval_gradient=False)
        return self

    def _step(self, theta, eval_gradient):
        """Assemble, factor, solve (and invert and reduce the gradient) at theta. Collective."""
        lib, KL = self._lib, self._KL
        kernel = self.kernel.with_theta(theta[:-1])
        noise = float(np.exp(theta[-1]))
        core = kernel._to_core()
        self._factor_theta = None
        t = time.perf_counter()
        lib.assemble_covariance(KL, self._K, core, self._X, noise)  # K(I,J), I >= J, local blocks
        t = self._tick("assemble", t)
        info = self._global_info(lib.potrf(KL, self._context, self._K))  # L = chol(K)
        t = self._tick("potrf", t)
        if info > 0:
            raise _mark(NotPositiveDefiniteError(
                f"K + noise_variance I is not positive definite: the leading minor of order {info} is not "
                f"(pdpotrf); increase noise_variance or rescale the inputs"))
        if info < 0:
            raise _mark(RuntimeError("pdpotrf refused its arguments (a gprat bug)"))
        rows = self._yL.global_rows()
        B = self._local_array(self._yL)
        if self._yL.local_cols:
            B[:len(rows), 0] = self._y[rows]
        if self._global_info(lib.potrs(KL, self._context, self._K, self._yL, B)):  # alpha = K^{-1} y
            raise _mark(RuntimeError("pdpotrs refused its arguments (a gprat bug)"))
        t = self._tick("potrs", t)
        alpha = np.zeros(KL.n)
        if self._yL.local_cols:  # one process column holds alpha: each entry comes from one rank
            alpha[rows] = B[:len(rows), 0]
        alpha = self._allreduce(alpha)
        grows, gcols = KL.global_rows(), KL.global_cols()
        _, ri, ci = np.intersect1d(grows, gcols, assume_unique=True, return_indices=True)
        log_det = 2.0 * self.comm.allreduce(float(np.sum(np.log(self._K[ri, ci]))), op=self._mpi.SUM)
        n = KL.n
        lml = -0.5 * float(self._y @ alpha) - 0.5 * log_det - 0.5 * n * math.log(2.0 * math.pi)
        if not eval_gradient:
            self._alpha = self._bcast(alpha)
            self._factor_theta = np.array(theta)
            return float(self._bcast(np.array([lml]))[0])
        t = self._tick("lml", t)
        # K^{-1} = L^{-T} L^{-1} (lower), in place of L: L <- L^{-1} (pdtrtri, or at large n a 2 x 2
        # block recursion onto block products), then M <- lower(M^T M) by a 2 x 2 block recursion
        # onto block products (distributed/scalapack.hpp) instead of pdlauum; the products by
        # gprat's panel exchange or pdgemm (BLOCK_PRODUCTS)
        base = self._trtri_base()
        products = self._products_comm()
        info = self._global_info(lib.trtri(KL, self._context, self._K) if base is None else
                                 lib.trtri_recursive(KL, self._context, self._K, base, products))
        if info:
            raise _mark(NotPositiveDefiniteError(f"inverting L failed (pdtrtri info {info}): K is numerically "
                                                 "singular"))
        t = self._tick("trtri", t)
        lib.lauum_recursive(KL, self._context, self._K, self._recursion_base(), products)
        t = self._tick("lauum", t)
        partial = lib.local_gradient(KL, self._K, alpha, core, self._X, noise)
        t = self._tick("gradient", t)
        gradient = 0.5 * self._allreduce(partial)
        out = self._bcast(np.concatenate([[lml], gradient]))
        self._tick("allreduce", t)
        return float(out[0]), out[1:]

    def _recursion_base(self):
        """Order below which the recursive M^T M hands over to pdlauum (and its products to PBLAS)."""
        return max(self._nb, RECURSION_BASE)

    def _products_comm(self):
        """The Fortran handle of the communicator for the recursions' panel products; None: pdgemm
        (see BLOCK_PRODUCTS)."""
        if BLOCK_PRODUCTS not in ("auto", "panel", "pdgemm"):
            raise ValueError(f"gprat.distributed.BLOCK_PRODUCTS must be 'auto', 'panel' or 'pdgemm'; got {BLOCK_PRODUCTS!r}")
        panel = BLOCK_PRODUCTS == "panel" or (BLOCK_PRODUCTS == "auto" and runtime.num_threads() <= 1)
        return self.comm.py2f() if panel else None

    def _trtri_base(self):
        """Order below which the recursive L^{-1} hands over to pdtrtri/pdtrmm; None: pdtrtri alone."""
        if TRTRI_RECURSION_BASE is None or self._KL.n < TRTRI_RECURSION_MIN_N:
            return None
        return max(self._nb, TRTRI_RECURSION_BASE)

    def _tick(self, phase, start):
        """With self._profile a dict (benchmarks/distributed.py): add the seconds since `start`."""
        if self._profile is None:
            return start
        now = time.perf_counter()
        self._profile[phase] = self._profile.get(phase, 0.0) + now - start
        return now

    # ------------------------------------------------------------------ likelihood
    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        """log p(y | X, theta), optionally with its gradient with respect to theta.

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None
            None: the model's current hyperparameters. Evaluating at another theta leaves the
            model's hyperparameters unchanged (the next predict refactors).
        eval_gradient : bool, default=False

        Returns
        -------
        float, or (float, ndarray of shape (n_params,)) with eval_gradient
        """
        self._require_fit("log_marginal_likelihood")
        t = self.theta if theta is None else self._check_theta(theta)
        if not eval_gradient and self._factor_theta is not None and np.array_equal(t, self._factor_theta):
            return self.log_marginal_likelihood_
        out = self._step(t, eval_gradient)
        if not eval_gradient and np.array_equal(t, self.theta):
            self.log_marginal_likelihood_ = out
        return out

    def _refresh(self):
        if self._factor_theta is None or not np.array_equal(self._factor_theta, self.theta):
            self.log_marginal_likelihood_ = self._step(self.theta, eval_gradient=False)

    # ------------------------------------------------------------------ predict
    def predict(self, X, return_std=False, return_cov=False, include_noise=False):
        """Posterior mean (and standard deviation) at test points, the same on every rank.

        Parameters
        ----------
        X : array-like of shape (n_points, n_features)
            The same test points on every rank.
        return_std : bool, default=False
        return_cov : bool, default=False
            Not available across ranks (raises ValueError).
        include_noise : bool, default=False
            Add the noise variance to the variance (the spread of new observations).

        Returns
        -------
        mean : ndarray of shape (n_points,)
        std : ndarray of shape (n_points,), only with return_std
        """
        self._require_fit("predict")

        def check():
            if return_cov:
                raise ValueError("return_cov is not available in gprat.distributed (an m x m result on every "
                                 "rank); use return_std, or gprat.ExactGP on one machine")
            Xs = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
            if Xs.ndim != 2 or Xs.shape[1] != self._X.shape[1] or Xs.shape[0] < 1:
                raise ValueError(f"X must have shape (n_points, {self._X.shape[1]}); got {Xs.shape}")
            if not np.all(np.isfinite(Xs)):
                raise ValueError("X must be finite (no NaN or inf)")
            return Xs

        Xs = _collective(self.comm, check)
        self._agree(Xs, "the test points X")
        self._refresh()
        core = self.kernel._to_core()
        m, n = Xs.shape[0], self._KL.n
        local_rows = max(1, self._KL.local_rows)
        chunk = max(self._nb, (256 << 20) // (8 * local_rows) // self._nb * self._nb)  # K*^T <= 256 MB per rank
        mean, var = np.empty(m), np.empty(m)
        for s in range(0, m, chunk):
            Xc = np.ascontiguousarray(Xs[s:s + chunk])
            TL = self._layout(n, Xc.shape[0])
            Kt = self._local_array(TL)
            self._lib.assemble_cross_covariance(TL, Kt, core, self._X, Xc)  # K*^T(I,J) = k(X_I, Xs_J)
            rows, cols = TL.global_rows(), TL.global_cols()
            local = Kt[:len(rows), :len(cols)]
            part = np.zeros(Xc.shape[0])
            part[cols] = local.T @ self._alpha[rows]                      # mean = K* alpha
            mean[s:s + len(Xc)] = self._allreduce(part)
            if return_std:
                self._lib.trsm_lower(self._KL, self._context, self._K, TL, Kt)  # V = L \ K*^T
                part = np.zeros(Xc.shape[0])
                part[cols] = np.einsum("ij,ij->j", local, local)              # colsum(V o V)
                var[s:s + len(Xc)] = self._allreduce(part)
        mean = self._bcast(mean)
        if not return_std:
            return mean
        prior = np.asarray(core.diagonal(Xs), dtype=np.float64) + (self.noise_variance if include_noise else 0.0)
        std = np.sqrt(np.maximum(prior - self._bcast(var), 0.0))
        return mean, std

    # ------------------------------------------------------------------ optimize
    def default_bounds(self):
        """ndarray of shape (n_params, 2): the kernel's box, then the noise box (log space)."""
        from .models.exact import noise_variance_bounds

        lo, hi = noise_variance_bounds(self._y)
        return np.vstack([np.asarray(self.kernel.bounds, dtype=np.float64), np.log([[lo, hi]])])

    def optimize(self, method="L-BFGS-B", max_iter=100, trainable=None, progress=False, lr=0.05, bounds=None,
                 callback=None, recheck_switched_off=True):
        """Maximize the log marginal likelihood, every rank taking the same steps.

        Each trial point is evaluated by all ranks together (its value and gradient broadcast
        from rank 0), the optimizer (:func:`gprat.optim.minimize_lbfgsb` or
        :func:`gprat.optim.minimize_adam`, as in :meth:`gprat.ExactGP.optimize`) runs on every
        rank on the same numbers, and every evaluation checks that all ranks ask for the same
        theta. Parameters as :meth:`gprat.ExactGP.optimize` (the switched-off lengthscale recheck
        included); ``progress`` prints on rank 0 only.

        Returns
        -------
        OptimizationResult
            The model is left at the best theta found, refactored.
        """
        self._require_fit("optimize")

        def check():
            key = str(method).lower()
            if key not in ("l-bfgs-b", "lbfgsb", "fmin_l_bfgs_b", "adam"):
                raise ValueError(f"method must be 'L-BFGS-B' or 'adam'; got {method!r}")
            iters = int(max_iter)
            if iters != max_iter or iters < 1:
                raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
            mask = (np.concatenate([np.asarray(self.kernel.trainable, dtype=bool), [True]]) if trainable is None
                    else np.asarray(trainable))
            if mask.dtype != bool or mask.shape != (self.n_params,):
                raise ValueError(f"trainable must be {self.n_params} booleans; got {trainable!r}")
            box = self.default_bounds() if bounds is None else np.array(bounds, dtype=np.float64)
            if box.shape != (self.n_params, 2) or not np.all(np.isfinite(box)) or np.any(box[:, 0] > box[:, 1]):
                raise ValueError(f"bounds must be finite (low, high) pairs of shape ({self.n_params}, 2); got {bounds!r}")
            if key == "adam" and not (np.isfinite(lr) and lr > 0):
                raise ValueError(f"lr must be positive; got {lr!r}")
            if callback is not None and not callable(callback):
                raise TypeError(f"callback must be callable or None; got {callback!r}")
            return key, iters, mask, box

        key, iters, mask, box = _collective(self.comm, check)
        self._refresh()
        theta0 = np.clip(self.theta, box[:, 0], box[:, 1])
        with Progress(bool(progress) and self.rank == 0, iters) as bar:
            if key == "adam":
                objective = Objective(self._value_and_grad, theta0, mask, maximize=True)
                result = minimize_adam(objective, box, iters, lr=float(lr), progress=bar, callback=callback)
            else:
                def run(start, max_iter, done):
                    objective = Objective(self._value_and_grad, start, mask, maximize=True)
                    return minimize_lbfgsb(objective, box, max_iter, progress=bar, callback=callback, scale=None,
                                           first_iteration=done)

                result = run(theta0, iters, 0)
                if recheck_switched_off:  # every rank decides alike: same theta, same replicated X
                    result = _recheck_switched_off(result, run, self.kernel, self._X, mask, box, iters)
        self._agree(np.asarray(result.theta), "the optimizer's result")
        self.theta = result.theta
        self.log_marginal_likelihood_ = self._step(self.theta, eval_gradient=False)
        return result

    def _value_and_grad(self, theta, eval_gradient=True):
        theta = np.asarray(theta, dtype=np.float64)
        self._agree(theta, "the optimizer's trial point (the ranks' optimizers diverged)")
        out = self._step(theta, eval_gradient=True)
        return out if eval_gradient else out[0]

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Write a model file (gprat.io format) on rank 0, loadable on one machine.

        ``gprat.io.load_model(path).gp`` is then a single-process :class:`gprat.ExactGP` with the
        same kernel, noise and data (the data are stored unstandardized: x_mean 0, x_scale 1,
        y_mean 0, y_scale 1). Collective: every rank returns once the file is written, or
        raises the error rank 0 met.

        Returns
        -------
        pathlib.Path
        """
        self._require_fit("save")
        from .io import GPModel

        def write():
            if self.rank != 0:
                return None
            d = self._X.shape[1]
            model = GPModel(self.kernel, None, None, self.noise_variance, self._X, self._y, x_mean=np.zeros(d),
                            x_scale=np.ones(d), y_mean=0.0, y_scale=1.0)
            return model.save(path)

        written = _collective(self.comm, write)
        return self.comm.bcast(written, root=0)

    def __repr__(self):
        return (f"gprat.distributed.ExactGP({self.kernel!r}, noise_variance={self.noise_variance:.4g}, "
                f"grid={self.grid}, block_size={self.block_size})")
