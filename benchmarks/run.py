"""gprat benchmark suite: gprat vs LAPACK dpotrf, GPyTorch and scikit-learn, side by side.

    python benchmarks/run.py --quick     # n = 1024, 2048: a few minutes
    python benchmarks/run.py             # full: n = 1024 ... 8192 (add --with-16384)

Writes ``benchmarks/results/<label>-<timestamp>.jsonl`` (every measurement, then summaries)
and a Markdown report next to it with the same name. ``--report FILE.jsonl`` rebuilds the
report from an existing JSON-lines file. See benchmarks/README.md for the columns.

Each (library, thread count, n) runs in its own fresh process, so thread settings, imported
BLAS libraries and allocator state never leak from one library to another; the processes run
one after another, all sizes of one ``n`` close together in time. A sampler thread records
the CPU used by processes outside the benchmark during every case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    REPO_DIR,
    THREAD_ENV,
    available_cores,
    cgroup_cpu_limit,
    cpu_flags,
    cpu_model,
    eprint,
    git_revision,
    package_versions,
    write_jsonl,
)
from report import render_markdown, summarize

SECTIONS = ("cholesky", "fit", "train_step", "predict", "memory", "tiles", "overhead", "latency")
LIBRARY_OPS = {
    "scipy": ("cholesky",),
    "torch": ("cholesky",),
    "gprat": ("cholesky", "cholesky_dense", "fit", "train_step", "predict"),
    "gpytorch-cholesky": ("fit", "train_step", "predict"),
    "gpytorch-default": ("fit", "train_step", "predict"),
    "sklearn": ("fit", "train_step", "predict"),
}
ALL_LIBRARIES = tuple(LIBRARY_OPS)
MEMORY_LIBRARIES = ("gprat", "gpytorch-cholesky", "gpytorch-default", "sklearn")
LATENCY_LIBRARIES = ("gprat", "sklearn", "gpytorch-cholesky")

# Rough peak working set of one case, in units of n^2 float64 (8 n^2 bytes); used only to
# skip cases that would not fit in --mem-budget-gib on this machine. d enters for sklearn,
# whose gradient stores dK/dtheta as an (n, n, d + 2) array plus temporaries.
def _mem_units(library: str, op: str, d: int) -> float:
    if op.startswith("cholesky"):
        return {"gprat": 3.0}.get(library, 2.0)
    if library == "sklearn":
        return 3.0 * d + 6.0 if op in ("train_step", "memory") else 4.0
    if library.startswith("gpytorch"):
        return 6.0
    return 3.0


class LoadSampler(threading.Thread):
    """Samples, every ``interval`` seconds, the CPU used by processes outside this benchmark.

    ``other`` is in cores: CPU seconds used by all processes not in this process tree
    divided by wall seconds (a new process is counted from its birth; processes living less
    than one interval can be missed). ``steal`` is CPU time the hypervisor gave to others.
    """

    def __init__(self, interval: float = 2.0):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.interval = interval
        self.samples: list[dict] = []
        self._stop_event = threading.Event()
        self._me = psutil.Process()

    def stop(self):
        self._stop_event.set()
        self.join(timeout=5)

    def _snapshot(self):
        ps = self.psutil
        ours = {self._me.pid}
        try:
            ours |= {c.pid for c in self._me.children(recursive=True)}
        except ps.Error:
            pass
        procs = {}
        for proc in ps.process_iter(["pid", "create_time", "cpu_times"]):
            info = proc.info
            ct = info.get("cpu_times")
            if ct is None:
                continue
            procs[(info["pid"], info["create_time"])] = (ct.user + ct.system,
                                                         info["pid"] in ours)
        return time.time(), procs, ps.cpu_times()

    def run(self):
        t_prev, prev, cpu_prev = self._snapshot()
        while not self._stop_event.wait(self.interval):
            t, cur, cpu = self._snapshot()
            dt = max(t - t_prev, 1e-6)
            other = ours = 0.0
            for key, (used, is_ours) in cur.items():
                if key in prev:
                    delta = used - prev[key][0]
                elif key[1] >= t_prev - 0.05:
                    delta = used
                else:
                    continue
                if is_ours:
                    ours += delta
                else:
                    other += delta
            steal = getattr(cpu, "steal", 0.0) - getattr(cpu_prev, "steal", 0.0)
            idle = (cpu.idle + getattr(cpu, "iowait", 0.0)
                    - cpu_prev.idle - getattr(cpu_prev, "iowait", 0.0))
            total = sum(cpu) - sum(cpu_prev)
            self.samples.append({"t0": t_prev, "t1": t, "other_cores": other / dt,
                                 "ours_cores": ours / dt, "steal_cores": steal / dt,
                                 "busy_cores": (total - idle - steal) / dt,
                                 "loadavg1": os.getloadavg()[0]})
            t_prev, prev, cpu_prev = t, cur, cpu

    def wait_idle(self, threshold: float, max_wait: float) -> tuple[float, float]:
        """Block until the last two samples show other load < threshold, or max_wait."""
        t0 = time.time()
        while True:
            last = list(self.samples)[-2:]
            other = max((x["other_cores"] for x in last), default=0.0)
            if (len(last) == 2 and other < threshold) or time.time() - t0 >= max_wait:
                return time.time() - t0, other
            time.sleep(self.interval / 2)

    def window(self, t0: float, t1: float) -> dict | None:
        sel = [s for s in list(self.samples) if s["t1"] > t0 and s["t0"] < t1]
        if not sel:
            return None
        def mean(k):
            return sum(s[k] for s in sel) / len(sel)

        return {"other_cores_mean": mean("other_cores"),
                "other_cores_max": max(s["other_cores"] for s in sel),
                "steal_cores_mean": mean("steal_cores"),
                "busy_cores_mean": mean("busy_cores"), "samples": len(sel)}


def parse_args(argv=None):
    cores = available_cores()
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  python benchmarks/run.py --quick\n  python benchmarks/run.py\n"
               "  python benchmarks/run.py --with-16384 --rounds 2\n"
               "  python benchmarks/run.py --report benchmarks/results/full-X.jsonl")
    ap.add_argument("--quick", action="store_true",
                    help="n = 1024 2048, memory probes at 2048 only, calls slower than 5 s "
                         "not repeated (a few minutes)")
    ap.add_argument("--n", type=int, nargs="+", help="training sizes (default: 1024 2048 "
                    "4096 8192; --quick: 1024 2048)")
    ap.add_argument("--with-16384", action="store_true", help="add n = 16384")
    ap.add_argument("--threads", type=int, nargs="+",
                    help=f"thread counts (default: 1 and all {cores} available cores)")
    ap.add_argument("--scaling-threads", action="store_true",
                    help="thread counts 1, 2, 4, ... up to all cores (strong scaling curve)")
    ap.add_argument("--libraries", nargs="+", choices=ALL_LIBRARIES, default=list(ALL_LIBRARIES))
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--m", type=int, default=1000, help="test points (default 1000)")
    ap.add_argument("--d", type=int, default=8, help="features (default 8)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per case, >= 3")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls per case")
    ap.add_argument("--min-time", type=float, default=0.5,
                    help="keep repeating a case until its timed calls add up to this many "
                         "seconds (at most 200 calls; default 0.5)")
    ap.add_argument("--max-call-seconds", type=float, dest="max_call_s",
                    help="record a case as too slow, without timed calls, when its warm-up "
                         "call takes longer than this (default: no limit; --quick: 5); never "
                         "applied to the dpotrf yardstick")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the whole sweep this many times and pool the repeats")
    ap.add_argument("--tile-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    ap.add_argument("--tile-n", type=int, nargs="+",
                    help="sizes for the tile sweep (default: every n)")
    ap.add_argument("--tile-threads", type=int, nargs="+",
                    help="thread counts for the tile sweep (default: the largest of --threads)")
    ap.add_argument("--memory-n", type=int, nargs="+",
                    help="sizes for the peak-memory probes (default: every n; --quick: the "
                         "largest)")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--latency-m", type=int, default=200)
    ap.add_argument("--overhead-tasks", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-budget-gib", type=float,
                    help="skip cases whose estimated working set exceeds this (default: 60%% "
                         "of the memory available at start)")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each library process, wait up to this long for the CPU use "
                         "of other processes to drop below --idle-threshold (default 0: "
                         "do not wait)")
    ap.add_argument("--idle-threshold", type=float, default=0.25, metavar="CORES",
                    help="see --wait-idle (default 0.25 cores)")
    ap.add_argument("--sample-interval", type=float, default=2.0,
                    help="seconds between load samples (default 2; each sample lists all "
                         "processes, a few percent of one core)")
    ap.add_argument("--group-timeout", type=float, default=3600.0,
                    help="seconds before one library process is killed (default 3600)")
    ap.add_argument("--unset-openblas-env", nargs="?", const="yardstick",
                    choices=("yardstick", "all"),
                    help="unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for the scipy dpotrf "
                         "process (or for every process with 'all'); the kernel OpenBLAS then "
                         "picks is recorded from threadpoolctl")
    ap.add_argument("--label", help="file name prefix (default: quick or full)")
    ap.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    ap.add_argument("--report", type=Path, metavar="JSONL",
                    help="only rebuild the Markdown report of an existing results file")
    args = ap.parse_args(argv)
    if args.repeats < 3:
        ap.error("--repeats must be at least 3")
    if args.n is None:
        args.n = [1024, 2048] if args.quick else [1024, 2048, 4096, 8192]
    if args.with_16384 and 16384 not in args.n:
        args.n.append(16384)
    if args.threads is None:
        if args.scaling_threads:
            ts, t = [], 1
            while t < cores:
                ts.append(t)
                t *= 2
            args.threads = ts + [cores]
        else:
            args.threads = sorted({1, cores})
    if args.tile_n is None:
        args.tile_n = list(args.n)
    if args.memory_n is None:
        args.memory_n = [max(args.n)] if args.quick else list(args.n)
    if args.tile_threads is None:
        args.tile_threads = [max(args.threads)]
    if args.label is None:
        args.label = "quick" if args.quick else "full"
    if args.quick:
        args.group_timeout = min(args.group_timeout, 900.0)
        if args.max_call_s is None:
            args.max_call_s = 5.0
    return args


def gprat_env() -> tuple[dict | None, str]:
    """Environment under which ``import gprat`` works: as installed, or from python/."""
    probe = "import gprat, sys; gprat.ExactGP; sys.stdout.write(gprat.__file__)"
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", probe], env=env, check=False,
                       capture_output=True, text=True)
    if r.returncode == 0:
        return {}, r.stdout
    src = str(REPO_DIR / "python")
    env["PYTHONPATH"] = os.pathsep.join(x for x in (src, env.get("PYTHONPATH")) if x)
    r2 = subprocess.run([sys.executable, "-c", probe], env=env, check=False,
                        capture_output=True, text=True)
    if r2.returncode == 0:
        return {"PYTHONPATH": env["PYTHONPATH"]}, r2.stdout
    err = (r2.stderr or r.stderr).strip().splitlines()
    return None, err[-1] if err else "import gprat failed"


class Runner:
    def __init__(self, args):
        self.args = args
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.out_dir.mkdir(parents=True, exist_ok=True)
        self.path = args.out_dir / f"{args.label}-{stamp}.jsonl"
        self.tmp = args.out_dir / f"{args.label}-{stamp}.tmp"
        self.run_id = f"{args.label}-{stamp}"
        self.sampler = LoadSampler(interval=args.sample_interval)
        self.gprat_extra_env, self.gprat_where = gprat_env()
        import psutil

        avail = psutil.virtual_memory().available
        self.mem_budget = (args.mem_budget_gib * 2**30 if args.mem_budget_gib
                           else 0.6 * avail)
        self.n_groups = 0

    # -- environment of one library process ----------------------------------------------
    def env_for(self, library: str, threads: int) -> dict:
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        if library == "gprat":
            env["GPRAT_NUM_THREADS"] = str(threads)
            env.update(self.gprat_extra_env or {})
        else:
            for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[k] = str(threads)
        unset = self.args.unset_openblas_env
        if unset == "all" or (unset == "yardstick" and library == "scipy"):
            env.pop("OPENBLAS_CORETYPE", None)
            env.pop("OPENBLAS_L2_SIZE", None)
        return env

    def spec(self, library, threads, n, m, rnd, **extra) -> dict:
        a = self.args
        return {"run_id": self.run_id, "round": rnd, "library": library, "threads": threads,
                "n": n, "m": m, "d": a.d, "seed": a.seed, "repeats": a.repeats,
                "warmup": a.warmup, "min_time": a.min_time, "max_call_s": a.max_call_s,
                "out": str(self.tmp),
                "env_keys": list(THREAD_ENV)} | extra

    def launch(self, mode: str, spec: dict) -> None:
        lib = spec["library"]
        if lib == "gprat" and self.gprat_extra_env is None:
            for op in spec.get("ops", [spec.get("stage", "memory")]):
                write_jsonl(self.tmp, {k: spec[k] for k in ("run_id", "round", "library",
                                                           "threads", "n", "m", "d")}
                            | {"record": "case", "section": "memory" if mode == "memprobe"
                               else op, "op": op, "status": "error",
                               "error": f"gprat not importable: {self.gprat_where}"})
            return
        self.n_groups += 1
        if self.args.wait_idle > 0:
            waited, other = self.sampler.wait_idle(self.args.idle_threshold, self.args.wait_idle)
            if waited > 0.5:
                eprint(f"    waited {waited:.0f} s for other load to drop (now {other:.2f} cores)")
        what = spec.get("ops") or spec.get("stage")
        eprint(f"[{time.strftime('%H:%M:%S')}] {lib:18s} threads={spec['threads']} "
               f"n={spec['n']:<6d} {mode} {what}")
        cmd = [sys.executable, str(BENCH_DIR / "worker.py"), mode, json.dumps(spec)]
        try:
            r = subprocess.run(cmd, env=self.env_for(lib, spec["threads"]),
                               timeout=self.args.group_timeout, check=False,
                               capture_output=True, text=True)
            if r.returncode != 0:
                write_jsonl(self.tmp, {"record": "note", "library": lib, "n": spec["n"],
                                       "threads": spec["threads"], "mode": mode,
                                       "returncode": r.returncode,
                                       "error": r.stderr.strip()[-2000:]})
                eprint(f"    process exited with {r.returncode}: "
                       f"{r.stderr.strip().splitlines()[-1:] if r.stderr.strip() else ''}")
        except subprocess.TimeoutExpired:
            write_jsonl(self.tmp, {"record": "note", "library": lib, "n": spec["n"],
                                   "threads": spec["threads"], "mode": mode,
                                   "error": f"killed after --group-timeout "
                                            f"{self.args.group_timeout:.0f} s"})

    def fits(self, library, op, n) -> tuple[bool, float]:
        need = _mem_units(library, op, self.args.d) * 8.0 * n * n
        return need <= self.mem_budget, need

    def skipped(self, library, threads, n, m, rnd, section, op, need):
        write_jsonl(self.tmp, {"run_id": self.run_id, "round": rnd, "record": "case",
                               "library": library, "threads": threads, "n": n, "m": m,
                               "d": self.args.d, "section": section, "op": op,
                               "status": "skipped",
                               "error": f"estimated {need / 2**30:.1f} GiB > memory budget "
                                        f"{self.mem_budget / 2**30:.1f} GiB (--mem-budget-gib)"})

    # -- the plan ------------------------------------------------------------------------
    def run(self) -> Path:
        a = self.args
        sections = set(a.sections)
        self.write_meta()
        self.sampler.start()
        t_start = time.time()
        try:
            for rnd in range(a.rounds):
                for n in a.n:
                    for threads in a.threads:
                        for lib in a.libraries:
                            ops = []
                            for op in LIBRARY_OPS[lib]:
                                if op.split("_dense")[0] not in sections:
                                    continue
                                ok, need = self.fits(lib, op, n)
                                if ok:
                                    ops.append(op)
                                else:
                                    self.skipped(lib, threads, n, a.m, rnd, op, op, need)
                            if ops:
                                self.launch("measure", self.spec(lib, threads, n, a.m, rnd,
                                                                 ops=ops))
                    if "tiles" in sections and "gprat" in a.libraries and n in a.tile_n:
                        tile_ops = [op for op in ("cholesky", "train_step")
                                    if self.fits("gprat", op, n)[0]]
                        for threads in a.tile_threads:
                            self.launch("measure", self.spec(
                                "gprat", threads, n, a.m, rnd, ops=["tile_sweep"],
                                tile_ops=tile_ops, tile_sizes=a.tile_sizes))
                    if "memory" in sections and rnd == 0 and n in a.memory_n:
                        for lib in MEMORY_LIBRARIES:
                            if lib not in a.libraries:
                                continue
                            ok, need = self.fits(lib, "memory", n)
                            if not ok:
                                self.skipped(lib, max(a.threads), n, a.m, rnd, "memory",
                                             "train_step_memory", need)
                                continue
                            for stage in ("baseline", "step"):
                                self.launch("memprobe", self.spec(lib, max(a.threads), n,
                                                                  a.m, rnd, stage=stage))
                if "latency" in sections:
                    for threads in a.threads:
                        for lib in LATENCY_LIBRARIES:
                            if lib in a.libraries:
                                self.launch("measure", self.spec(
                                    lib, threads, a.latency_n, a.latency_m, rnd,
                                    ops=["latency"]))
                if "overhead" in sections and "gprat" in a.libraries and rnd == 0:
                    for threads in a.threads:
                        self.launch("measure", self.spec(
                            "gprat", threads, 0, 0, rnd, ops=["overhead"],
                            overhead_tasks=a.overhead_tasks))
        finally:
            self.sampler.stop()
        self.finish(time.time() - t_start)
        return self.path

    def write_meta(self):
        a = self.args
        import psutil

        meta = {
            "record": "meta", "run_id": self.run_id,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name] + sys.argv),
            "cpu_model": cpu_model(), "cpu_flags": cpu_flags(),
            "logical_cpus": os.cpu_count(), "available_cores": available_cores(),
            "cgroup_cpu_max": cgroup_cpu_limit(),
            "memory_total_gib": psutil.virtual_memory().total / 2**30,
            "memory_available_gib": psutil.virtual_memory().available / 2**30,
            "memory_budget_gib": self.mem_budget / 2**30,
            "versions": package_versions(), "gprat_import": self.gprat_where,
            "gprat_importable": self.gprat_extra_env is not None,
            "gprat_extra_env": self.gprat_extra_env, "git_revision": git_revision(),
            "env": {k: os.environ.get(k) for k in THREAD_ENV},
            "unset_openblas_env": a.unset_openblas_env,
            "loadavg_start": os.getloadavg(),
            "params": {"n": a.n, "m": a.m, "d": a.d, "threads": a.threads,
                       "libraries": a.libraries, "sections": a.sections,
                       "repeats": a.repeats, "warmup": a.warmup, "min_time": a.min_time,
                       "max_call_s": a.max_call_s,
                       "rounds": a.rounds, "tile_sizes": a.tile_sizes, "tile_n": a.tile_n,
                       "tile_threads": a.tile_threads, "memory_n": a.memory_n,
                       "latency_n": a.latency_n, "latency_m": a.latency_m,
                       "overhead_tasks": a.overhead_tasks, "seed": a.seed,
                       "wait_idle": a.wait_idle, "idle_threshold": a.idle_threshold,
                       "dtype": "float64", "kernel": "ARD squared exponential",
                       "lengthscale": f"linspace(0.5, 2.0, {a.d})", "signal_variance": 1.0,
                       "noise_variance": 1e-2},
        }
        self.tmp.unlink(missing_ok=True)
        write_jsonl(self.path, meta)

    def finish(self, wall_s: float):
        records = []
        if self.tmp.exists():
            for line in self.tmp.read_text().splitlines():
                rec = json.loads(line)
                if "t_start" in rec and "t_end" in rec:
                    rec["load"] = self.sampler.window(rec["t_start"], rec["t_end"])
                records.append(rec)
        s = self.sampler.samples
        load = {
            "record": "load", "wall_s": wall_s, "loadavg_end": os.getloadavg(),
            "other_cores_mean": (sum(x["other_cores"] for x in s) / len(s)) if s else None,
            "other_cores_max": max((x["other_cores"] for x in s), default=None),
            "steal_cores_mean": (sum(x["steal_cores"] for x in s) / len(s)) if s else None,
            "samples": s,
        }
        records.append(load)
        meta = json.loads(self.path.read_text().splitlines()[0])
        summaries = summarize([meta] + records)
        with open(self.path, "a") as f:
            for rec in records + summaries:
                f.write(json.dumps(rec) + "\n")
        self.tmp.unlink(missing_ok=True)
        md = self.path.with_suffix(".md")
        md.write_text(render_markdown([meta] + records + summaries))
        eprint(f"wrote {self.path} and {md} ({wall_s / 60:.1f} min, {self.n_groups} processes)")


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        records = [json.loads(x) for x in args.report.read_text().splitlines() if x.strip()]
        records = [r for r in records if not r.get("record", "").startswith("summary")]
        out = records + summarize(records)
        md = args.report.with_suffix(".md")
        md.write_text(render_markdown(out))
        eprint(f"wrote {md}")
        return
    Runner(args).run()


if __name__ == "__main__":
    main()
