#pragma once
/// TiledMatrix<T>: a rows x cols matrix cut into nb x nb column-major tiles (the last tile row
/// and column may be ragged). A symmetric matrix stores its lower tiles (i >= j) only.
/// The descriptor owns all layout arithmetic: tile shapes, global offsets, dense conversion.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"
#include "gprat/runtime/access.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::tiles {

enum class Structure { General, SymmetricLower };

namespace detail {
struct AlignedFree
{
    void operator()(void* p) const noexcept { std::free(p); }
};

/// 64-byte aligned, uninitialised storage for `count` elements; throws std::bad_alloc.
template <typename T>
std::unique_ptr<T[], AlignedFree> aligned_array(Index count)
{
    const std::size_t bytes = ((static_cast<std::size_t>(count) * sizeof(T) + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) { throw std::bad_alloc(); }
    return std::unique_ptr<T[], AlignedFree>(static_cast<T*>(p));
}
}  // namespace detail

template <typename T>
class TiledMatrix
{
  public:
    TiledMatrix() = default;

    /// @param rows, cols  global shape; @param nb tile size (> 0; a tile never exceeds the matrix).
    TiledMatrix(Index rows, Index cols, Index nb, Structure structure = Structure::General)
        : rows_(rows), cols_(cols), structure_(structure)
    {
        GPRAT_EXPECTS(rows >= 0 && cols >= 0, "matrix shape must be non-negative; got " << rows << "x" << cols);
        GPRAT_EXPECTS(nb > 0, "tile_size must be positive; got " << nb);
        GPRAT_EXPECTS(structure == Structure::General || rows == cols,
                      "a symmetric tiled matrix must be square; got " << rows << "x" << cols);
        nb_ = nb;
        mt_ = (rows + nb_ - 1) / nb_;
        nt_ = (cols + nb_ - 1) / nb_;
        tiles_.resize(static_cast<std::size_t>(mt_ * nt_));
        for (Index j = 0; j < nt_; ++j) {
            for (Index i = 0; i < mt_; ++i) {
                if (stored(i, j)) { tiles_[slot(i, j)] = detail::aligned_array<T>(tile_rows(i) * tile_cols(j)); }
            }
        }
    }

    Index rows() const noexcept { return rows_; }
    Index cols() const noexcept { return cols_; }
    Index nb() const noexcept { return nb_; }
    /// Number of tile rows (mt) and tile columns (nt).
    Index mt() const noexcept { return mt_; }
    Index nt() const noexcept { return nt_; }
    Structure structure() const noexcept { return structure_; }
    bool symmetric() const noexcept { return structure_ == Structure::SymmetricLower; }

    Index tile_rows(Index i) const noexcept { return std::min(nb_, rows_ - i * nb_); }
    Index tile_cols(Index j) const noexcept { return std::min(nb_, cols_ - j * nb_); }
    /// Global index of the first row of tile row i (and of the first column of tile column i).
    Index row0(Index i) const noexcept { return i * nb_; }
    bool stored(Index i, Index j) const noexcept { return !symmetric() || i >= j; }

    TileView<T> tile(Index i, Index j) const
    {
        GPRAT_ASSERT(i >= 0 && i < mt_ && j >= 0 && j < nt_ && stored(i, j));
        return TileView<T>(tiles_[slot(i, j)].get(), tile_rows(i), tile_cols(j), tile_rows(i));
    }

    /// Task-graph accesses: the tile becomes a dependency of the task that receives it.
    runtime::Read<TileView<T>> read(Index i, Index j) const { return {tile(i, j)}; }
    runtime::Write<TileView<T>> write(Index i, Index j) const { return {tile(i, j)}; }

    /// Bytes held by the tiles (what a memory estimate must count).
    static std::size_t bytes_needed(Index rows, Index cols, Index nb, Structure structure)
    {
        const Index b = std::max<Index>(1, nb);
        const Index mt = (rows + b - 1) / b, nt = (cols + b - 1) / b;
        std::size_t total = 0;
        for (Index j = 0; j < nt; ++j)
            for (Index i = (structure == Structure::SymmetricLower ? j : 0); i < mt; ++i)
                total += static_cast<std::size_t>(std::min(b, rows - i * b) * std::min(b, cols - j * b)) * sizeof(T);
        return total;
    }

  private:
    std::size_t slot(Index i, Index j) const noexcept { return static_cast<std::size_t>(i + j * mt_); }

    Index rows_ = 0, cols_ = 0, nb_ = 1, mt_ = 0, nt_ = 0;
    Structure structure_ = Structure::General;
    std::vector<std::unique_ptr<T[], detail::AlignedFree>> tiles_;
};

/// Copy a dense row-major matrix (row stride lda) into the stored tiles of A.
template <typename T>
void copy_from_row_major(const T* a, Index lda, const TiledMatrix<T>& A)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti) {
            if (!A.stored(ti, tj)) continue;
            const TileView<T> t = A.tile(ti, tj);
            for (Index j = 0; j < t.cols(); ++j)
                for (Index i = 0; i < t.rows(); ++i) t(i, j) = a[(A.row0(ti) + i) * lda + A.row0(tj) + j];
        }
}

/// Copy the stored tiles of A into a dense row-major matrix; for a symmetric A the upper part
/// of `a` is set to zero (A holds a lower-triangular factor or the lower half of a symmetric matrix).
template <typename T>
void copy_to_row_major(const TiledMatrix<T>& A, T* a, Index lda, bool zero_upper = true)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti) {
            if (!A.stored(ti, tj)) continue;
            const TileView<T> t = A.tile(ti, tj);
            for (Index i = 0; i < t.rows(); ++i)
                for (Index j = 0; j < t.cols(); ++j) {
                    const Index gi = A.row0(ti) + i, gj = A.row0(tj) + j;
                    a[gi * lda + gj] = (A.symmetric() && zero_upper && gj > gi) ? T(0) : t(i, j);
                }
        }
    if (A.symmetric() && zero_upper) {
        for (Index tj = 0; tj < A.nt(); ++tj)
            for (Index ti = 0; ti < tj; ++ti)
                for (Index i = 0; i < A.tile_rows(ti); ++i)
                    std::memset(a + (A.row0(ti) + i) * lda + A.row0(tj), 0, sizeof(T) * A.tile_cols(tj));
    }
}

}  // namespace gprat::tiles
