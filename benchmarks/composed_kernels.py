"""Composed kernels against one squared exponential (issue #9, Speed): a training step and a fit.

Usage:
    python benchmarks/composed_kernels.py                           # n = 8192, 2 threads, 5 repeats
    python benchmarks/composed_kernels.py --n 4096 --threads 2 --repeats 3 --cases mauna_loa

Two composed kernels, each against one SquaredExponential on the same data, side by side:
  - mauna_loa (d = 1, times in years, a trend plus a yearly cycle plus noise): scikit-learn's
    Mauna Loa CO2 kernel in gprat.kernels spelling,
        50**2 * SE(50) + 2**2 * SE(100) * Periodic(1, 1) + 0.5**2 * RationalQuadratic(1, 1)
        + 0.1**2 * SE(0.1) + White(0.1**2),   noise_variance = 0 (the noise is the White leaf);
    the reference is SE(1) with a learned noise_variance = 1e-2;
  - ard_sum (d = 8, benchmarks/common.py's problem): 1.0 * SE_ARD + 0.5 * Matern52_ARD
    + White(1e-2), noise_variance = 0; the reference is the ARD SE of common.py with 1e-2.
For every case and kernel a model is fitted once untimed, then each repeat times, for every model
in turn (so that drifts of a shared machine hit all alike), ``fit`` (assembly + Cholesky + the
solves) and a training step ``log_marginal_likelihood(theta, eval_gradient=True)`` (assembly,
Cholesky, K^{-1} in place, the fused gradient pass). Every timed call runs under ``gprat.trace``:
the busy seconds per task kind split the cost into assembly ("assemble"), the gradient pass
("gradient"), the factorization and inverse (potrf, trsm, syrk, gemm, trtri, lauum, trmm, ...)
and the rest, and the CPU time of the process is recorded beside the wall time. Prints a Markdown
table of min and median seconds and min / min of the SE, and
writes it with every measurement (JSONL) under benchmarks/results/composed-<timestamp>.*.
The target of the issue: a training step with a composed kernel at most 1.15x the SE's.
"""

from __future__ import annotations

import argparse
import collections
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (benchmarks/common.py: the shared problem and system facts)

gprat = common.import_gprat()
K = gprat.kernels

#: task kinds reported on their own; everything else of the factorization is "factor", the rest "other"
OWN_KINDS = ("assemble", "gradient")
FACTOR_KINDS = ("potrf", "trsm", "syrk", "gemm", "trtri", "lauum", "trmm", "colsq")


def mauna_loa_data(n, seed=0):
    """n times in years over 45 years, y = trend + yearly cycle + noise (CO2-like), d = 1."""
    rng = np.random.default_rng([seed, n])
    t = np.sort(rng.uniform(0.0, 45.0, n))
    y = 0.03 * (t - 22.5) ** 2 + 2.5 * np.sin(2 * np.pi * t) + 0.3 * rng.standard_normal(n)
    return t[:, None].copy(), y - y.mean()


def cases(n):
    """name -> (X, y, [(label, model)]) with the SE reference first."""
    out = {}
    X, y = mauna_loa_data(n)
    mauna_loa = (50.0**2 * K.SquaredExponential(lengthscale=50.0)
                 + 2.0**2 * K.SquaredExponential(lengthscale=100.0) * K.Periodic(lengthscale=1.0, period=1.0)
                 + 0.5**2 * K.RationalQuadratic(lengthscale=1.0, alpha=1.0)
                 + 0.1**2 * K.SquaredExponential(lengthscale=0.1)
                 + K.White(noise_level=0.1**2))
    out["mauna_loa"] = (X, y, [
        ("SE", gprat.ExactGP(K.SquaredExponential(lengthscale=1.0), noise_variance=1e-2)),
        ("composed", gprat.ExactGP(mauna_loa, noise_variance=0.0)),
    ])
    prob = common.make_problem(n, 1, 8, 0)
    ls = prob.lengthscale
    ard_sum = (1.0 * K.SquaredExponential(lengthscale=ls) + 0.5 * K.Matern52(lengthscale=ls)
               + K.White(noise_level=1e-2))
    out["ard_sum"] = (prob.X, prob.y, [
        ("SE", gprat.ExactGP(K.SquaredExponential(lengthscale=ls, signal_variance=common.SIGNAL_VARIANCE),
                             noise_variance=common.NOISE_VARIANCE)),
        ("composed", gprat.ExactGP(ard_sum, noise_variance=0.0)),
    ])
    return out


