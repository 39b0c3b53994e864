#pragma once
/// Tiled triangular solves with the lower factor L of a tiled symmetric matrix:
/// L X = B (Op::NoTrans, forward substitution) or L^T X = B (Op::Trans, backward), B overwritten
/// by X. B is a general tiled matrix (n x k) with the same tile size as L; a vector is k = 1.
#include "gprat/core/check.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::linalg {

/// B <- op(L)^{-1} B.  @note n^2 k flops.
template <typename T>
void solve_lower(const tiles::TiledMatrix<T>& L, Op op, const tiles::TiledMatrix<T>& B, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(L.symmetric(), "solve_lower needs a lower-stored tiled factor");
    GPRAT_EXPECTS(B.rows() == L.rows() && (B.nb() == L.nb() || (B.mt() == 1 && L.nt() == 1)),
                  "right-hand side must have " << L.rows() << " rows tiled like L; got " << B.rows());
    const Index nt = L.nt();
    for (Index step = 0; step < nt; ++step) {
        const Index k = op == Op::NoTrans ? step : nt - 1 - step;
        for (Index c = 0; c < B.nt(); ++c) {
            // B(k,c) <- op(L(k,k))^{-1} B(k,c)
            g.add("trsm", priority(nt, step, Stage::PanelSolve),
                  [op](TileView<T> l, TileView<T> b) { tile::trsm(Side::Left, Uplo::Lower, op, Diag::NonUnit, T(1), l, b); },
                  read(L, k, k), write(B, k, c));
            if (op == Op::NoTrans) {
                // B(m,c) <- B(m,c) - L(m,k) B(k,c),  m > k
                for (Index m = k + 1; m < nt; ++m)
                    g.add("gemm", priority(nt, m, Stage::Update),
                          [](TileView<T> l, TileView<T> x, TileView<T> b) {
                              tile::gemm(Op::NoTrans, Op::NoTrans, T(-1), l, x, T(1), b);
                          },
                          read(L, m, k), read(B, k, c), write(B, m, c));
            } else {
                // B(m,c) <- B(m,c) - L(k,m)^T B(k,c),  m < k
                for (Index m = k - 1; m >= 0; --m)
                    g.add("gemm", priority(nt, nt - 1 - m, Stage::Update),
                          [](TileView<T> l, TileView<T> x, TileView<T> b) {
                              tile::gemm(Op::Trans, Op::NoTrans, T(-1), l, x, T(1), b);
                          },
                          read(L, k, m), read(B, k, c), write(B, m, c));
            }
        }
    }
}

}  // namespace gprat::linalg
