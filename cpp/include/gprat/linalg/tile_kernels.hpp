#pragma once
/// Kernels on single tiles: the ONLY place that calls BLAS/LAPACK. Each kernel is pure (no
/// runtime, no allocation) and generic in the precision T (float or double); the s/d routine is
/// picked at compile time. Tiles are column-major TileViews; shapes are checked by assertions.
///
/// The provider is chosen at build time (CMake GPRAT_BLAS): the scipy-openblas32 wheel, whose
/// symbols carry the prefix scipy_, a system CBLAS/LAPACKE, or MKL.
#include <cmath>
#include <type_traits>

#if defined(GPRAT_BLAS_SCIPY_OPENBLAS)
#include <cblas.h>
#include <lapacke.h>
#define GPRAT_CBLAS(name) scipy_cblas_##name
#define GPRAT_LAPACKE(name) scipy_LAPACKE_##name
#elif defined(GPRAT_BLAS_MKL)
#include <mkl.h>
#define GPRAT_CBLAS(name) cblas_##name
#define GPRAT_LAPACKE(name) LAPACKE_##name
#else
#include <cblas.h>
#include <lapacke.h>
#define GPRAT_CBLAS(name) cblas_##name
#define GPRAT_LAPACKE(name) LAPACKE_##name
#endif

#include "gprat/core/check.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/core/types.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::linalg {

/// Make the BLAS provider single-threaded: the runtime, not BLAS, runs tiles in parallel.
void use_single_threaded_blas();

}  // namespace gprat::linalg

namespace gprat::linalg::tile {

using tiles::TileView;

namespace detail {
inline CBLAS_TRANSPOSE cblas(Op op) { return op == Op::Trans ? CblasTrans : CblasNoTrans; }
inline CBLAS_UPLO cblas(Uplo u) { return u == Uplo::Lower ? CblasLower : CblasUpper; }
inline CBLAS_SIDE cblas(Side s) { return s == Side::Left ? CblasLeft : CblasRight; }
inline CBLAS_DIAG cblas(Diag d) { return d == Diag::Unit ? CblasUnit : CblasNonUnit; }
inline char lapack(Uplo u) { return u == Uplo::Lower ? 'L' : 'U'; }
template <typename T> constexpr bool is_float = std::is_same_v<T, float>;
static_assert(sizeof(Index) >= sizeof(lapack_int));
}  // namespace detail

/// A <- L with A = L L^T, lower triangle of a square tile (upper triangle left untouched).
/// @param row0 global index of the tile's first row, so the error names the global minor.
/// @throws NotPositiveDefinite with the 1-based global order of the failing leading minor.
template <typename T>
void potrf(TileView<T> a, Index row0)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    lapack_int info = 0;
    if constexpr (detail::is_float<T>) {
        info = GPRAT_LAPACKE(spotrf_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    } else {
        info = GPRAT_LAPACKE(dpotrf_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    }
    if (info > 0) { throw NotPositiveDefinite(row0 + info); }
    if (info < 0) { throw LapackError("potrf", info); }
    // Reference LAPACK stops at a NaN pivot (DISNAN); optimized builds may not. A NaN on the
    // diagonal of L means the minor of that order had no (finite) positive pivot.
    for (Index j = 0; j < a.rows(); ++j)
        if (!(a(j, j) > T(0))) { throw NotPositiveDefinite(row0 + j + 1); }
}

/// A <- A^{-1} for a lower-triangular, non-unit tile.
/// @throws NotPositiveDefinite if a diagonal entry is exactly zero (singular factor).
template <typename T>
void trtri(TileView<T> a, Index row0)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    lapack_int info = 0;
    if constexpr (detail::is_float<T>) {
        info = GPRAT_LAPACKE(strtri_work)(LAPACK_COL_MAJOR, 'L', 'N', a.rows(), a.data(), a.ld());
    } else {
        info = GPRAT_LAPACKE(dtrtri_work)(LAPACK_COL_MAJOR, 'L', 'N', a.rows(), a.data(), a.ld());
    }
    if (info > 0) { throw NotPositiveDefinite(row0 + info); }
    if (info < 0) { throw LapackError("trtri", info); }
}

/// A <- L^T L for the lower-triangular tile L held in A (lower triangle of the result).
template <typename T>
void lauum(TileView<T> a)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    lapack_int info = 0;
    if constexpr (detail::is_float<T>) {
        info = GPRAT_LAPACKE(slauum_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    } else {
        info = GPRAT_LAPACKE(dlauum_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    }
    if (info != 0) { throw LapackError("lauum", info); }
}

/// B <- alpha op(A)^{-1} B (side Left) or B <- alpha B op(A)^{-1} (side Right); A triangular.
template <typename T>
void trsm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    GPRAT_ASSERT(a.rows() == a.cols() && (side == Side::Left ? a.rows() == b.rows() : a.rows() == b.cols()));
    if constexpr (detail::is_float<T>) {
        GPRAT_CBLAS(strsm)(CblasColMajor, detail::cblas(side), detail::cblas(uplo), detail::cblas(op),
                           detail::cblas(diag), b.rows(), b.cols(), alpha, a.data(), a.ld(), b.data(), b.ld());
    } else {
        GPRAT_CBLAS(dtrsm)(CblasColMajor, detail::cblas(side), detail::cblas(uplo), detail::cblas(op),
                           detail::cblas(diag), b.rows(), b.cols(), alpha, a.data(), a.ld(), b.data(), b.ld());
    }
}

/// B <- alpha op(A) B (side Left) or B <- alpha B op(A) (side Right); A triangular.
template <typename T>
void trmm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    GPRAT_ASSERT(a.rows() == a.cols() && (side == Side::Left ? a.rows() == b.rows() : a.rows() == b.cols()));
    if constexpr (detail::is_float<T>) {
        GPRAT_CBLAS(strmm)(CblasColMajor, detail::cblas(side), detail::cblas(uplo), detail::cblas(op),
                           detail::cblas(diag), b.rows(), b.cols(), alpha, a.data(), a.ld(), b.data(), b.ld());
    } else {
        GPRAT_CBLAS(dtrmm)(CblasColMajor, detail::cblas(side), detail::cblas(uplo), detail::cblas(op),
                           detail::cblas(diag), b.rows(), b.cols(), alpha, a.data(), a.ld(), b.data(), b.ld());
    }
}

