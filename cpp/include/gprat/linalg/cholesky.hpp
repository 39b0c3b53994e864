#pragma once
/// Right-looking tiled Cholesky factorization A = L L^T on the lower tiles (PLASMA pdpotrf).
#include "gprat/core/check.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::linalg {

/// Factor the symmetric positive definite A in place: on return its lower tiles hold L.
/// Submits tasks to g; call g.wait() to finish (NotPositiveDefinite is rethrown there with the
/// global order of the first failing leading minor, as LAPACK's potrf reports it).
/// @note n^3/3 flops; O(nt^3) tasks.
template <typename T>
void cholesky(const tiles::TiledMatrix<T>& A, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(A.symmetric(), "cholesky needs a symmetric (lower-stored) tiled matrix");
    const Index nt = A.nt();
    for (Index k = 0; k < nt; ++k) {
        // A(k,k) <- chol(A(k,k))
        g.add("potrf", priority(nt, k, Stage::Factor), [](TileView<T> a, Index row0) { tile::potrf(a, row0); },
              write(A, k, k), A.row0(k));
        // A(m,k) <- A(m,k) A(k,k)^{-T}
        for (Index m = k + 1; m < nt; ++m) {
            g.add("trsm", priority(nt, k, Stage::PanelSolve),
                  [](TileView<T> l, TileView<T> b) {
                      tile::trsm(Side::Right, Uplo::Lower, Op::Trans, Diag::NonUnit, T(1), l, b);
                  },
                  read(A, k, k), write(A, m, k));
        }
        for (Index m = k + 1; m < nt; ++m) {
            // A(m,m) <- A(m,m) - A(m,k) A(m,k)^T
            g.add("syrk", priority(nt, m, Stage::Update),
                  [](TileView<T> a, TileView<T> c) { tile::syrk(Op::NoTrans, T(-1), a, T(1), c); }, read(A, m, k),
                  write(A, m, m));
            // A(m,n) <- A(m,n) - A(m,k) A(n,k)^T
            for (Index n = k + 1; n < m; ++n) {
                g.add("gemm", priority(nt, n, Stage::Update),
                      [](TileView<T> a, TileView<T> b, TileView<T> c) {
                          tile::gemm(Op::NoTrans, Op::Trans, T(-1), a, b, T(1), c);
                      },
                      read(A, m, k), read(A, n, k), write(A, m, n));
            }
        }
    }
}

}  // namespace gprat::linalg
