#pragma once
/// ScaLAPACK's 2-D block-cyclic layout, and the per-rank work of the distributed exact GP on it:
/// assembling this rank's blocks of K and K*^T, and the fused gradient reduction over this rank's
/// blocks of K^{-1}. No MPI here: the caller (gprat._distributed, python/gprat/distributed.py)
/// owns the communicator and the ScaLAPACK calls; these functions only read and write the local
/// array, so the same values come out as from the single-process engine (same tile functions,
/// global row and column offsets).
///
/// Layout (ScaLAPACK User's Guide, sec. 4.3.1; first block on process (0, 0)): an m x n matrix
/// cut into mb x nb blocks; global block (I, J) lives on process (I mod P_r, J mod P_c), at local
/// block (I div P_r, J div P_c); the local array is column-major with leading dimension lld >= the
/// local row count numroc(m, mb, p_r, 0, P_r).
#include <algorithm>
#include <cstddef>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::distributed {

/// numroc: how many of n rows (or columns), cut in blocks of nb, process `p` of `procs` holds
/// (first block on process 0): whole blocks p, p + procs, ... plus its share of the ragged last.
inline Index numroc(Index n, Index nb, Index p, Index procs)
{
    const Index blocks = n / nb;                    // whole blocks
    Index local = (blocks / procs) * nb;            // whole rounds of the cycle
    const Index extra = blocks % procs;
    if (p < extra) local += nb;                     // one more whole block
    else if (p == extra) local += n % nb;           // the ragged last block
    return local;
}

/// One rank's view of an m x n block-cyclic matrix on a P_r x P_c grid.
struct BlockCyclic
{
    Index m, n;              ///< global rows, columns
    Index mb, nb;            ///< block rows, block columns
    Index nprow, npcol;      ///< grid
    Index myrow, mycol;      ///< this rank's grid coordinates
    Index lld;               ///< leading dimension of the local array (>= local_rows())

    BlockCyclic(Index m_, Index n_, Index mb_, Index nb_, Index nprow_, Index npcol_, Index myrow_, Index mycol_,
                Index lld_)
        : m(m_), n(n_), mb(mb_), nb(nb_), nprow(nprow_), npcol(npcol_), myrow(myrow_), mycol(mycol_), lld(lld_)
    {
        GPRAT_EXPECTS(m >= 1 && n >= 1, "a block-cyclic matrix needs m, n >= 1; got " << m << " x " << n);
        GPRAT_EXPECTS(mb >= 1 && nb >= 1, "block sizes must be positive; got " << mb << " x " << nb);
        GPRAT_EXPECTS(nprow >= 1 && npcol >= 1 && myrow >= 0 && myrow < nprow && mycol >= 0 && mycol < npcol,
                      "grid coordinates (" << myrow << ", " << mycol << ") outside a " << nprow << " x " << npcol
                                           << " grid");
        GPRAT_EXPECTS(lld >= std::max<Index>(1, local_rows()),
                      "the local leading dimension must be >= the local rows " << local_rows() << "; got " << lld);
    }

    Index local_rows() const { return numroc(m, mb, myrow, nprow); }
    Index local_cols() const { return numroc(n, nb, mycol, npcol); }
    /// Local block rows / columns (the last may be ragged).
    Index local_block_rows() const { return (local_rows() + mb - 1) / mb; }
    Index local_block_cols() const { return (local_cols() + nb - 1) / nb; }
    /// Global block row of local block row li, and its first global row; likewise for columns.
    Index global_block_row(Index li) const { return li * nprow + myrow; }
    Index global_block_col(Index lj) const { return lj * npcol + mycol; }
    Index block_rows(Index I) const { return std::min(mb, m - I * mb); }
    Index block_cols(Index J) const { return std::min(nb, n - J * nb); }
    /// Global row of local row r (for gathering a distributed vector).
    Index global_row(Index r) const { return ((r / mb) * nprow + myrow) * mb + r % mb; }
    Index global_col(Index c) const { return ((c / nb) * npcol + mycol) * nb + c % nb; }

    /// The local block (li, lj) as a tile view of the local array.
    template <typename T>
    tiles::TileView<T> block(T* local, Index li, Index lj) const
    {
        const Index I = global_block_row(li), J = global_block_col(lj);
        return tiles::TileView<T>(local + li * mb + lj * nb * lld, block_rows(I), block_cols(J), lld);
    }
};

/// Submit one task per local block and wait: f(li, lj). The blocks are disjoint parts of the
/// local array, so the tasks need no declared accesses (a strided block view would overlap its
/// neighbours' byte ranges in the graph's bookkeeping).
template <typename F>
void for_each_local_block(const BlockCyclic& A, F&& f)
{
    runtime::TaskGraph g;
    for (Index lj = 0; lj < A.local_block_cols(); ++lj)
        for (Index li = 0; li < A.local_block_rows(); ++li) g.add("local_block", 0, [&f, li, lj] { f(li, lj); });
    g.wait();
}

