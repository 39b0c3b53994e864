"""One exact-GP training step at a size the dense libraries cannot hold (default n = 50,000).

    python benchmarks/large_n.py --n 50000 --threads 2

Runs in a child process (so its peak RSS is its own): builds the benchmark problem of
``common.make_problem`` (float64, d = 8, ARD squared exponential), then times

* ``fit``  (assemble K, tiled Cholesky, alpha = K^{-1} y), and
* one training step (log marginal likelihood and all d + 2 gradient entries at theta),

and records the peak RSS after each stage, the memory gprat estimated beforehand, the tile
size it chose, CPU, threads, versions and the load of other processes. Writes one JSON line
and a Markdown summary to benchmarks/results/large-<n>-<timestamp>.{jsonl,md}.

Why no dpotrf yardstick here: at n = 50,000 a dense float64 matrix alone is 18.6 GiB, so
scipy.linalg.cho_factor (which needs the full square) does not fit with its input copy on a
24 GiB machine; gprat stores only the lower tiles (~9.3 GiB) and computes the step in place.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import (  # noqa: E402
    available_cores,
    cpu_model,
    git_revision,
    import_gprat,
    load_average,
    make_problem,
    package_versions,
    write_jsonl,
)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def child(spec: dict) -> dict:
    import numpy as np

    gprat = import_gprat()
    gprat.start(spec["threads"])
    p = make_problem(spec["n"], spec["m"], spec["d"], spec["seed"])
    rec = {"rss_after_data_mib": _peak_rss_mib()}
    kernel = gprat.kernels.SquaredExponential(lengthscale=p.lengthscale.copy(), signal_variance=p.signal_variance)
    gp = gprat.ExactGP(kernel, noise_variance=p.noise_variance, tile_size=spec["tile_size"], dtype=np.float64)

    t0 = time.perf_counter()
    gp.fit(p.X, p.y)
    rec["fit_s"] = time.perf_counter() - t0
    rec["rss_after_fit_mib"] = _peak_rss_mib()
    rec["tile_size"] = int(getattr(gp, "tile_size_", 0) or 0)

    theta = np.asarray(gp.theta) + 1e-7  # a new theta: the step must assemble and factor anew
    t0 = time.perf_counter()
    value, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    rec["train_step_s"] = time.perf_counter() - t0
    rec["rss_after_step_mib"] = _peak_rss_mib()
    rec["log_marginal_likelihood"] = float(value)
    rec["gradient"] = [float(g) for g in grad]
    rec["finite"] = bool(np.isfinite(value) and np.all(np.isfinite(grad)))
    rec["gprat_threads"] = gprat.num_threads()
    rec["gprat_version"] = gprat.__version__
    return rec


def _markdown(rec: dict) -> str:
    gib = 2**30
    lines = [
        f"# One training step at n = {rec['n']:,}",
        "",
        f"Command: `{rec['command']}`  ",
        f"Date: {rec['date']}, git {rec.get('git')}  ",
        f"CPU: {rec['cpu']} ({rec['cores']} cores available), gprat threads: {rec.get('gprat_threads')}, "
        f"d = {rec['d']}, float64, ARD squared exponential  ",
        f"Machine memory: {rec['memory_total_gib']:.1f} GiB; load average before / after: "
        f"{rec['load_before']} / {rec['load_after']}  ",
        f"Versions: {rec['versions']}",
        "",
        "| stage | time (s) | peak RSS after stage (MiB) |",
        "|---|---:|---:|",
        f"| data (X, y) | – | {rec.get('rss_after_data_mib', float('nan')):.0f} |",
        f"| fit (assemble + factor + alpha) | {rec.get('fit_s', float('nan')):.1f} | "
        f"{rec.get('rss_after_fit_mib', float('nan')):.0f} |",
        f"| training step (value + {rec['d'] + 2} gradients) | {rec.get('train_step_s', float('nan')):.1f} | "
        f"{rec.get('rss_after_step_mib', float('nan')):.0f} |",
        "",
        f"Status: {rec['status']}; tile size {rec.get('tile_size')}; lower triangle of K in tiles: "
        f"{rec['lower_triangle_gib']:.2f} GiB (a dense n x n float64 matrix would be {rec['n'] ** 2 * 8 / gib:.1f} GiB); "
        f"log marginal likelihood {rec.get('log_marginal_likelihood')}, all values finite: {rec.get('finite')}.",
    ]
    if rec.get("error"):
        lines += ["", "```", rec["error"], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--threads", type=int, default=available_cores())
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--m", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tile-size", type=int, default=None, help="default: gprat chooses")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    import psutil

    spec = {"n": args.n, "d": args.d, "m": args.m, "seed": args.seed, "threads": args.threads,
            "tile_size": args.tile_size}
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    rec = {
        "record": "large_n", "n": args.n, "d": args.d, "threads": args.threads,
        "command": "python benchmarks/large_n.py " + " ".join(sys.argv[1:]),
        "date": datetime.now().isoformat(timespec="seconds"), "git": git_revision(),
        "cpu": cpu_model(), "cores": available_cores(),
        "memory_total_gib": psutil.virtual_memory().total / 2**30,
        "memory_available_gib": psutil.virtual_memory().available / 2**30,
        "versions": package_versions(), "load_before": load_average(),
        # sum over lower tiles of the tile area ~ n (n + nb) / 2 entries; report n (n+1)/2.
        "lower_triangle_gib": args.n * (args.n + 1) / 2 * 8 / 2**30,
    }
    env = dict(os.environ)
    env.pop("GPRAT_NUM_THREADS", None)
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, check=False)
    rec["wall_s"] = time.time() - t0
    rec["child_max_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    rec["load_after"] = load_average()
    if proc.returncode == 0:
        rec |= json.loads(proc.stdout.strip().splitlines()[-1])
        rec["status"] = "ok"
    else:
        rec |= {"status": "error", "returncode": proc.returncode, "error": proc.stderr.strip()[-2000:]}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    base = args.out_dir / f"large-{args.n}-{stamp}"
    write_jsonl(base.with_suffix(".jsonl"), rec)
    base.with_suffix(".md").write_text(_markdown(rec))
    print(_markdown(rec))
    return 0 if rec["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
