"""gprat.distributed against single-process gprat on the same cores, side by side in one run.

    python benchmarks/distributed.py --n 8192 16384 --ranks 2 --repeats 3 [--json out.json]

For each n: one training step (LML + gradient: assemble, factor, solve, invert, fused gradient)
of single-process gprat.ExactGP on --ranks threads, then under mpirun -n RANKS (one thread per
rank) the same step of gprat.distributed.ExactGP, ScaLAPACK's pdpotrf alone on the same grid
(the yardstick) and each rank's peak resident memory next to the n^2 8 / P bytes of its share of
K. The figure that matters is the ratio distributed / single-process (target <= 1.3).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np


def problem(n, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-3, 3, size=(n, d))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


def kernel():
    import gprat

    return gprat.kernels.SquaredExponential([1.0] * 4, signal_variance=1.0)


def single(n, threads, repeats):
    """Seconds of the best training step of gprat.ExactGP on `threads` threads."""
    import gprat

    gprat.start(threads)
    X, y = problem(n)
    gp = gprat.ExactGP(kernel(), noise_variance=0.1).fit(X, y)
    theta = gp.theta + 0.05
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        gp.log_marginal_likelihood(theta, eval_gradient=True)
        best = min(best, time.perf_counter() - t)
    return {"step_s": best, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker(n, repeats, block_size):
    """Under mpirun: the distributed step and pdpotrf alone; rank 0 prints one JSON line."""
    import gprat.distributed as gd
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    X, y = problem(n)
    gp = gd.ExactGP(kernel(), noise_variance=0.1, block_size=block_size).fit(X, y)
    theta = gp.theta + 0.05
    step = np.inf
    lib = gp._lib
    for _ in range(repeats):
        comm.Barrier()
        t = time.perf_counter()
        gp.log_marginal_likelihood(theta, eval_gradient=True)
        comm.Barrier()
        step = min(step, time.perf_counter() - t)
    # the phases of one step, each on its own: the yardstick pdpotrf alone, then pdpotri
    core = gp.kernel._to_core()

    def timed(f):
        comm.Barrier()
        t = time.perf_counter()
        f()
        comm.Barrier()
        return time.perf_counter() - t

    assemble = timed(lambda: lib.assemble_covariance(gp._KL, gp._K, core, gp._X, gp.noise_variance))
    potrf = timed(lambda: lib.potrf(gp._KL, gp._context, gp._K))
    potri = timed(lambda: lib.potri(gp._KL, gp._context, gp._K))
    gradient = timed(lambda: lib.local_gradient(gp._KL, gp._K, gp._alpha, core, gp._X, gp.noise_variance))
    gp._factor_theta = None  # K now holds K^{-1}
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, root=0)
    local = comm.gather(gp._K.nbytes / 2**20, root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"step_s": step, "potrf_s": potrf, "potri_s": potri, "assemble_s": assemble,
                          "gradient_s": gradient, "peak_rss_mb": rss,
                          "local_matrix_mb": local, "grid": gp.grid, "block_size": gp.tile_size_}), flush=True)


def model(n, P, gflops=30.0, bandwidth_gbs=1.0, latency_us=2.0, nb=256, d=10):
    """The paper model of one training step per rank (docs/distributed.md).

    flops: pdpotrf n^3/3 + pdpotri 2 n^3/3 (pdtrtri + pdlauum) = n^3, spread over P ranks at
    `gflops` per rank; assembly and the fused gradient add O(n^2 d / P), negligible at large n.
    words each rank sends/receives: about n^2/sqrt(P) per factorization-sized pass on a square
    grid (each panel goes along a grid row and a grid column), three passes -> 3 n^2/sqrt(P)
    doubles (the job's total is 3 n^2 sqrt(P): O(n^2 sqrt(P))); messages 3 (n/nb) log2(P).
    memory per rank: the local array n^2 8/P (ScaLAPACK stores whole blocks) + X, y, alpha.
    """
    import math

    compute = n**3 / P / (gflops * 1e9)
    words = 3 * n * n / math.sqrt(P)
    comm = words * 8 / (bandwidth_gbs * 1e9) + 3 * (n / nb) * max(1.0, math.log2(P)) * latency_us * 1e-6
    memory = n * n * 8 / P + n * (d + 3) * 8
    return {"compute_s": compute, "comm_s": comm, "memory_gb": memory / 1e9, "words_per_rank": words}


def print_model(gflops, bandwidth_gbs):
    print(f"model: {gflops:g} GF/s and {bandwidth_gbs:g} GB/s per rank, 2 us latency, nb 256")
    print(f"{'n':>9} {'P':>5} {'memory/rank GB':>15} {'compute s':>10} {'comm s':>8} {'step s':>8}")
    for n in (100_000, 300_000, 1_000_000):
        for P in (4, 16, 64, 256, 1024):
            m = model(n, P, gflops, bandwidth_gbs)
            print(f"{n:>9} {P:>5} {m['memory_gb']:>15.2f} {m['compute_s']:>10.0f} {m['comm_s']:>8.0f} "
                  f"{m['compute_s'] + m['comm_s']:>8.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8192])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--model", nargs=2, type=float, metavar=("GFLOPS", "GBS"), default=None,
                        help="print the per-rank time/memory model for n = 1e5..1e6, P = 4..1024 and exit")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        return print_model(*args.model)
    if args.worker is not None:
        return worker(args.worker, args.repeats, args.block_size)
    if args.single is not None:  # in its own process: a fair peak RSS
        return print(json.dumps(single(args.single, args.threads, 1)))
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("no mpirun on PATH (docs/distributed.md)")
    rows = []
    for n in args.n:
        env = dict(os.environ, GPRAT_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        cmd = [mpirun, "-n", str(args.ranks), "--bind-to", "core", sys.executable, __file__, "--worker", str(n),
               "--repeats", "1"]
        if args.block_size:
            cmd += ["--block-size", str(args.block_size)]
        dist = one = None
        for _ in range(args.repeats):  # interleaved: this machine's load changes from minute to minute
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            d = json.loads(out.strip().splitlines()[-1])
            dist = d if dist is None else {k: (min(v, d[k]) if k.endswith("_s") else v) for k, v in dist.items()}
            o = subprocess.run([sys.executable, __file__, "--single", str(n), "--threads", str(args.ranks)],
                               capture_output=True, text=True, check=True).stdout
            o = json.loads(o.strip().splitlines()[-1])
            one = o if one is None or o["step_s"] < one["step_s"] else one
        row = {"n": n, "ranks": args.ranks, "single_threads": args.ranks, "single": one, "distributed": dist,
               "ratio_step": dist["step_s"] / one["step_s"], "matrix_share_mb": n * n * 8 / args.ranks / 2**20}
        rows.append(row)
        print(f"n={n}: single {args.ranks} threads {one['step_s']:.2f} s | {args.ranks} ranks x 1 thread "
              f"{dist['step_s']:.2f} s (ratio {row['ratio_step']:.2f}) | pdpotrf alone {dist['potrf_s']:.2f} s, "
              f"pdpotri {dist['potri_s']:.2f} s, assemble {dist['assemble_s']:.2f} s, gradient {dist['gradient_s']:.2f} s | grid {dist['grid']} nb {dist['block_size']} | peak RSS per rank "
              f"{[round(v) for v in dist['peak_rss_mb']]} MB (K share {row['matrix_share_mb']:.0f} MB; local array "
              f"{[round(v) for v in dist['local_matrix_mb']]} MB) | single peak {one['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
