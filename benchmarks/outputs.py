"""Several outputs on one factor (issue #13): fit and one training step at p outputs against p = 1.

Usage:
    python benchmarks/outputs.py                      # n = 4096, p = 1 and 8, 3 repeats
    python benchmarks/outputs.py --n 2048 4096 --p 1 2 8 --repeats 5 --threads 2

The problem is benchmarks/common.py's (float64, d = 8, ARD squared exponential, noise 1e-2);
y has p columns (p independent draws of the same kind). For each (n, p) a model is built and
fitted once untimed, then ``fit`` (assemble, Cholesky, p right-hand sides) and a training step
with the gradient (K^{-1} in place, the fused gradient pass with the (A A^T - p K^{-1}) weights)
are timed `repeats` times, alternating p within every repeat so that drifts of a shared machine
hit every p alike. Prints a Markdown table of min and median seconds and the ratio to p = 1.
The target of the issue: at most 1.3x the p = 1 cost at p = 8, n = 4096.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402  (benchmarks/common.py: the shared problem)

gprat = common.import_gprat()
D = 8


def _problem(n, p, seed=0):
    """common.make_problem's X and y; further outputs are y of other seeds (same kind)."""
    prob = common.make_problem(n, 1, D, seed)
    ys = [prob.y] + [common.make_problem(n, 1, D, seed + k).y for k in range(1, p)]
    Y = np.column_stack(ys) if p > 1 else prob.y
    return np.ascontiguousarray(prob.X), np.ascontiguousarray(Y), prob.lengthscale


def _model(lengthscale):
    k = gprat.kernels.SquaredExponential(lengthscale=lengthscale, signal_variance=common.SIGNAL_VARIANCE)
    return gprat.ExactGP(k, noise_variance=common.NOISE_VARIANCE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[4096])
    ap.add_argument("--p", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    if args.threads:
        gprat.start(args.threads)
    ps = sorted(set(args.p) | {1})
    rows = []
    for n in args.n:
        models = {}
        for p in ps:
            X, Y, lengthscale = _problem(n, p)
            models[p] = _model(lengthscale).fit(X, Y)  # untimed warm-up (allocates the factor)
            models[p].log_marginal_likelihood(models[p].theta, eval_gradient=True)
        times = {(p, op): [] for p in ps for op in ("fit", "train_step")}
        for _ in range(args.repeats):
            for p in ps:
                gp = models[p]
                X, Y = gp.X_train_, gp.y_train_
                t0 = time.perf_counter()
                gp.fit(X, Y)
                times[(p, "fit")].append(time.perf_counter() - t0)
                theta = gp.theta + 1e-7  # a new theta: a step at the fitted one reuses fit's factor
                t0 = time.perf_counter()
                gp.log_marginal_likelihood(theta, eval_gradient=True)
                times[(p, "train_step")].append(time.perf_counter() - t0)
        for op in ("fit", "train_step"):
            base = min(times[(1, op)])
            for p in ps:
                t = times[(p, op)]
                rows.append((n, op, p, min(t), statistics.median(t), min(t) / base))
    print(f"# several outputs on one factor: {common.cpu_model()}, {gprat.num_threads()} threads, "
          f"gprat {getattr(gprat, '__version__', '?')}, {args.repeats} repeats, load {common.load_average()}")
    print()
    print("| n | operation | p | min s | median s | min / min at p = 1 |")
    print("|---|---|---|---|---|---|")
    for n, op, p, tmin, tmed, ratio in rows:
        print(f"| {n} | {op} | {p} | {tmin:.3f} | {tmed:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
