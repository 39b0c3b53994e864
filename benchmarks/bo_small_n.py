"""Small-n hyperparameter fits for Bayesian-optimization loops (issue #13): gprat against
GPyTorch and scikit-learn, side by side on the same data.

Usage:
    python benchmarks/bo_small_n.py                          # n = 50..1000, SE-ARD, 5 repeats
    python benchmarks/bo_small_n.py --kernel matern52 --n 50 200 --repeats 3 --threads 2
    python benchmarks/bo_small_n.py --add-observations       # also the block update at n = 4096
    python benchmarks/bo_small_n.py --n 50 200 --libraries gprat --repeats 1 --profile   # where the time goes

The problem: the Hartmann-6 function on X ~ U[0, 1]^6 (seeded), y standardized (mean 0, std 1).
Every library starts from the same hyperparameters, the "default start" of a new user:
lengthscale 1 (each of 6), signal variance 1, noise variance 0.01, zero mean, float64, and
runs to convergence with its usual optimizer:
- gprat: ``ExactGP(...).fit(X, y).optimize()`` (bound-constrained L-BFGS in C++ on the closed-form
  gradient, SciPy's L-BFGS-B stopping tests);
- scikit-learn: ``GaussianProcessRegressor(ConstantKernel(1) * RBF(ones(6)) + WhiteKernel(0.01))``
  with its own fmin_l_bfgs_b, no restarts;
- GPyTorch: ExactGP (ZeroMean, ScaleKernel(RBFKernel(ard_num_dims=6)), GaussianLikelihood),
  float64, Cholesky (max_cholesky_size above n), ExactMarginalLogLikelihood minimized with SciPy's
  L-BFGS-B over the raw (softplus) parameters, gradients by autograd: how BoTorch's
  fit_gpytorch_mll fits, without its priors.
The timed region is everything a BO step pays: building the model, the fit and the optimization.
Each library's final hyperparameters are then scored by ONE independent dense reference
(NumPy: Cholesky of K + noise I, sum log N) so that the LML column compares like with like.
Repeats alternate the libraries (drifts of a shared machine hit all alike); the table gives the
min and median seconds, the final LML and the speed ratios against gprat.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

# Hartmann-6 (Dixon & Szegö 1978): f(x) = -sum_i a_i exp(-sum_j A_ij (x_j - P_ij)^2) on [0, 1]^6.
HARTMANN_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                              [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])

START = dict(lengthscale=1.0, signal_variance=1.0, noise_variance=0.01)


def hartmann6(X):
    d2 = ((X[:, None, :] - HARTMANN_P[None]) ** 2 * HARTMANN_A[None]).sum(axis=2)
    return -(np.exp(-d2) * HARTMANN_ALPHA).sum(axis=1)


def problem(n, seed=0):
    rng = np.random.default_rng([seed, n])
    X = rng.uniform(size=(n, 6))
    y = hartmann6(X)
    return X, (y - y.mean()) / y.std()


# ---------------------------------------------------------------- the independent reference
def dense_kernel(kind, X, lengthscale, signal_variance):
    r = np.sqrt(np.maximum(((X[:, None, :] - X[None]) / lengthscale) ** 2, 0).sum(axis=2))
    if kind == "se":
        return signal_variance * np.exp(-0.5 * r ** 2)
    s5 = np.sqrt(5.0) * r
    return signal_variance * (1 + s5 + s5 ** 2 / 3) * np.exp(-s5)


def reference_lml(kind, X, y, lengthscale, signal_variance, noise):
    """log N(y; 0, K + noise I) by NumPy's Cholesky (not gprat's)."""
    K = dense_kernel(kind, X, np.asarray(lengthscale, dtype=np.float64), signal_variance) + noise * np.eye(len(y))
    L = np.linalg.cholesky(K)
    a = np.linalg.solve(L, y)
    return float(-0.5 * a @ a - np.log(np.diag(L)).sum() - 0.5 * len(y) * np.log(2 * np.pi))


# ------------------------------------------------------------------------------ the libraries
def fit_gprat(gprat, kind, X, y):
    family = gprat.kernels.SquaredExponential if kind == "se" else gprat.kernels.Matern52
    d = X.shape[1]
    gp = gprat.ExactGP(family(lengthscale=np.full(d, START["lengthscale"]), signal_variance=START["signal_variance"]),
                       noise_variance=START["noise_variance"]).fit(X, y)
    result = gp.optimize()
    k = gp.kernel
    return dict(lengthscale=np.asarray(k.lengthscale), signal_variance=float(k.signal_variance),
                noise=float(gp.noise_variance), n_iter=int(result.n_iter), n_eval=int(result.n_eval))


def fit_sklearn(kind, X, y):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

    base = RBF(np.full(6, START["lengthscale"])) if kind == "se" else Matern(np.full(6, START["lengthscale"]), nu=2.5)
    kernel = ConstantKernel(START["signal_variance"]) * base + WhiteKernel(START["noise_variance"])
    gpr = GaussianProcessRegressor(kernel, n_restarts_optimizer=0, normalize_y=False).fit(X, y)
    k = gpr.kernel_
    return dict(lengthscale=np.asarray(k.k1.k2.length_scale), signal_variance=float(k.k1.k1.constant_value),
                noise=float(k.k2.noise_level), n_iter=int(gpr._gprat_n_iter) if hasattr(gpr, "_gprat_n_iter") else -1)


def fit_gpytorch(kind, X, y):
    import gpytorch
    import torch
    from scipy.optimize import minimize

    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    d = X.shape[1]

    class Model(gpytorch.models.ExactGP):
        def __init__(self):
            likelihood = gpytorch.likelihoods.GaussianLikelihood()
            super().__init__(Xt, yt, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            base = gpytorch.kernels.RBFKernel(ard_num_dims=d) if kind == "se" else \
                gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=d)
            self.covar_module = gpytorch.kernels.ScaleKernel(base)

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    with gpytorch.settings.max_cholesky_size(10 ** 9):
        model = Model().double()
        model.covar_module.base_kernel.lengthscale = torch.full((1, d), START["lengthscale"], dtype=torch.float64)
        model.covar_module.outputscale = START["signal_variance"]
        model.likelihood.noise = START["noise_variance"]
        model.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        params = [p for p in model.parameters() if p.requires_grad]
        shapes = [p.shape for p in params]
        sizes = [p.numel() for p in params]

        def set_flat(x):
            at = 0
            for p, shape, size in zip(params, shapes, sizes):
                p.data.copy_(torch.from_numpy(x[at:at + size]).reshape(shape))
                at += size

        def loss_and_grad(x):
            set_flat(x)
            for p in params:
                p.grad = None
            loss = -mll(model(Xt), yt)
            loss.backward()
            return float(loss), np.concatenate([p.grad.detach().numpy().ravel() for p in params])

        x0 = np.concatenate([p.detach().numpy().ravel() for p in params])
        res = minimize(loss_and_grad, x0, jac=True, method="L-BFGS-B", options=dict(maxiter=200))
        set_flat(res.x)
    return dict(lengthscale=model.covar_module.base_kernel.lengthscale.detach().numpy().ravel().copy(),
                signal_variance=float(model.covar_module.outputscale), noise=float(model.likelihood.noise),
                n_iter=int(res.nit))


def demo_problem(n_train=2000, seed=0, noise=0.05):
    """The ``gprat demo`` training data (mass-spring-damper NARX features, 12 lags), standardized
    as GPModel.train does, and the demo's start: lengthscale sqrt(d) per feature, 1, 0.1."""
    from gprat import simulate
    from gprat.cli import demo

    lag = max(demo.DEMO_INPUT_LAGS, demo.DEMO_OUTPUT_LAGS)
    data = simulate.generate_dataset(demo.DEMO_BURN_IN + lag + n_train, dt=demo.DEMO_DT, noise_std=noise, seed=seed)
    X, y, _ = simulate.lagged_features(data.u, data.y, demo.DEMO_INPUT_LAGS, demo.DEMO_OUTPUT_LAGS)
    X, y = X[demo.DEMO_BURN_IN:demo.DEMO_BURN_IN + n_train], y[demo.DEMO_BURN_IN:demo.DEMO_BURN_IN + n_train]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = (y - y.mean()) / y.std()
    d = X.shape[1]
    return X, y, dict(lengthscale=float(np.sqrt(d)), signal_variance=1.0, noise_variance=0.1)