def traced(fn, tmp):
    """(wall seconds, CPU seconds of the process, {task kind: busy seconds}) of one call of fn
    under gprat.trace. The CPU time (all threads) does not count time the workers wait for the
    CPU while other jobs run, so its ratios hold better than wall-time ratios on a loaded machine."""
    gc.collect()
    gc.disable()
    try:
        with gprat.trace(Path(tmp) / "trace.json") as records:
            c0 = time.process_time()
            t0 = time.perf_counter()
            fn()
            wall = time.perf_counter() - t0
            cpu = time.process_time() - c0
    finally:
        gc.enable()
    busy = collections.defaultdict(float)
    for name, _worker, start, end in records:
        kind = name if name in OWN_KINDS else "factor" if name in FACTOR_KINDS else "other"
        busy[kind] += (end - start) / 1e9
    return wall, cpu, dict(busy)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", nargs="+", default=["mauna_loa", "ard_sum"], choices=["mauna_loa", "ard_sum"])
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    gprat.start(args.threads)
    all_cases = cases(args.n)
    chosen = {c: all_cases[c] for c in args.cases}
    for X, y, models in chosen.values():
        for _label, gp in models:  # untimed warm-up (allocates the factor)
            gp.fit(X, y)
            gp.log_marginal_likelihood(gp.theta, eval_gradient=True)

    samples = []  # one dict per timed call
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for case, (X, y, models) in chosen.items():
                for label, gp in models:
                    theta = gp.theta + 1e-7  # a new theta: a step at the fitted one reuses fit's factor
                    for op, fn in (("fit", lambda: gp.fit(X, y)),
                                   ("train_step", lambda: gp.log_marginal_likelihood(theta, eval_gradient=True))):
                        wall, cpu, busy = traced(fn, tmp)
                        samples.append({"record": "sample", "case": case, "kernel": label, "op": op, "repeat": rep,
                                        "n": args.n, "d": X.shape[1], "n_params": len(theta), "wall_s": wall, "cpu_s": cpu,
                                        "busy_s": busy})

    rows = []
    for case, (X, y, models) in chosen.items():
        for op in ("fit", "train_step"):
            base = None
            for label, gp in models:
                sel = [s for s in samples if s["case"] == case and s["kernel"] == label and s["op"] == op]
                wall = [s["wall_s"] for s in sel]
                cpu = [s["cpu_s"] for s in sel]
                kinds = {k: [s["busy_s"].get(k, 0.0) for s in sel] for k in ("assemble", "gradient", "factor", "other")}
                tmin = min(wall)
                base = (tmin, min(cpu)) if base is None else base
                rows.append({"record": "summary", "case": case, "d": X.shape[1], "op": op, "kernel": label,
                             "repr": repr(gp.kernel), "n_params": len(gp.theta), "min_s": tmin,
                             "median_s": statistics.median(wall), "ratio_min": tmin / base[0],
                             "cpu_min_s": min(cpu), "cpu_ratio_min": min(cpu) / base[1],
                             "busy_min_s": {k: min(v) for k, v in kinds.items()},
                             "busy_median_s": {k: statistics.median(v) for k, v in kinds.items()}})
        # side-by-side ratio of the medians too (same repeats)
        for r in rows:
            if r["case"] == case:
                ref = next(q for q in rows if q["case"] == case and q["op"] == r["op"] and q["kernel"] == "SE")
                r["ratio_median"] = r["median_s"] / ref["median_s"]

    meta = {"record": "meta", "script": "benchmarks/composed_kernels.py", "argv": sys.argv[1:], "n": args.n,
            "threads": gprat.num_threads(), "repeats": args.repeats, "cpu": common.cpu_model(),
            "cpu_flags": common.cpu_flags(), "cores": common.available_cores(), "versions": common.package_versions(),
            "gprat_version": getattr(gprat, "__version__", None), "git": common.git_revision(),
            "load_average_end": common.load_average(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    lines = [f"# Composed kernels against one SE: {meta['cpu']}, {meta['threads']} threads, n = {args.n}, "
             f"gprat {meta['gprat_version']} ({meta['git']}), {args.repeats} repeats, "
             f"load average at the end {meta['load_average_end']}", "",
             "Wall seconds of the call (min, median over repeats) and CPU seconds of the process (all threads, "
             "min); busy seconds per task kind (sum over workers, min over repeats): assemble, gradient, "
             "factor (potrf/trsm/syrk/gemm and the inverse's trtri/lauum/trmm), other (solves, copies, logdet).", "",
             "| case | d | op | kernel | params | min s | median s | min / SE | median / SE | CPU min s | CPU min / SE "
             "| assemble s | gradient s | factor s | other s |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = r["busy_min_s"]
        lines.append(f"| {r['case']} | {r['d']} | {r['op']} | {r['kernel']} | {r['n_params']} | {r['min_s']:.3f} "
                     f"| {r['median_s']:.3f} | {r['ratio_min']:.3f} | {r['ratio_median']:.3f} | {r['cpu_min_s']:.3f} "
                     f"| {r['cpu_ratio_min']:.3f} | {b['assemble']:.3f} "
                     f"| {b['gradient']:.3f} | {b['factor']:.3f} | {b['other']:.3f} |")
    lines += ["", "Kernels:"] + sorted({f"- {r['case']} {r['kernel']}: `{r['repr']}`" for r in rows})
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"composed-{time.strftime('%Y%m%d-%H%M%S')}"
        for rec in [meta] + samples + rows:
            common.write_jsonl(stem.with_suffix(".jsonl"), rec)
        stem.with_suffix(".md").write_text(text + "\n")
        print(f"\nwritten: {stem}.md, .jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
