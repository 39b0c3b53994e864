"""One benchmark process: one library at one thread count (run by run.py, not by hand).

Usage (internal):
    python benchmarks/worker.py measure  SPEC_JSON   # timed cases, JSON lines to spec["out"]
    python benchmarks/worker.py memprobe SPEC_JSON   # max RSS of one fresh memchild
    python benchmarks/worker.py memchild SPEC_JSON   # setup (+ one training step)

A fresh process per (library, threads, n) keeps thread settings and allocator state from
leaking between libraries. ``memprobe`` runs exactly one ``memchild`` and reads its peak
resident set size with ``resource.getrusage(RUSAGE_CHILDREN)``; having a single child makes
that number the child's own peak.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import traceback

import numpy as np

from adapters import NotAvailable, make_adapter
from common import kernel_matrix, make_problem, measure, timed_call, write_jsonl


def _base(spec: dict) -> dict:
    return {k: spec[k] for k in ("run_id", "round", "library", "threads", "n", "m", "d")
            if k in spec} | {"dtype": "float64"}


def _error_text(exc: BaseException) -> str:
    tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "".join(tb[-3:]).strip()[-1500:]


def run_measure(spec: dict) -> None:
    out = spec["out"]
    base = _base(spec)
    try:
        adapter = make_adapter(spec["library"], spec["threads"])
    except Exception as exc:  # the library is missing or broken: say so for every op
        for op in spec["ops"]:
            write_jsonl(out, base | {"record": "case", "section": op, "op": op,
                                     "status": "error", "error": _error_text(exc)})
        return
    p = make_problem(spec["n"], spec["m"], spec["d"], spec["seed"])
    needs_A = any(op in ("cholesky", "cholesky_dense", "tile_sweep") for op in spec["ops"])
    A = kernel_matrix(p) if needs_A else None
    write_jsonl(out, base | {"record": "group", "pid": os.getpid(), "info": adapter.info(),
                             "env": {k: os.environ.get(k) for k in spec.get("env_keys", ())}})

    for op in spec["ops"]:
        if op == "tile_sweep":
            sizes = [None] + [t for t in spec["tile_sizes"] if t <= spec["n"]]
            for sub in spec["tile_ops"]:
                _sweep(adapter, out, base | {"section": "tile_sweep"}, sub, p, A, sizes, spec)
                if spec["library"] == "gprat":
                    try:
                        nb = adapter.chosen_tile_size(p, sub)
                    except Exception as exc:
                        nb = None
                        write_jsonl(out, base | {"record": "note", "error": _error_text(exc)})
                    write_jsonl(out, base | {"record": "auto_tile_size", "op": sub,
                                             "tile_size": nb})
        elif op == "overhead":
            _overhead(adapter, out, base, spec)
        else:
            _one(adapter, out, base | {"section": op, "tile_size": None}, op, p, A, None, spec)


def _one(adapter, out, rec, op, p, A, tile_size, spec):
    rec = rec | {"record": "case", "op": op}
    la0 = os.getloadavg()
    t0 = time.time()
    try:
        case = adapter.case(op, p, A=A, tile_size=tile_size)
        # The dpotrf yardstick is always timed in full: every ratio depends on it.
        limit = None if adapter.name == "scipy" else spec.get("max_call_s")
        r = measure(case.fn, setup=case.setup, repeats=spec["repeats"],
                    warmup=spec["warmup"], min_time=spec["min_time"], max_call_s=limit)
        rec |= _case_fields(case, r)
        del case, r
    except NotAvailable as exc:
        rec |= {"status": "n/a", "error": str(exc)}
    except Exception as exc:
        rec |= {"status": "error", "error": _error_text(exc)}
    rec |= {"t_start": t0, "t_end": time.time(), "loadavg_start": la0,
            "loadavg_end": os.getloadavg()}
    write_jsonl(out, rec)


def _case_fields(case, r) -> dict:
    check = None
    if case.check is not None and r["result"] is not None:
        try:
            check = case.check(r["result"])
        except Exception as exc:  # a sanity value must never sink the timing
            check = {"error": _error_text(exc)}
    if r["too_slow"]:
        return {"status": "too_slow", "warmup_s": r["warmup_s"], "check": check,
                "note": case.note,
                "error": f"one call took {r['warmup_s'][0]:.3g} s > --max-call-seconds"}
    return {"status": "ok", "times_s": r["times_s"], "min_s": r["min_s"],
            "median_s": r["median_s"], "warmup_s": r["warmup_s"], "check": check,
            "note": case.note}


def _sweep(adapter, out, rec, op, p, A, sizes, spec):
    """Time ``op`` at every tile size, interleaved: one call per size per pass, in a
    shuffled order each pass.

    Interleaving spreads any drift in the machine's load evenly over the tile sizes.
    """
    rec = rec | {"record": "case", "op": op}
    t0 = time.time()
    la0 = os.getloadavg()
    cases, times, warm, results, errors = {}, {}, {}, {}, {}
    for ts in sizes:
        try:
            cases[ts] = adapter.case(op, p, A=A, tile_size=ts)
            warm[ts] = []
            for i in range(spec["warmup"]):
                t, r = timed_call(cases[ts].fn, cases[ts].setup)
                warm[ts].append(t)
                if i == 0:
                    results[ts] = r
                del r
            times[ts] = []
        except Exception as exc:
            errors[ts] = _error_text(exc)
            cases.pop(ts, None)
    passes = 0
    order = list(cases)
    rng = np.random.default_rng(0)
    while cases and passes < 200:
        rng.shuffle(order)  # no tile size always runs first (or after the same neighbour)
        for ts in order:
            times[ts].append(timed_call(cases[ts].fn, cases[ts].setup)[0])
        passes += 1
        if passes >= spec["repeats"] and min(sum(t) for t in times.values()) >= spec["min_time"]:
            break
    t1 = time.time()
    for ts in sizes:
        r = rec | {"tile_size": ts, "t_start": t0, "t_end": t1, "loadavg_start": la0,
                   "loadavg_end": os.getloadavg()}
        if ts in errors:
            r |= {"status": "error", "error": errors[ts]}
        else:
            check = None
            if cases[ts].check is not None and results.get(ts) is not None:
                try:
                    check = cases[ts].check(results[ts])
                except Exception as exc:
                    check = {"error": _error_text(exc)}
            r |= {"status": "ok", "times_s": times[ts], "min_s": min(times[ts]),
                  "median_s": float(np.median(times[ts])), "warmup_s": warm[ts],
                  "check": check}
        write_jsonl(out, r)


def _overhead(adapter, out, base, spec):
    """Per empty task and per dependency edge, from the engine's hooks (n_tasks -> seconds).

    ``bench_empty_tasks(N)``: N independent empty tasks; ``bench_chain(N)``: N empty tasks,
    each depending on the previous one. Per edge = (chain - empty) / N.
    """
    rec = base | {"record": "case", "section": "overhead", "op": "overhead"}
    t0 = time.time()
    try:
        empty, chain = adapter.overhead_hooks()
        n_tasks = spec["overhead_tasks"]
        res = {}
        for name, hook in (("empty", empty), ("chain", chain)):
            own, wall = [], []
            for i in range(spec["repeats"] + 1):  # the first call is a warm-up
                w0 = time.perf_counter()
                s = hook(n_tasks)
                w = time.perf_counter() - w0
                if i:
                    own.append(float(s) if s is not None else w)
                    wall.append(w)
            res[name] = (own, wall)
        (e_own, e_wall), (c_own, c_wall) = res["empty"], res["chain"]
        us = 1e6 / n_tasks
        rec |= {"status": "ok", "n_tasks": n_tasks,
                "empty_task_us_min": us * min(e_own),
                "empty_task_us_median": us * float(np.median(e_own)),
                "chain_task_us_min": us * min(c_own),
                "chain_task_us_median": us * float(np.median(c_own)),
                "edge_us_min": us * (min(c_own) - min(e_own)),
                "edge_us_median": us * (float(np.median(c_own)) - float(np.median(e_own))),
                "empty_s": e_own, "chain_s": c_own, "empty_wall_s": e_wall,
                "chain_wall_s": c_wall}
    except NotAvailable as exc:
        rec |= {"status": "n/a", "error": str(exc)}
    except Exception as exc:
        rec |= {"status": "error", "error": _error_text(exc)}
    rec |= {"t_start": t0, "t_end": time.time()}
    write_jsonl(out, rec)


def run_memchild(spec: dict) -> None:
    adapter = make_adapter(spec["library"], spec["threads"])
    p = make_problem(spec["n"], spec["m"], spec["d"], spec["seed"])
    state = adapter.memory_setup(p)
    if spec["stage"] == "step":
        adapter.memory_step(state)


def run_memprobe(spec: dict) -> None:
    """Run one memchild and append its peak RSS to spec["out"]."""
    rec = _base(spec) | {"record": "case", "section": "memory", "op": "train_step_memory",
                         "stage": spec["stage"]}
    child = dict(spec)
    t0 = time.time()
    proc = subprocess.run([sys.executable, __file__, "memchild", json.dumps(child)],
                          check=False, capture_output=True, text=True)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    rec |= {"t_start": t0, "t_end": time.time(), "wall_s": time.time() - t0,
            "max_rss_mib": ru.ru_maxrss / 1024.0}  # Linux reports KiB
    if proc.returncode == 0:
        rec["status"] = "ok"
    else:
        tail = (proc.stderr or "").strip()[-1500:]
        rec |= {"status": "n/a" if "NotAvailable" in tail else "error",
                "returncode": proc.returncode, "error": tail}
    write_jsonl(spec["out"], rec)


def main(argv: list[str]) -> None:
    mode, spec = argv[1], json.loads(argv[2])
    {"measure": run_measure, "memprobe": run_memprobe, "memchild": run_memchild}[mode](spec)


if __name__ == "__main__":
    main(sys.argv)
