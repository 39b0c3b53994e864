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

/// Make the BLAS provider single-threaded process-wide (C++ tests and tools; the Python module
/// does not call it, since it would reach NumPy's and SciPy's BLAS where they share ours).
void use_single_threaded_blas();

/// Make BLAS calls of the calling thread single-threaded: the runtime, not BLAS, runs tiles in
/// parallel. Installed as the executor's worker-start hook (runtime::Executor::set_worker_start).
/// MKL: mkl_set_num_threads_local(1), this thread only. scipy-openblas (default): the
/// process-wide setter of gprat's private copy, which NumPy and SciPy do not use. System BLAS:
/// nothing (it may be NumPy's own library; set OPENBLAS_NUM_THREADS=1 instead).
void use_single_threaded_blas_in_this_thread();

/// The BLAS thread count the calling thread's BLAS calls would use; -1 if the provider has no query.
int blas_threads_in_this_thread();

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

namespace detail {

// The plain BLAS calls (s or d picked at compile time) behind the public kernels below and the
// recursive tile kernels, which call them on sub-blocks of a tile.

inline Op transposed(Op op) { return op == Op::Trans ? Op::NoTrans : Op::Trans; }

// One right-hand side (a column of B for side Left, a row for side Right) goes to trsv, and a
// product with one column or row of the result to gemv: with one vector the call only streams
// the tile, and OpenBLAS's trsm and gemm with n = 1 read it at about half the speed of trsv and
// gemv (OpenBLAS 0.3.34, one thread, 512 x 512 double tiles from memory: dtrsm 257 us against
// dtrsv 123 us, dgemm 335 against dgemv 174). These are the solves of fit (z = L \ y,
// alpha = L^T \ z), of add_observations and of predict's variance for one point.

template <typename T>
void blas_trsv(Uplo uplo, Op op, Diag diag, TileView<T> a, T* x, Index incx)
{
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(strsv)(CblasColMajor, cblas(uplo), cblas(op), cblas(diag), a.rows(), a.data(), a.ld(), x, incx);
    } else {
        GPRAT_CBLAS(dtrsv)(CblasColMajor, cblas(uplo), cblas(op), cblas(diag), a.rows(), a.data(), a.ld(), x, incx);
    }
}

template <typename T>
void blas_scal(Index n, T alpha, T* x, Index incx)
{
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(sscal)(n, alpha, x, incx);
    } else {
        GPRAT_CBLAS(dscal)(n, alpha, x, incx);
    }
}

/// y <- alpha op(A) x + beta y, A stored m x n.
template <typename T>
void blas_gemv(Op op, Index m, Index n, T alpha, const T* a, Index lda, const T* x, Index incx, T beta, T* y, Index incy)
{
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(sgemv)(CblasColMajor, cblas(op), m, n, alpha, a, lda, x, incx, beta, y, incy);
    } else {
        GPRAT_CBLAS(dgemv)(CblasColMajor, cblas(op), m, n, alpha, a, lda, x, incx, beta, y, incy);
    }
}

/// Whether B <- alpha op(A)^{-1} B (Left) or B op(A)^{-1} (Right) has a single right-hand side.
template <typename T>
bool one_right_hand_side(Side side, TileView<T> b)
{
    return side == Side::Left ? b.cols() == 1 : b.rows() == 1;
}

template <typename T>
void blas_trsm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    if (a.rows() > 0 && one_right_hand_side(side, b)) {
        // Left: op(A) x = alpha b.  Right: x op(A) = alpha b, i.e. op(A)^T x^T = alpha b^T.
        const Index inc = side == Side::Left ? 1 : b.ld();
        if (alpha != T(1)) blas_scal(a.rows(), alpha, b.data(), inc);
        blas_trsv(uplo, side == Side::Left ? op : transposed(op), diag, a, b.data(), inc);
        return;
    }
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(strsm)(CblasColMajor, cblas(side), cblas(uplo), cblas(op), cblas(diag), b.rows(), b.cols(), alpha,
                           a.data(), a.ld(), b.data(), b.ld());
    } else {
        GPRAT_CBLAS(dtrsm)(CblasColMajor, cblas(side), cblas(uplo), cblas(op), cblas(diag), b.rows(), b.cols(), alpha,
                           a.data(), a.ld(), b.data(), b.ld());
    }
}

