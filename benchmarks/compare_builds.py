"""Two gprat builds side by side in one run: Cholesky, training step and predict, as ratios to
LAPACK dpotrf measured in the same rounds.

Usage:
    pip install --no-build-isolation --no-deps --target /tmp/gprat-before <old checkout>
    pip install --no-build-isolation --no-deps --target /tmp/gprat-after .
    python benchmarks/compare_builds.py before=/tmp/gprat-before after=/tmp/gprat-after --n 4096 8192

Each (build, n) runs benchmarks/worker.py in a fresh process with that build first on
PYTHONPATH; builds alternate within every round, and the dpotrf yardstick runs once per round
and n, so slow drifts of the shared machine hit every build alike. Prints a Markdown table of
min and median times and of time / dpotrf (same n, same round), with the CPU, the thread count
and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import cpu_model, package_versions  # noqa: E402
OPS = ("cholesky", "train_step", "predict")


def _worker(library, n, m, threads, repeats, pythonpath, out):
    spec = {"run_id": "compare", "round": 0, "library": library, "threads": threads, "n": n, "m": m, "d": 8,
            "seed": 0, "ops": list(OPS) if library == "gprat" else ["cholesky"], "repeats": repeats,
            "warmup": 1, "min_time": 0.0, "max_call_s": None, "out": str(out)}
    env = dict(os.environ, GPRAT_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([pythonpath, env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, str(HERE / "worker.py"), "measure", json.dumps(spec)], env=env, check=True,
                   cwd=HERE)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs=2, metavar="LABEL=DIR", help="two builds (pip --target directories)")
    ap.add_argument("--n", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--m", type=int, default=1000, help="test points for predict")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    builds = [tuple(b.split("=", 1)) for b in args.builds]
    times = {}  # (label, n, op) -> list of per-round min, and ratios
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in args.n:
                order = builds if r % 2 == 0 else builds[::-1]
                runs = [("dpotrf", "scipy", "")] + [(label, "gprat", path) for label, path in order]
                for label, library, path in runs:
                    out = Path(tmp) / f"{label}-{n}-{r}.jsonl"
                    _worker(library, n, args.m, args.threads, args.repeats, path, out)
                    for line in out.read_text().splitlines():
                        rec = json.loads(line)
                        if rec.get("record") == "group" and path:
                            used = rec["info"].get("gprat_file") or ""
                            if not used.startswith(str(Path(path).resolve())):
                                raise SystemExit(f"build {label}: the worker imported {used}, not the build in {path}")
                        if rec.get("record") == "case" and rec.get("status") == "ok":
                            times.setdefault((label, n, rec["op"]), []).append((rec["min_s"], rec["median_s"], r))
                        elif rec.get("record") == "case":
                            raise SystemExit(f"{label} n={n} {rec.get('op')}: {rec.get('status')} {rec.get('error')}")
    versions = package_versions()
    print(f"# gprat builds side by side\n\nCPU: {cpu_model()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"python {platform.python_version()}; numpy {versions.get('numpy')}, scipy {versions.get('scipy')}, "
          f"scipy-openblas32 {versions.get('scipy-openblas32')}; {args.rounds} rounds x {args.repeats} repeats; "
          f"builds {', '.join(f'{label}={path}' for label, path in builds)}; load average at the end "
          f"{tuple(round(v, 2) for v in os.getloadavg())}\n")
    print("| build | n | op | min s | median s | min / dpotrf | median / dpotrf |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for n in args.n:
        dp = times[("dpotrf", n, "cholesky")]
        dp_min = min(t[0] for t in dp)
        dp_med = statistics.median(t[1] for t in dp)
        print(f"| dpotrf | {n} | cholesky | {dp_min:.3f} | {dp_med:.3f} | 1.00 | 1.00 |")
        for op in OPS:
            for label, _ in builds:
                rows = times[(label, n, op)]
                tmin = min(t[0] for t in rows)
                tmed = statistics.median(t[1] for t in rows)
                print(f"| {label} | {n} | {op} | {tmin:.3f} | {tmed:.3f} | {tmin / dp_min:.3f} | {tmed / dp_med:.3f} |")


if __name__ == "__main__":
    main()
