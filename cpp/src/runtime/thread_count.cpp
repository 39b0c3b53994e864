#include "gprat/runtime/thread_count.hpp"

#include <sched.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "gprat/core/check.hpp"

namespace gprat::runtime {

namespace fs = std::filesystem;

std::vector<CgroupDir> cgroup_dirs(const std::string& controller, const std::string& proc_self_cgroup,
                                   const std::string& root)
{
    // Mirrored by python/gprat/_memory.py (_cgroup_dirs): keep the two rules identical.
    // /proc/self/cgroup has one line per hierarchy, "id:controllers:path": cgroup v1 lines name
    // their controllers ("4:memory:/a/b", "2:cpu,cpuacct:/a"), the v2 line is "0::/a/b". A
    // controller bound to a v1 hierarchy is not available in v2, so a v1 line wins.
    std::string v1_controllers, v1_path, v2_path;
    bool have_v1 = false, have_v2 = false;
    if (std::ifstream f(proc_self_cgroup); f) {
        for (std::string line; std::getline(f, line);) {
            const std::size_t a = line.find(':');
            const std::size_t b = a == std::string::npos ? a : line.find(':', a + 1);
            if (b == std::string::npos) { continue; }
            const std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
            if (id == "0" && controllers.empty()) {
                have_v2 = true;
                v2_path = path;
                continue;
            }
            std::istringstream list(controllers);
            for (std::string c; std::getline(list, c, ',');) {
                if (c == controller) {
                    have_v1 = true;
                    v1_controllers = controllers;
                    v1_path = path;
                }
            }
        }
    }
    fs::path base;
    std::string path;
    bool v1 = false;
    if (have_v1) {
        // The hierarchy is mounted at <root>/cpu,cpuacct (often with a <root>/cpu link) or <root>/memory.
        base = fs::path(root) / v1_controllers;
        if (!fs::exists(base)) { base = fs::path(root) / controller; }
        path = v1_path;
        v1 = true;
    } else if (have_v2) {
        // Unified mount at <root>; on hybrid systems at <root>/unified.
        base = fs::path(root);
        if (!fs::exists(base / "cgroup.controllers") && fs::exists(base / "unified")) { base /= "unified"; }
        path = v2_path;
    } else {
        // No /proc/self/cgroup: the root files, v2 layout then v1.
        return {{fs::path(root).string(), false}, {(fs::path(root) / controller).string(), true}};
    }
    // The own cgroup, then every ancestor up to the hierarchy root: each level's limit applies.
    // A path with ".." (a cgroup outside this cgroup namespace) cannot be resolved under the
    // mount: only the mount's root then.
    fs::path rel;
    bool outside = false;
    for (const fs::path& part : fs::path(path).relative_path()) {
        if (part == "..") { outside = true; }
        else if (!part.empty() && part != ".") { rel /= part; }
    }
    if (outside) { rel.clear(); }
    std::vector<CgroupDir> dirs;
    for (;;) {
        dirs.push_back({(rel.empty() ? base : base / rel).string(), v1});
        if (rel.empty()) { break; }
        rel = rel.parent_path();
    }
    return dirs;
}

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

/// Quota of one cgroup directory in cores, rounded up (ceil(quota / period)); 0 when unlimited
/// or unreadable.
Index dir_quota_cores(const CgroupDir& dir)
{
    if (!dir.v1) {
        // cgroup v2 cpu.max: "max 100000" (unlimited) or "<quota> <period>" in microseconds.
        std::ifstream f(fs::path(dir.path) / "cpu.max");
        std::string quota;
        double period = 0;
        if (f >> quota >> period && quota != "max" && period > 0) {
            char* end = nullptr;
            const double q = std::strtod(quota.c_str(), &end);
            if (end != quota.c_str() && q > 0) { return static_cast<Index>(std::ceil(q / period)); }
        }
        return 0;
    }
    // cgroup v1: cpu.cfs_quota_us is -1 when unlimited.
    std::ifstream q(fs::path(dir.path) / "cpu.cfs_quota_us"), p(fs::path(dir.path) / "cpu.cfs_period_us");
    double quota = -1, period = 0;
    if (q >> quota && p >> period && quota > 0 && period > 0) { return static_cast<Index>(std::ceil(quota / period)); }
    return 0;
}

}  // namespace

Index cgroup_quota_cores(const std::string& proc_self_cgroup, const std::string& root)
{
    Index cores = 0;
    for (const CgroupDir& dir : cgroup_dirs("cpu", proc_self_cgroup, root)) {
        const Index q = dir_quota_cores(dir);
        if (q > 0 && (cores == 0 || q < cores)) { cores = q; }
    }
    return cores;
}

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
