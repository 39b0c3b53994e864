"""KissGP: structured kernel interpolation (KISS-GP) for low-dimensional data at large n."""

import threading
import warnings

import numpy as np

from .. import _core
from .._memory import check_fits
from .._validation import as_matrix, as_vector, check_dtype, check_int, check_positive, check_theta
from ..exceptions import NotFittedError, NumericalWarning
from ..kernels import Kernel, Product, Sum
from ..optim import Objective, OptimizationResult, Progress, minimize_adam, minimize_lbfgsb
from ..runtime import wait_for_lifecycle
from .exact import DEFAULT_BOUNDS, noise_variance_bounds

__all__ = ["KissGP", "KissGridWarning"]

#: Families whose K_UU is Toeplitz per dimension (stationary, one lengthscale per dimension).
_STATIONARY = ("SquaredExponential", "Matern12", "Matern32", "Matern52")
#: Leaves a KissGP kernel may have: stationary (K_UU Toeplitz) or constant.
_GRID_LEAVES = _STATIONARY + ("RationalQuadratic", "Periodic", "Constant")
_ACCEPTED = ("SquaredExponential (isotropic or ARD), Matern12/32/52, RationalQuadratic, Periodic, products of "
             "these (e.g. one per feature via active_dims) and Constant factors; sums only of kernels that "
             "all act on one and the same feature")

_EXACT, _SLICES = 0, 1


def _leaf_dims(k, d):
    """Features a family reads: its active_dims, or all; none for Constant."""
    if k._core_name == "Constant":
        return set()
    return set(range(d)) if k.active_dims is None else {int(i) for i in k.active_dims}


def _all_dims(k, d):
    if isinstance(k, (Sum, Product)):
        return _all_dims(k.k1, d) | _all_dims(k.k2, d)
    return _leaf_dims(k, d)


def _grid_structure(k, d):
    """_EXACT when K_UU = s0 prod_k T_k is the kernel on the grid, _SLICES when it is the product
    of the kernel's 1-D slices (a different kernel); ValueError when KISS-GP cannot take it.

    A kernel is separable, k(x, y) = c prod_k f_k(x_k - y_k), when it is a squared exponential
    (exp of a sum over features), any stationary family reading at most one feature, a Constant,
    a product of separable kernels, or a sum whose terms all read the same single feature (or
    none). The other stationary families on several features (Matern, RationalQuadratic,
    Periodic) are replaced by the product of their 1-D slices. A sum across features,
    c + k1(x_0) + k2(x_1), is not a product over features: refused, as are non-stationary
    families.
    """
    if isinstance(k, Product):
        return max(_grid_structure(k.k1, d), _grid_structure(k.k2, d))
    if isinstance(k, Sum):
        _grid_structure(k.k1, d), _grid_structure(k.k2, d)  # refuses bad leaves first
        if len(_all_dims(k, d)) > 1:
            raise ValueError(f"KissGP: {k!r} is a sum of kernels over different features, which is not a product "
                             f"over features (K_UU would not be Kronecker); accepted: {_ACCEPTED}")
        return _EXACT
    name = getattr(k, "_core_name", None)
    if name not in _GRID_LEAVES:
        raise ValueError(f"KissGP needs a stationary kernel whose K_UU is Toeplitz per feature; got {k!r}. "
                         f"Accepted: {_ACCEPTED}" + (" (White: use noise_variance)" if name == "White" else ""))
    if name in ("SquaredExponential", "Constant") or len(_leaf_dims(k, d)) <= 1:
        return _EXACT
    return _SLICES


def _grid_scales(k, d):
    """Per-feature length scale of the automatic grid rule: the smallest over the leaves reading it.

    SquaredExponential, Matern, RationalQuadratic: their lengthscale; Periodic: the lengthscale
    of its small-l limit, exp(-2 sin^2(pi r / p) / l^2) ~ exp(-r^2 / (2 (p l / (2 pi))^2)), with l
    at most 1; inf where no leaf reads the feature.
    """
    if isinstance(k, (Sum, Product)):
        return np.minimum(_grid_scales(k.k1, d), _grid_scales(k.k2, d))
    out = np.full(d, np.inf)
    dims = sorted(_leaf_dims(k, d))
    if not dims:
        return out
    if k._core_name == "Periodic":
        out[dims] = k.period * min(k.lengthscale, 1.0) / (2 * np.pi)
    else:
        ls = np.atleast_1d(np.asarray(k.lengthscale, dtype=np.float64))
        out[dims] = ls if ls.size == len(dims) else ls[0]
    return out



