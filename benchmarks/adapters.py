"""One adapter per library: the same operations, spelled in each library's own API.

Operations (``op``) and what each library does for them (the timed call only; data, models
and factors needed beforehand are built outside the timer):

==============  =============================================================================
cholesky        gprat: ``gprat.linalg.cholesky(A, tile_size)`` (includes the copy into and
                out of the tiled layout); scipy: ``cho_factor(B, lower=True,
                overwrite_a=True, check_finite=False)`` on a Fortran-ordered copy ``B`` of
                ``A`` made before the timer (LAPACK dpotrf, the yardstick); torch:
                ``torch.linalg.cholesky(A)``.
fit             assemble K, factor, alpha. gprat: ``gp.fit(X, y)``; scikit-learn:
                ``GaussianProcessRegressor(optimizer=None).fit(X, y)``; GPyTorch: drop the
                prediction caches and build the mean cache (K^{-1} y) by one prediction with
                ``skip_posterior_variances`` on.
train_step      log marginal likelihood and its gradient with respect to all 10
                hyperparameters (8 lengthscales, signal and noise variance). gprat and
                scikit-learn: ``log_marginal_likelihood(theta, eval_gradient=True)``; GPyTorch:
                ``ExactMarginalLogLikelihood`` forward + ``backward()``.
predict         mean and standard deviation at m test points, factor already cached where
                the library caches it. gprat: ``gp.predict(Xs, return_std=True)``;
                scikit-learn: ``gpr.predict(Xs, return_std=True)``; GPyTorch:
                ``f = model(Xs); f.mean, f.variance.sqrt()`` under ``torch.no_grad()``.
latency         ``fit`` then ``predict`` (mean + std) at a small n, end to end.
==============  =============================================================================

GPyTorch runs in two modes: ``gpytorch-cholesky`` forces dense Cholesky everywhere
(``gpytorch.settings.max_cholesky_size(10**9)``); ``gpytorch-default`` keeps the library's
defaults (Cholesky up to n = 800, beyond that preconditioned CG and stochastic Lanczos
quadrature, i.e. an approximate log determinant and gradient).
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from common import Problem

OPS = ("cholesky", "fit", "train_step", "predict", "latency")


class NotAvailable(Exception):
    """The library has no equivalent of this operation, or a needed hook is missing."""


class Case(NamedTuple):
    fn: Callable
    setup: Callable | None = None
    check: Callable | None = None  # result of the first warm-up call -> dict of numbers
    note: str | None = None


def _perturbed(theta0: np.ndarray):
    """setup(): theta0 exactly on the first call (the warm-up), then theta0 + k * 1e-7.

    Changing theta by a negligible amount on every repeat defeats any cache keyed on the
    hyperparameters, so every timed step does the full work.
    """
    counter = itertools.count()
    return lambda: theta0 + 1e-7 * next(counter)


def _thread_controls(threads: int, *modules: str):
    """Import ``modules`` (loading their BLAS/OpenMP libraries), then limit every pool
    loaded in this process to ``threads``; threadpoolctl only sees libraries already loaded."""
    for name in modules:
        importlib.import_module(name)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def threadpool_summary() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture",
            "threading_layer", "filepath")
    return [{k: d.get(k) for k in keep} for d in threadpool_info()]


class Adapter:
    name = ""
    ops: tuple = ()

    def __init__(self, threads: int):
        self.threads = threads

    def info(self) -> dict:
        return {"threadpools": threadpool_summary()}

    def case(self, op: str, p: Problem, *, A=None, tile_size=None) -> Case:
        if op not in self.ops:
            raise NotAvailable(f"{self.name} has no '{op}' case")
        return getattr(self, "case_" + op)(p, A=A, tile_size=tile_size)

    # Peak memory: setup holds what a training loop holds between steps; step is one step.
    def memory_setup(self, p: Problem):
        raise NotAvailable(f"{self.name} has no training step")

    def memory_step(self, state) -> None:
        raise NotAvailable(f"{self.name} has no training step")


class ScipyAdapter(Adapter):
    """LAPACK dpotrf through SciPy: the yardstick."""

    name = "scipy"
    ops = ("cholesky",)

    def __init__(self, threads):
        super().__init__(threads)
        self._limits = _thread_controls(threads, "scipy.linalg")

    def case_cholesky(self, p, A, tile_size):
        from scipy.linalg import cho_factor

        def fn(B):
            return cho_factor(B, lower=True, overwrite_a=True, check_finite=False)[0]

        return Case(fn=fn, setup=lambda: np.array(A, order="F"), check=_cholesky_check)


def _cholesky_check(L) -> dict:
    L = np.asarray(L)
    return {"logdet": float(2.0 * np.log(np.diag(L)).sum())}


class SklearnAdapter(Adapter):
    """scikit-learn GaussianProcessRegressor, ConstantKernel * RBF(ARD) + WhiteKernel."""

    name = "sklearn"
    ops = ("fit", "train_step", "predict", "latency")

    def __init__(self, threads):
        super().__init__(threads)
        self._limits = _thread_controls(threads, "scipy.linalg", "sklearn.gaussian_process")

    def _gpr(self, p: Problem):
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

        # theta = log [signal_variance, lengthscale (d), noise_variance]: 10 entries, as gprat.
        kernel = (ConstantKernel(p.signal_variance) * RBF(p.lengthscale)
                  + WhiteKernel(p.noise_variance))
        return GaussianProcessRegressor(kernel=kernel, alpha=0.0, optimizer=None,
                                        normalize_y=False)

    def case_fit(self, p, A, tile_size):
        gpr = self._gpr(p)
        return Case(fn=lambda: gpr.fit(p.X, p.y))

    def case_train_step(self, p, A, tile_size):
        gpr = self._gpr(p).fit(p.X, p.y)
        theta0 = gpr.kernel_.theta.copy()
        assert theta0.shape == (p.X.shape[1] + 2,), theta0.shape

        def fn(theta):
            return gpr.log_marginal_likelihood(theta, eval_gradient=True)

        return Case(fn=fn, setup=_perturbed(theta0), check=_lml_check)

    def case_predict(self, p, A, tile_size):
        gpr = self._gpr(p).fit(p.X, p.y)
        return Case(fn=lambda: gpr.predict(p.Xs, return_std=True), check=_predict_check,
                    note="std includes the WhiteKernel noise (same work as the latent std)")

    def case_latency(self, p, A, tile_size):
        gpr = self._gpr(p)
        return Case(fn=lambda: gpr.fit(p.X, p.y).predict(p.Xs, return_std=True))

    def memory_setup(self, p):
        # A model holding only the data: the attributes log_marginal_likelihood reads,
        # without the n x n factor that fit() would keep.
        gpr = self._gpr(p)
        gpr.X_train_ = p.X.copy()
        gpr.y_train_ = p.y.copy()
        gpr.kernel_ = gpr.kernel.clone_with_theta(gpr.kernel.theta)
        return gpr

    def memory_step(self, gpr):
        gpr.log_marginal_likelihood(gpr.kernel_.theta, eval_gradient=True)


def _lml_check(result) -> dict:
    value, grad = result
    return {"lml": float(value), "grad_norm": float(np.linalg.norm(grad))}


def _predict_check(result) -> dict:
    mean, std = result
    mean = np.asarray(mean)
    std = np.asarray(std)
    return {"mean_sum": float(mean.sum()), "mean_head": [float(v) for v in mean[:3]],
            "std_sum": float(std.sum())}


class TorchAdapter(Adapter):
    """torch.linalg.cholesky: the Cholesky GPyTorch calls in its Cholesky mode."""

    name = "torch"
    ops = ("cholesky",)

    def __init__(self, threads):
        super().__init__(threads)
        import torch

        torch.set_num_threads(threads)
        self._limits = _thread_controls(threads)
        self.torch = torch

    def info(self):
        out = super().info()
        out["torch_num_threads"] = self.torch.get_num_threads()
        out["torch_mkl"] = bool(self.torch.backends.mkl.is_available())
        return out

    def case_cholesky(self, p, A, tile_size):
        At = self.torch.from_numpy(A)
        return Case(fn=lambda: self.torch.linalg.cholesky(At),
                    check=lambda L: _cholesky_check(L.numpy()))


class GPyTorchAdapter(TorchAdapter):
    """GPyTorch ExactGP: ZeroMean, ScaleKernel(RBFKernel(ard_num_dims=d)), GaussianLikelihood."""

    ops = ("fit", "train_step", "predict", "latency")

    def __init__(self, threads, mode: str):
        super().__init__(threads)
        import gpytorch

        self._limits = _thread_controls(threads)  # again: gpytorch may load more libraries
        self.gpytorch = gpytorch
        self.mode = mode
        self.name = "gpytorch-" + mode
        self._settings = contextlib.ExitStack()
        if mode == "cholesky":
            self._settings.enter_context(gpytorch.settings.max_cholesky_size(10**9))
        elif mode != "default":
            raise ValueError(f"mode must be 'cholesky' or 'default'; got {mode!r}")

    def info(self):
        out = super().info()
        out["gpytorch_mode"] = self.mode
        out["max_cholesky_size"] = self.gpytorch.settings.max_cholesky_size.value()
        return out

    def _model(self, p: Problem):
        torch, gpytorch = self.torch, self.gpytorch

        class Model(gpytorch.models.ExactGP):
            def __init__(self, X, y, likelihood):
                super().__init__(X, y, likelihood)
                self.mean_module = gpytorch.means.ZeroMean()
                self.covar_module = gpytorch.kernels.ScaleKernel(
                    gpytorch.kernels.RBFKernel(ard_num_dims=X.shape[1]))

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(
                    self.mean_module(x), self.covar_module(x))

        X = torch.from_numpy(p.X)
        y = torch.from_numpy(p.y)
        likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
        model = Model(X, y, likelihood).double()
        model.covar_module.base_kernel.lengthscale = torch.from_numpy(p.lengthscale).reshape(1, -1)
        model.covar_module.outputscale = p.signal_variance
        likelihood.noise = p.noise_variance
        return model, likelihood, X, y

    def _predict(self, model, Xs):
        with self.torch.no_grad():
            f = model(Xs)
            return f.mean, f.variance.sqrt()

    def case_fit(self, p, A, tile_size):
        model, likelihood, _, _ = self._model(p)
        model.eval()
        likelihood.eval()
        x1 = self.torch.from_numpy(p.Xs[:1])

        def fn():
            model.prediction_strategy = None  # drop caches: next call rebuilds K^{-1} y
            with self.torch.no_grad(), self.gpytorch.settings.skip_posterior_variances(True):
                return model(x1).mean

        return Case(fn=fn)

    def case_train_step(self, p, A, tile_size):
        model, likelihood, X, y = self._model(p)
        model.train()
        likelihood.train()
        mll = self.gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        params = list(model.parameters())
        assert sum(q.numel() for q in params) == p.X.shape[1] + 2

        def fn():
            for q in params:
                q.grad = None
            out = mll(model(X), y)
            (-out).backward()
            return float(out) * len(y), np.concatenate([q.grad.reshape(-1).numpy() for q in params])

        return Case(fn=fn, check=_lml_check,
                    note="gradient is w.r.t. GPyTorch's raw (softplus) parameters")

    def case_predict(self, p, A, tile_size):
        model, likelihood, _, _ = self._model(p)
        model.eval()
        likelihood.eval()
        Xs = self.torch.from_numpy(p.Xs)
        return Case(fn=lambda: self._predict(model, Xs),
                    check=lambda r: _predict_check((r[0].numpy(), r[1].numpy())),
                    note=("mean cache built in warm-up; the exact variance path solves "
                          "with K for all m test points on every call (GPyTorch as shipped, "
                          "fast_pred_var off)" + (
                              "; in default mode that solve is CG, and the mean cache too"
                              if self.mode == "default" else "")))

    def case_latency(self, p, A, tile_size):
        Xs = self.torch.from_numpy(p.Xs)

        def fn():
            model, likelihood, _, _ = self._model(p)
            model.eval()
            likelihood.eval()
            return self._predict(model, Xs)

        return Case(fn=fn, note="includes building the model object")

    def memory_setup(self, p):
        model, likelihood, X, y = self._model(p)
        model.train()
        likelihood.train()
        return model, likelihood, X, y

    def memory_step(self, state):
        model, likelihood, X, y = state
        mll = self.gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
        (-mll(model(X), y)).backward()


class GpratAdapter(Adapter):
    name = "gprat"
    ops = ("cholesky", "cholesky_dense", "fit", "train_step", "predict", "latency")

    def __init__(self, threads):
        super().__init__(threads)
        import gprat

        self.gprat = gprat
        gprat.start(threads)

    def info(self):
        out = super().info()
        g = self.gprat
        out["gprat_num_threads"] = g.num_threads()
        out["gprat_file"] = getattr(g, "__file__", None)
        out["gprat_version"] = getattr(g, "__version__", None)
        return out

    def _gp(self, p: Problem, tile_size):
        g = self.gprat
        k = g.kernels.SquaredExponential(lengthscale=p.lengthscale.copy(),
                                         signal_variance=p.signal_variance)
        return g.ExactGP(k, noise_variance=p.noise_variance, tile_size=tile_size,
                         dtype=np.float64)

    def case_cholesky(self, p, A, tile_size):
        # Factorization in the tiled layout the engine works in; copying A into tiles is setup,
        # untimed, as the Fortran-order copy is for the dpotrf yardstick. The variant with both
        # layout conversions inside the timer is the op "cholesky_dense".
        linalg = self.gprat.linalg

        def fn(tiled):
            tiled.cholesky()
            return tiled

        return Case(fn=fn, setup=lambda: linalg.TiledSymmetric(A, tile_size=tile_size),
                    check=lambda t: {"logdet": float(t.log_determinant())})

    def case_cholesky_dense(self, p, A, tile_size):
        return Case(fn=lambda: self.gprat.linalg.cholesky(A, tile_size=tile_size),
                    check=_cholesky_check)

    def case_fit(self, p, A, tile_size):
        gp = self._gp(p, tile_size)
        return Case(fn=lambda: gp.fit(p.X, p.y))

    def case_train_step(self, p, A, tile_size):
        gp = self._gp(p, tile_size).fit(p.X, p.y)
        theta0 = np.asarray(gp.theta, dtype=np.float64).copy()
        if theta0.shape != (p.X.shape[1] + 2,):
            raise RuntimeError(f"gprat: gp.theta has shape {theta0.shape}; expected "
                               f"({p.X.shape[1] + 2},) for an ARD kernel with d={p.X.shape[1]}")

        def fn(theta):
            return gp.log_marginal_likelihood(theta, eval_gradient=True)

        return Case(fn=fn, setup=_perturbed(theta0), check=_lml_check)

    def case_predict(self, p, A, tile_size):
        gp = self._gp(p, tile_size).fit(p.X, p.y)
        return Case(fn=lambda: gp.predict(p.Xs, return_std=True), check=_predict_check)

    def case_latency(self, p, A, tile_size):
        gp = self._gp(p, tile_size)
        return Case(fn=lambda: gp.fit(p.X, p.y).predict(p.Xs, return_std=True))

    def chosen_tile_size(self, p: Problem, op: str):
        """The tile size gprat picks for tile_size=None in ``op``, if it tells."""
        if op == "cholesky":
            choose = getattr(getattr(self.gprat, "_core", None), "choose_tile_size", None)
            return int(choose(p.X.shape[0], self.gprat.num_threads())) if choose else None
        gp = self._gp(p, None).fit(p.X, p.y)
        for owner, attr in ((gp, "tile_size_"), (getattr(gp, "_core", None), "tile_size")):
            v = getattr(owner, attr, None) if owner is not None else None
            if isinstance(v, (int, np.integer)):
                return int(v)
        return None

    def memory_setup(self, p):
        # gprat's step is a method of a fitted model (X, y are given to fit), so the
        # state between steps includes the cached factor.
        return self._gp(p, None).fit(p.X, p.y)

    def memory_step(self, gp):
        gp.log_marginal_likelihood(np.asarray(gp.theta) + 1e-7, eval_gradient=True)

    # Runtime overhead hooks -------------------------------------------------------------
    def overhead_hooks(self):
        """Return (empty_tasks, chain) callables (n_tasks -> seconds) or raise NotAvailable."""
        core = getattr(self.gprat, "_core", None)
        candidates = [core, getattr(core, "runtime_overhead", None)]
        for owner in candidates:
            if owner is None:
                continue
            empty = getattr(owner, "bench_empty_tasks", None)
            chain = getattr(owner, "bench_chain", None)
            if callable(empty) and callable(chain):
                return empty, chain
        raise NotAvailable("gprat._core.bench_empty_tasks(n_tasks) -> seconds and "
                           "gprat._core.bench_chain(n_tasks) -> seconds are not exposed")


def make_adapter(library: str, threads: int) -> Adapter:
    if library == "gprat":
        return GpratAdapter(threads)
    if library == "scipy":
        return ScipyAdapter(threads)
    if library == "torch":
        return TorchAdapter(threads)
    if library == "sklearn":
        return SklearnAdapter(threads)
    if library in ("gpytorch-cholesky", "gpytorch-default"):
        return GPyTorchAdapter(threads, library.split("-", 1)[1])
    raise ValueError(f"unknown library {library!r}")


LIBRARIES = ("scipy", "gprat", "torch", "gpytorch-cholesky", "gpytorch-default", "sklearn")
