#pragma once
/// Automatic tile size (tile_size=None).
#include <algorithm>

#include "gprat/core/types.hpp"

namespace gprat::gp {

/// Choose nb from the problem size n and the worker count. Small problems use one tile (task
/// overhead dominates); otherwise the largest of a few BLAS-friendly sizes that still leaves
/// enough tile rows nt = ceil(n/nb) to keep every worker busy through the factorization's
/// shrinking trailing updates (about 4 panels per worker, and at least 8). One worker has no
/// one to keep busy: larger tiles only make each BLAS call more efficient, so 2 tile rows do.
/// The element type does not enter: a float32 sweep (benchmarks/tile_sweep.py) put this rule
/// within 4% of the best fixed size at n = 2048..8192, as for float64.
/// Tuned with `python benchmarks/run.py --sections tiles` (see benchmarks/README.md).
inline Index choose_tile_size(Index n, Index n_threads)
{
    if (n <= 256) { return std::max<Index>(n, 1); }
    const Index min_tiles = n_threads <= 1 ? 2 : std::max<Index>(8, 4 * n_threads);
    constexpr Index candidates[] = {1024, 768, 512, 384, 256, 192, 128, 96, 64};
    for (Index nb : candidates) {
        if ((n + nb - 1) / nb >= min_tiles) { return nb; }
    }
    return 64;
}

}  // namespace gprat::gp
