"""Memory available to this process, to refuse oversized problems before allocating."""

import os

__all__ = ["available_bytes", "check_fits"]


def _read_int(path):
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    if text in ("", "max"):
        return None
    try:
        return int(text)
    except ValueError:
        return None


def available_bytes():
    """Bytes this process can still allocate: MemAvailable, capped by the cgroup limit.

    Returns None where it cannot be determined.
    """
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    limit = _read_int("/sys/fs/cgroup/memory.max") or _read_int("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if limit is not None and limit < (1 << 60):
        usage = _read_int("/sys/fs/cgroup/memory.current") or _read_int("/sys/fs/cgroup/memory/memory.usage_in_bytes") or 0
        room = max(limit - usage, 0)
        avail = room if avail is None else min(avail, room)
    return avail


#: Requests below this size are not checked against the system (reading /proc costs ~50 us),
#: only against GPRAT_MEMORY_LIMIT when it is set.
SMALL_REQUEST = 16 << 20


def _limit_from_environment():
    text = os.environ.get("GPRAT_MEMORY_LIMIT", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"GPRAT_MEMORY_LIMIT must be a number of bytes >= 0; got {text!r}")
    return int(value)


def _size(n_bytes):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n_bytes >= 1 << shift:
            return f"{n_bytes / (1 << shift):.2f} {unit}"
    return f"{int(n_bytes)} bytes"


def check_fits(needed, what):
    """Raise MemoryError when `needed` bytes exceed what is available (skipped if unknown).

    ``GPRAT_MEMORY_LIMIT`` (bytes) overrides the detected amount, e.g. in batch jobs or to
    simulate a small machine.
    """
    avail = _limit_from_environment()
    if avail is None:
        if needed < SMALL_REQUEST:
            return
        avail = available_bytes()
    if avail is not None and needed > avail:
        raise MemoryError(
            f"{what} needs about {_size(needed)} but only {_size(avail)} is available; "
            "use fewer samples, dtype=numpy.float32, or a machine with more memory"
        )
