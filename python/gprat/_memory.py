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


#: A v1 limit at or above this many bytes means "unlimited" (the kernel writes 2**63 - page).
_UNLIMITED = 1 << 60


def _cgroup_dirs(controller, proc_self_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """The cgroup directories whose `controller` limits apply to this process.

    Mirrors ``gprat::runtime::cgroup_dirs`` (cpp/src/runtime/thread_count.cpp), which applies
    the same rule to the CPU quota: keep the two identical.

    Parameters
    ----------
    controller : str
        ``"memory"`` or ``"cpu"``.
    proc_self_cgroup, root : str
        The real files by default; tests pass a fake tree.

    Returns
    -------
    list of (str, bool)
        ``(directory, is_v1)``: the process's own cgroup from `proc_self_cgroup` (the v1 line
        naming the controller, else the v2 line ``0::/path``, under `root` or, on hybrid
        systems, `root`/unified), then every ancestor up to the hierarchy root. Without a
        usable `proc_self_cgroup`: `root` (v2 files) and `root`/`controller` (v1 files).
    """
    v1_line = v2_path = None
    try:
        with open(proc_self_cgroup, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ident, controllers, path = parts
        if ident == "0" and controllers == "":
            v2_path = path
        elif controller in controllers.split(","):
            # A controller bound to a v1 hierarchy is not available in v2: the v1 line wins.
            v1_line = (controllers, path)
    if v1_line is not None:
        controllers, path = v1_line
        base = os.path.join(root, controllers)
        if not os.path.exists(base):
            base = os.path.join(root, controller)
        is_v1 = True
    elif v2_path is not None:
        path, is_v1 = v2_path, False
        base = root
        if not os.path.exists(os.path.join(base, "cgroup.controllers")) and os.path.exists(os.path.join(base, "unified")):
            base = os.path.join(base, "unified")
    else:
        return [(root, False), (os.path.join(root, controller), True)]
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:  # a cgroup outside this cgroup namespace: only the mount's root
        parts = []
    return [(os.path.join(base, *parts[:k]) if k else base, is_v1) for k in range(len(parts), -1, -1)]


def _cgroup_room(proc_self_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """Bytes the process's cgroups still allow: min over the levels of limit - usage.

    Every level from the process's own cgroup up to the root caps the memory of everything
    below it, so the room is min_i (limit_i - usage_i) over the levels that set a limit
    (v2 ``memory.max``, ``"max"`` = unlimited, and ``memory.current``; v1
    ``memory.limit_in_bytes``, >= 2**60 = unlimited, and ``memory.usage_in_bytes``). A missing
    usage file counts as 0.

    Returns
    -------
    int or None
        None when no level sets a limit.
    """
    room = None
    for directory, is_v1 in _cgroup_dirs("memory", proc_self_cgroup, root):
        limit_file, usage_file = (
            ("memory.limit_in_bytes", "memory.usage_in_bytes") if is_v1 else ("memory.max", "memory.current")
        )
        limit = _read_int(os.path.join(directory, limit_file))
        if limit is None or limit < 0 or limit >= _UNLIMITED:
            continue
        usage = _read_int(os.path.join(directory, usage_file)) or 0
        level = max(limit - usage, 0)
        room = level if room is None else min(room, level)
    return room


def available_bytes():
    """Bytes this process can still allocate: MemAvailable, capped by the cgroup limits.

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
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


#: Requests below this size are not checked against the system (reading /proc costs ~50 us),
#: only against GPRAT_MEMORY_LIMIT when it is set.
SMALL_REQUEST = 16 << 20


_LIMIT_VARIABLE = "GPRAT_MEMORY_LIMIT"


def _limit_from_environment():
    text = os.environ.get(_LIMIT_VARIABLE, "").strip()
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
    # parsed only when set: every training step of a BO loop passes here
    avail = _limit_from_environment() if _LIMIT_VARIABLE in os.environ else None
    if avail is None:
        if needed < SMALL_REQUEST:
            return
        avail = available_bytes()
    if avail is not None and needed > avail:
        raise MemoryError(
            f"{what} needs about {_size(needed)} but only {_size(avail)} is available; "
            "use fewer samples, dtype=numpy.float32, or a machine with more memory"
        )
