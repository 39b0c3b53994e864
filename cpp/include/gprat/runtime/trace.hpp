#pragma once
/// Per-task timing records (name, worker, start, end), collected while tracing is enabled.
/// Cheap enough to stay compiled in: one relaxed atomic load per task when disabled.
#include <cstdint>
#include <string>
#include <vector>

#include "gprat/core/types.hpp"

namespace gprat::runtime {

struct TraceRecord
{
    const char* name;      ///< static string given to TaskGraph::add
    Index worker;          ///< worker index, 0-based; -1: the adding thread of a Schedule::caller graph
    std::int64_t start_ns; ///< steady clock, nanoseconds
    std::int64_t end_ns;
};

}  // namespace gprat::runtime