template <typename T>
void blas_gemm(Op op_a, Op op_b, T alpha, TileView<T> a, TileView<T> b, T beta, TileView<T> c)
{
    const Index k = op_a == Op::NoTrans ? a.cols() : a.rows();
    // (gemv's empty inner dimension leaves y unscaled by beta, gemm's scales it: k > 0 only)
    if (k > 0 && c.rows() > 0 && c.cols() == 1) {  // c = alpha op(A) op(B) + beta c, op(B) one column
        blas_gemv(op_a, a.rows(), a.cols(), alpha, a.data(), a.ld(), b.data(), op_b == Op::NoTrans ? 1 : b.ld(), beta,
                  c.data(), 1);
        return;
    }
    if (k > 0 && c.cols() > 0 && c.rows() == 1) {  // c^T = alpha op(B)^T op(A)^T + beta c^T
        blas_gemv(transposed(op_b), b.rows(), b.cols(), alpha, b.data(), b.ld(), a.data(),
                  op_a == Op::NoTrans ? a.ld() : 1, beta, c.data(), c.ld());
        return;
    }
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(sgemm)(CblasColMajor, cblas(op_a), cblas(op_b), c.rows(), c.cols(), k, alpha, a.data(), a.ld(),
                           b.data(), b.ld(), beta, c.data(), c.ld());
    } else {
        GPRAT_CBLAS(dgemm)(CblasColMajor, cblas(op_a), cblas(op_b), c.rows(), c.cols(), k, alpha, a.data(), a.ld(),
                           b.data(), b.ld(), beta, c.data(), c.ld());
    }
}

template <typename T>
void blas_syrk(Op op, T alpha, TileView<T> a, T beta, TileView<T> c)
{
    const Index k = op == Op::NoTrans ? a.cols() : a.rows();
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(ssyrk)(CblasColMajor, CblasLower, cblas(op), c.rows(), k, alpha, a.data(), a.ld(), beta, c.data(),
                           c.ld());
    } else {
        GPRAT_CBLAS(dsyrk)(CblasColMajor, CblasLower, cblas(op), c.rows(), k, alpha, a.data(), a.ld(), beta, c.data(),
                           c.ld());
    }
}

/// Where a recursive tile kernel splits an order-n block: about n/2, rounded up to a multiple
/// of 16 so that the gemm/syrk calls on the halves start on micro-kernel boundaries.
inline Index split_point(Index n) { return (n / 2 + 15) / 16 * 16; }

/// Below this order of A the triangular solve goes to BLAS trsm directly. Measured with
/// OpenBLAS on the AMD EPYC development machine (1 thread): dtrsm on a 512 tile runs at ~65%
/// of dgemm's flop rate. Each split level moves half of the remaining flops into gemm, so
/// recursing from n down to leaves of order ~n_leaf leaves ~n_leaf / n of them in trsm;
/// leaves of 96 were faster than 64 or 128 in the n = 8192 Cholesky.
inline constexpr Index trsm_leaf_order = 96;

