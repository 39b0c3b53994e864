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


def check_fits(needed, what):
    """Raise MemoryError when `needed` bytes exceed what is available (skipped if unknown).

    ``GPRAT_MEMORY_LIMIT`` (bytes) overrides the detected amount, e.g. in batch jobs.
    """
    override = os.environ.get("GPRAT_MEMORY_LIMIT")
    avail = int(override) if override else available_bytes()
    if avail is not None and needed > avail:
        raise MemoryError(
            f"{what} needs about {needed / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB is available; "
            "use fewer samples, dtype=numpy.float32, or a machine with more memory"
        )
