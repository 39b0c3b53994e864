"""The task runtime seen from Python: lifecycle, thread counts, tracing, Ctrl-C, fork, threads."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import gprat
from subprocess_env import gprat_env, run_forked
from gprat import _core



def run_python(code, env_extra=None):
    env = gprat_env(**(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def small_fit():
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(300, 2))
    y = np.sin(5 * X).sum(axis=1)
    return gprat.ExactGP(gprat.kernels.SquaredExponential(0.3), noise_variance=1e-3, tile_size=32).fit(X, y)


def test_start_stop_cycles_and_thread_count():
    for n in (1, 3, 2, 2):
        gprat.start(n)
        assert gprat.num_threads() == n and gprat.is_running()
        small_fit()
    gprat.stop()
    assert not gprat.is_running()
    small_fit()  # lazy start
    assert gprat.is_running()
    gprat.start()


def test_hundreds_of_lifecycle_cycles_with_work():
    a = np.random.default_rng(1).standard_normal((64, 64))
    A = a @ a.T + 64 * np.eye(64)
    ref = np.linalg.cholesky(A)
    for i in range(200):
        op = i % 4
        if op == 0:
            gprat.start(1 + i % 3)
        elif op == 1:
            gprat.suspend()
            with pytest.raises(gprat.RuntimeStateError, match="suspended"):
                gprat.linalg.cholesky(A, tile_size=16)
            gprat.resume()
        elif op == 2:
            gprat.stop()
        np.testing.assert_allclose(gprat.linalg.cholesky(A, tile_size=16), ref, atol=1e-12)
    gprat.start()


def test_bad_thread_counts():
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            gprat.start(bad)
    with pytest.raises(TypeError):
        gprat.start(1.5)


def test_thread_count_from_environment():
    out = run_python("import gprat; print(gprat.num_threads())", {"GPRAT_NUM_THREADS": "3"})
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    out = run_python("import gprat; gprat.linalg.cholesky([[1.0]])", {"GPRAT_NUM_THREADS": "zero"})
    assert out.returncode != 0 and "GPRAT_NUM_THREADS must be a positive integer" in out.stderr


def test_default_thread_count_respects_affinity():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("os.sched_setaffinity is not available on this platform")
    cpu = sorted(os.sched_getaffinity(0))[0]
    code = f"import os; os.sched_setaffinity(0, {{{cpu}}}); import gprat; print(gprat.num_threads())"
    out = run_python(code, {"GPRAT_NUM_THREADS": ""})
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr


def test_trace_writes_chrome_json(tmp_path):
    gp = small_fit()
    path = tmp_path / "trace.json"
    with gprat.trace(path) as records:  # not the fitted theta: a step there reuses the factor
        gp.log_marginal_likelihood(gp.theta + 0.1, eval_gradient=True)
    events = json.loads(path.read_text())["traceEvents"]
    assert len(events) == len(records) > 0
    names = {e["name"] for e in events}
    assert {"assemble", "potrf", "trsm", "syrk", "gemm", "trtri", "lauum", "gradient"} <= names
    assert all(e["dur"] >= 0 and e["ph"] == "X" for e in events)
    assert {e["tid"] for e in events} <= set(range(gprat.num_threads()))


def test_ctrl_c_interrupts_within_a_second():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    gprat.start(2)
    timer = threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGINT))
    t0 = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        _core.sleep_tasks(400, 0.05)  # 10 s of work on 2 threads
    elapsed = time.perf_counter() - t0
    timer.join()
    assert elapsed < 0.3 + 1.0, elapsed
    small_fit()  # the runtime is usable afterwards


def _child_fit(queue):
    gp = small_fit()
    queue.put(float(gp.log_marginal_likelihood()))


def test_fork_after_start():
    expected = float(small_fit().log_marginal_likelihood())  # runtime running in the parent
    results = run_forked(_child_fit, count=2)
    np.testing.assert_allclose(results, expected, rtol=1e-12)


def test_concurrent_predictions_and_fits_from_python_threads():
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(400, 3))
    y = np.cos(3 * X).sum(axis=1)
    Xs = rng.uniform(size=(50, 3))
    models = [gprat.ExactGP(gprat.kernels.Matern52([0.4, 0.5, 0.6]), noise_variance=1e-3, tile_size=64).fit(X, y)
              for _ in range(2)]
    expected = [m.predict(Xs, return_std=True) for m in models]
    errors = []

    def predictor(k):
        try:
            for _ in range(15):
                mean, std = models[k % 2].predict(Xs, return_std=True)
                np.testing.assert_allclose(mean, expected[k % 2][0], rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(std, expected[k % 2][1], rtol=1e-12, atol=1e-12)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def fitter():
        try:
            for _ in range(5):
                m = gprat.ExactGP(gprat.kernels.Matern52([0.4, 0.5, 0.6]), noise_variance=1e-3, tile_size=64).fit(X, y)
                np.testing.assert_allclose(m.predict(Xs), expected[0][0], rtol=1e-12, atol=1e-12)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    # Daemons: a thread that deadlocks must fail this test, not keep the test process alive.
    threads = [threading.Thread(target=predictor, args=(k,), daemon=True) for k in range(4)]
    threads.append(threading.Thread(target=fitter, daemon=True))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120.0  # one budget for all joins, not 120 s each
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = [t.name for t in threads if t.is_alive()]
    assert not hung, f"threads still running 120 s after the start (deadlock?): {hung}"
    assert not errors, errors


def test_stop_while_another_thread_computes():
    gprat.start(2)
    done = []

    def work():
        _core.sleep_tasks(20, 0.02)
        done.append(True)

    t = threading.Thread(target=work)
    t.start()
    time.sleep(0.05)
    gprat.stop()  # waits for the running graph
    t.join(timeout=30)
    assert done == [True]
    small_fit()


BLAS_COUNTS_SCRIPT = r"""
import json
import numpy as np
import scipy.linalg
import threadpoolctl