class KissGridWarning(UserWarning):
    """The grid or the kernel makes KISS-GP an approximation beyond interpolation (see KissGP)."""


class KissGP:
    """Gaussian process regression by structured kernel interpolation (KISS-GP).

    The kernel matrix is approximated by ``K ~ W K_UU W^T`` with ``U`` a regular grid (per
    dimension, ``m = prod m_k`` points), ``W`` the sparse cubic-convolution interpolation
    matrix (Keys, ``a = -1/2``, ``4^d`` non-zeros per row) and ``K_UU`` the Kronecker product of
    symmetric Toeplitz matrices (one per dimension). Solves use preconditioned batched conjugate
    gradients on ``[y, z_1 .. z_t]``; the log-determinant is the stochastic Lanczos quadrature
    estimate from the CG coefficients, its gradient a Hutchinson estimate that reuses the probe
    solves (Wilson & Nickisch 2015; Gardner et al. 2018). The C++ engine is
    ``gprat/approx/kiss_gp/kiss_gp.hpp``, whose header gives every formula.

    Parameters
    ----------
    kernel : gprat.kernels.Kernel
        Stationary, so that K_UU is Toeplitz per feature, and separable, so that it is their
        Kronecker product: exact for SquaredExponential (isotropic or ARD), for any stationary
        family on one feature, and for products of those with Constant factors (e.g.
        ``2.0 * Matern32(0.3, active_dims=[0]) * RationalQuadratic(0.5, 2.0, active_dims=[1])``);
        a sum is accepted only when its terms all read the same single feature. Matern12/32/52,
        RationalQuadratic and Periodic reading several features become the product of their
        1-D kernels, which is another kernel: a :class:`KissGridWarning` says so at ``fit``.
        Refused (ValueError): Linear, White (use noise_variance), sums across features.
        Model files and ``gprat fit --model kiss`` take single families only.
    noise_variance : float
        Learned i.i.d. noise variance (theta holds its log); must be positive.
    grid_size : int, sequence of int or None, default=None
        Grid points per dimension. None: from the starting lengthscale, 4 grid spacings per
        lengthscale across the data range, plus 2 spacings of padding on each side (one for
        the 4-point stencil, one for test points slightly outside the range). The grid is
        fixed at ``fit``; optimizing the lengthscale does not rebuild it.
    grid_bounds : sequence of (low, high) pairs or None, default=None
        The box the grid must interpolate (training and test points); the grid extends two
        spacings beyond it. None: the training data's range.
    n_probes : int, default=10
        Probe vectors t of the stochastic estimates (their spread falls as 1/sqrt(t)).
    cg_tol : float, default=1e-6
        Relative residual at which CG stops, per column, in training estimates, after at least
        10 iterations (the SLQ tridiagonal's length), or earlier once the column is solved to
        rounding (relative residual 1e-10).
    predict_cg_tol : float, default=1e-4
        Tolerance of the solves predictions rest on (``alpha`` at fit, ``variance="exact"``):
        ``min(cg_tol, predict_cg_tol)``. A loose training tolerance (GPyTorch trains at 1.0)
        would otherwise leave alpha unsolved: at ``cg_tol=1`` the test RMSE of a 2-D case was
        0.85 against 0.013 at 1e-6 (benchmarks/kiss_gp.py, 2d-5k).
    max_cg_iter : int, default=1000
    preconditioner_rank : int, default=15
        Rank of the pivoted-Cholesky preconditioner (0: none).
    random_state : int or None, default=None
        Seed of the probes. With an int, every estimate is reproducible, whatever the thread
        count; None draws a seed once at construction.
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the returned arrays. The engine computes in float64 in both cases: CG and
        Lanczos quadrature at the tolerances above are not reachable in float32.

    Notes
    -----
    **The estimate.** ``log_marginal_likelihood`` returns a stochastic estimate of the log
    marginal likelihood of the interpolated model ``W K_UU W^T + noise I``: the quadratic term
    is solved by CG to ``cg_tol``, the log-determinant is estimated from ``n_probes`` probes
    drawn from the preconditioner's distribution. For a fixed ``random_state`` the probes are the
    same at every theta (common random numbers), so the estimate is a smooth deterministic
    function of theta. ``optimize(method="adam")`` (the default) draws new probes at every
    iteration (seeds ``random_state + 1, + 2, ...``) and returns the last iterate;
    ``optimize(method="L-BFGS-B")`` optimizes the fixed-probe estimate.

    **Grid edges and test points.** Interpolation uses the full cubic stencil everywhere, up
    to the edge of the interpolable box (the grid minus one spacing on each side). A point
    outside it is refused with ValueError, never snapped to the boundary; give ``grid_bounds``
    that cover the test points to predict there. A prediction does not depend on the other
    points in the same call (each variance is its own CG solve).

    **Memory and dimension.** Peak memory is ``O(n 4^d + n t + m t)``; ``fit`` raises
    MemoryError before allocating when it does not fit. For ``d > 3`` a KissGridWarning says
    that the grid grows as ``m_k^d``.

    Examples
    --------
    >>> import numpy as np, gprat
    >>> X = np.linspace(0, 1, 400).reshape(-1, 1); y = np.sin(6 * X[:, 0])
    >>> gp = gprat.KissGP(gprat.kernels.SquaredExponential(0.2), noise_variance=1e-2,
    ...                   random_state=0).fit(X, y)
    >>> bool(abs(gp.predict([[0.5]])[0] - np.sin(3.0)) < 1e-2)
    True
    """

    def __init__(self, kernel, *, noise_variance, grid_size=None, grid_bounds=None, n_probes=10, cg_tol=1e-6,
                 max_cg_iter=1000, preconditioner_rank=15, random_state=None, dtype=np.float64, predict_cg_tol=1e-4):
        if not isinstance(kernel, Kernel):
            raise TypeError(f"kernel must be a gprat.kernels.Kernel; got {kernel!r}")
        _grid_structure(kernel, 1)  # refuses non-stationary leaves now; sums across features at fit
        self.kernel = kernel
        self.noise_variance = check_positive(noise_variance, "noise_variance")
        self.grid_size = grid_size
        self.grid_bounds = grid_bounds
        self.n_probes = check_int(n_probes, "n_probes", minimum=1)
        self.cg_tol = check_positive(cg_tol, "cg_tol")
        self.predict_cg_tol = check_positive(predict_cg_tol, "predict_cg_tol")
        self.max_cg_iter = check_int(max_cg_iter, "max_cg_iter", minimum=1)
        self.preconditioner_rank = check_int(preconditioner_rank, "preconditioner_rank", minimum=0)
        if random_state is None:
            random_state = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
        self.random_state = check_int(random_state, "random_state", minimum=0)
        self.dtype = check_dtype(dtype)
        self._core = None
        self._lock = threading.RLock()
        self._stale = False

    # ------------------------------------------------------------------ state
    @property
    def fitted(self):
        """Whether ``fit`` has been called."""
        return self._core is not None

    def _require_fit(self, what):
        if self._core is None:
            raise NotFittedError(f"call fit(X, y) before {what}")

    @property
    def n_params(self):
        """Entries of theta: the kernel's, then log noise_variance."""
        return self.kernel.n_params + 1

    @property
    def theta(self):
        """ndarray: log [kernel parameters..., noise_variance]."""
        return np.concatenate([np.asarray(self.kernel.theta, dtype=np.float64), [np.log(self.noise_variance)]])

    @theta.setter
    def theta(self, theta):
        theta = check_theta(theta, self.n_params)
        with self._lock:
            self.kernel = self.kernel.with_theta(theta[:-1])
            self.noise_variance = float(np.exp(theta[-1]))
            if self._core is not None:
                self._core.theta = list(theta)
                self._stale = True

    @property
    def grid_(self):
        """list of (low, spacing, points) per dimension: grid points low + i spacing."""
        self._require_fit("grid_")
        return [tuple(g) for g in self._core.grid]

    @property
    def grid_points_(self):
        """int: m, the number of grid points."""
        self._require_fit("grid_points_")
        return int(self._core.m)

    def _options(self, n_features):
        o = _core.KissGPOptions()
        if self.grid_size is not None:
            sizes = np.atleast_1d(np.asarray(self.grid_size))
            if sizes.ndim != 1 or sizes.dtype.kind not in "iu" or len(sizes) not in (1, n_features):
                raise ValueError(f"grid_size must be an int or {n_features} ints; got {self.grid_size!r}")
            o.grid_size = [int(s) for s in np.broadcast_to(sizes, (n_features,))]
        if self.grid_bounds is not None:
            b = np.asarray(self.grid_bounds, dtype=np.float64)
            if b.shape == (2,):
                b = np.tile(b, (n_features, 1))
            if b.shape != (n_features, 2) or not np.all(np.isfinite(b)) or np.any(b[:, 0] > b[:, 1]):
                raise ValueError(f"grid_bounds must be {n_features} finite (low, high) pairs; got {self.grid_bounds!r}")
            o.grid_bounds = [float(v) for v in b.reshape(-1)]
        o.n_probes = self.n_probes
        o.cg_tol = self.cg_tol
        o.predict_cg_tol = self.predict_cg_tol
        o.max_cg_iter = self.max_cg_iter
        o.preconditioner_rank = self.preconditioner_rank
        return o

    def _expected_grid(self, X, options):
        """Grid points per dimension as the engine's rule gives them (for the memory check)."""
        d = X.shape[1]
        if list(options.grid_size):
            return [int(s) for s in options.grid_size]
        ls = np.asarray(options.lengthscales)
        if list(options.grid_bounds):
            b = np.asarray(options.grid_bounds).reshape(d, 2)
            span = b[:, 1] - b[:, 0]
        else:
            span = X.max(axis=0) - X.min(axis=0)
        span = np.where(span > 0, span, ls)
        return [max(8, int(np.ceil(s / (l / 4.0) - 1e-9)) + 5) for s, l in zip(span, ls)]

    def _lengthscales(self, X, options):
        """Per-feature scale of the grid rule (_grid_scales); a feature no leaf reads gets its range
        (a grid of 8-9 points: the kernel is constant along it)."""
        scales = _grid_scales(self.kernel, X.shape[1])
        if list(options.grid_bounds):
            b = np.asarray(options.grid_bounds).reshape(-1, 2)
            span = b[:, 1] - b[:, 0]
        else:
            span = X.max(axis=0) - X.min(axis=0)
        return np.where(np.isfinite(scales), scales, np.where(span > 0, span, 1.0))

    # ------------------------------------------------------------------ verbs
    def fit(self, X, y):
        """Build the grid and W, solve for alpha and cache the prediction vectors.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For bad shapes, a training point outside ``grid_bounds``, or a bad grid.
        MemoryError
            Before allocating, when the model would not fit in memory.
        """
        X = as_matrix(X, "X", np.float64)
        y = as_vector(y, "y", np.float64, length=X.shape[0])
        n, d = X.shape
        self.kernel.check_features(d)
        if _grid_structure(self.kernel, d) == _SLICES:
            warnings.warn(f"{self.kernel!r} is not separable: in {d} dimensions KissGP uses the product of "
                          "1-D kernels over the features, a different kernel (only the squared exponential and "
                          "products of one-feature kernels are exact)", KissGridWarning, stacklevel=2)
        if d > 3:
            warnings.warn(f"KissGP in {d} dimensions: the grid grows as m_k^{d} points", KissGridWarning, stacklevel=2)
        options = self._options(d)
        options.lengthscales = [float(v) for v in self._lengthscales(X, options)]
        m = int(np.prod([float(s) for s in self._expected_grid(X, options)]))
        check_fits(float(_core.KissGP64.training_step_bytes(n, d, m, self.n_probes, self.preconditioner_rank)),
                   f"KissGP with n={n} and a grid of {m} points")
        wait_for_lifecycle()
        with self._lock:
            core = _core.KissGP64(self.kernel._to_core(), X, y, float(self.noise_variance), options)
            core.fit(self.random_state)
            self._core = core
            self._warn_unconverged(2)
            self.X_train_, self.y_train_ = X, y
            self.n_features_in_ = d
            self._stale = False
        return self

    def _warn_unconverged(self, stacklevel):
        """A NumericalWarning when the last solve stopped at max_cg_iter before cg_tol."""
        worst = max(self._core.last_iterations)  # the y column included: solved to the prediction tolerance
        if worst >= self.max_cg_iter:
            warnings.warn(f"KissGP: CG stopped at max_cg_iter={self.max_cg_iter} before reaching cg_tol={self.cg_tol:g}; "
                          "the solution and the estimate are less accurate (raise max_cg_iter or "
                          "preconditioner_rank)", NumericalWarning, stacklevel=stacklevel + 1)

    def _refresh(self):
        with self._lock:
            if self._stale:
                self._core.fit(self.random_state)
                self._stale = False
                self._warn_unconverged(3)

    def log_marginal_likelihood(self, theta=None, eval_gradient=False, random_state=None):
        """Stochastic estimate of the log marginal likelihood of the interpolated model.

        Parameters
        ----------
        theta : array-like of shape (n_params,) or None
            Where to evaluate (the model does not change); None: the current theta.
        eval_gradient : bool, default=False
            Also return the estimate of the gradient with respect to theta.
        random_state : int or None
            Probe seed; None uses the model's ``random_state``.

        Returns
        -------
        float, or (float, ndarray of shape (n_params,))
        """
        self._require_fit("log_marginal_likelihood")
        theta = self.theta if theta is None else check_theta(theta, self.n_params)
        seed = self.random_state if random_state is None else check_int(random_state, "random_state", minimum=0)
        wait_for_lifecycle()
        return self._core.training_step(list(theta), bool(eval_gradient), int(seed))

    def predict(self, X, return_std=False, return_cov=False, include_noise=False, variance="love", love_rank=100):
        """Posterior mean (w*^T a, O(4^d) per point) and optionally its standard deviation.

        Parameters
        ----------
        X : array-like of shape (n_test, n_features)
        return_std : bool, default=False
            Also return the latent standard deviation.
        variance : {"love", "exact"}, default="love"
            "love": from the LOVE cache (Pleiss et al. 2018), ``love_rank`` Lanczos steps on K~
            computed once after each fit, then O(4^d love_rank) per point; exact on the Krylov
            space, an overestimate outside it. "exact": one preconditioned CG solve per test
            point (batched, each point independent of the others), to ``cg_tol``.
        love_rank : int, default=100
            Lanczos steps of the LOVE cache (memory 2 n love_rank float64 while it is built).
        return_cov : bool, default=False
            Not supported (ValueError): the full covariance of many test points is what KISS-GP
            avoids.
        include_noise : bool, default=False
            Add the noise variance to the variance.

        Returns
        -------
        mean : ndarray of shape (n_test,)
        std : ndarray of shape (n_test,), when return_std

        Raises
        ------
        ValueError
            For a test point outside the interpolable grid (see Notes of the class).
        """
        self._require_fit("predict")
        if return_cov:
            raise ValueError("KissGP.predict does not return a full covariance; use return_std=True")
        if variance not in ("love", "exact"):
            raise ValueError(f"variance must be 'love' or 'exact'; got {variance!r}")
        love_rank = check_int(love_rank, "love_rank", minimum=1)
        X = as_matrix(X, "X", np.float64, n_features=self.n_features_in_)
        self._refresh()
        wait_for_lifecycle()
        exact = return_std and variance == "exact"
        mean, var = self._core.predict(X, exact, bool(include_noise))
        if return_std and not exact:
            rank = min(love_rank, self._core.n)
            check_fits(16.0 * self._core.n * rank + 8.0 * self._core.m * rank * 3, "the KissGP LOVE cache")
            var, _ = self._core.predict_variance_love(X, bool(include_noise), int(rank), int(self.random_state))
        mean = mean.astype(self.dtype, copy=False)
        if return_std:
            return mean, np.sqrt(var).astype(self.dtype, copy=False)
        return mean

    def default_bounds(self):
        """Optimization box in theta space: kernel entries, then log noise (once fitted, its floor
        is 1e-6 of the targets' variance: :func:`gprat.models.exact.noise_variance_bounds`)."""
        b = np.empty((self.n_params, 2))
        b[:-1] = np.log(DEFAULT_BOUNDS["kernel"])
        b[-1] = np.log(noise_variance_bounds(getattr(self, "y_train_", None)))
        return b

    def optimize(self, method="adam", max_iter=50, trainable=None, progress=False, lr=0.1, bounds=None,
                 callback=None):
        """Maximize the estimated log marginal likelihood over theta.

        Parameters
        ----------
        method : {"adam", "L-BFGS-B"}, default="adam"
            Adam on a fresh probe set per iteration (a stochastic objective: the last iterate is
            returned), or L-BFGS-B on the fixed-probe estimate (deterministic in theta: a
            sample-average approximation). Measured on a 2-D case (n = 5000, grid 50^2, from
            lengthscale 0.2, variance 1, noise 0.01; docs/kiss_gp.md): Adam, 50 steps at lr 0.1
            and the default ``cg_tol``, ends where the exact GP's LML is within 0.3 of its
            optimum (test RMSE 0.01003 against the exact GP's 0.01017); L-BFGS-B needs about 30
            probes to get there (0.01012, three times as long) and stops early with 10 (after 4
            iterations, RMSE 0.01063): the fixed-probe estimate of t = 10 probes plus the CG
            residual is too rough for its line search.
        max_iter : int, default=50
        trainable : array-like of bool, shape (n_params,), or None
            None: the kernel's ``trainable`` mask, then the noise.
        progress : bool, default=False
        lr : float, default=0.1
            Adam's learning rate in log units (0.1 is the measured setting above, and GPyTorch's
            usual one).
        bounds : array-like of shape (n_params, 2) or None
            Box in theta space; None uses :meth:`default_bounds`.
        callback : callable or None
            ``callback(iteration, loss)``.

        Returns
        -------
        OptimizationResult
            The model is left at the returned theta, refitted.
        """
        self._require_fit("optimize")
        max_iter = check_int(max_iter, "max_iter", minimum=1)
        key = str(method).lower()
        if key not in ("adam", "l-bfgs-b", "lbfgsb", "fmin_l_bfgs_b"):
            raise ValueError(f"method must be 'adam' or 'L-BFGS-B'; got {method!r}")
        if trainable is None:
            mask = np.concatenate([self.kernel.trainable, [True]])
        else:
            mask = np.asarray(trainable)
            if mask.dtype != bool or mask.shape != (self.n_params,):
                raise ValueError(f"trainable must be {self.n_params} booleans; got {trainable!r}")
        bounds = self.default_bounds() if bounds is None else np.asarray(bounds, dtype=np.float64)
        if bounds.shape != (self.n_params, 2) or not np.all(np.isfinite(bounds)) or np.any(bounds[:, 0] > bounds[:, 1]):
            raise ValueError(f"bounds must be {self.n_params} finite (low, high) pairs; got {bounds}")
        theta0 = np.clip(self.theta, bounds[:, 0], bounds[:, 1])
        stochastic = key == "adam"
        counter = [0]

        def fun(theta, eval_gradient):
            seed = self.random_state
            if stochastic:
                counter[0] += 1
                seed = self.random_state + counter[0]
            return self._core.training_step(list(theta), bool(eval_gradient), int(seed))

        if not mask.any():
            return OptimizationResult(theta=theta0, log_marginal_likelihood=self.log_marginal_likelihood(theta0),
                                      n_iter=0, converged=True, message="nothing to optimize")
        objective = Objective(fun, theta0, mask, maximize=True, stochastic=stochastic)
        wait_for_lifecycle()
        with Progress(progress, max_iter) as bar:
            if stochastic:
                result = minimize_adam(objective, bounds, max_iter, lr=check_positive(lr, "lr"), progress=bar,
                                       callback=callback)
            else:
                result = minimize_lbfgsb(objective, bounds, max_iter, progress=bar, callback=callback, scale=None)
        self.theta = result.theta
        self._refresh()
        return result

    def __repr__(self):
        return (f"KissGP({self.kernel!r}, noise_variance={self.noise_variance:.4g}, grid_size={self.grid_size!r}, "
                f"n_probes={self.n_probes}, cg_tol={self.cg_tol:g}, preconditioner_rank={self.preconditioner_rank}, "
                f"random_state={self.random_state})")
