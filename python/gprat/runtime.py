"""Control of the task runtime that runs every tiled computation.

The runtime is a pool of worker threads. It starts lazily on first use with the thread count
from ``GPRAT_NUM_THREADS``, else the number of cores available to the process (CPU affinity
and cgroup quota aware).
"""

import contextlib
import json
import os

from . import _core
from ._validation import check_positive_int

__all__ = ["start", "stop", "suspend", "resume", "num_threads", "is_running", "trace"]


def start(n_threads=None):
    """Start the runtime with `n_threads` workers.

    A no-op when it already runs with that many; otherwise waits for running work, then
    restarts. Also ends a suspension.

    Parameters
    ----------
    n_threads : int or None, default=None
        Worker threads; None means ``GPRAT_NUM_THREADS`` or the available cores.

    Raises
    ------
    ValueError
        If `n_threads` is not positive (or ``GPRAT_NUM_THREADS`` is not a positive integer).
    """
    _core.start(check_positive_int(n_threads, "n_threads"))


def stop():
    """Wait for running work, then stop the worker threads. Later work restarts the runtime."""
    _core.stop()


def suspend():
    """Wait for running work, then park the workers (they use no CPU) until :func:`resume`.

    Compute calls made while suspended raise :class:`gprat.RuntimeStateError`.
    """
    _core.suspend()


def resume():
    """Let a suspended runtime accept work again."""
    _core.resume()


def num_threads():
    """int: worker threads of the running runtime, or the count a lazy start would use."""
    return _core.num_threads()


def is_running():
    """bool: whether worker threads are running."""
    return _core.is_running()


@contextlib.contextmanager
def trace(path):
    """Record every task run inside the block and write it as Chrome-trace JSON to `path`.

    Open the file in chrome://tracing or https://ui.perfetto.dev. Each event has the task name,
    the worker (as thread id), its start and its duration in microseconds.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.

    Yields
    ------
    list
        Filled on exit with the records ``(name, worker, start_ns, end_ns)``.
    """
    _core.take_trace()  # drop records from an earlier, unfinished trace
    records = []
    _core.set_tracing(True)
    try:
        yield records
    finally:
        _core.set_tracing(False)
        records.extend(_core.take_trace())
        t0 = records[0][2] if records else 0
        events = [
            {
                "name": name,
                "cat": "task",
                "ph": "X",
                "pid": os.getpid(),
                "tid": int(worker),
                "ts": (start - t0) / 1000.0,
                "dur": (end - start) / 1000.0,
            }
            for name, worker, start, end in records
        ]
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)
