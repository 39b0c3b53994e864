#pragma once
/// How many worker threads to use when the caller does not say.
#include "gprat/core/types.hpp"

namespace gprat::runtime {

/// Cores this process may use: the CPU affinity mask, further capped by a cgroup CPU quota
/// (cgroup v2 cpu.max or v1 cfs_quota/cfs_period, rounded up). At least 1.
Index available_cores();

/// GPRAT_NUM_THREADS if set to a positive integer, else available_cores().
/// @throws InvalidArgument if GPRAT_NUM_THREADS is set but not a positive integer.
Index default_thread_count();

}  // namespace gprat::runtime
