"""SVGP epoch time at N = 1,000,000 (issue #10, "Speed and scale"): gprat's SVGP (NGD for q +
Adam, the default, and Adam on everything) against GPyTorch's SVGP, side by side in one run,
the same threads, float64; then gprat's step time at 1 and 2 threads and its per-minibatch cost
at several M against the O(b M^2 + M^3) model.

Usage:
    python benchmarks/svgp_epoch.py                      # N = 1e6, d = 8, M = 512, b = 1024, 2 threads
    python benchmarks/svgp_epoch.py --n 100000 --gpytorch-steps 60 --scaling-steps 10   # quicker
    add --json out.json

Data (documented synthetic, as benchmarks/sparse.py): X ~ U[-1, 1]^d (seed 0),
y = sin(3 x_0) + cos(2 x_1) x_2 + 0.1 eps; a test set of 10,000 points from seed 1. Model:
SquaredExponential with ARD lengthscales 0.5 and signal variance 1 (initial), noise variance
0.01 (initial), Z initialized to the first M rows of X (the same for both libraries), lr = 0.01.

gprat: ``SVGP(...).fit(X, y, batch_size=b, epochs=1, lr=0.01)``: one full epoch (N / b steps,
random minibatches without replacement, the gather of each minibatch included); the step times
are the intervals between the fit's callbacks.
GPyTorch 1.15.2: ApproximateGP, CholeskyVariationalDistribution, VariationalStrategy
(learn_inducing_locations=True), ScaleKernel(RBFKernel(ard_num_dims=d)), GaussianLikelihood,
VariationalELBO(num_data=N), torch.optim.Adam(lr=0.01) over all parameters, a random
permutation's minibatches: zero_grad, forward, -elbo, backward, step; torch.set_num_threads(T).
Its epoch time is extrapolated from `--gpytorch-steps` steps (a full epoch takes too long on
the shared machine) unless --gpytorch-full-epoch.

Quality, after the same number of steps (`--gpytorch-steps`; for gprat also after its full
epoch): the ELBO estimated on a fixed random subset of 20,000 training points,
N / 20000 * sum of the expected log likelihoods - KL (each library's own formula at its own
parameters), and the test RMSE of the predictive mean.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

import common

LENGTHSCALE, SIGNAL, NOISE, LR = 0.5, 1.0, 0.01, 0.01
N_EVAL, N_TEST = 20_000, 10_000


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=n)
    return X, y


def stats(times):
    t = 1e3 * np.asarray(times)
    return dict(steps=int(t.size), step_ms_min=float(t.min()), step_ms_median=float(np.median(t)),
                step_ms_mean=float(t.mean()))


# ----------------------------------------------------------------------------- workers
def gprat_worker(a):
    import gprat
    gprat.start(a.threads)
    X, y = data(a.n, a.d)
    Xt, yt = data(N_TEST, a.d, seed=1)
    ev = np.sort(np.random.default_rng(2).choice(a.n, N_EVAL, replace=False))
    model = gprat.SVGP(gprat.kernels.SquaredExponential(np.full(a.d, LENGTHSCALE), SIGNAL), noise_variance=NOISE,
                       inducing_points=X[:a.m].copy(), method=a.method)
    stamps, quality, spent = [time.perf_counter()], {}, [0.0]

    def evaluate():
        t0 = time.perf_counter()
        theta, Z, qm, qs = model._params()
        elbo = model._core.elbo(theta, Z, qm, qs, X[ev], y[ev], a.n / N_EVAL, True, False)
        rmse = float(np.sqrt(np.mean((model.predict(Xt) - yt) ** 2)))
        spent[0] += time.perf_counter() - t0
        return dict(elbo=float(elbo), test_rmse=rmse)

    def callback(step, value):
        now = time.perf_counter()
        stamps.append(now)
        if step == a.compare_steps:
            quality[f"after_{step}_steps"] = evaluate()
            stamps[-1] = time.perf_counter()  # the evaluation is not a step
        if a.max_steps and step >= a.max_steps:
            raise KeyboardInterrupt  # a partial epoch (scaling runs); the model keeps this step

    t0 = time.perf_counter()
    try:
        model.fit(X, y, batch_size=a.batch, epochs=1, lr=LR, random_state=0, callback=callback)
    except KeyboardInterrupt:
        pass
    wall = time.perf_counter() - t0 - spent[0]
    steps = np.diff(stamps)[2:]  # the first two steps warm up the workspace
    out = dict(library=f"gprat-{a.method}", threads=a.threads, m=a.m, **stats(steps))
    n_steps = len(stamps) - 1
    out["steps_run"] = n_steps
    if not a.max_steps:
        out["epoch_s"] = wall
        out["epoch_measured"] = True
        quality["after_1_epoch"] = evaluate()
    else:
        out["epoch_s"] = float(np.median(steps)) * -(-a.n // a.batch)
        out["epoch_measured"] = False
    out["quality"] = quality
    out["versions"] = dict(gprat=getattr(gprat, "__version__", "?"), numpy=np.__version__)
    print(json.dumps(out))


def gpytorch_worker(a):
    import torch
    import gpytorch
    torch.set_num_threads(a.threads)
    torch.set_default_dtype(torch.float64)
    X, y = data(a.n, a.d)
    Xt, yt = data(N_TEST, a.d, seed=1)
    ev = np.sort(np.random.default_rng(2).choice(a.n, N_EVAL, replace=False))

    model = common.gpytorch_svgp_model(torch.tensor(X[:a.m].copy()))
    lik = gpytorch.likelihoods.GaussianLikelihood()
    model.covar_module.base_kernel.lengthscale = LENGTHSCALE
    model.covar_module.outputscale = SIGNAL
    lik.noise = NOISE
    mll = gpytorch.mlls.VariationalELBO(lik, model, num_data=a.n)
    opt = torch.optim.Adam(list(model.parameters()) + list(lik.parameters()), lr=LR)
    Xtr, ytr = torch.tensor(X), torch.tensor(y)
    quality = {}

    def evaluate():
        model.eval()
        lik.eval()
        with torch.no_grad():
            mean = torch.cat([model(torch.tensor(Xt[s:s + 2048])).mean for s in range(0, N_TEST, 2048)]).numpy()
        model.train()
        lik.train()
        with torch.no_grad():
            # VariationalELBO returns (sum ell / b - KL / N); the same estimate as gprat's: times N
            elbo = float(mll(model(Xtr[ev]), ytr[ev])) * a.n
        return dict(elbo=elbo, test_rmse=float(np.sqrt(np.mean((mean - yt) ** 2))))

    model.train()
    lik.train()
    gen = torch.Generator().manual_seed(0)
    steps_total = -(-a.n // a.batch) if a.full_epoch else a.compare_steps
    order = torch.randperm(a.n, generator=gen)
    stamps = [time.perf_counter()]
    for i in range(steps_total):
        idx = order[i * a.batch:(i + 1) * a.batch]
        opt.zero_grad()
        loss = -mll(model(Xtr[idx]), ytr[idx])
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
        if i + 1 == a.compare_steps:
            quality[f"after_{i + 1}_steps"] = evaluate()
            stamps[-1] = time.perf_counter()
    steps = np.diff(stamps)[2:]
    out = dict(library="gpytorch", threads=a.threads, m=a.m, **stats(steps), steps_run=steps_total)
    if a.full_epoch:
        out["epoch_s"] = stamps[-1] - stamps[0]
        out["epoch_measured"] = True
        quality["after_1_epoch"] = quality.get(f"after_{steps_total}_steps") or evaluate()
    else:
        out["epoch_s"] = float(np.median(steps)) * -(-a.n // a.batch)
        out["epoch_measured"] = False
    out["quality"] = quality
    out["versions"] = dict(gpytorch=gpytorch.__version__, torch=torch.__version__, numpy=np.__version__)
    print(json.dumps(out))


def dgemm_worker(a):
    """NumPy's dgemm rate (M x b times b x M), the flop-floor reference of the same run."""
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((a.m, a.batch)), rng.standard_normal((a.batch, a.m))
    A @ B
    t = []
    for _ in range(20):
        t0 = time.perf_counter()
        A @ B
        t.append(time.perf_counter() - t0)
    flops = 2.0 * a.m * a.batch * a.m
    print(json.dumps(dict(library="numpy-dgemm", threads=a.threads, gflops_best=flops / min(t) / 1e9,
                          gflops_median=flops / float(np.median(t)) / 1e9)))


