#pragma once
/// TiledMatrix<T>: a rows x cols matrix cut into nb x nbc column-major tiles (nbc = nb unless
/// given; the last tile row and column may be ragged). A symmetric matrix stores its lower tiles (i >= j) only.
/// The descriptor owns all layout arithmetic: tile shapes, global offsets, dense conversion. It
/// knows nothing of the task runtime: task accesses to its tiles are made by the algorithm layer
/// (linalg/tile_access.hpp).
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::tiles {

enum class Structure { General, SymmetricLower };

/// Process-wide count of the element bytes held by the tiles of all TiledMatrix objects (the
/// quantity TiledMatrix::bytes_needed predicts; alignment padding is not counted), and the most
/// held at once since the last reset_peak_tile_bytes(). Lets a caller check a memory estimate
/// against what the algorithms really allocate.
class TileMemory
{
  public:
    static std::size_t live() noexcept { return live_.load(std::memory_order_relaxed); }
    static std::size_t peak() noexcept { return peak_.load(std::memory_order_relaxed); }
    /// Start a new peak measurement from the bytes held now.
    static void reset_peak() noexcept { peak_.store(live(), std::memory_order_relaxed); }

    static void add(std::size_t bytes) noexcept
    {
        const std::size_t now = live_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
        std::size_t seen = peak_.load(std::memory_order_relaxed);
        while (now > seen && !peak_.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {}
    }
    static void remove(std::size_t bytes) noexcept { live_.fetch_sub(bytes, std::memory_order_relaxed); }

  private:
    static inline std::atomic<std::size_t> live_{0};
    static inline std::atomic<std::size_t> peak_{0};
};

namespace detail {
/// Frees one tile and takes its element bytes off TileMemory.
struct AlignedFree
{
    std::size_t bytes = 0;
    void operator()(void* p) const noexcept
    {
        TileMemory::remove(bytes);
        std::free(p);
    }
};

/// 64-byte aligned, uninitialised storage for `count` elements; throws std::bad_alloc.
template <typename T>
std::unique_ptr<T[], AlignedFree> aligned_array(Index count)
{
    const std::size_t element_bytes = static_cast<std::size_t>(count) * sizeof(T);
    const std::size_t bytes = ((element_bytes + 63) / 64) * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) { throw std::bad_alloc(); }
    TileMemory::add(element_bytes);
    return std::unique_ptr<T[], AlignedFree>(static_cast<T*>(p), AlignedFree{element_bytes});
}
}  // namespace detail

template <typename T>
class TiledMatrix
{
  public:
    TiledMatrix() = default;

    /// @param rows, cols  global shape; @param nb rows per tile (> 0; a tile never exceeds the matrix).
    TiledMatrix(Index rows, Index cols, Index nb, Structure structure = Structure::General)
        : TiledMatrix(rows, cols, nb, nb, structure)
    {}

    /// @param nbc columns per tile; a symmetric matrix needs nbc == nb.
    TiledMatrix(Index rows, Index cols, Index nb, Index nbc, Structure structure = Structure::General)
        : rows_(rows), cols_(cols), structure_(structure)
    {
        GPRAT_EXPECTS(rows >= 0 && cols >= 0, "matrix shape must be non-negative; got " << rows << "x" << cols);
        GPRAT_EXPECTS(nb > 0 && nbc > 0, "tile_size must be positive; got " << nb << "x" << nbc);
        GPRAT_EXPECTS(structure == Structure::General || (rows == cols && nb == nbc),
                      "a symmetric tiled matrix must be square with square tiles; got " << rows << "x" << cols);
        nb_ = nb;
        nbc_ = nbc;
        mt_ = (rows + nb_ - 1) / nb_;
        nt_ = (cols + nbc_ - 1) / nbc_;
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
    /// Columns per tile.
    Index nbc() const noexcept { return nbc_; }
    /// Number of tile rows (mt) and tile columns (nt).
    Index mt() const noexcept { return mt_; }
    Index nt() const noexcept { return nt_; }
    Structure structure() const noexcept { return structure_; }
    bool symmetric() const noexcept { return structure_ == Structure::SymmetricLower; }

    Index tile_rows(Index i) const noexcept { return std::min(nb_, rows_ - i * nb_); }
    Index tile_cols(Index j) const noexcept { return std::min(nbc_, cols_ - j * nbc_); }
    /// Global index of the first row of tile row i.
    Index row0(Index i) const noexcept { return i * nb_; }
    /// Global index of the first column of tile column j.
    Index col0(Index j) const noexcept { return j * nbc_; }
    bool stored(Index i, Index j) const noexcept { return !symmetric() || i >= j; }

    TileView<T> tile(Index i, Index j) const
    {
        GPRAT_ASSERT(i >= 0 && i < mt_ && j >= 0 && j < nt_ && stored(i, j));
        return TileView<T>(tiles_[slot(i, j)].get(), tile_rows(i), tile_cols(j), tile_rows(i));
    }

    /// Bytes the tiles of a rows x cols matrix with nb x nbc tiles hold (what a memory estimate
    /// must count; TileMemory counts the same bytes as they are allocated).
    static std::size_t bytes_needed(Index rows, Index cols, Index nb, Index nbc, Structure structure)
    {
        const Index b = std::max<Index>(1, nb), bc = std::max<Index>(1, nbc);
        const Index mt = (rows + b - 1) / b, nt = (cols + bc - 1) / bc;
        std::size_t total = 0;
        for (Index j = 0; j < nt; ++j)
            for (Index i = (structure == Structure::SymmetricLower ? j : 0); i < mt; ++i)
                total += static_cast<std::size_t>(std::min(b, rows - i * b) * std::min(bc, cols - j * bc)) * sizeof(T);
        return total;
    }
    /// Square nb x nb tiles.
    static std::size_t bytes_needed(Index rows, Index cols, Index nb, Structure structure)
    {
        return bytes_needed(rows, cols, nb, nb, structure);
    }

    /// A deep copy (every stored tile copied).
    TiledMatrix clone() const
    {
        TiledMatrix c(rows_, cols_, nb_, nbc_, structure_);
        for (Index j = 0; j < nt_; ++j)
            for (Index i = 0; i < mt_; ++i)
                if (stored(i, j))
                    std::memcpy(c.tiles_[c.slot(i, j)].get(), tiles_[slot(i, j)].get(),
                                sizeof(T) * static_cast<std::size_t>(tile_rows(i) * tile_cols(j)));
        return c;
    }

    // Growing a matrix (adding rows and columns at the end) without copying what stays: a tile of
    // the grown matrix whose shape equals this one's tile (i, j) holds the same entries, so it can be
    // moved instead of copied. Two phases keep a failure harmless: grown_shell allocates every
    // other tile (it may throw std::bad_alloc; nothing is moved yet), adopt_kept_tiles then moves the
    // kept tiles in and cannot fail.

    /// A rows x cols matrix with this one's tiling and structure (rows >= rows(), cols >= cols())
    /// whose tiles are allocated, uninitialised, except those this matrix can give
    /// (kept_shape(i, j)), which stay empty until adopt_kept_tiles.
    TiledMatrix grown_shell(Index rows, Index cols) const
    {
        GPRAT_EXPECTS(rows >= rows_ && cols >= cols_, "grown_shell: a matrix can only grow; got " << rows << "x" << cols
                                                                                                   << " from " << rows_ << "x"
                                                                                                   << cols_);
        TiledMatrix g;
        g.rows_ = rows;
        g.cols_ = cols;
        g.nb_ = nb_;
        g.nbc_ = nbc_;
        g.structure_ = structure_;
        g.mt_ = (rows + nb_ - 1) / nb_;
        g.nt_ = (cols + nbc_ - 1) / nbc_;
        g.tiles_.resize(static_cast<std::size_t>(g.mt_ * g.nt_));
        for (Index j = 0; j < g.nt_; ++j)
            for (Index i = 0; i < g.mt_; ++i)
                if (g.stored(i, j) && !keeps_tile_in(g, i, j))
                    g.tiles_[g.slot(i, j)] = detail::aligned_array<T>(g.tile_rows(i) * g.tile_cols(j));
        return g;
    }

    /// Whether tile (i, j) of `grown` (from grown_shell) is this matrix's tile (i, j), same shape.
    bool keeps_tile_in(const TiledMatrix& grown, Index i, Index j) const noexcept
    {
        return i < mt_ && j < nt_ && stored(i, j) && tile_rows(i) == grown.tile_rows(i) && tile_cols(j) == grown.tile_cols(j);
    }

    /// Move the tiles `from` keeps in this grown shell (from.keeps_tile_in) into it; `from` loses them.
    void adopt_kept_tiles(TiledMatrix& from) noexcept
    {
        for (Index j = 0; j < nt_; ++j)
            for (Index i = 0; i < mt_; ++i)
                if (from.keeps_tile_in(*this, i, j)) tiles_[slot(i, j)] = std::move(from.tiles_[from.slot(i, j)]);
    }

  private:
    std::size_t slot(Index i, Index j) const noexcept { return static_cast<std::size_t>(i + j * mt_); }

    Index rows_ = 0, cols_ = 0, nb_ = 1, nbc_ = 1, mt_ = 0, nt_ = 0;
    Structure structure_ = Structure::General;
    std::vector<std::unique_ptr<T[], detail::AlignedFree>> tiles_;
};

/// Copy tile (ti, tj) of A from the dense row-major matrix a (row stride lda).
template <typename T>
void copy_tile_from_row_major(const T* a, Index lda, const TiledMatrix<T>& A, Index ti, Index tj)
{
    const TileView<T> t = A.tile(ti, tj);
    const T* src = a + A.row0(ti) * lda + A.col0(tj);
    for (Index j = 0; j < t.cols(); ++j)
        for (Index i = 0; i < t.rows(); ++i) t(i, j) = src[i * lda + j];
}

/// Copy tile (ti, tj) of A into the dense row-major matrix a. With zero_upper, entries of a
/// symmetric A's diagonal tiles above the diagonal are written as 0 (A holds a triangle).
template <typename T>
void copy_tile_to_row_major(const TiledMatrix<T>& A, Index ti, Index tj, T* a, Index lda, bool zero_upper)
{
    const TileView<T> t = A.tile(ti, tj);
    T* dst = a + A.row0(ti) * lda + A.col0(tj);
    const bool triangle = A.symmetric() && zero_upper && ti == tj;
    for (Index i = 0; i < t.rows(); ++i)
        for (Index j = 0; j < t.cols(); ++j) dst[i * lda + j] = (triangle && j > i) ? T(0) : t(i, j);
}

/// Copy a dense column-major matrix (column stride lda) into the stored tiles of A. A symmetric
/// A's diagonal tiles receive their upper part too (the lower-triangular kernels ignore it).
template <typename T>
void copy_from_col_major(const T* a, Index lda, const TiledMatrix<T>& A)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti) {
            if (!A.stored(ti, tj)) continue;
            const TileView<T> t = A.tile(ti, tj);
            for (Index j = 0; j < t.cols(); ++j)
                std::copy_n(a + A.row0(ti) + (A.col0(tj) + j) * lda, t.rows(), t.data() + j * t.ld());
        }
}