/// Recursive triangular solve. Split A (order n) at h: the two diagonal blocks are solved
/// recursively and the coupling goes through one gemm. With M = op(A) lower-triangular,
///   Left:  M X = alpha B   ->  X1 = M11^{-1} alpha B1;  X2 = M22^{-1} (alpha B2 - M21 X1)
///   Right: X M = alpha B   ->  X2 = alpha B2 M22^{-1};  X1 = (alpha B1 - X2 M21) M11^{-1}
/// and symmetrically when M is upper-triangular. M's off-diagonal block is op(A_off) with
/// A_off = A21 (uplo Lower) or A12 (uplo Upper). Same flops as one trsm call.
template <typename T>
void recursive_trsm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    const Index n = a.rows();
    if (n <= trsm_leaf_order || b.rows() == 0 || b.cols() == 0 || one_right_hand_side(side, b)) {
        blas_trsm(side, uplo, op, diag, alpha, a, b);
        return;
    }
    const Index h = split_point(n);
    const Index r = n - h;
    const TileView<T> a11 = a.block(0, 0, h, h);
    const TileView<T> a22 = a.block(h, h, r, r);
    const TileView<T> a_off = uplo == Uplo::Lower ? a.block(h, 0, r, h) : a.block(0, h, h, r);
    const bool m_lower = (uplo == Uplo::Lower) == (op == Op::NoTrans);
    if (side == Side::Left) {
        const TileView<T> b1 = b.block(0, 0, h, b.cols());
        const TileView<T> b2 = b.block(h, 0, r, b.cols());
        if (m_lower) {
            recursive_trsm(side, uplo, op, diag, alpha, a11, b1);
            blas_gemm(op, Op::NoTrans, T(-1), a_off, b1, alpha, b2);  // alpha B2 - M21 X1
            recursive_trsm(side, uplo, op, diag, T(1), a22, b2);
        } else {
            recursive_trsm(side, uplo, op, diag, alpha, a22, b2);
            blas_gemm(op, Op::NoTrans, T(-1), a_off, b2, alpha, b1);  // alpha B1 - M12 X2
            recursive_trsm(side, uplo, op, diag, T(1), a11, b1);
        }
    } else {
        const TileView<T> b1 = b.block(0, 0, b.rows(), h);
        const TileView<T> b2 = b.block(0, h, b.rows(), r);
        if (m_lower) {
            recursive_trsm(side, uplo, op, diag, alpha, a22, b2);
            blas_gemm(Op::NoTrans, op, T(-1), b2, a_off, alpha, b1);  // alpha B1 - X2 M21
            recursive_trsm(side, uplo, op, diag, T(1), a11, b1);
        } else {
            recursive_trsm(side, uplo, op, diag, alpha, a11, b1);
            blas_gemm(Op::NoTrans, op, T(-1), b1, a_off, alpha, b2);  // alpha B2 - X1 M12
            recursive_trsm(side, uplo, op, diag, T(1), a22, b2);
        }
    }
}