def counts():
    return {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

# gprat's private BLAS, loaded before gprat so that its default thread count is seen too.
import ctypes, os, scipy_openblas32
ctypes.CDLL(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))
before = counts()
import gprat
after_import = counts()
rng = np.random.default_rng(0)
X = rng.uniform(size=(300, 2))
gp = gprat.ExactGP(gprat.kernels.SquaredExponential(0.3), noise_variance=1e-3, tile_size=32).fit(X, np.sin(5 * X).sum(axis=1))
gp.predict(X[:5], return_std=True)
after_fit = counts()
np.linalg.cholesky(np.eye(3))
print(json.dumps({"before": before, "after_import": after_import, "after_fit": after_fit,
                  "worker": gprat._core._worker_blas_threads()}))
"""


def test_import_and_fit_leave_numpy_and_scipy_blas_threads_alone():
    pytest.importorskip("threadpoolctl")
    # A count other than 1, so that a stray "BLAS single-threaded" shows.
    proc = run_python(BLAS_COUNTS_SCRIPT, {"OPENBLAS_NUM_THREADS": "3", "GPRAT_NUM_THREADS": "2"})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    before, after_import, after_fit = got["before"], got["after_import"], got["after_fit"]
    numpy_scipy = [p for p in before if "scipy_openblas32" not in p]
    assert numpy_scipy, f"threadpoolctl found no BLAS of NumPy/SciPy: {before}"
    for path, n in before.items():
        # Nothing changes at import, gprat's own BLAS included (before the fix: set to 1 there).
        assert after_import[path] == n, f"import gprat changed {path}: {n} -> {after_import[path]}"
    for path in numpy_scipy:
        # A fit sets gprat's private copy for its workers only: NumPy's and SciPy's stay.
        assert after_fit[path] == before[path], f"a gprat fit changed {path}: {before[path]} -> {after_fit[path]}"
    # ... and the workers' BLAS calls are single-threaded (-1: the provider has no query).
    assert got["worker"] in (1, -1)


def test_worker_blas_calls_are_single_threaded():
    n = _core._worker_blas_threads()
    if n == -1:
        pytest.skip("this BLAS provider reports no thread count")
    assert n == 1
