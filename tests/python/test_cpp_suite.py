"""Build the C++ test executables with CMake and run them: plain Release, AddressSanitizer +
UndefinedBehaviorSanitizer, and ThreadSanitizer (runtime tests only).

Each executable prints "N passed, M failed" as its last line and exits non-zero on failure.
The build trees are kept between runs under $GPRAT_CPP_TEST_BUILD_DIR (default: a
"gprat-cpp-tests-<hash of the checkout path>" directory in the system temp dir; a tree
configured from another source directory is wiped and rebuilt), so a repeated run only rebuilds what changed.
Set GPRAT_CPP_TEST_JOBS to change the build parallelism (default 2), GPRAT_SKIP_CPP_TESTS=1
to skip them all (about 1.5 to 4 minutes from scratch on 2 cores, 30 s once built).

No sanitizer suppressions are used: OpenBLAS (uninstrumented) produced no report in these runs.

Tools: a C++20 compiler (CXX, else c++/g++/clang++), and cmake and ninja from the Python
packages of the same names (test extras) or from PATH. Without them the tests are skipped,
with the reason shown.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RUNTIME_TESTS = ["test_runtime", "test_runtime_stress"]
ALL_TESTS = RUNTIME_TESTS + ["test_tile_kernels", "test_tiled_algorithms", "test_covariance"]

# name -> (GPRAT_SANITIZE, CMAKE_BUILD_TYPE, executables, extra environment)
CONFIGS = {
    "release": ("", "Release", ALL_TESTS, {}),
    "asan-ubsan": (
        "address,undefined",
        "RelWithDebInfo",
        ALL_TESTS,
        {
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        },
    ),
    "tsan": (
        "thread",
        "RelWithDebInfo",
        RUNTIME_TESTS,
        {"TSAN_OPTIONS": "halt_on_error=1:second_deadlock_stack=1"},
    ),
}

LAST_LINE = re.compile(r"^(\d+) passed, (\d+) failed$")
RUN_TIMEOUT_S = 600
BUILD_TIMEOUT_S = 1200


def _tool(module: str, attr: str, exe: str) -> str | None:
    """The executable shipped by the pip package `module` (cmake, ninja), else from PATH."""
    try:
        mod = __import__(module)
        candidate = Path(getattr(mod, attr)) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    except (ImportError, AttributeError):
        pass
    return shutil.which(exe)


def _compiler() -> str | None:
    for cand in filter(None, [os.environ.get("CXX"), "c++", "g++", "clang++"]):
        found = shutil.which(cand)
        if found:
            return found
    return None


def _build_root() -> Path:
    """Build trees for this checkout. The default is keyed on the checkout's path: CMake refuses
    a build tree configured from another source directory, and two clones (a developer tree and
    a CI clone) can share one temp dir."""
    root = os.environ.get("GPRAT_CPP_TEST_BUILD_DIR")
    if root:
        return Path(root)
    key = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"gprat-cpp-tests-{key}"


def _configured_source(cache: Path) -> str | None:
    """The source directory a CMakeCache.txt was generated from (CMAKE_HOME_DIRECTORY), if any."""
    try:
        for line in cache.read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def _sanitizer_works(cxx: str, sanitize: str, workdir: Path) -> str | None:
    """None if `cxx -fsanitize=<sanitize>` links and runs a trivial program, else why not."""
    if not sanitize:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "probe.cpp"
    exe = workdir / f"probe-{sanitize.replace(',', '-')}"
    src.write_text("#include <thread>\nint main() { std::thread([] {}).join(); return 0; }\n")
    try:
        subprocess.run(
            [cxx, "-std=c++20", f"-fsanitize={sanitize}", str(src), "-o", str(exe), "-pthread"],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        subprocess.run([str(exe)], check=True, capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as e:
        return f"{cxx} cannot build/run with -fsanitize={sanitize}: {(e.stderr or e.stdout or '').strip()[-500:]}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{cxx} -fsanitize={sanitize} probe failed: {e}"
    return None


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def _summary(stdout: str) -> str:
    """The failure lines of a test executable's output, then its tail."""
    lines = stdout.splitlines()
    failed = [ln for ln in lines if "FAILED" in ln or "[ FAIL ]" in ln or "TIMEOUT" in ln][:40]
    return "\n".join(failed) + "\n...\n" + "\n".join(lines[-25:])


