"""Memory limits from cgroups (gprat._memory) on fake cgroup trees, and the C++ twin of the
directory rule (gprat::runtime::cgroup_dirs, used for the CPU quota) agreeing with it."""

import os

import pytest

from gprat import _core, _memory

GIB = 1 << 30


class FakeCgroup:
    """A temporary directory standing in for /sys/fs/cgroup, plus a fake /proc/self/cgroup."""

    def __init__(self, tmp_path):
        self.root = str(tmp_path / "root")
        self.proc_path = str(tmp_path / "proc_self_cgroup")
        os.makedirs(self.root)

    def proc(self, text):
        with open(self.proc_path, "w", encoding="ascii") as f:
            f.write(text)

    def put(self, rel, text):
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="ascii") as f:
            f.write(text)

    def room(self):
        return _memory._cgroup_room(self.proc_path, self.root)

    def dirs(self, controller):
        return _memory._cgroup_dirs(controller, self.proc_path, self.root)


@pytest.fixture
def cg(tmp_path):
    return FakeCgroup(tmp_path)


def test_v2_limit_of_the_own_cgroup(cg):
    cg.proc("0::/user.slice/job7\n")
    cg.put("cgroup.controllers", "cpu memory\n")
    cg.put("user.slice/memory.max", "max\n")
    cg.put("user.slice/job7/memory.max", f"{4 * GIB}\n")
    cg.put("user.slice/job7/memory.current", f"{1 * GIB}\n")
    assert cg.room() == 3 * GIB
    assert cg.dirs("memory") == [
        (os.path.join(cg.root, "user.slice", "job7"), False),
        (os.path.join(cg.root, "user.slice"), False),
        (cg.root, False),
    ]


def test_ancestor_limit_wins_when_smaller(cg):
    cg.proc("0::/a/b\n")
    cg.put("cgroup.controllers", "memory\n")
    cg.put("a/b/memory.max", f"{8 * GIB}\n")
    cg.put("a/b/memory.current", f"{1 * GIB}\n")
    cg.put("a/memory.max", f"{2 * GIB}\n")
    cg.put("a/memory.current", f"{GIB // 2}\n")  # the ancestor counts its whole subtree
    assert cg.room() == GIB + GIB // 2
    cg.put("a/memory.max", "max\n")
    assert cg.room() == 7 * GIB


def test_max_means_unlimited(cg):
    cg.proc("0::/a\n")
    cg.put("cgroup.controllers", "memory\n")
    cg.put("a/memory.max", "max\n")
    cg.put("a/memory.current", "12345\n")
    cg.put("memory.max", "max\n")
    assert cg.room() is None


def test_v1_layout(cg):
    # Hybrid: memory on a v1 hierarchy; the v2 line must not be used for memory.
    cg.proc("4:memory:/slurm/job1\n2:cpu,cpuacct:/slurm/job1\n0::/other\n")
    cg.put("memory/slurm/job1/memory.limit_in_bytes", f"{3 * GIB}\n")
    cg.put("memory/slurm/job1/memory.usage_in_bytes", f"{1 * GIB}\n")
    cg.put("memory/slurm/memory.limit_in_bytes", "9223372036854771712\n")  # v1's "unlimited"
    cg.put("unified/other/memory.max", "1\n")
    assert cg.room() == 2 * GIB
    assert cg.dirs("memory")[0] == (os.path.join(cg.root, "memory", "slurm", "job1"), True)
    cg.put("memory/slurm/memory.limit_in_bytes", f"{GIB}\n")
    assert cg.room() == GIB  # an ancestor's smaller limit wins in v1 too (usage 0 there)


def test_missing_files_mean_unlimited(cg, tmp_path):
    cg.proc("0::/a/b\n")
    cg.put("cgroup.controllers", "memory\n")
    assert cg.room() is None
    cg.put("a/b/memory.max", "garbage\n")
    assert cg.room() is None
    # No /proc/self/cgroup at all: the root files, as before (v2, then v1).
    none = FakeCgroup(tmp_path / "none")
    assert none.room() is None
    none.put("memory.max", f"{GIB}\n")
    none.put("memory.current", f"{GIB // 4}\n")
    assert none.room() == GIB - GIB // 4
    none_v1 = FakeCgroup(tmp_path / "none_v1")
    none_v1.put("memory/memory.limit_in_bytes", f"{GIB}\n")
    assert none_v1.room() == GIB


def test_usage_above_the_limit_leaves_no_room(cg):
    cg.proc("0::/a\n")
    cg.put("cgroup.controllers", "memory\n")
    cg.put("a/memory.max", "100\n")
    cg.put("a/memory.current", "200\n")
    assert cg.room() == 0


def test_available_bytes_is_capped_by_the_cgroup_room(monkeypatch):
    monkeypatch.setattr(_memory, "_cgroup_room", lambda: 12345)
    assert _memory.available_bytes() == 12345
    monkeypatch.setattr(_memory, "_cgroup_room", lambda: None)
    unlimited = _memory.available_bytes()
    assert unlimited is None or unlimited > 12345


@pytest.mark.parametrize(
    "proc, dirs",
    [
        ("0::/a/b/c\n", ["cgroup.controllers"]),
        ("0::/\n", ["cgroup.controllers"]),
        ("0::/x/./y//z\n", ["cgroup.controllers"]),
        ("0::/../outside\n", ["cgroup.controllers"]),
        ("1:name=systemd:/x\n0::/x\n", ["unified/cgroup.controllers"]),
        ("4:memory:/s/j\n2:cpu,cpuacct:/s/j\n0::/o\n", ["cpu,cpuacct/.keep", "memory/.keep"]),
        ("3:cpuacct,cpu:/j\n5:memory:/k\n", ["cpu/.keep", "memory/.keep"]),
        (None, []),
        ("garbage line\n", []),
    ],
)
@pytest.mark.parametrize("controller", ["cpu", "memory"])
def test_python_and_cpp_resolve_the_same_directories(cg, proc, dirs, controller):
    if proc is not None:
        cg.proc(proc)
    for rel in dirs:
        cg.put(rel, "")
    assert [tuple(d) for d in _core._cgroup_dirs(controller, cg.proc_path, cg.root)] == cg.dirs(controller)


def test_cpp_cpu_quota_of_the_own_cgroup(cg):
    # The CPU side (thread count) follows the same rule: own cgroup and ancestors, minimum.
    cg.proc("0::/a/b\n")
    cg.put("cgroup.controllers", "cpu\n")
    cg.put("a/b/cpu.max", "300000 100000\n")
    assert _core._cgroup_quota_cores(cg.proc_path, cg.root) == 3
    cg.put("a/cpu.max", "120000 100000\n")
    assert _core._cgroup_quota_cores(cg.proc_path, cg.root) == 2