template <typename T>
void lapack_potrf(TileView<T> a, Index row0)
{
    lapack_int info = 0;
    if constexpr (is_float<T>) {
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

template <typename T>
void lapack_trtri(TileView<T> a)
{
    lapack_int info = 0;
    if constexpr (is_float<T>) {
        info = GPRAT_LAPACKE(strtri_work)(LAPACK_COL_MAJOR, 'L', 'N', a.rows(), a.data(), a.ld());
    } else {
        info = GPRAT_LAPACKE(dtrtri_work)(LAPACK_COL_MAJOR, 'L', 'N', a.rows(), a.data(), a.ld());
    }
    if (info != 0) { throw LapackError("trtri", info); }  // > 0 (a zero diagonal) is excluded by trtri's check
}

template <typename T>
void lapack_lauum(TileView<T> a)
{
    lapack_int info = 0;
    if constexpr (is_float<T>) {
        info = GPRAT_LAPACKE(slauum_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    } else {
        info = GPRAT_LAPACKE(dlauum_work)(LAPACK_COL_MAJOR, 'L', a.rows(), a.data(), a.ld());
    }
    if (info != 0) { throw LapackError("lauum", info); }
}

template <typename T>
void blas_trmm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    if constexpr (is_float<T>) {
        GPRAT_CBLAS(strmm)(CblasColMajor, cblas(side), cblas(uplo), cblas(op), cblas(diag), b.rows(), b.cols(), alpha,
                           a.data(), a.ld(), b.data(), b.ld());
    } else {
        GPRAT_CBLAS(dtrmm)(CblasColMajor, cblas(side), cblas(uplo), cblas(op), cblas(diag), b.rows(), b.cols(), alpha,
                           a.data(), a.ld(), b.data(), b.ld());
    }
}

/// Below this order trtri goes to LAPACK directly. OpenBLAS dtrtri on one core, order 128:
/// 5-7 GFLOP/s against 9 with this recursion down to 32 (leaves of 64, 96, 128 were slower at
/// orders 128-512; benchmarked on the AMD EPYC development machine, CPU time of the thread).
inline constexpr Index trtri_leaf_order = 32;

/// Recursive inverse of a lower-triangular block, in place. With L = [A 0; B C] split at h,
///   L^{-1} = [A^{-1} 0; -C^{-1} B A^{-1}  C^{-1}]:
/// B <- -C^{-1} B and then B <- B A^{-1} by triangular solves with the not yet inverted A and C
/// (recursive_trsm: most flops in gemm), then A and C are inverted recursively. Same flops as
/// LAPACK trtri (n^3/3), in larger gemm calls: OpenBLAS dtrtri on one core ran at 20-27 GFLOP/s
/// at order 1000 against 22-31 for this, and at 5-8 against 9-16 at orders 128-256 (one tile
/// of a small-n training step; a diagonal tile on the tiled inverse's critical path).
template <typename T>
void recursive_trtri(TileView<T> a)
{
    const Index n = a.rows();
    if (n <= trtri_leaf_order) {
        lapack_trtri(a);
        return;
    }
    const Index h = split_point(n);
    const TileView<T> a11 = a.block(0, 0, h, h);
    const TileView<T> a21 = a.block(h, 0, n - h, h);
    const TileView<T> a22 = a.block(h, h, n - h, n - h);
    recursive_trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, T(-1), a22, a21);  // -C^{-1} B
    recursive_trsm(Side::Right, Uplo::Lower, Op::NoTrans, Diag::NonUnit, T(1), a11, a21);  // (.) A^{-1}
    recursive_trtri(a11);
    recursive_trtri(a22);
}

/// Below this order a tile goes to LAPACK potrf directly.
inline constexpr Index potrf_leaf_order = 128;

/// Recursive Cholesky of one tile, A = [A11 .; A21 A22] split at h:
///   L11 = chol(A11);  L21 = A21 L11^{-T};  L22 = chol(A22 - L21 L21^T).
/// Same flops and the same failing order as LAPACK (A11's minors are tested first), but the
/// trsm and syrk run at (close to) gemm speed. OpenBLAS potrf on one core reaches only ~70%
/// of gemm's rate on a 1024 tile, and this tile is on the critical path.
template <typename T>
void recursive_potrf(TileView<T> a, Index row0)
{
    const Index n = a.rows();
    if (n <= potrf_leaf_order) {
        lapack_potrf(a, row0);
        return;
    }
    const Index h = split_point(n);
    const Index r = n - h;
    const TileView<T> a11 = a.block(0, 0, h, h);
    const TileView<T> a21 = a.block(h, 0, r, h);
    const TileView<T> a22 = a.block(h, h, r, r);
    recursive_potrf(a11, row0);
    recursive_trsm(Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, T(1), a11, a21);
    blas_syrk(Op::NoTrans, T(-1), a21, T(1), a22);
    recursive_potrf(a22, row0 + h);
}

}  // namespace detail

/// A <- L with A = L L^T, lower triangle of a square tile (upper triangle left untouched).
/// @param row0 global index of the tile's first row, so the error names the global minor.
/// @throws NotPositiveDefinite with the 1-based global order of the failing leading minor.
template <typename T>
void potrf(TileView<T> a, Index row0)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    detail::recursive_potrf(a, row0);
}

