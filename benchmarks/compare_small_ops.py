"""Two gprat builds side by side on the operations compare_builds.py does not time: single-vector
solves (add_observations, predict with the std of a few points) and an SVGP minibatch step.

Usage:
    pip install --no-build-isolation --no-deps --target /tmp/gprat-before <old checkout>
    pip install --no-build-isolation --no-deps --target /tmp/gprat-after .
    python benchmarks/compare_small_ops.py before=/tmp/gprat-before after=/tmp/gprat-after --rounds 3
    python benchmarks/compare_small_ops.py before=... after=... --ops svgp --rounds 4

Each (build, round) runs this file with ``--worker`` in a fresh process with that build first on
PYTHONPATH; builds alternate within every round. Operations:
- ``exact``: n = 4096, d = 8, SE, noise 1e-2: fit (5 calls per round), predict with std of 1 and
  10 points (15 each), add_observations of k = 1 and 10 points to a fresh fit (7 each);
- ``svgp``: SVGP (SE, M = 512 from the first rows, noise 0.1) on svgp_epoch.data(40960, 8): one
  warm-up epoch of 2 steps, then 25 timed partial_fit steps of b = 1024 (NGD + Adam, the
  default); the ELBO on 4096 points after them is printed per build.
Prints a Markdown table of min and median milliseconds and the after/before ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _times(f, calls):
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return out


def worker(op):
    import numpy as np

    import gprat

    out = {}
    if op == "exact":
        rng = np.random.default_rng(0)
        n, d = 4096, 8
        X = rng.uniform(size=(n + 10, d))
        y = np.sin(X.sum(1))
        kernel = gprat.kernels.SquaredExponential(lengthscale=np.ones(d))
        make = lambda: gprat.ExactGP(kernel, noise_variance=1e-2).fit(X[:n], y[:n])  # noqa: E731
        out["fit"] = _times(make, 5)
        gp = make()
        for k in (1, 10):
            out[f"predict_std_{k}"] = _times(lambda: gp.predict(X[n:n + k], return_std=True), 15)
        for k in (1, 10):
            ts = []
            for _ in range(7):
                g = make()
                t0 = time.perf_counter()
                g.add_observations(X[n:n + k], y[n:n + k])
                ts.append(time.perf_counter() - t0)
            out[f"add_observations_{k}"] = ts
    else:
        sys.path.insert(0, str(HERE))
        import svgp_epoch

        X, y = svgp_epoch.data(40960, 8)
        m = gprat.SVGP(gprat.kernels.SquaredExponential(lengthscale=np.ones(8)), noise_variance=0.1,
                       inducing_points=X[:512])
        m.fit(X[:2048], y[:2048], batch_size=1024, epochs=1, lr=0.01)
        steps = []
        for i in range(25):
            rows = slice(1024 * (i % 38), 1024 * (i % 38 + 1))
            steps.append(_times(lambda: m.partial_fit(X[rows], y[rows]), 1)[0])
        out["svgp_partial_fit"] = steps
        out["elbo"] = float(m.elbo(X[:4096], y[:4096]))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="*", help="name=path (a --target install of gprat)")
    ap.add_argument("--ops", choices=["exact", "svgp"], default="exact")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=["exact", "svgp"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    builds = dict(b.split("=", 1) for b in args.builds)
    if len(builds) != 2:
        ap.error("give two builds, e.g. before=/tmp/gprat-before after=/tmp/gprat-after")
    times = {b: {} for b in builds}
    extra = {}
    for _ in range(args.rounds):
        for name, path in builds.items():
            env = dict(os.environ, PYTHONPATH=path, GPRAT_NUM_THREADS=str(args.threads))
            run = subprocess.run([sys.executable, __file__, "--worker", args.ops], env=env, capture_output=True,
                                 text=True, check=True)
            result = json.loads(run.stdout)
            if "elbo" in result:
                extra[name] = result.pop("elbo")
            for op, ts in result.items():
                times[name].setdefault(op, []).extend(ts)
    first, second = builds
    print(f"# {first} against {second}, {args.rounds} rounds, {args.threads} threads\n")
    print(f"| operation | {first} min / median ms | {second} min / median ms | {second}/{first} (median) |")
    print("|---|---|---|---|")
    for op in times[first]:
        a, b = times[first][op], times[second][op]
        print(f"| {op} | {1e3 * min(a):.2f} / {1e3 * statistics.median(a):.2f} | "
              f"{1e3 * min(b):.2f} / {1e3 * statistics.median(b):.2f} | "
              f"{statistics.median(b) / statistics.median(a):.3f} |")
    for name, value in extra.items():
        print(f"\n{name}: ELBO on 4096 points after the steps {value:.6e}")


if __name__ == "__main__":
    main()