def demo_table(gprat, threads, n_train):
    """gprat's demo training (GPModel.train, the CLI's path) against GPyTorch from the same start."""
    global START
    X, y, start = demo_problem(n_train)
    saved, START = START, start
    try:
        rows = []
        for name, fn in (("gprat", lambda: fit_gprat(gprat, "se", X, y)), ("gpytorch", lambda: fit_gpytorch("se", X, y))):
            t0 = time.perf_counter()
            f = fn()
            seconds = time.perf_counter() - t0
            lml = reference_lml("se", X, y, f["lengthscale"], f["signal_variance"], f["noise"])
            rows.append(f"| {name} | {n_train} | {X.shape[1]} | {seconds:.2f} | {lml:.3f} | {f['n_iter']} |")
    finally:
        START = saved
    return "\n".join(["| demo (mass-spring-damper) | n | d | seconds | LML (NumPy reference) | iterations |",
                      "|---|---|---|---|---|---|"] + rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    ap.add_argument("--kernel", choices=["se", "matern52"], default="se")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--libraries", nargs="+", default=["gprat", "sklearn", "gpytorch"])
    ap.add_argument("--add-observations", action="store_true",
                    help="also time add_observations (k = 1, 10) against a refit at n = 4096")
    ap.add_argument("--demo", type=int, default=0, metavar="N",
                    help="also the demo's training problem at N samples (gprat vs GPyTorch, same start)")
    ap.add_argument("--profile", action="store_true",
                    help="also split gprat's fit time at each n (cProfile): engine, SciPy, gprat's Python, NumPy")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)

    from threadpoolctl import threadpool_limits

    limits = threadpool_limits(args.threads)  # NumPy/SciPy BLAS of scikit-learn and the reference  # noqa: F841
    gprat = common.import_gprat()
    gprat.start(args.threads)
    libs = {}
    if "gprat" in args.libraries:
        libs["gprat"] = lambda X, y: fit_gprat(gprat, args.kernel, X, y)
    if "sklearn" in args.libraries:
        libs["sklearn"] = lambda X, y: fit_sklearn(args.kernel, X, y)
    if "gpytorch" in args.libraries:
        try:
            import torch

            torch.set_num_threads(args.threads)
            libs["gpytorch"] = lambda X, y: fit_gpytorch(args.kernel, X, y)
        except ImportError as err:
            common.eprint(f"gpytorch skipped: {err}")

    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    jsonl = args.out / f"bo-small-n-{args.kernel}-{stamp}.jsonl"
    meta = dict(cpu=common.cpu_model(), cores=common.available_cores(), threads=args.threads,
                versions=common.package_versions(), git=common.git_revision(), kernel=args.kernel,
                repeats=args.repeats, load_average=common.load_average())
    common.write_jsonl(jsonl, dict(meta=meta))
    rows = []
    for n in args.n:
        X, y = problem(n)
        times = {name: [] for name in libs}
        final = {}
        for name, fn in libs.items():  # warm-up (imports, first-call costs), untimed
            fn(X, y)
        for _ in range(args.repeats):
            for name, fn in libs.items():
                t0 = time.perf_counter()
                out = fn(X, y)
                times[name].append(time.perf_counter() - t0)
                final[name] = out
        row = dict(n=n)
        for name in libs:
            f = final[name]
            lml = reference_lml(args.kernel, X, y, f["lengthscale"], f["signal_variance"], f["noise"])
            row[name] = dict(min=min(times[name]), median=statistics.median(times[name]), lml=lml,
                             n_iter=f["n_iter"], noise=f["noise"],
                             lengthscale=[float(v) for v in np.ravel(f["lengthscale"])])
        rows.append(row)
        common.write_jsonl(jsonl, row)
        common.eprint(json.dumps({k: (v if k == "n" else {kk: vv for kk, vv in v.items() if kk != "lengthscale"})
                                  for k, v in row.items()}))

    lines = [f"# Small-n fits, Hartmann-6, {args.kernel}, default start", "",
             f"CPU {meta['cpu']}, {args.threads} threads, {args.repeats} repeats; versions {meta['versions']}", "",
             "| n | " + " | ".join(f"{k} min s | {k} median s | {k} LML | {k} iters" for k in libs)
             + " | " + " | ".join(f"{k}/gprat (median)" for k in libs if k != "gprat") + " |",
             "|" + "---|" * (1 + 4 * len(libs) + len(libs) - 1)]
    for row in rows:
        cells = [str(row["n"])]
        for k in libs:
            r = row[k]
            cells += [f"{r['min']:.4f}", f"{r['median']:.4f}", f"{r['lml']:.2f}", str(r["n_iter"])]
        if "gprat" in libs:
            cells += [f"{row[k]['median'] / row['gprat']['median']:.1f}x" for k in libs if k != "gprat"]
        lines.append("| " + " | ".join(cells) + " |")
    if args.profile and "gprat" in libs:
        lines += ["", profile_table(gprat, args.kernel, args.n)]
    if args.add_observations:
        lines += ["", add_observations_table(gprat, args.repeats)]
    if args.demo:
        lines += ["", demo_table(gprat, args.threads, args.demo)]
    text = "\n".join(lines) + "\n"
    (args.out / f"bo-small-n-{args.kernel}-{stamp}.md").write_text(text)
    print(text)


