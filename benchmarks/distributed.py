"""gprat.distributed against single-process gprat on the same cores, side by side in one run.

    python benchmarks/distributed.py --n 8192 16384 --ranks 2 --repeats 3 [--json out.json]

For each n: one training step (LML + gradient: assemble, factor, solve, invert, fused gradient)
of single-process gprat.ExactGP on --ranks threads, then under mpirun -n RANKS (one thread per
rank) the same step of gprat.distributed.ExactGP, ScaLAPACK's pdpotrf alone on the same grid
(the yardstick) and each rank's peak resident memory next to the n^2 8 / P bytes of its share of
K. The figure that matters is the ratio distributed / single-process (target <= 1.3).
"""

import argparse
import itertools
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
    """Seconds of each training step of gprat.ExactGP on `threads` threads (a list)."""
    import gprat

    gprat.start(threads)
    X, y = problem(n)
    gp = gprat.ExactGP(kernel(), noise_variance=0.1).fit(X, y)
    theta = gp.theta + 0.05
    steps = []
    for _ in range(repeats):
        t = time.perf_counter()
        gp.log_marginal_likelihood(theta, eval_gradient=True)
        steps.append(time.perf_counter() - t)
    return {"step_s": steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def worker(n, repeats, block_size, potri, pdtrtri=False, products="panel"):
    """Under mpirun: the distributed step (with its phases) and pdpotrf alone; rank 0 prints one
    JSON line of lists (one entry per repeat). With `potri`, also ScaLAPACK's pdpotri alone and
    its halves pdtrtri and pdlauum, the inversion the step used before (for the comparison); with
    `pdtrtri`, pdtrtri alone from a fresh L (against the step's L^{-1} phase)."""
    import gprat.distributed as gd
    from mpi4py import MPI

    gd.BLOCK_PRODUCTS = products  # the inversion's block products: "panel" (gprat's) or "pdgemm" (PBLAS)
    comm = MPI.COMM_WORLD
    X, y = problem(n)
    gp = gd.ExactGP(kernel(), noise_variance=0.1, block_size=block_size).fit(X, y)
    theta = gp.theta + 0.05
    lib = gp._lib
    core = gp.kernel._to_core()
    out = {}

    def add(name, seconds):
        out.setdefault(name + "_s", []).append(seconds)

    def timed(name, f):
        comm.Barrier()
        t = time.perf_counter()
        f()
        comm.Barrier()
        add(name, time.perf_counter() - t)

    def refactor():  # K <- L at gp.theta again (the inversions overwrite it)
        lib.assemble_covariance(gp._KL, gp._K, core, gp._X, gp.noise_variance)
        lib.potrf(gp._KL, gp._context, gp._K)

    for _ in range(repeats):
        gp._profile = {}
        comm.Barrier()
        t = time.perf_counter()
        gp.log_marginal_likelihood(theta, eval_gradient=True)
        comm.Barrier()
        add("step", time.perf_counter() - t)
        for phase, seconds in gp._profile.items():  # rank 0's view of each phase of that step
            add("step_" + phase, seconds)
        gp._profile = None
        lib.assemble_covariance(gp._KL, gp._K, core, gp._X, gp.noise_variance)
        timed("potrf", lambda: lib.potrf(gp._KL, gp._context, gp._K))  # the yardstick
        if potri:
            timed("potri", lambda: lib.potri(gp._KL, gp._context, gp._K))
            refactor()
            timed("pdtrtri", lambda: lib.trtri(gp._KL, gp._context, gp._K))
            timed("pdlauum", lambda: lib.lauum(gp._KL, gp._context, gp._K))
        elif pdtrtri:
            timed("pdtrtri", lambda: lib.trtri(gp._KL, gp._context, gp._K))
    gp._factor_theta = None  # K now holds something else than the factor at gp.theta
    rss = comm.gather(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, root=0)
    local = comm.gather(gp._K.nbytes / 2**20, root=0)
    if comm.Get_rank() == 0:
        print(json.dumps({**out, "peak_rss_mb": rss, "local_matrix_mb": local, "grid": gp.grid,
                          "block_size": gp.tile_size_, "recursion_base": gp._recursion_base(),
                          "trtri_recursion_base": gp._trtri_base()}), flush=True)


def phase_worker(n, repeats, block_size, trtri_bases, lauum_bases):
    """Under mpirun: L^{-1} by pdtrtri against the recursive trtri_lower at each base, and
    lower(M^T M) by pdlauum against lauum_lower at each base (each with pdgemm's block products,
    then with gprat's panel products, suffix "_panel"), each from the same input (L from
    pdpotrf, M = L^{-1} from pdtrtri), in turn within each repeat; rank 0 prints one JSON line:
    seconds per variant and repeat, and the largest relative difference of each variant's lower
    triangle from pdtrtri's / pdlauum's (max |X - ref| / max |ref| over all ranks)."""
    import gprat.distributed as gd
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    X, y = problem(n)
    gp = gd.ExactGP(kernel(), noise_variance=0.1, block_size=block_size).fit(X, y)
    lib, ctx, KL = gp._lib, gp._context, gp._KL
    core = gp.kernel._to_core()
    lib.assemble_covariance(KL, gp._K, core, gp._X, gp.noise_variance)
    assert lib.potrf(KL, ctx, gp._K) == 0
    L = gp._K.copy(order="F")
    out = {"time_s": {}, "rel_diff": {}}
    products = [("", None), ("_panel", comm.py2f())]  # each recursion with pdgemm's and with gprat's products

    def run(name, f, start, ref):
        a = np.array(start, order="F")  # a fresh copy of the input each time
        comm.Barrier()
        t = time.perf_counter()
        f(a)
        comm.Barrier()
        out["time_s"].setdefault(name, []).append(time.perf_counter() - t)
        if ref is not None:
            num = comm.allreduce(float(np.max(np.abs(a - ref))), op=MPI.MAX)
            den = comm.allreduce(float(np.max(np.abs(ref))), op=MPI.MAX)
            out["rel_diff"][name] = max(out["rel_diff"].get(name, 0.0), num / den)
        return a

    for _ in range(repeats):
        Linv = run("pdtrtri", lambda a: lib.trtri(KL, ctx, a), L, None)
        for b, (tag, via) in itertools.product(trtri_bases, products):
            run(f"trtri_recursive_{b}{tag}", lambda a, b=b, via=via: lib.trtri_recursive(KL, ctx, a, b, via), L, Linv)
        Kinv = run("pdlauum", lambda a: lib.lauum(KL, ctx, a), Linv, None)
        for b, (tag, via) in itertools.product(lauum_bases, products):
            run(f"lauum_recursive_{b}{tag}", lambda a, b=b, via=via: lib.lauum_recursive(KL, ctx, a, b, via), Linv, Kinv)
        del Linv, Kinv
    out.update(n=n, grid=gp.grid, block_size=gp.tile_size_, ranks=comm.Get_size())
    if comm.Get_rank() == 0:
        print(json.dumps(out), flush=True)


def _cpu():
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
        return f"{names[0]} x {len(names)}" if names else "unknown"
    except OSError:
        return "unknown"


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


def _open_mpi(mpirun):
    """Whether `mpirun` is Open MPI's (it takes --bind-to none; MPICH's Hydra launcher does not bind by default)."""
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    return "Open MPI" in version or "OpenRTE" in version


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[8192])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--model", nargs=2, type=float, metavar=("GFLOPS", "GBS"), default=None,
                        help="print the per-rank time/memory model for n = 1e5..1e6, P = 4..1024 and exit")
    parser.add_argument("--bind-to", default="none",
                        help="mpirun --bind-to (default none: on a machine shared with other jobs a rank pinned "
                             "to a busy core cannot move; use core on a dedicated node)")
    parser.add_argument("--spin", action="store_true",
                        help="let waiting ranks busy-poll (Open MPI's default) instead of yielding the core")
    parser.add_argument("--potri", action="store_true",
                        help="also time pdpotri, pdtrtri and pdlauum alone (the inversion before the recursive one)")
    parser.add_argument("--pdtrtri", action="store_true",
                        help="also time pdtrtri alone each repeat (against the step's recursive L^{-1})")
    parser.add_argument("--products", choices=["panel", "pdgemm"], default="panel",
                        help="the inversion's block products (gprat.distributed.BLOCK_PRODUCTS)")
    parser.add_argument("--compare-pdgemm", action="store_true",
                        help="also run the distributed step with pdgemm products in each repeat, side by side")
    parser.add_argument("--phases", nargs="*", type=int, metavar="BASE", default=None,
                        help="instead of the step: time pdtrtri against the recursive L^{-1} at these base orders "
                             "(and pdlauum against the recursive lower(M^T M) at --lauum-bases), repeats times "
                             "for each n, in one mpirun")
    parser.add_argument("--lauum-bases", nargs="*", type=int, default=[], metavar="BASE")
    parser.add_argument("--phases-worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--single", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        return print_model(*args.model)
    if args.phases_worker is not None:
        return phase_worker(args.phases_worker, args.repeats, args.block_size, args.phases, args.lauum_bases)
    if args.worker is not None:
        return worker(args.worker, args.repeats, args.block_size, args.potri, args.pdtrtri, args.products)
    if args.single is not None:  # in its own process: a fair peak RSS
        return print(json.dumps(single(args.single, args.threads, 1)))
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        sys.exit("no mpirun on PATH (docs/distributed.md)")
    rows = []
    env = dict(os.environ, GPRAT_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    if not args.spin:  # a waiting rank yields its core instead of polling (a shared machine)
        env["OMPI_MCA_mpi_yield_when_idle"] = "1"
    launch = [mpirun, "-n", str(args.ranks)] + (["--bind-to", args.bind_to] if _open_mpi(mpirun) else [])
    if args.phases is not None:
        for n in args.n:
            cmd = launch + [sys.executable, __file__, "--phases-worker", str(n), "--repeats", str(args.repeats),
                            "--phases", *map(str, args.phases), "--lauum-bases", *map(str, args.lauum_bases)]
            if args.block_size:
                cmd += ["--block-size", str(args.block_size)]
            load = os.getloadavg()
            d = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
                           .strip().splitlines()[-1])
            d.update(load_average_before=load, load_average_after=os.getloadavg(), cpu=_cpu(),
                     stats={k: {"min": min(v), "median": float(np.median(v))} for k, v in d["time_s"].items()})
            rows.append(d)
            print(f"n={n} ({args.repeats} repeats, min/median s, rel. diff): " + ", ".join(
                f"{k} {v['min']:.2f}/{v['median']:.2f}" + (f" ({d['rel_diff'][k]:.1e})" if k in d["rel_diff"] else "")
                for k, v in d["stats"].items()) + f" | grid {d['grid']} nb {d['block_size']} | load "
                f"{load[0]:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)
        if args.json:
            with open(args.json, "w") as handle:
                json.dump(rows, handle, indent=1)
        return
    for n in args.n:
        cmd = launch + [sys.executable, __file__, "--worker", str(n), "--repeats", "1"]
        if args.block_size:
            cmd += ["--block-size", str(args.block_size)]
        if args.potri:
            cmd += ["--potri"]
        if args.pdtrtri:
            cmd += ["--pdtrtri"]
        dist, one, other = {}, {"step_s": []}, {}
        for _ in range(args.repeats):  # interleaved: this machine's load changes from minute to minute
            if args.compare_pdgemm:  # the same step with PBLAS's products, in the same repeat
                d2 = json.loads(subprocess.run(cmd + ["--products", "pdgemm"], capture_output=True, text=True, env=env,
                                               check=True).stdout.strip().splitlines()[-1])
                for k, v in d2.items():
                    if k.endswith("_s"):
                        other.setdefault(k, []).extend(v)
            out = subprocess.run(cmd + ["--products", args.products], capture_output=True, text=True, env=env,
                                 check=True).stdout
            d = json.loads(out.strip().splitlines()[-1])
            for k, v in d.items():
                if k.endswith("_s"):
                    dist.setdefault(k, []).extend(v)
                elif k == "peak_rss_mb":
                    dist[k] = [max(a, b) for a, b in zip(dist.get(k, v), v)]
                else:
                    dist[k] = v
            o = subprocess.run([sys.executable, __file__, "--single", str(n), "--threads", str(args.ranks)],
                               capture_output=True, text=True, check=True).stdout
            o = json.loads(o.strip().splitlines()[-1])
            one["step_s"].extend(o["step_s"])
            one["peak_rss_mb"] = max(one.get("peak_rss_mb", 0.0), o["peak_rss_mb"])
            print(f"  n={n} repeat {len(one['step_s'])}: single {o['step_s'][-1]:.2f} s, distributed "
                  f"{d['step_s'][-1]:.2f} s (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
        stats = {k: {"min": min(v), "median": float(np.median(v))} for k, v in dist.items() if k.endswith("_s")}
        s1 = {"min": min(one["step_s"]), "median": float(np.median(one["step_s"]))}
        row = {"n": n, "ranks": args.ranks, "single_threads": args.ranks, "repeats": args.repeats, "single": one,
               "single_stats": s1, "distributed": dist, "distributed_stats": stats,
               "ratio_step_min": stats["step_s"]["min"] / s1["min"],
               "ratio_step_median": stats["step_s"]["median"] / s1["median"],
               "matrix_share_mb": n * n * 8 / args.ranks / 2**20, "cpu": _cpu(),
               "load_average_after": os.getloadavg(), "mpirun_bind_to": args.bind_to,
               "yield_when_idle": not args.spin, "products": args.products}
        if other:
            row["distributed_pdgemm"] = other
            row["distributed_pdgemm_stats"] = {k: {"min": min(v), "median": float(np.median(v))} for k, v in other.items()}
        rows.append(row)
        phases = ", ".join(f"{k[5:-2]} {v['min']:.2f}/{v['median']:.2f}" for k, v in stats.items()
                           if k.startswith("step_") and k != "step_s")
        extra = ", ".join(f"{k[:-2]} {stats[k]['min']:.2f}/{stats[k]['median']:.2f}" for k in
                          ("potri_s", "pdtrtri_s", "pdlauum_s") if k in stats)
        print(f"n={n} ({args.repeats} repeats, min/median s): single {args.ranks} threads {s1['min']:.2f}/"
              f"{s1['median']:.2f} | {args.ranks} ranks x 1 thread {stats['step_s']['min']:.2f}/"
              f"{stats['step_s']['median']:.2f} (ratio of mins {row['ratio_step_min']:.2f}, of medians "
              f"{row['ratio_step_median']:.2f}) | step phases: {phases} | pdpotrf alone {stats['potrf_s']['min']:.2f}/"
              f"{stats['potrf_s']['median']:.2f}{' | ' + extra if extra else ''} | grid {dist['grid']} nb "
              f"{dist['block_size']} | peak RSS per rank {[round(v) for v in dist['peak_rss_mb']]} MB (K share "
              f"{row['matrix_share_mb']:.0f} MB; local array {[round(v) for v in dist['local_matrix_mb']]} MB) | "
              f"single peak {one['peak_rss_mb']:.0f} MB | load {os.getloadavg()[0]:.1f}", flush=True)
        if other:
            o = row["distributed_pdgemm_stats"]
            phases = ", ".join(f"{k[5:-2]} {v['min']:.2f}/{v['median']:.2f}" for k, v in o.items()
                               if k.startswith("step_") and k != "step_s")
            print(f"  with pdgemm products, same repeats: {o['step_s']['min']:.2f}/{o['step_s']['median']:.2f} s "
                  f"(ratio of mins {o['step_s']['min'] / s1['min']:.2f}, of medians "
                  f"{o['step_s']['median'] / s1['median']:.2f}) | step phases: {phases}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
