#include "gprat/runtime/thread_count.hpp"

#include <sched.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "gprat/core/check.hpp"

namespace gprat::runtime {

namespace {

/// CPUs allowed by the affinity mask (taskset, Slurm's cpu binding).
Index affinity_cores()
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0) { return CPU_COUNT(&set); }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<Index>(hw);
}

/// CPU quota of the cgroup (containers, Kubernetes limits), rounded up; 0 when unlimited.
Index cgroup_quota_cores()
{
    // cgroup v2: "max 100000" or "<quota> <period>"
    if (std::ifstream f("/sys/fs/cgroup/cpu.max"); f) {
        std::string quota;
        double period = 0;
        if (f >> quota >> period && quota != "max" && period > 0) {
            return static_cast<Index>(std::ceil(std::stod(quota) / period));
        }
        return 0;
    }
    // cgroup v1
    std::ifstream q("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), p("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
    double quota = -1, period = 0;
    if (q >> quota && p >> period && quota > 0 && period > 0) { return static_cast<Index>(std::ceil(quota / period)); }
    return 0;
}

}  // namespace

Index available_cores()
{
    Index cores = affinity_cores();
    const Index quota = cgroup_quota_cores();
    if (quota > 0 && quota < cores) { cores = quota; }
    return cores < 1 ? 1 : cores;
}

Index default_thread_count()
{
    const char* env = std::getenv("GPRAT_NUM_THREADS");
    if (env != nullptr && *env != '\0') {
        char* end = nullptr;
        errno = 0;
        const long long value = std::strtoll(env, &end, 10);
        GPRAT_EXPECTS(errno == 0 && end != env && *end == '\0' && value > 0 && value <= 4096,
                      "GPRAT_NUM_THREADS must be a positive integer; got '" << env << "'");
        return static_cast<Index>(value);
    }
    return available_cores();
}

}  // namespace gprat::runtime