def profile_table(gprat, kind, ns, fits=20):
    """Where a small-n fit's time goes: cProfile's own time per function, summed by where the
    function lives: the compiled engine (gprat._core: assembly, factorization, gradient, the
    runtime's hand-offs, and the C++ L-BFGS loop that drives them), SciPy (L-BFGS-B's driver and Fortran), gprat's Python (model, objective,
    validation), NumPy, the rest. cProfile adds a few microseconds per Python call, so the Python
    shares are upper bounds; the wall time per fit is measured without the profiler first."""
    import cProfile
    import pstats

    out = ["| n | fit ms (no profiler, median) | evaluations per fit | engine % | SciPy % | gprat Python % | NumPy % | other % |",
           "|---|---|---|---|---|---|---|---|"]
    for n in ns:
        X, y = problem(n)
        fit_gprat(gprat, kind, X, y)
        walls = []
        for _ in range(5):
            t0 = time.perf_counter()
            fit_gprat(gprat, kind, X, y)
            walls.append(time.perf_counter() - t0)
        reps = max(1, min(fits, int(2.0 / max(min(walls), 1e-3))))
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(reps):
            fit_gprat(gprat, kind, X, y)
        prof.disable()
        stats = pstats.Stats(prof).stats
        split = dict(engine=0.0, scipy=0.0, gprat=0.0, numpy=0.0, other=0.0)
        evaluations = fit_gprat(gprat, kind, X, y)["n_eval"]
        for (filename, _line, name), (_cc, ncalls, tottime, _ct, _callers) in stats.items():
            if "gprat._core" in name or "gprat._core" in filename:
                split["engine"] += tottime
            elif "/scipy/" in filename or "scipy.optimize" in name:
                split["scipy"] += tottime
            elif "/gprat/" in filename:
                split["gprat"] += tottime
            elif "/numpy/" in filename or "numpy" in name:
                split["numpy"] += tottime
            else:
                split["other"] += tottime
        total = sum(split.values())
        out.append(f"| {n} | {1e3 * statistics.median(walls):.2f} | {evaluations} | "
                   + " | ".join(f"{100 * split[k] / total:.0f}" for k in ("engine", "scipy", "gprat", "numpy", "other"))
                   + " |")
    return "\n".join(out)


def add_observations_table(gprat, repeats, n=4096):
    """add_observations of k = 1 and 10 points against a refit on the n + k points, alternating."""
    X, y = problem(n + 10, seed=1)
    kernel = gprat.kernels.SquaredExponential(lengthscale=np.full(6, 0.5))
    out = ["| n | k | add_observations min s | median s | refit min s | median s | add / refit (median) |",
           "|---|---|---|---|---|---|---|"]
    for k in (1, 10):
        add_t, refit_t = [], []
        for _ in range(repeats):
            gp = gprat.ExactGP(kernel, noise_variance=1e-2).fit(X[:n], y[:n])
            t0 = time.perf_counter()
            gp.add_observations(X[n:n + k], y[n:n + k])
            add_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            gprat.ExactGP(kernel, noise_variance=1e-2).fit(X[:n + k], y[:n + k])
            refit_t.append(time.perf_counter() - t0)
        a, r = statistics.median(add_t), statistics.median(refit_t)
        out.append(f"| {n} | {k} | {min(add_t):.4f} | {a:.4f} | {min(refit_t):.4f} | {r:.4f} | {a / r:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
