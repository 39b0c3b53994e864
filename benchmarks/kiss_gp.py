"""KISS-GP: gprat.KissGP against GPyTorch's GridInterpolationKernel, side by side in one run.

    python benchmarks/kiss_gp.py                       # the issue's cases, one LML + gradient each
    python benchmarks/kiss_gp.py --cases 1d-100k 2d-20k --optimize 50
    python benchmarks/kiss_gp.py --cases 1d-1M 2d-100k --no-gpytorch
    python benchmarks/kiss_gp.py --scaling             # gprat's cost against n and m

Each measurement runs in its own child process, so its peak RSS (ru_maxrss) is its own. Both
libraries get the same data (float64), the same grid size per dimension, the same number of
probes, CG tolerance, CG iteration cap and preconditioner rank, and 2 threads
(torch.set_num_threads, gprat.start). GPyTorch's model is
ScaleKernel(GridInterpolationKernel(RBFKernel(), grid_size, num_dims=d)) with a Gaussian
likelihood, one evaluation = the exact marginal log likelihood's forward and backward
(BBMM: mBCG + SLQ). gprat's is KissGP(SquaredExponential) with log_marginal_likelihood(
eval_gradient=True). The CG tolerances are not the same criterion: GPyTorch stops when the
mean relative residual over the columns is below cg_tolerance (default 1.0 in training), gprat
when every column's is below cg_tol; the iteration counts are recorded. "--optimize N" times N
Adam steps (lr 0.1) on both and reports the test RMSE afterwards (and an exact GP's with the
same starting point where n <= --exact-max-n).

Output: one JSON line per measurement and a Markdown table in
benchmarks/results/kiss-<timestamp>.{jsonl,md}.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent

CASES = {
    "1d-100k": dict(n=100_000, d=1, grid=1000),
    "1d-1M": dict(n=1_000_000, d=1, grid=10_000),
    "2d-20k": dict(n=20_000, d=2, grid=100),
    "2d-100k": dict(n=100_000, d=2, grid=100),
    # smaller cases for the 50-step optimization side by side (and the exact GP at n = 5000)
    "1d-20k": dict(n=20_000, d=1, grid=1000),
    "1d-5k": dict(n=5_000, d=1, grid=1000),
    "2d-5k": dict(n=5_000, d=2, grid=50),
}


def _rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_data(n, d, seed=0, n_test=2000):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n + n_test, d))
    f = np.sin(6 * X).sum(axis=1) + 0.5 * np.cos(11 * X[:, 0])
    y = f + 0.1 * rng.standard_normal(len(f))
    return X[:n], y[:n], X[n:], f[n:]


def run_gprat(spec):
    import numpy as np

    sys.path.insert(0, str(BENCH_DIR))
    import gprat

    gprat.start(spec["threads"])
    X, y, Xt, ft = make_data(spec["n"], spec["d"], spec["seed"])
    kernel = gprat.kernels.SquaredExponential(spec["lengthscale"], 1.0)
    t0 = time.perf_counter()
    gp = gprat.KissGP(kernel, noise_variance=spec["noise"], grid_size=spec["grid"], n_probes=spec["probes"],
                      cg_tol=spec["cg_tol"], max_cg_iter=spec["max_cg_iter"],
                      preconditioner_rank=spec["rank"], random_state=0).fit(X, y)
    fit_s = time.perf_counter() - t0
    times, cpu, splits = [], [], []
    for _ in range(spec.get("repeats", 1)):
        gp._core.reset_timings()  # the split of the fastest evaluation is reported
        c0, t0 = time.process_time(), time.perf_counter()
        gp.log_marginal_likelihood(eval_gradient=True)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)  # CPU seconds of all threads: less sensitive to a loaded machine
        splits.append(gp._core.timings())
    rec = dict(lib="gprat", fit_s=fit_s, eval_s=min(times), eval_s_median=float(np.median(times)),
               eval_s_all=times, eval_cpu_s_all=cpu, split=splits[int(np.argmin(times))],
               cg_iterations=max(gp._core.last_iterations), grid_points=gp.grid_points_)
    if spec["optimize"]:
        c0, t0 = time.process_time(), time.perf_counter()
        kw = dict(lr=0.1) if spec["optimizer"] == "adam" else {}
        res = gp.optimize(method=spec["optimizer"], max_iter=spec["optimize"], **kw)
        rec["optimize_s"] = time.perf_counter() - t0
        rec["optimize_cpu_s"] = time.process_time() - c0
        rec["final_lml"] = float(gp.log_marginal_likelihood())
        rec["optimize_iterations"] = int(res.n_iter)
        rec["rmse"] = float(np.sqrt(np.mean((gp.predict(Xt) - ft) ** 2)))
        rec["hyperparameters"] = np.exp(gp.theta).tolist()
        if spec["n"] <= spec["exact_max_n"]:
            # the exact GP's own optimum (L-BFGS-B on the exact LML), and the exact GP at KissGP's
            # hyperparameters (separates the interpolation error from where the optimizer ended)
            ex = gprat.ExactGP(gprat.kernels.SquaredExponential(spec["lengthscale"], 1.0),
                               noise_variance=spec["noise"]).fit(X, y)
            t0 = time.perf_counter()
            ex.optimize(method="L-BFGS-B", max_iter=100)
            rec["exact_optimize_s"] = time.perf_counter() - t0
            rec["exact_rmse"] = float(np.sqrt(np.mean((ex.predict(Xt) - ft) ** 2)))
            rec["exact_hyperparameters"] = np.exp(ex.theta).tolist()
            ex.theta = gp.theta
            ex.fit(X, y)
            rec["exact_at_kiss_theta_rmse"] = float(np.sqrt(np.mean((ex.predict(Xt) - ft) ** 2)))
    rec["peak_rss_mib"] = _rss_mib()
    return rec


def run_gpytorch(spec):
    import numpy as np
    import torch
    import gpytorch

    torch.set_num_threads(spec["threads"])
    X, y, Xt, ft = make_data(spec["n"], spec["d"], spec["seed"])
    Xtr, ytr = torch.tensor(X), torch.tensor(y)
    d = spec["d"]

    class Model(gpytorch.models.ExactGP):
        def __init__(self, x, t, likelihood):
            super().__init__(x, t, likelihood)
            self.mean_module = gpytorch.means.ZeroMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(
                gpytorch.kernels.GridInterpolationKernel(gpytorch.kernels.RBFKernel(), grid_size=spec["grid"],
                                                         num_dims=d))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    model = Model(Xtr, ytr, lik).double()
    model.covar_module.base_kernel.base_kernel.lengthscale = spec["lengthscale"]
    model.covar_module.outputscale = 1.0
    lik.noise = spec["noise"]
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(lik, model)
    settings = [gpytorch.settings.max_cg_iterations(spec["max_cg_iter"]),
                gpytorch.settings.cg_tolerance(spec["cg_tol"]),
                gpytorch.settings.num_trace_samples(spec["probes"]),
                gpytorch.settings.max_preconditioner_size(spec["rank"]),
                gpytorch.settings.max_cholesky_size(0)]
    rec = dict(lib="gpytorch")
    for s in settings:
        s.__enter__()
    model.train()
    lik.train()
    times = []
    for _ in range(spec.get("repeats", 1)):
        model.zero_grad()
        t0 = time.perf_counter()
        loss = -mll(model(Xtr), ytr)
        loss.backward()
        times.append(time.perf_counter() - t0)
    rec["eval_s"], rec["eval_s_median"] = min(times), float(np.median(times))
    if spec["optimize"]:
        # GPyTorch's usual training loop: Adam, lr 0.1; stopped early (and said so) after
        # max_seconds, with the per-iteration time recorded
        opt = torch.optim.Adam(model.parameters(), lr=0.1)
        t0 = time.perf_counter()
        steps = []
        for _ in range(spec["optimize"]):
            ts = time.perf_counter()
            opt.zero_grad()
            loss = -mll(model(Xtr), ytr)
            loss.backward()
            opt.step()
            steps.append(time.perf_counter() - ts)
            print(f"STEP {len(steps)} {steps[-1]:.2f}", file=sys.stderr, flush=True)
            if spec.get("max_seconds") and time.perf_counter() - t0 > spec["max_seconds"]:
                break
        rec["optimize_s"] = time.perf_counter() - t0
        rec["optimize_iterations"] = len(steps)
        rec["step_s_min"], rec["step_s_median"] = float(np.min(steps)), float(np.median(steps))
        rec["hyperparameters"] = [float(model.covar_module.base_kernel.base_kernel.lengthscale),
                                  float(model.covar_module.outputscale), float(lik.noise)]
        model.eval()
        lik.eval()
        with torch.no_grad(), gpytorch.settings.fast_pred_var():
            mean = model(torch.tensor(Xt)).mean.numpy()
        rec["rmse"] = float(np.sqrt(np.mean((mean - ft) ** 2)))
    rec["peak_rss_mib"] = _rss_mib()
    return rec


def run_optimizer_study(spec):
    """KissGP's optimizers against the exact GP's optimum on one case, from the same start.

    For each method: seconds, iterations, the hyperparameters reached, the test RMSE, and the
    exact GP's test RMSE and LML at those hyperparameters (how far from the exact optimum the
    optimizer ended, apart from the interpolation error)."""
    import numpy as np

    sys.path.insert(0, str(BENCH_DIR))
    import gprat

    gprat.start(spec["threads"])
    X, y, Xt, ft = make_data(spec["n"], spec["d"], spec["seed"])
    SE = gprat.kernels.SquaredExponential

    def rmse(m):
        return float(np.sqrt(np.mean((m.predict(Xt) - ft) ** 2)))

    def exact(theta=None):
        ex = gprat.ExactGP(SE(spec["lengthscale"], 1.0), noise_variance=spec["noise"])
        if theta is not None:
            ex.theta = theta
        return ex.fit(X, y)

    out = []
    for method in spec["methods"]:
        t0 = time.perf_counter()
        if method == "exact":
            m = exact()
            r = m.optimize(method="L-BFGS-B", max_iter=100)
        else:
            name, probes, tol = (method.split(":") + ["", ""])[:3]
            m = gprat.KissGP(SE(spec["lengthscale"], 1.0), noise_variance=spec["noise"], grid_size=spec["grid"],
                             n_probes=int(probes or spec["probes"]), cg_tol=float(tol or 1e-6),
                             random_state=0).fit(X, y)
            r = m.optimize(method=name, max_iter=spec["optimize"], **(dict(lr=0.1) if name == "adam" else {}))
        rec = dict(method=method, seconds=time.perf_counter() - t0, n_iter=int(r.n_iter),
                   hyperparameters=np.exp(m.theta).tolist(), rmse=rmse(m))
        if method != "exact":
            ex = exact(m.theta)
            rec["exact_at_theta_rmse"], rec["exact_at_theta_lml"] = rmse(ex), float(ex.log_marginal_likelihood())
        else:
            rec["exact_lml"] = float(m.log_marginal_likelihood())
        print(json.dumps(rec), file=sys.stderr, flush=True)
        out.append(rec)
    return dict(lib="gprat", study=out, peak_rss_mib=_rss_mib())


def _load():
    with open("/proc/loadavg") as fh:
        return fh.read().split()[0]


def child_main():
    spec = json.loads(sys.argv[2])
    load0 = _load()
    if spec.get("methods"):
        rec = run_optimizer_study(spec)
    else:
        rec = run_gprat(spec) if spec["lib"] == "gprat" else run_gpytorch(spec)
    rec["load_start"], rec["load_end"] = load0, _load()
    print("RESULT " + json.dumps(rec))


def launch(spec, timeout):
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(lib=spec["lib"], error=f"timeout after {timeout} s")
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (out.stderr or "")[-400:]
    return dict(lib=spec["lib"], error=f"exit {out.returncode} after {time.perf_counter() - t0:.0f} s: {tail}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main()
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["1d-100k", "2d-20k", "1d-1M", "2d-100k"], choices=list(CASES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probes", type=int, default=10)
    ap.add_argument("--cg-tol", type=float, default=1.0, help="GPyTorch's training default is 1.0")
    ap.add_argument("--max-cg-iter", type=int, default=1000)
    ap.add_argument("--rank", type=int, default=15)
    ap.add_argument("--lengthscale", type=float, default=0.2)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--optimize", type=int, default=0, help="also time this many Adam steps and report test RMSE")
    ap.add_argument("--exact-max-n", type=int, default=5000)
    ap.add_argument("--optimizer", default="adam", choices=["L-BFGS-B", "adam"],
                    help="gprat's optimizer for --optimize (GPyTorch always runs its Adam loop, lr 0.1)")
    ap.add_argument("--gpytorch-max-seconds", type=float, default=0,
                    help="stop GPyTorch's optimization loop after this long (0: run all steps)")
    ap.add_argument("--repeats", type=int, default=3, help="evaluations timed per case (min and median)")
    ap.add_argument("--gpytorch-repeats", type=int, default=1)
    ap.add_argument("--no-gpytorch", action="store_true")
    ap.add_argument("--no-gprat", action="store_true")
    ap.add_argument("--gpytorch-cases", nargs="*", default=["1d-100k", "2d-20k", "1d-20k", "1d-5k", "2d-5k"],
                    help="cases GPyTorch runs (1d-1M needs ~15 GB and a minute per step; 2d-100k runs out of memory)")
    ap.add_argument("--optimizer-study", nargs="+", metavar="METHOD",
                    help="gprat alone: e.g. exact adam L-BFGS-B L-BFGS-B:30 adam:10:1.0 (method[:probes[:cg_tol]], "
                         "cg_tol 1e-6 unless given) on --cases")
    ap.add_argument("--scaling", action="store_true", help="gprat alone: cost against n (1-D) and m (2-D)")
    ap.add_argument("--bandwidth", action="store_true",
                    help="only measure this machine's memory bandwidth (NumPy copy and triad, 128 MiB arrays, 1 thread)")
    ap.add_argument("--timeout", type=int, default=1800)
    args = ap.parse_args()
    if args.bandwidth:
        print(json.dumps(bandwidth()))
        return
    base = dict(threads=args.threads, probes=args.probes, cg_tol=args.cg_tol, max_cg_iter=args.max_cg_iter,
                rank=args.rank, lengthscale=args.lengthscale, noise=args.noise, optimize=args.optimize,
                exact_max_n=args.exact_max_n, seed=0, optimizer=args.optimizer,
                max_seconds=args.gpytorch_max_seconds)
    runs = []
    if args.optimizer_study:
        for case in args.cases:
            runs.append((case, dict(base, **CASES[case], lib="gprat", optimize=args.optimize or 50,
                                    methods=args.optimizer_study)))
    elif args.scaling:
        for n in (25_000, 100_000, 400_000):
            runs.append((f"1d n={n} grid=1000", dict(base, lib="gprat", n=n, d=1, grid=1000, optimize=0,
                                                      repeats=args.repeats)))
        for g in (50, 100, 200):
            runs.append((f"2d n=20000 grid={g}^2", dict(base, lib="gprat", n=20_000, d=2, grid=g, optimize=0,
                                                         repeats=args.repeats)))
    else:
        for case in args.cases:
            spec = dict(base, **CASES[case])
            if not args.no_gprat:
                runs.append((case, dict(spec, lib="gprat", repeats=args.repeats)))
            if not args.no_gpytorch and case in args.gpytorch_cases:
                runs.append((case, dict(spec, lib="gpytorch", repeats=args.gpytorch_repeats)))
    results = []
    for name, spec in runs:
        rec = launch(spec, args.timeout)
        rec.update(case=name, spec=spec)
        results.append(rec)
        print(json.dumps(rec), flush=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    with open(out_dir / f"kiss-{stamp}.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    lines = ["| case | lib | eval s (min / median) | optimize s (iterations) | CG it. | peak RSS MiB | RMSE | "
             "exact RMSE (own opt. / at KissGP's theta) | W s | K_UU s | CG other s | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for st in r.get("study", []):
            lines.append(f"| {r['case']} | {st['method']} | | {_f(st['seconds'])} ({st['n_iter']}) | | | "
                         f"{_f(st['rmse'], 5)} | {_f(st.get('exact_at_theta_rmse'), 5)} | "
                         f"{[round(v, 5) for v in st['hyperparameters']]} | | | |")
        if "study" in r:
            continue
        sp = r.get("split", {})
        ev = _f(r.get("eval_s")) + ("" if r.get("eval_s_median") is None else f" / {_f(r.get('eval_s_median'))}")
        op = "" if r.get("optimize_s") is None else f"{_f(r.get('optimize_s'))} ({r.get('optimize_iterations')})"
        ex = "" if r.get("exact_rmse") is None else f"{_f(r['exact_rmse'], 5)} / {_f(r['exact_at_kiss_theta_rmse'], 5)}"
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["case"], r["lib"], ev, op, r.get("cg_iterations", ""), _f(r.get("peak_rss_mib"), 0),
            _f(r.get("rmse"), 5), ex, _f(sp.get("interpolation")), _f(sp.get("kronecker")), _f(sp.get("cg_other")),
            f"{r.get('load_start', '')}-{r.get('load_end', '')}") + ("" if "error" not in r else f" {r['error'][:80]}"))
    (out_dir / f"kiss-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def bandwidth(n=1 << 24, repeats=8):
    """Bytes moved per second by a copy (b = a: 2 n doubles) and a triad (a = b + 0.5 c: 3 n doubles), best of `repeats`."""
    import numpy as np

    a, b, c = np.ones(n), np.full(n, 2.0), np.full(n, 3.0)
    copy = triad = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(b, a)
        copy = min(copy, time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.multiply(c, 0.5, out=a)
        np.add(a, b, out=a)  # two NumPy passes: a = 0.5 c, a += b (4 n doubles moved)
        triad = min(triad, time.perf_counter() - t0)
    return dict(copy_gb_s=2 * n * 8 / copy / 1e9, triad_gb_s=4 * n * 8 / triad / 1e9, load=_load())


def _f(v, digits=2):
    return "" if v is None else f"{v:.{digits}f}"


if __name__ == "__main__":
    main()
