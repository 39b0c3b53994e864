"""Control of the task runtime that runs every tiled computation.

The runtime is a pool of worker threads. It starts lazily on first use with the thread count
from ``GPRAT_NUM_THREADS``, else the number of cores available to the process (CPU affinity
and cgroup quota aware).
"""

import contextlib
import json
import os
import threading

from . import _core
from ._validation import check_positive_int

__all__ = ["start", "stop", "suspend", "resume", "num_threads", "is_running", "trace", "task_graph"]

# Lifecycle gate. start/stop/suspend wait until no task graph is running; if other threads
# kept submitting work they could wait forever. The C++ executor gates every new task graph
# while a change is pending (Executor::acquire); this gate also holds back whole Python
# compute calls, which may build several graphs, until the change is done (calls already
# running finish first).
_gate = threading.Condition()
_pending_changes = 0


def _reset_gate_after_fork():
    global _gate, _pending_changes
    _gate, _pending_changes = threading.Condition(), 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_gate_after_fork)


def wait_for_lifecycle():
    """Block while start/stop/suspend is pending (called before each compute call)."""
    if _pending_changes:
        with _gate:
            while _pending_changes:
                _gate.wait()


@contextlib.contextmanager
def _lifecycle_change():
    global _pending_changes
    with _gate:
        _pending_changes += 1
    try:
        yield
    finally:
        with _gate:
            _pending_changes -= 1
            _gate.notify_all()


def start(n_threads=None):
    """Start the runtime with `n_threads` workers.

    A no-op when it already runs with that many; otherwise waits for running work, then
    restarts (compute calls that other threads start meanwhile wait for the restart). Also
    ends a suspension.

    Parameters
    ----------
    n_threads : int or None, default=None
        Worker threads; None means ``GPRAT_NUM_THREADS`` or the available cores.

    Raises
    ------
    ValueError
        If `n_threads` is not positive (or ``GPRAT_NUM_THREADS`` is not a positive integer).
    """
    n_threads = check_positive_int(n_threads, "n_threads")
    with _lifecycle_change():
        _core.start(n_threads)


def stop():
    """Wait for running work, then stop the worker threads. Later work restarts the runtime.

    Compute calls that other threads start meanwhile wait until the runtime has stopped.
    """
    with _lifecycle_change():
        _core.stop()


def suspend():
    """Wait for running work, then park the workers (they use no CPU) until :func:`resume`.

    Compute calls made while suspended raise :class:`gprat.RuntimeStateError`.
    """
    with _lifecycle_change():
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
def _recording(enable, take):
    """Switch a recorder of the core on for the block; the list it yields receives take()'s result at the end.

    What an earlier, unfinished recording left is dropped first. The recorder is switched off
    however the block ends.
    """
    take()
    taken = []
    enable(True)
    try:
        yield taken
    finally:
        enable(False)
        taken.append(take())


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
    records = []
    taken = []
    try:
        with _recording(_core.set_tracing, _core.take_trace) as taken:
            yield records
    finally:
        records.extend(taken[0] if taken else [])
        t0 = records[0][2] if records else 0
        events = [
            {"name": name, "cat": "task", "ph": "X", "pid": os.getpid(), "tid": int(worker),
             "ts": (start - t0) / 1000.0, "dur": (end - start) / 1000.0}
            for name, worker, start, end in records
        ]
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)


@contextlib.contextmanager
def task_graph(path):
    """Record the dependency graph of every task graph built inside the block and write it to
    `path` in Graphviz DOT format (render with ``dot -Tsvg path -o graph.svg``).

    Nodes are tasks (``name #position (p=priority)``), one cluster per task graph; an edge
    ``a -> b`` says b waits for a, as derived by the runtime from the tiles each task reads
    and writes (read after write, write after write, write after read). Edges are recorded
    whether or not the predecessor had already finished, so the file shows the algorithm's
    DAG independently of timing. The computation itself runs as usual.

    Parameters
    ----------
    path : str or os.PathLike
        Output file.

    Yields
    ------
    dict
        Filled on exit with ``"nodes"``: ``(graph, task, name, priority)`` tuples and
        ``"edges"``: ``(graph, from_task, to_task)`` tuples (duplicates removed).

    Examples
    --------
    >>> import numpy as np, gprat
    >>> with gprat.task_graph("chol.dot") as g:  # doctest: +SKIP
    ...     gprat.linalg.cholesky(np.eye(6) * 2.0, tile_size=2)
    >>> sorted({name for _, _, name, _ in g["nodes"]})  # doctest: +SKIP
    ['copy_in', 'copy_out', 'gemm', 'potrf', 'syrk', 'trsm']
    """
    path = os.fspath(path)
    recorded = {"nodes": [], "edges": []}
    taken = []
    try:
        with _recording(_core.set_graph_recording, _core.take_graph_dot) as taken:
            yield recorded
    finally:
        dot, nodes, edges = taken[0] if taken else ("digraph tasks {\n}\n", [], [])
        recorded["nodes"].extend(nodes)
        recorded["edges"].extend(edges)
        with open(path, "w", encoding="utf-8") as f:
            f.write(dot)