/// A <- A^{-1} for a lower-triangular, non-unit tile (upper triangle untouched).
/// @param row0 global index of the tile's first row, so the error names the global order.
/// @throws NotPositiveDefinite if a diagonal entry is zero (a singular factor; checked before
///         any entry is changed, as LAPACK does).
template <typename T>
void trtri(TileView<T> a, Index row0)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    for (Index j = 0; j < a.rows(); ++j)
        if (a(j, j) == T(0)) { throw NotPositiveDefinite(row0 + j + 1); }
    detail::recursive_trtri(a);
}

/// A <- L^T L for the lower-triangular tile L held in A (lower triangle of the result).
/// (LAPACK lauum: a recursion onto syrk/trmm measured no consistently faster with OpenBLAS.)
template <typename T>
void lauum(TileView<T> a)
{
    GPRAT_ASSERT(a.rows() == a.cols());
    detail::lapack_lauum(a);
}

/// B <- alpha op(A)^{-1} B (side Left) or B <- alpha B op(A)^{-1} (side Right); A triangular.
/// Large tiles go through detail::recursive_trsm (same result, most flops in gemm).
template <typename T>
void trsm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    GPRAT_ASSERT(a.rows() == a.cols() && (side == Side::Left ? a.rows() == b.rows() : a.rows() == b.cols()));
    detail::recursive_trsm(side, uplo, op, diag, alpha, a, b);
}

/// B <- alpha op(A) B (side Left) or B <- alpha B op(A) (side Right); A triangular.
template <typename T>
void trmm(Side side, Uplo uplo, Op op, Diag diag, T alpha, TileView<T> a, TileView<T> b)
{
    GPRAT_ASSERT(a.rows() == a.cols() && (side == Side::Left ? a.rows() == b.rows() : a.rows() == b.cols()));
    detail::blas_trmm(side, uplo, op, diag, alpha, a, b);
}

/// C <- alpha op(A) op(A)^T + beta C, lower triangle of C (op = NoTrans) or
/// C <- alpha A^T A + beta C (op = Trans).
template <typename T>
void syrk(Op op, T alpha, TileView<T> a, T beta, TileView<T> c)
{
    GPRAT_ASSERT(c.rows() == c.cols() && c.rows() == (op == Op::NoTrans ? a.rows() : a.cols()));
    detail::blas_syrk(op, alpha, a, beta, c);
}

/// C <- alpha op(A) op(B) + beta C.
template <typename T>
void gemm(Op op_a, Op op_b, T alpha, TileView<T> a, TileView<T> b, T beta, TileView<T> c)
{
    [[maybe_unused]] const Index m = op_a == Op::NoTrans ? a.rows() : a.cols();
    [[maybe_unused]] const Index k = op_a == Op::NoTrans ? a.cols() : a.rows();
    [[maybe_unused]] const Index n = op_b == Op::NoTrans ? b.cols() : b.rows();
    GPRAT_ASSERT(c.rows() == m && c.cols() == n && k == (op_b == Op::NoTrans ? b.rows() : b.cols()));
    detail::blas_gemm(op_a, op_b, alpha, a, b, beta, c);
}

/// Eigen-decomposition of a symmetric tridiagonal matrix (diagonal d, off-diagonal e):
/// T = Z diag(lambda) Z^T; on exit d holds lambda (ascending) and z (column-major, ld = n) the
/// eigenvectors. Used by KISS-GP's stochastic Lanczos quadrature on the CG tridiagonals.
/// @throws LapackError if the QL iteration does not converge.
inline void stev(Index n, double* d, double* e, double* z)
{
    const lapack_int info = GPRAT_LAPACKE(dstev)(LAPACK_COL_MAJOR, 'V', n, d, e, z, n);
    if (info != 0) { throw LapackError("stev", info); }
}

}  // namespace gprat::linalg::tile