# ----------------------------------------------------------------------------- driver
class LoadSampler:
    """Samples the 1-minute load average every 5 s while the benchmarks run (other agents share
    the machine's cores)."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(5.0)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run(args, kind, **over):
    a = dict(vars(args), **over)
    cmd = [sys.executable, __file__, "--worker", kind]
    for key in ("n", "d", "m", "batch", "threads", "method", "compare_steps", "max_steps"):
        cmd += [f"--{key.replace('_', '-')}", str(a[key])]
    if a["full_epoch"]:
        cmd.append("--full-epoch")
    env = dict(os.environ, OMP_NUM_THREADS=str(a["threads"]), OPENBLAS_NUM_THREADS=str(a["threads"]),
               MKL_NUM_THREADS=str(a["threads"]))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        row = dict(library=kind, error=(out.stderr.strip().splitlines() or ["failed"])[-1])
    else:
        row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_s"] = time.perf_counter() - t0
    print("  ", json.dumps(row), flush=True)
    return row


def fit_cost_model(rows, b):
    """Least squares t = alpha b M^2 + beta M^3 (ms) over the scaling rows; relative residuals."""
    Ms = np.array([r["m"] for r in rows], float)
    t = np.array([r["step_ms_median"] for r in rows])
    F = np.stack([b * Ms**2, Ms**3], 1)
    coef, *_ = np.linalg.lstsq(F, t, rcond=None)
    pred = F @ coef
    return dict(alpha_ms_per_bM2=float(coef[0]), beta_ms_per_M3=float(coef[1]),
                predicted_ms=pred.tolist(), relative_residuals=((t - pred) / t).tolist())


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=["gprat", "gpytorch", "dgemm"])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--m", type=int, default=512)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--method", default="ngd")
    p.add_argument("--compare-steps", type=int, default=100, help="steps after which both report ELBO and RMSE")
    p.add_argument("--max-steps", type=int, default=0, help="gprat: stop the epoch after this many steps (0: full)")
    p.add_argument("--full-epoch", action="store_true", help="GPyTorch: a full epoch instead of --compare-steps")
    p.add_argument("--gpytorch-steps", type=int, default=None, help="alias of --compare-steps")
    p.add_argument("--scaling-steps", type=int, default=40, help="steps per scaling point (M = 2048: a quarter)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: main,threads,m")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.gpytorch_steps:
        args.compare_steps = args.gpytorch_steps
    if args.worker:
        {"gprat": gprat_worker, "gpytorch": gpytorch_worker, "dgemm": dgemm_worker}[args.worker](args)
        return
    skip = set(filter(None, args.skip.split(",")))
    res = dict(n=args.n, d=args.d, m=args.m, batch=args.batch, threads=args.threads,
               cpu=platform.processor() or platform.machine(), cores=os.cpu_count())
    try:
        with open("/proc/cpuinfo") as f:
            res["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with LoadSampler() as load:
        res["dgemm"] = [run(args, "dgemm", threads=t) for t in (1, args.threads)]
        if "main" not in skip:
            print(f"SVGP, N={args.n}, d={args.d}, M={args.m}, b={args.batch}, {args.threads} threads", flush=True)
            res["main"] = [run(args, "gprat", method="ngd"), run(args, "gprat", method="adam"), run(args, "gpytorch")]
        if "threads" not in skip:
            print("gprat NGD + Adam, step time at 1 and 2 threads", flush=True)
            res["threads"] = [run(args, "gprat", method="ngd", threads=t, max_steps=args.scaling_steps)
                              for t in (1, 2)]
        if "m" not in skip:
            print("gprat NGD + Adam, per-minibatch cost against M", flush=True)
            rows = [run(args, "gprat", method="ngd", m=M,
                        max_steps=max(6, args.scaling_steps // (4 if M > 1024 else 1))) for M in (128, 512, 2048)]
            ok = [r for r in rows if "error" not in r]
            res["m_scaling"] = dict(rows=rows, model=fit_cost_model(ok, args.batch) if len(ok) >= 2 else None)
            print("  ", json.dumps(res["m_scaling"]["model"]))
    res["load_1min"] = dict(min=float(min(load.samples)), median=float(np.median(load.samples)),
                            max=float(max(load.samples)), samples=len(load.samples))
    print("load average (1 min) during the run:", res["load_1min"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
