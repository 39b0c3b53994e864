"""Child processes for tests: subprocesses must import the same gprat as the test process
(the installed package, or a source tree with a built extension), never a bare source tree;
forked children inherit it, and their results come back through a queue."""

import multiprocessing
import os

import pytest

import gprat


def gprat_env(**overrides):
    """A copy of os.environ whose PYTHONPATH starts with the directory holding the gprat under test."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(gprat.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [package_parent, env.get("PYTHONPATH", "")] if p)
    env.update(overrides)
    return env


def run_forked(target, args=(), count=2, timeout=60):
    """Run ``target(*args, queue)`` in `count` children started with the fork method, at the
    same time; return the one item each put on the queue. Skips the test where fork is not
    available; asserts that every child exited with status 0. The children are daemons, so a
    hung child dies with the test process."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("the fork start method is not available on this platform")
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, queue), daemon=True) for _ in range(count)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout=timeout)
        assert p.exitcode == 0, f"a forked child exited with status {p.exitcode}"
    return results