/// C <- alpha op(A) op(A)^T + beta C, lower triangle of C (op = NoTrans) or
/// C <- alpha A^T A + beta C (op = Trans).
template <typename T>
void syrk(Op op, T alpha, TileView<T> a, T beta, TileView<T> c)
{
    const Index k = op == Op::NoTrans ? a.cols() : a.rows();
    GPRAT_ASSERT(c.rows() == c.cols() && c.rows() == (op == Op::NoTrans ? a.rows() : a.cols()));
    if constexpr (detail::is_float<T>) {
        GPRAT_CBLAS(ssyrk)(CblasColMajor, CblasLower, detail::cblas(op), c.rows(), k, alpha, a.data(), a.ld(), beta,
                           c.data(), c.ld());
    } else {
        GPRAT_CBLAS(dsyrk)(CblasColMajor, CblasLower, detail::cblas(op), c.rows(), k, alpha, a.data(), a.ld(), beta,
                           c.data(), c.ld());
    }
}

/// C <- alpha op(A) op(B) + beta C.
template <typename T>
void gemm(Op op_a, Op op_b, T alpha, TileView<T> a, TileView<T> b, T beta, TileView<T> c)
{
    const Index m = op_a == Op::NoTrans ? a.rows() : a.cols();
    const Index k = op_a == Op::NoTrans ? a.cols() : a.rows();
    const Index n = op_b == Op::NoTrans ? b.cols() : b.rows();
    GPRAT_ASSERT(c.rows() == m && c.cols() == n && k == (op_b == Op::NoTrans ? b.rows() : b.cols()));
    if constexpr (detail::is_float<T>) {
        GPRAT_CBLAS(sgemm)(CblasColMajor, detail::cblas(op_a), detail::cblas(op_b), m, n, k, alpha, a.data(), a.ld(),
                           b.data(), b.ld(), beta, c.data(), c.ld());
    } else {
        GPRAT_CBLAS(dgemm)(CblasColMajor, detail::cblas(op_a), detail::cblas(op_b), m, n, k, alpha, a.data(), a.ld(),
                           b.data(), b.ld(), beta, c.data(), c.ld());
    }
}

}  // namespace gprat::linalg::tile
