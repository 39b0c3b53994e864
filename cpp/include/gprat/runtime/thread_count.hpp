#pragma once
/// How many worker threads to use when the caller does not say.
#include <string>
#include <vector>

#include "gprat/core/types.hpp"

namespace gprat::runtime {

/// Cores this process may use: the CPU affinity mask, further capped by the CPU quota of the
/// process's cgroup (see cgroup_quota_cores). At least 1.
Index available_cores();

/// GPRAT_NUM_THREADS if set to a positive integer, else available_cores().
/// @throws InvalidArgument if GPRAT_NUM_THREADS is set but not a positive integer.
Index default_thread_count();

/// One cgroup directory whose limits apply to this process, and its file layout.
struct CgroupDir
{
    std::string path;
    bool v1;  ///< cgroup v1 files (cpu.cfs_quota_us, memory.limit_in_bytes), else v2 (cpu.max, memory.max)
};

/// The cgroup directories that limit `controller` ("cpu", "memory") for this process: its own
/// cgroup from /proc/self/cgroup (the v1 line naming the controller, else the v2 line "0::/path";
/// v2 under <root>, or <root>/unified on hybrid systems), then every ancestor up to the hierarchy
/// root; the effective limit is the smallest along that path. Without a usable
/// /proc/self/cgroup: <root> (v2 files) and <root>/<controller> (v1 files).
/// The rule is mirrored by python/gprat/_memory.py for memory limits.
/// @param proc_self_cgroup, root  the real files by default; tests pass a fake tree.
std::vector<CgroupDir> cgroup_dirs(const std::string& controller, const std::string& proc_self_cgroup = "/proc/self/cgroup",
                                   const std::string& root = "/sys/fs/cgroup");

/// CPU quota of this process's cgroup in cores, min over cgroup_dirs("cpu") of
/// ceil(quota / period) (v2 cpu.max "<quota> <period>", "max" = unlimited; v1 cpu.cfs_quota_us /
/// cpu.cfs_period_us, -1 = unlimited); 0 when no level sets a quota or the files are missing.
Index cgroup_quota_cores(const std::string& proc_self_cgroup = "/proc/self/cgroup",
                         const std::string& root = "/sys/fs/cgroup");

}  // namespace gprat::runtime
