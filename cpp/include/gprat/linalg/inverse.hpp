#pragma once
/// Inverse of an SPD matrix from its tiled Cholesky factor, in place:
/// L -> W = L^{-1} (tiled trtri, PLASMA pdtrtri), then W -> W^T W = L^{-T} L^{-1} = A^{-1}
/// (tiled lauum, PLASMA pdlauum). Only lower tiles are touched; no extra n x n storage.
#include "gprat/core/check.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::linalg {

/// A <- A^{-1} for a lower-triangular tiled A.  @note n^3/3 flops.
template <typename T>
void invert_lower(const tiles::TiledMatrix<T>& A, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(A.symmetric(), "invert_lower needs a lower-stored tiled matrix");
    const Index nt = A.nt();
    for (Index k = 0; k < nt; ++k) {
        // A(m,k) <- -A(m,k) A(k,k)^{-1}
        for (Index m = k + 1; m < nt; ++m)
            g.add("trsm", priority(nt, k, Stage::PanelSolve),
                  [](TileView<T> l, TileView<T> b) {
                      tile::trsm(Side::Right, Uplo::Lower, Op::NoTrans, Diag::NonUnit, T(-1), l, b);
                  },
                  read(A, k, k), write(A, m, k));
        // A(m,n) <- A(m,n) + A(m,k) A(k,n),  m > k > n
        for (Index m = k + 1; m < nt; ++m)
            for (Index n = 0; n < k; ++n)
                g.add("gemm", priority(nt, k, Stage::Update),
                      [](TileView<T> a, TileView<T> b, TileView<T> c) {
                          tile::gemm(Op::NoTrans, Op::NoTrans, T(1), a, b, T(1), c);
                      },
                      read(A, m, k), read(A, k, n), write(A, m, n));
        // A(k,n) <- A(k,k)^{-1} A(k,n),  n < k
        for (Index n = 0; n < k; ++n)
            g.add("trsm", priority(nt, k, Stage::PanelSolve),
                  [](TileView<T> l, TileView<T> b) {
                      tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, T(1), l, b);
                  },
                  read(A, k, k), write(A, k, n));
        // A(k,k) <- A(k,k)^{-1}
        g.add("trtri", priority(nt, k, Stage::Factor), [](TileView<T> a, Index row0) { tile::trtri(a, row0); },
              write(A, k, k), A.row0(k));
    }
}

/// A <- A^T A for a lower-triangular tiled A (lower tiles of the symmetric result).
/// @note n^3/3 flops.
template <typename T>
void lower_transpose_times_lower(const tiles::TiledMatrix<T>& A, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(A.symmetric(), "lower_transpose_times_lower needs a lower-stored tiled matrix");
    const Index nt = A.nt();
    for (Index k = 0; k < nt; ++k) {
        for (Index n = 0; n < k; ++n) {
            // A(n,n) <- A(n,n) + A(k,n)^T A(k,n)
            g.add("syrk", priority(nt, k, Stage::Update),
                  [](TileView<T> a, TileView<T> c) { tile::syrk(Op::Trans, T(1), a, T(1), c); }, read(A, k, n),
                  write(A, n, n));
            // A(m,n) <- A(m,n) + A(k,m)^T A(k,n),  n < m < k
            for (Index m = n + 1; m < k; ++m)
                g.add("gemm", priority(nt, k, Stage::Update),
                      [](TileView<T> a, TileView<T> b, TileView<T> c) {
                          tile::gemm(Op::Trans, Op::NoTrans, T(1), a, b, T(1), c);
                      },
                      read(A, k, m), read(A, k, n), write(A, m, n));
        }
        // A(k,n) <- A(k,k)^T A(k,n),  n < k
        for (Index n = 0; n < k; ++n)
            g.add("trmm", priority(nt, k, Stage::PanelSolve),
                  [](TileView<T> l, TileView<T> b) {
                      tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, T(1), l, b);
                  },
                  read(A, k, k), write(A, k, n));
        // A(k,k) <- A(k,k)^T A(k,k)
        g.add("lauum", priority(nt, k, Stage::Factor), [](TileView<T> a) { tile::lauum(a); }, write(A, k, k));
    }
}

/// A <- A^{-1} in place, given on entry the lower Cholesky factor L of the SPD matrix A:
/// A^{-1} = L^{-T} L^{-1}.  @note 2 n^3/3 flops.
template <typename T>
void spd_inverse_from_factor(const tiles::TiledMatrix<T>& A, runtime::TaskGraph& g)
{
    invert_lower(A, g);
    lower_transpose_times_lower(A, g);
}

}  // namespace gprat::linalg