@pytest.fixture(scope="module")
def toolchain():
    if os.environ.get("GPRAT_SKIP_CPP_TESTS", "") not in ("", "0"):
        pytest.skip("GPRAT_SKIP_CPP_TESTS is set")
    cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
    if cmake is None:
        pytest.skip("cmake not found (pip install cmake, or put cmake on PATH)")
    cxx = _compiler()
    if cxx is None:
        pytest.skip("no C++ compiler found (set CXX, or install g++/clang++)")
    ninja = _tool("ninja", "BIN_DIR", "ninja")
    return {"cmake": cmake, "ninja": ninja, "cxx": cxx}


def _configure_and_build(toolchain, name: str, sanitize: str, build_type: str, targets: list[str]) -> Path:
    build = _build_root() / name
    build.mkdir(parents=True, exist_ok=True)
    jobs = os.environ.get("GPRAT_CPP_TEST_JOBS", "2")
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={toolchain['ninja']}"] if toolchain["ninja"] else []
    cache = build / "CMakeCache.txt"
    stale = cache.exists() and (
        (toolchain["ninja"] and not (build / "build.ninja").exists())  # half-configured, or another generator
        or Path(_configured_source(cache) or "").resolve() != REPO  # configured from another checkout
    )
    if stale:
        shutil.rmtree(build)
        build.mkdir(parents=True)
    configure = [
        toolchain["cmake"],
        "-S",
        str(REPO),
        "-B",
        str(build),
        *generator,
        f"-DCMAKE_CXX_COMPILER={toolchain['cxx']}",
        f"-DCMAKE_BUILD_TYPE={build_type}",
        "-DGPRAT_BUILD_PYTHON=OFF",
        "-DGPRAT_BUILD_TESTS=ON",
        f"-DGPRAT_SANITIZE={sanitize}",
        f"-DPython_EXECUTABLE={sys.executable}",
    ]
    for cmd in (configure, [toolchain["cmake"], "--build", str(build), "-j", jobs, "--target", *targets]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}")
    return build


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cpp_suite(toolchain, config):
    sanitize, build_type, executables, extra_env = CONFIGS[config]
    why_not = _sanitizer_works(toolchain["cxx"], sanitize, _build_root() / "probes")
    if why_not:
        pytest.skip(why_not)

    t0 = time.monotonic()
    build = _configure_and_build(toolchain, config, sanitize, build_type, executables)
    build_s = time.monotonic() - t0

    env = dict(os.environ)
    env.update(extra_env)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # the runtime, not BLAS, runs tiles in parallel
    env.pop("GPRAT_NUM_THREADS", None)  # test_runtime checks the default thread count itself
    failures = []
    report = [f"[{config}] build {build_s:.1f} s"]
    for exe in executables:
        t1 = time.monotonic()
        try:
            proc = subprocess.run(
                [str(build / exe)], capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT_S, cwd=build
            )
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            failures.append(f"{exe}: timed out after {RUN_TIMEOUT_S} s\n{_tail(out)}")
            continue
        secs = time.monotonic() - t1
        lines = proc.stdout.strip().splitlines()
        last = lines[-1] if lines else ""
        m = LAST_LINE.match(last)
        report.append(f"{exe}: {last!r} rc={proc.returncode} {secs:.1f} s")
        if proc.returncode != 0 or m is None or m.group(2) != "0":
            failures.append(
                f"{exe} (rc={proc.returncode}, last line {last!r}):\n"
                f"--- stdout ---\n{_summary(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr, 120)}"
            )
    print("\n".join(report))
    assert not failures, "\n\n".join(failures)
