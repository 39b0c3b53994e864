#pragma once
/// Task-graph accesses to the tiles of a TiledMatrix: the tile becomes a dependency of the task
/// that receives it (read-after-write, write-after-read, write-after-write; see runtime/access.hpp).
/// They live with the algorithms, not in tiles/, so that the tile descriptor does not know the
/// runtime.
#include "gprat/core/types.hpp"
#include "gprat/runtime/access.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::linalg {

/// Tile (i, j) of A, read by the task.
template <typename T>
runtime::Read<tiles::TileView<T>> read(const tiles::TiledMatrix<T>& A, Index i, Index j)
{
    return {A.tile(i, j)};
}

/// Tile (i, j) of A, written (or updated in place) by the task.
template <typename T>
runtime::Write<tiles::TileView<T>> write(const tiles::TiledMatrix<T>& A, Index i, Index j)
{
    return {A.tile(i, j)};
}

}  // namespace gprat::linalg
