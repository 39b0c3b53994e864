#pragma once
/// Data-parallel loops of KISS-GP as tasks on the runtime: [0, count) cut into chunks of a FIXED
/// size (never derived from the thread count), one task per chunk. A reduction writes one
/// partial result per chunk and sums them in chunk order afterwards, so every result is the
/// same whatever the number of threads.
#include <algorithm>

#include "gprat/core/types.hpp"
#include "gprat/runtime/task_graph.hpp"

namespace gprat::approx::kiss_gp {

/// Number of chunks of `chunk` items in [0, count).
inline Index chunk_count(Index count, Index chunk) { return (count + chunk - 1) / chunk; }

/// f(begin, end) for each chunk of [0, count), as runtime tasks; returns when all have run.
/// A single chunk runs inline (no graph). Exceptions in f are rethrown here.
template <typename F>
void parallel_chunks(const char* name, Index count, Index chunk, const F& f)
{
    if (count <= 0) return;
    if (count <= chunk) {
        f(Index{0}, count);
        return;
    }
    runtime::TaskGraph g;
    for (Index b = 0; b < count; b += chunk) {
        const Index e = std::min(count, b + chunk);
        g.add(name, 0, [&f, b, e] { f(b, e); });
    }
    g.wait();
}

}  // namespace gprat::approx::kiss_gp
