"""Summaries and the Markdown report built from the JSON-lines records of one run."""

from __future__ import annotations

import statistics
from collections import defaultdict

TIMED = ("cholesky", "cholesky_dense", "fit", "train_step", "predict", "latency")
LIB_ORDER = ("scipy", "gprat", "torch", "gpytorch-cholesky", "gpytorch-default", "sklearn")
LIB_LABEL = {"scipy": "dpotrf (scipy)", "gprat": "gprat", "torch": "torch.linalg.cholesky",
             "gpytorch-cholesky": "GPyTorch (Cholesky)", "gpytorch-default": "GPyTorch (default)",
             "sklearn": "scikit-learn"}


def _lib_key(lib):
    return LIB_ORDER.index(lib) if lib in LIB_ORDER else len(LIB_ORDER)


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def summarize(records: list[dict]) -> list[dict]:
    """Pool rounds, compute ratios to dpotrf, scaling, tile sweep, memory and overhead."""
    cases = [r for r in records if r.get("record") == "case"]
    out = []

    # -- timed cases, pooled over rounds ------------------------------------------------------
    groups = defaultdict(list)
    for r in cases:
        if r.get("section") in TIMED:
            groups[(r["section"], r["op"], r["library"], r["threads"], r["n"], r["m"])].append(r)
    table = {}
    for key, rs in groups.items():
        section, op, lib, threads, n, m = key
        ok = [r for r in rs if r.get("status") == "ok"]
        s = {"record": "summary_case", "section": section, "op": op, "library": lib,
             "threads": threads, "n": n, "m": m}
        if ok:
            times = [t for r in ok for t in r["times_s"]]
            s |= {"status": "ok", "min_s": min(times), "median_s": statistics.median(times),
                  "repeats": len(times), "rounds": len(ok), "check": ok[0].get("check"),
                  "note": ok[0].get("note"),
                  "other_cores": _mean([(r.get("load") or {}).get("other_cores_mean")
                                        for r in ok]),
                  "other_cores_max": max([(r.get("load") or {}).get("other_cores_max") or 0.0
                                          for r in ok]),
                  "loadavg_start": ok[0].get("loadavg_start")}
        else:
            s |= {"status": rs[0].get("status"), "error": rs[0].get("error"),
                  "warmup_s": rs[0].get("warmup_s"), "check": rs[0].get("check"),
                  "note": rs[0].get("note")}
        table[key] = s
        out.append(s)
    for key, s in table.items():
        section, op, lib, threads, n, m = key
        if s["status"] != "ok":
            continue
        ref = table.get(("cholesky", "cholesky", "scipy", threads, n, m))
        if section != "latency" and ref and ref["status"] == "ok":
            s["ratio_min_to_dpotrf"] = s["min_s"] / ref["min_s"]
            s["ratio_median_to_dpotrf"] = s["median_s"] / ref["median_s"]
        if section == "latency":
            ref = table.get(("latency", "latency", "sklearn", threads, n, m))
            if ref and ref["status"] == "ok":
                s["ratio_min_to_sklearn"] = s["min_s"] / ref["min_s"]
                s["ratio_median_to_sklearn"] = s["median_s"] / ref["median_s"]

    # -- strong scaling -------------------------------------------------------------------------
    for op in ("cholesky", "train_step"):
        by = defaultdict(dict)
        for (section, op_, lib, threads, n, m), s in table.items():
            if section == op and s["status"] == "ok":
                by[(lib, n)][threads] = s
        for (lib, n), ts in sorted(by.items(), key=lambda kv: (kv[0][1], _lib_key(kv[0][0]))):
            if 1 not in ts or len(ts) < 2:
                continue
            for p, s in sorted(ts.items()):
                if p == 1:
                    continue
                speedup = ts[1]["min_s"] / s["min_s"]
                out.append({"record": "summary_scaling", "op": op, "library": lib, "n": n,
                            "threads": p, "t1_min_s": ts[1]["min_s"], "tp_min_s": s["min_s"],
                            "speedup": speedup, "efficiency": speedup / p,
                            "speedup_median": ts[1]["median_s"] / s["median_s"]})

    # -- tile sweep -----------------------------------------------------------------------------
    sweep = defaultdict(dict)
    for r in cases:
        if r.get("section") == "tile_sweep" and r.get("status") == "ok":
            cell = sweep[(r["op"], r["n"], r["threads"])].setdefault(r.get("tile_size"), [])
            cell.extend(r["times_s"])
    auto_nb = {(r.get("op"), r["n"], r["threads"]): r.get("tile_size") for r in records
               if r.get("record") == "auto_tile_size"}
    for (op, n, threads), cells in sorted(sweep.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        fixed = {nb: min(t) for nb, t in cells.items() if nb is not None}
        s = {"record": "summary_tiles", "op": op, "n": n, "threads": threads,
             "fixed_min_s": {str(k): v for k, v in sorted(fixed.items())},
             "auto_tile_size": auto_nb.get((op, n, threads))}
        if fixed:
            best = min(fixed, key=fixed.get)
            s |= {"best_tile_size": best, "best_min_s": fixed[best]}
        if None in cells:
            s["auto_min_s"] = min(cells[None])
            if fixed:
                s["auto_to_best"] = s["auto_min_s"] / s["best_min_s"]
                s["within_10pct"] = s["auto_to_best"] <= 1.10
        out.append(s)

    # -- peak memory ----------------------------------------------------------------------------
    mem = defaultdict(dict)
    for r in cases:
        if r.get("section") == "memory":
            mem[(r["library"], r["n"])][r.get("stage", "step")] = r
    for (lib, n), st in sorted(mem.items(), key=lambda kv: (kv[0][1], _lib_key(kv[0][0]))):
        s = {"record": "summary_memory", "library": lib, "n": n,
             "matrix_mib": 8.0 * n * n / 2**20}
        base, step = st.get("baseline"), st.get("step")
        if step is None or "stage" not in step:  # skipped before launch
            rec = step or base or {}
            s |= {"status": rec.get("status", "missing"), "error": rec.get("error")}
        elif step.get("status") != "ok":
            s |= {"status": step.get("status"), "error": step.get("error")}
        else:
            s |= {"status": "ok", "peak_mib": step["max_rss_mib"]}
            if base and base.get("status") == "ok":
                s |= {"baseline_mib": base["max_rss_mib"],
                      "step_mib": step["max_rss_mib"] - base["max_rss_mib"]}
                s["step_in_matrices"] = s["step_mib"] / s["matrix_mib"]
        out.append(s)

    # -- runtime overhead -----------------------------------------------------------------------
    for r in cases:
        if r.get("section") == "overhead":
            out.append({"record": "summary_overhead"} | {
                k: r.get(k) for k in ("threads", "status", "error", "n_tasks",
                                      "empty_task_us_min", "empty_task_us_median",
                                      "chain_task_us_min", "chain_task_us_median",
                                      "edge_us_min", "edge_us_median")})
    return out


# ---------------------------------------------------------------------------------------------
def _f(x, fmt="{:.4g}"):
    return "–" if x is None else fmt.format(x)


def _ratio(x):
    return "–" if x is None else f"{x:.2f}×"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < 3 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _status_cell(s):
    st = s.get("status")
    if st == "ok":
        return None
    if st == "too_slow" and s.get("warmup_s"):
        return f"too slow (1 call: {s['warmup_s'][0]:.3g} s)"
    return {"skipped": "skipped", "n/a": "n/a", "error": "**error**"}.get(st, st or "?")


def render_markdown(records: list[dict]) -> str:
    meta = next((r for r in records if r.get("record") == "meta"), {})
    load = next((r for r in records if r.get("record") == "load"), {})
    groups = [r for r in records if r.get("record") == "group"]
    cases = [r for r in records if r.get("record") == "summary_case"]
    cores = meta.get("available_cores") or 1
    md = [f"# gprat benchmarks: {meta.get('run_id', '?')}", ""]

    v = meta.get("versions", {})
    env = meta.get("env", {})
    prm = meta.get("params", {})
    md += ["## Machine and settings", "",
           _table(["item", "value", ""], [
               ["command", f"`{meta.get('command', '')}`", ""],
               ["started (UTC)", meta.get("started"), ""],
               ["CPU", meta.get("cpu_model"), ", ".join(meta.get("cpu_flags", []))],
               ["cores", f"{meta.get('available_cores')} available of "
                         f"{meta.get('logical_cpus')} logical", f"cgroup cpu.max "
                         f"{meta.get('cgroup_cpu_max')}"],
               ["memory", f"{_f(meta.get('memory_total_gib'), '{:.1f}')} GiB total, "
                          f"{_f(meta.get('memory_available_gib'), '{:.1f}')} GiB free",
                f"case budget {_f(meta.get('memory_budget_gib'), '{:.1f}')} GiB"],
               ["threads", ", ".join(map(str, prm.get("threads", []))), ""],
               ["problem", f"float64, d = {prm.get('d')}, m = {prm.get('m')}, "
                           f"n = {', '.join(map(str, prm.get('n', [])))}",
                f"{prm.get('kernel')}, noise {prm.get('noise_variance')}"],
               ["repeats", f"{prm.get('repeats')} timed after {prm.get('warmup')} warm-up, "
                           f"{prm.get('rounds')} round(s)",
                f"repeat until ≥ {prm.get('min_time')} s"],
               ["versions", ", ".join(f"{k} {x}" for k, x in v.items() if x), ""],
               ["gprat", meta.get("gprat_import"), f"git {meta.get('git_revision')}"],
               ["environment", ", ".join(f"{k}={x}" for k, x in env.items() if x) or "–",
                f"--unset-openblas-env: {meta.get('unset_openblas_env')}"],
               ["load of other processes", f"mean {_f(load.get('other_cores_mean'), '{:.2f}')}"
                f" cores, max {_f(load.get('other_cores_max'), '{:.2f}')}; steal "
                f"{_f(load.get('steal_cores_mean'), '{:.2f}')} cores",
                f"loadavg start {_fmt_la(meta.get('loadavg_start'))}, end "
                f"{_fmt_la(load.get('loadavg_end'))}"],
               ["wall time", f"{_f((load.get('wall_s') or 0) / 60, '{:.1f}')} min", ""],
           ]), ""]
    blas = _blas_lines(groups)
    if blas:
        md += ["BLAS seen by each library process (threadpoolctl, one line per distinct "
               "library/threads):", ""] + blas + [""]

    # -- headline: gprat speed-up -------------------------------------------------------------
    idx = {(c["section"], c["library"], c["threads"], c["n"]): c for c in cases}
    comps = [("cholesky", "scipy"), ("cholesky", "torch"), ("fit", "sklearn"),
             ("fit", "gpytorch-cholesky"), ("train_step", "gpytorch-cholesky"),
             ("train_step", "gpytorch-default"), ("train_step", "sklearn"),
             ("predict", "gpytorch-cholesky"), ("predict", "sklearn")]
    keys = sorted({(c["n"], c["threads"]) for c in cases if c["section"] != "latency"})
    rows = []
    for n, t in keys:
        row = [n, t]
        for sec, lib in comps:
            g, o = idx.get((sec, "gprat", t, n)), idx.get((sec, lib, t, n))
            if g and o and g["status"] == "ok" and o["status"] == "ok":
                warn = any(_contended(c, cores) for c in (g, o))
                row.append(_ratio(o["min_s"] / g["min_s"]) + (" ⚠" if warn else ""))
            else:
                row.append("–")
        rows.append(row)
    if rows:
        md += ["## Headline: gprat speed-up", "",
               "Competitor time ÷ gprat time (min over repeats), same n and threads; > 1 means "
               "gprat is faster. ⚠: other processes competed for the cores during one of the "
               "two cases (see the load columns below).", "",
               _table(["n", "threads"] + [f"{s} vs {LIB_LABEL[l]}" for s, l in comps], rows),
               ""]

    # -- one table per operation --------------------------------------------------------------
    titles = {"cholesky": "Cholesky alone (gprat: in its tiled layout, the copy into tiles untimed "
                          "like the Fortran-order copy of the dpotrf yardstick)",
              "cholesky_dense": "Cholesky from and to dense NumPy arrays (gprat.linalg.cholesky: "
                                "both layout copies timed)",
              "fit": "Fit (assemble + factor + alpha)",
              "train_step": "Training step (log marginal likelihood + all gradients)",
              "predict": f"Predict mean + std (m = {prm.get('m')})"}
    for sec, title in titles.items():
        rs = sorted((c for c in cases if c["section"] == sec),
                    key=lambda c: (c["n"], c["threads"], _lib_key(c["library"])))
        if not rs:
            continue
        rows = []
        for c in rs:
            bad = _status_cell(c)
            rows.append([c["n"], c["threads"], LIB_LABEL.get(c["library"], c["library"])]
                        + ([bad, "", "", "", "", ""] if bad else [
                            _f(c["min_s"]), _f(c["median_s"]),
                            _ratio(c.get("ratio_min_to_dpotrf")),
                            _ratio(c.get("ratio_median_to_dpotrf")), c["repeats"],
                            _load_cell(c, cores)]))
        md += [f"## {title}", "", "other load: mean CPU (in cores) used by processes outside "
               "the benchmark while the case ran; ⚠ = they and the case's threads together "
               "asked for more than the available cores, so the time is inflated.", "",
               _table(["n", "threads", "library", "min [s]", "median [s]",
                                          "min ÷ dpotrf", "median ÷ dpotrf", "repeats",
                                          "other load [cores]"], rows), ""]
        notes = sorted({f"{LIB_LABEL.get(c['library'], c['library'])}: {c['note']}"
                        for c in rs if c.get("note")})
        md += [f"- {x}" for x in notes] + ([""] if notes else [])

    # -- sanity -------------------------------------------------------------------------------
    rows = []
    for c in sorted(cases, key=lambda c: (c["section"], c["n"], c["threads"],
                                          _lib_key(c["library"]))):
        ch = c.get("check") or {}
        if (c["status"] not in ("ok", "too_slow") or not ch or "error" in ch
                or c["threads"] != max(prm.get("threads", [1]))):
            continue
        val = ch.get("logdet", ch.get("lml", ch.get("mean_sum")))
        name = "log det A" if "logdet" in ch else "log ML" if "lml" in ch else "sum of mean"
        rows.append([c["section"], c["n"], LIB_LABEL.get(c["library"], c["library"]), name,
                     _f(val, "{:.10g}")])
    if rows:
        md += ["## Sanity: the same answer", "",
               "Value computed in the first (warm-up) call at the true hyperparameters; equal "
               "values up to rounding show every library solved the same problem (GPyTorch "
               "default mode is approximate by design).", "",
               _table(["operation", "n", "library", "quantity", "value"], rows), ""]

    # -- scaling ------------------------------------------------------------------------------
    sc = [r for r in records if r.get("record") == "summary_scaling"]
    if sc:
        md += ["## Strong scaling", "", "speed-up = t(1 thread) ÷ t(p threads) (min over "
               "repeats); efficiency = speed-up ÷ p.", "",
               _table(["operation", "n", "library", "p", "t(1) [s]", "t(p) [s]", "speed-up",
                       "efficiency"],
                      [[r["op"], r["n"], LIB_LABEL.get(r["library"], r["library"]), r["threads"],
                        _f(r["t1_min_s"]), _f(r["tp_min_s"]), f"{r['speedup']:.2f}",
                        f"{100 * r['efficiency']:.0f}%"]
                       for r in sorted(sc, key=lambda r: (r["op"], r["n"], _lib_key(
                           r["library"]), r["threads"]))]), ""]

    # -- memory -------------------------------------------------------------------------------
    mem = [r for r in records if r.get("record") == "summary_memory"]
    if mem:
        rows = []
        for r in mem:
            bad = _status_cell(r)
            rows.append([r["n"], LIB_LABEL.get(r["library"], r["library"]),
                         _f(r["matrix_mib"], "{:.0f}")] + (
                [bad, "", "", ""] if bad else [
                    _f(r.get("peak_mib"), "{:.0f}"), _f(r.get("baseline_mib"), "{:.0f}"),
                    _f(r.get("step_mib"), "{:.0f}"), _f(r.get("step_in_matrices"), "{:.2f}")]))
        md += ["## Peak memory of one training step", "",
               "Max RSS of a fresh process (resource.getrusage(RUSAGE_CHILDREN) in a parent "
               "that runs only that child). baseline = same process without the step (imports, "
               "data, model; gprat's model is fitted because its step is a method of a fitted "
               "model); step = peak − baseline; n×n = 8 n² bytes.", "",
               _table(["n", "library", "n×n [MiB]", "peak [MiB]", "baseline [MiB]",
                       "step [MiB]", "step ÷ n×n"], rows), ""]

    # -- tile sweep ---------------------------------------------------------------------------
    tl = [r for r in records if r.get("record") == "summary_tiles"]
    if tl:
        sizes = sorted({int(k) for r in tl for k in r["fixed_min_s"]})
        rows = []
        for r in tl:
            rows.append([r["op"], r["n"], r["threads"]]
                        + [_f(r["fixed_min_s"].get(str(nb))) for nb in sizes]
                        + [f"{r.get('best_tile_size')}", _f(r.get("auto_min_s")),
                           r.get("auto_tile_size") or "?", _ratio(r.get("auto_to_best")),
                           {True: "yes", False: "**no**"}.get(r.get("within_10pct"), "–")])
        md += ["## Automatic tile size", "",
               "min time [s] per fixed tile size vs tile_size=None (auto); auto ÷ best "
               "should be ≤ 1.10.", "",
               _table(["operation", "n", "threads"] + [f"nb={nb}" for nb in sizes]
                      + ["best nb", "auto [s]", "auto nb", "auto ÷ best", "within 10%"], rows),
               ""]

    # -- overhead and latency -----------------------------------------------------------------
    ov = [r for r in records if r.get("record") == "summary_overhead"]
    if ov:
        rows = []
        for r in ov:
            if r.get("status") == "ok":
                rows.append([r["threads"], r["n_tasks"], _f(r["empty_task_us_min"], "{:.3g}"),
                             _f(r["empty_task_us_median"], "{:.3g}"),
                             _f(r["chain_task_us_min"], "{:.3g}"),
                             _f(r["edge_us_min"], "{:.3g}")])
            else:
                rows.append([r["threads"], "–", f"{r.get('status')}: {r.get('error')}", "", "",
                             ""])
        md += ["## Runtime overhead", "",
               "From gprat._core.bench_empty_tasks(N) (N independent empty tasks) and "
               "bench_chain(N) (N empty tasks, each depending on the previous), as timed by "
               "the engine around graph build and run, divided by N. per dependency edge = "
               "chained − empty; with several workers the independent tasks contend for the "
               "ready queue while a chain runs on one worker at a time, so that difference "
               "can be negative: the one-thread row is the clean per-edge cost.", "",
               _table(["threads", "tasks", "per empty task [µs] (min)", "(median)",
                       "per chained task [µs]", "per dependency edge [µs]"], rows), ""]
    lat = sorted((c for c in cases if c["section"] == "latency"),
                 key=lambda c: (c["threads"], _lib_key(c["library"])))
    if lat:
        rows = [[c["n"], c["m"], c["threads"], LIB_LABEL.get(c["library"], c["library"])]
                + ([_status_cell(c), "", "", ""] if _status_cell(c) else [
                    _f(1e3 * c["min_s"]), _f(1e3 * c["median_s"]),
                    _ratio(c.get("ratio_min_to_sklearn")), c["repeats"]]) for c in lat]
        md += ["## Small-problem latency (fit + predict mean and std)", "",
               _table(["n", "m", "threads", "library", "min [ms]", "median [ms]",
                       "min ÷ scikit-learn", "repeats"], rows), ""]

    # -- problems -----------------------------------------------------------------------------
    probs = [r for r in records if r.get("record") in ("summary_case", "summary_memory",
                                                        "note")
             and r.get("status") in ("error", "skipped", None) and r.get("error")]
    if probs:
        md += ["## Skipped cases and errors", ""]
        seen = set()
        for r in probs:
            msg = " ".join(str(r.get("error")).split())[:400]
            key = (r.get("library"), r.get("section"), msg)
            if key in seen:
                continue
            seen.add(key)
            md.append(f"- {r.get('library')} {r.get('section') or r.get('mode') or ''} n={r.get('n')} "
                      f"threads={r.get('threads')}: {r.get('status') or 'error'}: {msg}")
        md.append("")
    return "\n".join(md)


def _contended(c, cores):
    x = c.get("other_cores")
    return x is not None and x + c["threads"] > cores + 0.25


def _load_cell(c, cores):
    """Mean CPU of other processes; ⚠ when they and this case together exceed the cores."""
    x = c.get("other_cores")
    if x is None:
        return "–"
    return f"{x:.2f}" + (" ⚠" if _contended(c, cores) else "")


def _fmt_la(la):
    return "–" if not la else "/".join(f"{x:.2f}" for x in la)


def _blas_lines(groups):
    seen = {}
    for g in groups:
        info = g.get("info") or {}
        pools = info.get("threadpools") or []
        desc = "; ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} "
                         f"×{p.get('num_threads')}" for p in pools) or "none reported"
        extra = []
        for k in ("torch_num_threads", "gprat_num_threads", "max_cholesky_size"):
            if k in info:
                extra.append(f"{k}={info[k]}")
        key = (g.get("library"), g.get("threads"))
        seen.setdefault(key, f"- {g.get('library')} (threads={g.get('threads')}): {desc}"
                        + (f"; {', '.join(extra)}" if extra else ""))
    return [seen[k] for k in sorted(seen, key=lambda k: (_lib_key(k[0]), k[1]))]
