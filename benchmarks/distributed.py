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
    step = potrf = np.inf
    lib = gp._lib
    for _ in range(repeats):
        comm.Barrier()
        t = time.perf_counter()
        gp.log_marginal_likelihood(theta, eval_gradient=True)
        comm.Barrier()
        step = min(step, time.perf_counter() - t)
    for _ in range(repeats):  # the yardstick: pdpotrf alone on the assembled K
        lib.assemble_covariance(gp._KL, gp._K, gp.kernel._to_core(), gp._X, gp.noise_variance)
        comm.Barrier()
        t = time.perf_counter()
        lib.potrf(gp._KL, gp._context, gp._K)
        comm.Barrier()
        potrf = min(potrf, time.perf_counter() - t)
    t = time.perf_counter()
    lib.assemble_covariance(gp._KL, gp._K, gp.kernel._to_core(), gp._X, gp.noise_variance)
    assemble = comm.allreduce(time.perf_counter() - t, op=MPI.MAX)
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, root=0)
    local = comm.gather(gp._K.nbytes / 2**20, root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({"step_s": step, "potrf_s": potrf, "assemble_s": assemble, "peak_rss_mb": rss,
                          "local_matrix_mb": local, "grid": gp.grid, "block_size": gp.tile_size_}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8192])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.repeats, args.block_size)
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("no mpirun on PATH (docs/distributed.md)")
    rows = []
    for n in args.n:
        env = dict(os.environ, GPRAT_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
                   OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        cmd = [mpirun, "-n", str(args.ranks), "--bind-to", "core", sys.executable, __file__, "--worker", str(n),
               "--repeats", str(args.repeats)]
        if args.block_size:
            cmd += ["--block-size", str(args.block_size)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        dist = json.loads(out.strip().splitlines()[-1])
        one = single(n, args.ranks, args.repeats)
        row = {"n": n, "ranks": args.ranks, "single_threads": args.ranks, "single": one, "distributed": dist,
               "ratio_step": dist["step_s"] / one["step_s"], "matrix_share_mb": n * n * 8 / args.ranks / 2**20}
        rows.append(row)
        print(f"n={n}: single {args.ranks} threads {one['step_s']:.2f} s | {args.ranks} ranks x 1 thread "
              f"{dist['step_s']:.2f} s (ratio {row['ratio_step']:.2f}) | pdpotrf alone {dist['potrf_s']:.2f} s | "
              f"assemble {dist['assemble_s']:.2f} s | grid {dist['grid']} nb {dist['block_size']} | peak RSS per rank "
              f"{[round(v) for v in dist['peak_rss_mb']]} MB (K share {row['matrix_share_mb']:.0f} MB; local array "
              f"{[round(v) for v in dist['local_matrix_mb']]} MB) | single peak {one['peak_rss_mb']:.0f} MB", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