/// This rank's blocks of the lower triangle of K = k(X, X) + diagonal I (or + diag(diagonal_rows)):
/// block (I, J) with I >= J is filled with the engine's tile function at global offsets (I nb,
/// J nb); the strict upper part of a diagonal block is set to 0; blocks above the diagonal are
/// not touched (pdpotrf, pdpotrs and pdpotri with uplo = 'L' never read them).
/// @param X  row-major (n, d), all training points (every rank holds them).
template <typename T>
void assemble_local_covariance(const BlockCyclic& A, T* local, const T* X, Index d, const kernels::AnyKernel& k,
                               double diagonal, const double* diagonal_rows = nullptr)
{
    GPRAT_EXPECTS(A.m == A.n && A.mb == A.nb, "K must be square with square blocks; got " << A.m << " x " << A.n
                                                                                       << " in " << A.mb << " x "
                                                                                       << A.nb << " blocks");
    std::visit(
        [&](const auto& kernel) {
            for_each_local_block(A, [&](Index li, Index lj) {
                const Index I = A.global_block_row(li), J = A.global_block_col(lj);
                if (I < J) return;
                // K(I, J) <- k(X_I, X_J) (+ diagonal on the global diagonal)
                kernels::fill_covariance_tile(A.block(local, li, lj), X, I * A.mb, X, J * A.nb, d, kernel, true,
                                              diagonal, diagonal_rows);
            });
        },
        k);
}

/// This rank's blocks of the cross-covariance K*^T = k(X, Xs) (n x m, every block filled).
template <typename T>
void assemble_local_cross_covariance(const BlockCyclic& A, T* local, const T* X, const T* Xs, Index d,
                                     const kernels::AnyKernel& k)
{
    std::visit(
        [&](const auto& kernel) {
            for_each_local_block(A, [&](Index li, Index lj) {
                const Index I = A.global_block_row(li), J = A.global_block_col(lj);
                // K*^T(I, J) <- k(X_I, Xs_J)
                kernels::fill_cross_covariance_tile(A.block(local, li, lj), X, I * A.mb, Xs, J * A.nb, d, kernel);
            });
        },
        k);
}

/// This rank's share of the fused gradient, from its blocks of the lower triangle of K^{-1}:
///   out[q] = sum over local blocks (I >= J) of sum_{a,b} w_ab (alpha_a alpha_b - Kinv_ab) dK_ab/dtheta_q
/// (w = 1 on the global diagonal, 2 below it; the noise entry, when `noise` is not null, adds
/// sum_a (alpha_a^2 - Kinv_aa) sigma2), without the factor 1/2 of dlogp/dtheta. Summed over the
/// ranks (one allreduce) this is the single-process engine's reduction over all lower tiles.
/// dK is regenerated entry by entry by accumulate_gradient_tile and never stored.
/// @param alpha  K^{-1} y, all n entries (every rank holds them).
/// @return n_params (+ 1 with noise) partial sums; blocks are added in a fixed order, so the
///         result does not depend on the thread count.
template <typename T>
std::vector<double> local_gradient(const BlockCyclic& A, T* kinv, const T* alpha, const T* X, Index d,
                                   const kernels::AnyKernel& k, const double* noise)
{
    const Index entries = kernels::kernel_params(k) + (noise ? 1 : 0);
    const Index lbr = A.local_block_rows(), lbc = A.local_block_cols();
    std::vector<double> partial(static_cast<std::size_t>(lbr * lbc * entries), 0.0);
    std::visit(
        [&](const auto& kernel) {
            for_each_local_block(A, [&](Index li, Index lj) {
                const Index I = A.global_block_row(li), J = A.global_block_col(lj);
                if (I < J) return;
                const tiles::TileView<T> t = A.block(kinv, li, lj);
                const kernels::GradientAlpha<T> a{alpha + I * A.mb, alpha + J * A.nb, t.rows(), t.cols(), 1};
                // partial += (alpha alpha^T - K^{-1})(I, J) o dK(I, J)/dtheta, fused
                kernels::accumulate_gradient_tile(t, a, X, I * A.mb, J * A.nb, d, kernel, noise,
                                                  &partial[static_cast<std::size_t>((li + lj * lbr) * entries)]);
            });
        },
        k);
    std::vector<double> out(static_cast<std::size_t>(entries), 0.0);
    for (std::size_t s = 0; s < partial.size(); s += static_cast<std::size_t>(entries))
        for (Index q = 0; q < entries; ++q) out[static_cast<std::size_t>(q)] += partial[s + static_cast<std::size_t>(q)];
    return out;
}

}  // namespace gprat::distributed
