"""gprat.distributed under mpirun (-n 1, 2, 3 and 4, oversubscribed: 2 x 2 grids and others).

Each test starts tests/python/distributed_worker.py under mpirun in a subprocess with a
timeout, so that a hang fails the test instead of the suite. The worker compares with the
single-process engine and the dense oracle on every rank. Skipped, with the reason, where
mpi4py, an mpirun or gprat._distributed (MPI + ScaLAPACK at build time) is missing.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from subprocess_env import gprat_env

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")


def _launcher():
    """The mpirun command line prefix and the reason it cannot run (None when it can)."""
    # asked in a child: importing mpi4py initializes MPI, which this process (it forks) must not
    probe = subprocess.run([sys.executable, "-c", "import gprat.distributed as gd; print(gd.available()[1])"],
                           capture_output=True, text=True, env=gprat_env(), timeout=120)
    if probe.returncode != 0:
        return None, f"gprat.distributed does not import: {probe.stderr.strip()[-500:]}"
    if probe.stdout.strip():
        return None, probe.stdout.strip()
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        return None, "no mpirun or mpiexec on PATH (install openmpi-bin, see docs/distributed.md)"
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True, timeout=30).stdout
    prefix = [mpirun]
    if "Open MPI" in version or "OpenRTE" in version:
        prefix += ["--oversubscribe", "--bind-to", "none"]  # more ranks than cores
    return prefix, None


PREFIX, REASON = _launcher()
needs_mpi = pytest.mark.skipif(PREFIX is None, reason=f"MPI tests skipped: {REASON}")


def mpirun(n, *args, timeout=300):
    env = gprat_env(GPRAT_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    OMPI_MCA_rmaps_base_oversubscribe="1", PYTHONUNBUFFERED="1")
    start = time.monotonic()
    proc = subprocess.run([*PREFIX, "-n", str(n), sys.executable, WORKER, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc, time.monotonic() - start


def expect_ok(proc, scenario):
    assert proc.returncode == 0, f"mpirun {scenario} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    assert f"OK {scenario}" in proc.stdout, proc.stdout + proc.stderr


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_equals_single_process(ranks):
    """LML, gradient, mean and std equal gprat.ExactGP to 1e-10 (ragged blocks, several grids)."""
    proc, _ = mpirun(ranks, "equivalence")
    expect_ok(proc, "equivalence")


@needs_mpi
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_recursive_inverse_equals_numpy(ranks):
    """L^{-1} by the recursion onto pdgemm, and K^{-1} after it, equal NumPy's inverses (ragged blocks)."""
    proc, _ = mpirun(ranks, "inverse")
    expect_ok(proc, "inverse")


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 4])
def test_optimize_agrees(ranks):
    proc, _ = mpirun(ranks, "optimize")
    expect_ok(proc, "optimize")


@needs_mpi
def test_not_positive_definite_on_every_rank():
    proc, _ = mpirun(2, "nonspd")
    expect_ok(proc, "nonspd")


@needs_mpi
def test_bad_input_on_one_rank_raises_everywhere():
    proc, _ = mpirun(3, "bad_input")
    expect_ok(proc, "bad_input")


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_bad_input_on_one_rank_every_verb(ranks):
    """Constructor, fit, log_marginal_likelihood, predict, optimize: bad (or differing) input on
    the last rank only raises the same exception on every rank, and the model stays usable."""
    proc, _ = mpirun(ranks, "bad_input_every_verb")
    expect_ok(proc, "bad_input_every_verb")


@needs_mpi
def test_save_under_mpi_load_on_one_process(tmp_path):
    path = str(tmp_path / "model.npz")
    proc, _ = mpirun(2, "save", path)
    expect_ok(proc, "save")
    from gprat.io import load_model

    expected = np.load(path + ".expected.npz")
    gp = load_model(path).gp  # a single-process gprat.ExactGP
    np.testing.assert_allclose(gp.theta, expected["theta"], rtol=1e-12)
    mean, std = gp.predict(expected["Xs"], return_std=True)
    np.testing.assert_allclose(mean, expected["mean"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, expected["std"], rtol=1e-9, atol=1e-12)


@needs_mpi
def test_exception_on_one_rank_ends_the_job():
    proc, seconds = mpirun(2, "raise_on_one_rank", timeout=120)
    assert proc.returncode != 0
    assert seconds < 45, f"the job took {seconds:.0f} s to end after one rank raised"
    output = proc.stdout + proc.stderr
    assert output.count("RuntimeError: deliberate failure on rank 1") == 1, output  # printed once


@needs_mpi
def test_ctrl_c_ends_the_job():
    """SIGINT to the launcher (what Ctrl-C sends) ends every rank within seconds."""
    env = gprat_env(GPRAT_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                    PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([*PREFIX, "-n", "2", sys.executable, WORKER, "run_until_interrupted"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        seen = []
        while not seen or seen[-1].strip() != "started":  # the launcher may print warnings first
            line = proc.stdout.readline()
            assert line, "the job ended before it started: " + "".join(seen)
            seen.append(line)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        proc.wait(timeout=45)
        assert time.monotonic() - start < 45
        assert proc.returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@needs_mpi
def test_killed_rank_ends_the_job():
    proc, seconds = mpirun(2, "kill_one_rank", timeout=120)
    assert proc.returncode != 0
    assert seconds < 45, f"the job took {seconds:.0f} s to end after one rank was killed"


def test_without_the_extension_a_clear_error():
    """Where gprat._distributed (or mpi4py) is missing: available() says why, the class raises it."""
    code = (
        "import sys; sys.modules[sys.argv[1]] = None\n"
        "import gprat, gprat.distributed as gd\n"
        "ok, reason = gd.available(); assert not ok and sys.argv[2] in reason, reason\n"
        "try:\n    gd.ExactGP(gprat.kernels.SquaredExponential(1.0))\n"
        "except gprat.BackendUnavailableError as e:\n    assert sys.argv[2] in str(e); print('ok')\n"
    )
    import importlib.util

    cases = [("mpi4py", "needs mpi4py")]
    if importlib.util.find_spec("mpi4py") is not None:  # mpi4py is checked first: without it, that is the reason
        cases.append(("gprat._distributed", "built without MPI/ScaLAPACK"))
    for hidden, said in cases:
        proc = subprocess.run([sys.executable, "-c", code, hidden, said], capture_output=True, text=True,
                              env=gprat_env(), timeout=120)
        assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
