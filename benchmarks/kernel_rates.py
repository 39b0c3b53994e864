"""Where the time of a tiled Cholesky goes: per-kernel rates from the task trace.

    python benchmarks/kernel_rates.py --n 8192 --threads 2

Factors the benchmark kernel matrix (common.kernel_matrix) in gprat's tiled layout under
``gprat.trace`` and reports, per tile kernel (potrf, trsm, syrk, gemm): task count, busy
seconds and GF/s per task, plus the idle share of the workers over the traced span. For
comparison it times plain single-threaded BLAS on one tile through SciPy (dgemm, dtrsm with the
Cholesky's side/uplo/trans, dpotrf), which is what each tile kernel would run without gprat's
recursive splitting (the SciPy dpotrf call also copies the tile, as overwrite_a=0 keeps the
input for the next repeat). Prints a Markdown summary; writes nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from common import available_cores, cpu_model, import_gprat, kernel_matrix, make_problem  # noqa: E402

# Flops of one nb x nb tile task (Cholesky: potrf nb^3/3, trsm nb^3, syrk nb^3, gemm 2 nb^3).
FLOPS_PER_NB3 = {"potrf": 1 / 3, "trsm": 1.0, "syrk": 1.0, "gemm": 2.0}


def traced_cholesky(gprat, A, tile_size, repeats):
    """Min wall time over `repeats` factorizations; the trace of the last one."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t = gprat.linalg.TiledSymmetric(A, tile_size=tile_size)
            t0 = time.perf_counter()
            if i == repeats - 1:
                with gprat.trace(Path(tmp) / "trace.json"):
                    t.cholesky()
            else:
                t.cholesky()
            times.append(time.perf_counter() - t0)
        events = json.loads((Path(tmp) / "trace.json").read_text())["traceEvents"]
    return min(times), t.tile_size, events


def blas_tile_rates(nb, repeats=5):
    """GF/s of one-thread SciPy BLAS/LAPACK on nb x nb tiles (min over repeats)."""
    from scipy.linalg import blas, lapack
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    B = np.asfortranarray(rng.standard_normal((nb, nb)))
    C = np.asfortranarray(rng.standard_normal((nb, nb)))
    S = B @ B.T + nb * np.eye(nb)
    L = np.asfortranarray(np.linalg.cholesky(S))
    cases = {
        "gemm": (2.0, lambda: blas.dgemm(-1.0, B, C, beta=1.0, c=C, trans_b=1, overwrite_c=1)),
        "trsm": (1.0, lambda: blas.dtrsm(1.0, L, B, side=1, lower=1, trans_a=1, overwrite_b=1)),
        "potrf": (1 / 3, lambda: lapack.dpotrf(S, lower=1, overwrite_a=0)),
    }
    out = {}
    with threadpool_limits(1):
        for name, (per_nb3, fn) in cases.items():
            fn()
            best = min(_timed(fn) for _ in range(repeats))
            out[name] = per_nb3 * nb**3 / best / 1e9
    return out


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=available_cores())
    ap.add_argument("--tile-size", type=int, default=None, help="default: gprat chooses")
    ap.add_argument("--repeats", type=int, default=3, help="factorizations; the last one is traced")
    args = ap.parse_args()

    gprat = import_gprat()
    gprat.start(args.threads)
    A = kernel_matrix(make_problem(args.n, 1000, 8, 0))
    wall, nb, events = traced_cholesky(gprat, A, args.tile_size, args.repeats)

    busy = collections.defaultdict(float)
    count = collections.Counter()
    for e in events:
        busy[e["name"]] += e["dur"] / 1e6
        count[e["name"]] += 1
    span = (max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)) / 1e6
    workers = gprat.num_threads()
    blas = blas_tile_rates(nb)

    print(f"# Tiled Cholesky, n = {args.n}, tile size {nb}, {workers} threads ({cpu_model()})\n")
    print(f"min wall time {wall:.3f} s over {args.repeats}; traced span {span:.3f} s; "
          f"workers idle {1 - sum(busy.values()) / (workers * span):.1%} of it\n")
    print("| kernel | tasks | busy [s] | GF/s per task | one-thread SciPy BLAS on one tile [GF/s] |")
    print("|---|---:|---:|---:|---:|")
    for name in sorted(busy, key=busy.get, reverse=True):
        per_nb3 = FLOPS_PER_NB3.get(name)
        rate = f"{per_nb3 * nb**3 * count[name] / busy[name] / 1e9:.1f}" if per_nb3 else "–"
        ref = f"{blas[name]:.1f}" if name in blas else "–"
        print(f"| {name} | {count[name]} | {busy[name]:.3f} | {rate} | {ref} |")
    print("\n(ragged last tiles are counted as full tiles, so rates are slightly low when nb does not divide n)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
