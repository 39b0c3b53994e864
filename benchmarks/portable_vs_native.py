"""The portable default build against a -march=native build, side by side.

The default build targets the x86-64 baseline and dispatches the hot tile loops at run time
(core/dispatch.hpp: clones for x86-64-v4, x86-64-v3 and the baseline); GPRAT_NATIVE=ON compiles
everything for the building CPU. This script measures what the portability costs, on one
machine in one run:

- fit (assemble K, tiled Cholesky, two solves) and one training step (fit + K^{-1} + the fused
  gradient) of an exact GP with an ARD squared-exponential kernel, wall time;
- from the task trace of the same calls, the summed task time of the kernel loops alone:
  "assemble" (covariance tiles) and "gradient" (fused gradient reduction), the two loops that
  are multiversioned; the BLAS tasks are the BLAS library's own dispatch and shared by both builds.

Each (case, build) runs in a fresh subprocess, the builds alternating, >= 5 repeats; the table
gives min and median. The results of both builds must agree to rounding (printed).
With --check-isa it also disassembles each build's _core module and counts, per function, the
instructions that use ymm (AVX) or zmm (AVX-512) registers: in the portable build they must all
sit in the dispatch clones ([clone .arch_x86_64_v3] / [clone .arch_x86_64_v4]).

Build the two variants outside the system site-packages first, e.g.

    pip install --no-build-isolation --no-deps --target /tmp/gprat-portable .
    pip install --no-build-isolation --no-deps -Ccmake.define.GPRAT_NATIVE=ON --target /tmp/gprat-native .
    python benchmarks/portable_vs_native.py /tmp/gprat-portable /tmp/gprat-native --check-isa

--check-isa needs function names: pybind11 strips Release modules, so for it add
-Cinstall.strip=false -Ccmake.define.CMAKE_STRIP=/bin/true (and a -Cbuild-dir per variant).

Each build is imported through PYTHONPATH (scipy_openblas32 must be importable, e.g. from the
system site-packages).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import cpu_flags, cpu_model  # benchmarks/common.py (this script's folder is on sys.path)

CASES = ("fit", "training_step")
LOOP_TASKS = ("assemble", "gradient")


# ------------------------------------------------------------------------------------------------
# child: one measurement in a fresh process


def child(spec: dict) -> dict:
    import numpy as np

    from gprat import _core  # the build on PYTHONPATH

    n, d, nb, threads = spec["n"], spec["d"], spec["tile_size"], spec["threads"]
    rng = np.random.default_rng([7, n, d])
    X = rng.standard_normal((n, d))
    y = np.sin(X).sum(axis=1) / np.sqrt(d) + 0.1 * rng.standard_normal(n)
    lengthscale = list(np.linspace(0.5, 2.0, d))
    _core.start(threads)
    kernel = _core.Kernel("SquaredExponential", lengthscale, 1.0)
    gp = _core.ExactGP64(kernel, X, y, 1e-2, nb)
    theta = np.asarray(gp.theta)

    def once():
        if spec["case"] == "fit":
            return gp.fit(), None
        lml, grad = gp.training_step(list(theta), True)
        return lml, list(np.asarray(grad))

    once()  # warm-up: first touch of the tiles, thread start
    _core.take_trace()
    _core.set_tracing(True)
    t0 = time.perf_counter()
    lml, grad = once()
    wall = time.perf_counter() - t0
    _core.set_tracing(False)
    loops = collections.Counter()
    for name, _worker, start_ns, end_ns in _core.take_trace():
        if name in LOOP_TASKS:
            loops[name] += (end_ns - start_ns) * 1e-9
    return {
        "wall_s": wall,
        "loop_s": dict(loops),
        "lml": lml,
        "grad": grad,
        "core_file": _core.__file__,
        "numpy": np.__version__,
        "num_threads": _core.num_threads(),
    }


def run_child(build: Path, spec: dict) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(build) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"child for {build} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["core_file"]).resolve().is_relative_to(build.resolve()):
        raise RuntimeError(f"child imported {result['core_file']}, not the build in {build}")
    return result


# ------------------------------------------------------------------------------------------------
# ISA audit


def isa_usage(module: Path) -> dict[str, collections.Counter]:
    """Per function of the shared object: instructions naming ymm / zmm registers."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise RuntimeError("objdump not found (binutils)")
    text = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", str(module)], capture_output=True, text=True,
                          check=True).stdout
    usage: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    fn = None
    header = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    for line in text.splitlines():
        m = header.match(line)
        if m:
            fn = m.group(1)
            continue
        if fn is not None and "%" in line:
            if "%zmm" in line:
                usage[fn]["zmm"] += 1
            elif "%ymm" in line:
                usage[fn]["ymm"] += 1
    return usage


CLONE = re.compile(r"\[clone \.arch_x86_64_v[34]\]")


def short(fn: str) -> str:
    fn = re.sub(r"\(.*\)", "(...)", fn)  # drop parameter lists
    return fn.replace("gprat::kernels::", "").replace("Stationary<", "S<")[:150]


