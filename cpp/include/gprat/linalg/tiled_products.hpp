#pragma once
/// Tiled products and reductions the GP needs, as task graphs over TiledMatrix.
#include <cmath>

#include "gprat/core/check.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::linalg {

/// Y <- A^T X for a general tiled A (n x m), X (n x k), Y (m x k); X has A's row tiling,
/// Y's rows are tiled like A's columns and Y's columns like X's.
/// @note 2 n m k flops. Y(j,c) accumulates over i in submission order (deterministic).
template <typename T>
void transpose_times(const tiles::TiledMatrix<T>& A, const tiles::TiledMatrix<T>& X, const tiles::TiledMatrix<T>& Y,
                     runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(A.rows() == X.rows() && A.cols() == Y.rows() && X.cols() == Y.cols() && A.nb() == X.nb() &&
                      A.nbc() == Y.nb() && X.nbc() == Y.nbc(),
                  "transpose_times: shapes or tilings do not conform");
    for (Index j = 0; j < A.nt(); ++j)
        for (Index c = 0; c < X.nt(); ++c)
            for (Index i = 0; i < A.mt(); ++i) {
                const T beta = i == 0 ? T(0) : T(1);
                // Y(j,c) <- A(i,j)^T X(i,c) + beta Y(j,c)
                g.add("gemm", 0,
                      [beta](TileView<T> a, TileView<T> x, TileView<T> y) {
                          tile::gemm(Op::Trans, Op::NoTrans, T(1), a, x, beta, y);
                      },
                      read(A, i, j), read(X, i, c), write(Y, j, c));
            }
}

/// y(j) <- y(j) - sum_i V(i,j)^2: column sums of squares of a general tiled V (n x m)
/// subtracted from the tiled vector y (m x 1). Used for the predictive variance.
template <typename T>
void subtract_column_squares(const tiles::TiledMatrix<T>& V, const tiles::TiledMatrix<T>& y, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(y.rows() == V.cols() && y.cols() == 1 && y.nb() == V.nbc(), "subtract_column_squares: shapes");
    for (Index j = 0; j < V.nt(); ++j)
        for (Index i = 0; i < V.mt(); ++i)
            g.add("colsq", 0,
                  [](TileView<T> v, TileView<T> out) {
                      for (Index c = 0; c < v.cols(); ++c) {
                          T s = 0;
                          for (Index r = 0; r < v.rows(); ++r) s += v(r, c) * v(r, c);
                          out(c, 0) -= s;
                      }
                  },
                  read(V, i, j), write(y, j, 0));
}

/// C <- C - V^T V on the lower tiles of the symmetric tiled C (m x m); V general (n x m).
/// @note n m^2 flops.
template <typename T>
void subtract_gram(const tiles::TiledMatrix<T>& V, const tiles::TiledMatrix<T>& C, runtime::TaskGraph& g)
{
    using tiles::TileView;
    GPRAT_EXPECTS(C.symmetric() && C.rows() == V.cols() && C.nb() == V.nbc(), "subtract_gram: shapes");
    for (Index a = 0; a < C.mt(); ++a)
        for (Index b = 0; b <= a; ++b)
            for (Index i = 0; i < V.mt(); ++i) {
                if (a == b) {
                    // C(a,a) <- C(a,a) - V(i,a)^T V(i,a)
                    g.add("syrk", 0, [](TileView<T> v, TileView<T> c) { tile::syrk(Op::Trans, T(-1), v, T(1), c); },
                          read(V, i, a), write(C, a, a));
                } else {
                    // C(a,b) <- C(a,b) - V(i,a)^T V(i,b)
                    g.add("gemm", 0,
                          [](TileView<T> va, TileView<T> vb, TileView<T> c) {
                              tile::gemm(Op::Trans, Op::NoTrans, T(-1), va, vb, T(1), c);
                          },
                          read(V, i, a), read(V, i, b), write(C, a, b));
                }
            }
}

/// log det(A) = 2 sum_i log L_ii from the diagonal tiles of the tiled lower factor L,
/// accumulated in double. Call after the factorization has finished.
template <typename T>
double log_determinant_from_factor(const tiles::TiledMatrix<T>& L)
{
    double s = 0.0;
    for (Index k = 0; k < L.nt(); ++k) {
        const tiles::TileView<T> t = L.tile(k, k);
        for (Index i = 0; i < t.rows(); ++i) s += std::log(static_cast<double>(t(i, i)));
    }
    return 2.0 * s;
}

}  // namespace gprat::linalg