/// Copy the stored tiles of A into a dense column-major matrix (column stride lda); the part of
/// `a` no stored tile covers is left as it was.
template <typename T>
void copy_to_col_major(const TiledMatrix<T>& A, T* a, Index lda)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti) {
            if (!A.stored(ti, tj)) continue;
            const TileView<T> t = A.tile(ti, tj);
            for (Index j = 0; j < t.cols(); ++j)
                std::copy_n(t.data() + j * t.ld(), t.rows(), a + A.row0(ti) + (A.col0(tj) + j) * lda);
        }
}

/// Copy a dense row-major matrix (row stride lda) into the stored tiles of A.
template <typename T>
void copy_from_row_major(const T* a, Index lda, const TiledMatrix<T>& A)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti)
            if (A.stored(ti, tj)) copy_tile_from_row_major(a, lda, A, ti, tj);
}

/// Copy the stored tiles of A into a dense row-major matrix; with zero_upper, the part of `a`
/// above the diagonal of a symmetric A is set to zero (A holds a lower-triangular factor).
template <typename T>
void copy_to_row_major(const TiledMatrix<T>& A, T* a, Index lda, bool zero_upper = true)
{
    for (Index tj = 0; tj < A.nt(); ++tj)
        for (Index ti = 0; ti < A.mt(); ++ti) {
            if (A.stored(ti, tj)) {
                copy_tile_to_row_major(A, ti, tj, a, lda, zero_upper);
            } else if (zero_upper) {
                for (Index i = 0; i < A.tile_rows(ti); ++i)
                    std::memset(a + (A.row0(ti) + i) * lda + A.col0(tj), 0, sizeof(T) * A.tile_cols(tj));
            }
        }
}

}  // namespace gprat::tiles