def audit(label: str, build: Path) -> list[str]:
    modules = sorted((build / "gprat").glob("_core*.so"))
    if not modules:
        raise RuntimeError(f"no gprat/_core*.so under {build}")
    if not subprocess.run(["nm", str(modules[0])], capture_output=True, text=True).stdout.strip():
        raise RuntimeError(f"{modules[0]} is stripped; rebuild it with -Cinstall.strip=false "
                           "-Ccmake.define.CMAKE_STRIP=/bin/true for --check-isa")
    usage = isa_usage(modules[0])
    cloned = {f: c for f, c in usage.items() if CLONE.search(f)}
    outside = {f: c for f, c in usage.items() if not CLONE.search(f)}
    lines = [f"### {label}: {modules[0].name}", ""]
    lines.append(f"- functions using ymm/zmm inside dispatch clones: {len(cloned)} "
                 f"({sum(c['ymm'] for c in cloned.values())} ymm, {sum(c['zmm'] for c in cloned.values())} zmm instructions)")
    lines.append(f"- functions using ymm/zmm outside dispatch clones: {len(outside)} "
                 f"({sum(c['ymm'] for c in outside.values())} ymm, {sum(c['zmm'] for c in outside.values())} zmm instructions)")
    names = subprocess.run(["nm", "-C", str(modules[0])], capture_output=True, text=True, check=True).stdout
    n_resolvers = sum(1 for line in names.splitlines() if "[clone .resolver]" in line)
    lines.append(f"- ifunc resolvers: {n_resolvers}")
    for f, c in sorted(cloned.items())[:8]:
        lines.append(f"  - clone: `{short(f)}` ymm={c['ymm']} zmm={c['zmm']}")
    for f, c in sorted(outside.items(), key=lambda kv: -sum(kv[1].values()))[:8]:
        lines.append(f"  - outside: `{short(f)}` ymm={c['ymm']} zmm={c['zmm']}")
    lines.append("")
    return lines


# ------------------------------------------------------------------------------------------------
# report


def stats(values: list[float]) -> str:
    return f"{min(values):.4f} / {statistics.median(values):.4f}"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("portable", type=Path, help="install dir (pip --target) of the default build")
    ap.add_argument("native", type=Path, help="install dir of the GPRAT_NATIVE=ON build")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--check-isa", action="store_true", help="disassemble both builds and count AVX/AVX-512 use")
    args = ap.parse_args()
    if args.repeats < 5:
        ap.error("--repeats must be at least 5")
    builds = {"portable": args.portable, "native": args.native}
    results: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for r in range(args.repeats):
        for case in CASES:
            order = list(builds) if r % 2 == 0 else list(reversed(builds))  # alternate who goes first
            for label in order:
                spec = {"case": case, "n": args.n, "d": args.d, "tile_size": args.tile_size, "threads": args.threads}
                results[(case, label)].append(run_child(builds[label], spec))
                print(f"  repeat {r + 1}/{args.repeats} {case:>13} {label:>8}: "
                      f"{results[(case, label)][-1]['wall_s']:.3f} s", file=sys.stderr)

    first = results[(CASES[0], "portable")][0]
    lines = [
        f"## Portable default build vs GPRAT_NATIVE=ON, n={args.n}, d={args.d}, SE ARD, tile_size={args.tile_size}",
        "",
        f"- CPU: {cpu_model()} (flags: {', '.join(cpu_flags()) or 'no AVX'}), {os.cpu_count()} logical CPUs; "
        f"threads={args.threads} (runtime reports {first['num_threads']})",
        f"- Python {platform.python_version()}, NumPy {first['numpy']}, {platform.system()} {platform.release()}",
        f"- builds: portable={args.portable}, native={args.native}; {args.repeats} repeats, a fresh process per "
        "(case, build), builds alternating",
        "",
        "| case | build | wall s (min / median) | assemble task s (min / median) | gradient task s (min / median) |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        for label in builds:
            rs = results[(case, label)]
            loops = [stats([x["loop_s"].get(t, 0.0) for x in rs]) if any(t in x["loop_s"] for x in rs) else "-"
                     for t in LOOP_TASKS]
            lines.append(f"| {case} | {label} | {stats([x['wall_s'] for x in rs])} | {loops[0]} | {loops[1]} |")
    lines += ["", "| case | quantity | portable / native: ratio of mins | ratio of medians |", "|---|---|---|---|"]

    def ratios(p: list[float], q: list[float]) -> str:
        return f"{min(p) / min(q):.3f} | {statistics.median(p) / statistics.median(q):.3f}"

    for case in CASES:
        p, q = results[(case, "portable")], results[(case, "native")]
        lines.append(f"| {case} | wall | {ratios([x['wall_s'] for x in p], [x['wall_s'] for x in q])} |")
        for t in LOOP_TASKS:
            if any(t in x["loop_s"] for x in p):
                lines.append(f"| {case} | {t} tasks | {ratios([x['loop_s'][t] for x in p], [x['loop_s'][t] for x in q])} |")
    # Agreement to rounding: the same problem in both builds.
    lml_p, lml_q = results[("training_step", "portable")][0]["lml"], results[("training_step", "native")][0]["lml"]
    gp_, gq = results[("training_step", "portable")][0]["grad"], results[("training_step", "native")][0]["grad"]
    grad_diff = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(gp_, gq))
    lines += ["", f"Agreement: log marginal likelihood {lml_p!r} (portable) vs {lml_q!r} (native), relative "
                  f"difference {abs(lml_p - lml_q) / abs(lml_q):.2e}; gradient max relative difference {grad_diff:.2e}.", ""]
    if args.check_isa:
        lines += ["## AVX / AVX-512 instructions per build", ""]
        for label, build in builds.items():
            lines += audit(label, build)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
