"""Tile-size sweep for one dtype: gprat's automatic tile size against fixed sizes.

    python benchmarks/tile_sweep.py --dtype float32 --n 2048 4096 8192 --threads 2

run.py's ``tiles`` section does this for float64 next to the competitors; this script covers
the dtype dimension of the automatic choice (``tile_size=None`` decides from n, the thread
count and the dtype). For every n it times, interleaved in a shuffled order per pass so that
drift in the machine's load spreads evenly, the Cholesky of the benchmark kernel matrix in the
tiled layout and one training step (log marginal likelihood and all gradients), at each fixed
tile size and at ``None``. Reports min and median of the passes and auto ÷ best.
Writes benchmarks/results/tilesweep-<dtype>-<timestamp>.{jsonl,md}.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402
    available_cores,
    cpu_model,
    git_revision,
    import_gprat,
    kernel_matrix,
    load_average,
    make_problem,
    package_versions,
    write_jsonl,
)


def _load_average() -> float:
    """The 1-minute load average, NaN where unknown."""
    la = load_average()
    return la[0] if la else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--n", type=int, nargs="+", default=[2048, 4096, 8192])
    ap.add_argument("--threads", type=int, default=available_cores())
    ap.add_argument("--tile-sizes", type=int, nargs="+", default=[256, 384, 512, 768, 1024])
    ap.add_argument("--passes", type=int, default=3, help="timed passes (>= 3) after one warm-up pass")
    ap.add_argument("--ops", nargs="+", choices=("cholesky", "train_step"), default=["cholesky", "train_step"])
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    args = ap.parse_args()
    if args.passes < 3:
        ap.error("--passes must be at least 3")

    gprat = import_gprat()
    gprat.start(args.threads)
    dtype = np.dtype(args.dtype).type
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = args.out_dir / f"tilesweep-{args.dtype}-{stamp}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"record": "meta", "command": "python benchmarks/tile_sweep.py " + " ".join(sys.argv[1:]),
            "cpu": cpu_model(), "cores": available_cores(), "threads": gprat.num_threads(),
            "versions": package_versions(), "git": git_revision(), "dtype": args.dtype,
            "date": datetime.now().isoformat(timespec="seconds"), "load_before": _load_average()}
    write_jsonl(base.with_suffix(".jsonl"), meta)
    rows = []
    rnd = random.Random(0)
    for n in args.n:
        p = make_problem(n, 1000, 8, 0)
        A = kernel_matrix(p).astype(dtype)
        X, y = p.X.astype(dtype), p.y.astype(dtype)
        sizes = [None] + [nb for nb in args.tile_sizes if nb < n]
        for op in args.ops:
            def make(nb):
                if op == "cholesky":
                    return lambda: gprat.linalg.TiledSymmetric(A, tile_size=nb), lambda t: t.cholesky()
                kernel = gprat.kernels.SquaredExponential(lengthscale=p.lengthscale.copy(),
                                                          signal_variance=p.signal_variance)
                gp = gprat.ExactGP(kernel, noise_variance=p.noise_variance, tile_size=nb, dtype=dtype).fit(X, y)
                theta = np.asarray(gp.theta) + 1e-7  # not the fitted theta, whose factor a step would reuse
                return (lambda: gp), (lambda g: g.log_marginal_likelihood(theta, eval_gradient=True))

            cases = {nb: make(nb) for nb in sizes}
            auto_nb = None
            times = {nb: [] for nb in sizes}
            for pass_no in range(args.passes + 1):
                order = list(sizes)
                rnd.shuffle(order)
                for nb in order:
                    setup, fn = cases[nb]
                    state = setup()
                    t0 = time.perf_counter()
                    fn(state)
                    t = time.perf_counter() - t0
                    if nb is None:
                        auto_nb = int(state.tile_size_ if op == "train_step" else state.tile_size)
                    if pass_no > 0:  # pass 0 is the warm-up
                        times[nb].append(t)
            best_nb = min((nb for nb in sizes if nb is not None), key=lambda nb: min(times[nb]))
            row = {"record": "sweep", "dtype": args.dtype, "n": n, "op": op, "threads": gprat.num_threads(),
                   "auto_tile_size": auto_nb, "best_tile_size": best_nb,
                   "times_s": {str(nb): times[nb] for nb in sizes},
                   "min_s": {str(nb): min(times[nb]) for nb in sizes},
                   "median_s": {str(nb): statistics.median(times[nb]) for nb in sizes},
                   "auto_over_best_min": min(times[None]) / min(times[best_nb]),
                   "auto_over_best_median": statistics.median(times[None]) / statistics.median(times[best_nb]),
                   "load": _load_average()}
            write_jsonl(base.with_suffix(".jsonl"), row)
            rows.append(row)
            print(f"{args.dtype} n={n} {op}: auto nb={auto_nb} best nb={best_nb} "
                  f"auto/best min {row['auto_over_best_min']:.3f} median {row['auto_over_best_median']:.3f}",
                  flush=True)

    all_sizes = sorted({int(k) for r in rows for k in r["min_s"] if k != "None"})
    md = [f"# Tile-size sweep, {args.dtype}", "",
          f"Command: `{meta['command']}`  ", f"Date: {meta['date']}, git {meta['git']}  ",
          f"CPU: {meta['cpu']} ({meta['cores']} cores), gprat threads {meta['threads']}, load average at start "
          f"{meta['load_before']}  ", f"Versions: {meta['versions']}", "",
          f"min [s] over {args.passes} interleaved passes (after one warm-up pass); auto = tile_size=None.", "",
          "| n | op | " + " | ".join(f"nb={nb}" for nb in all_sizes) + " | auto (nb) | auto ÷ best (min) | "
          "auto ÷ best (median) | load |",
          "|---|---|" + "---:|" * (len(all_sizes) + 4)]
    for r in rows:
        cells = [f"{r['min_s'][str(nb)]:.4g}" if str(nb) in r["min_s"] else "–" for nb in all_sizes]
        md.append(f"| {r['n']} | {r['op']} | " + " | ".join(cells)
                  + f" | {r['min_s']['None']:.4g} ({r['auto_tile_size']}) | {r['auto_over_best_min']:.3f} | "
                  f"{r['auto_over_best_median']:.3f} | {r['load']:.2f} |")
    base.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {base}.jsonl and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
