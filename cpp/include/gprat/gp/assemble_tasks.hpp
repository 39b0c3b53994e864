#pragma once
/// Task submission for covariance assembly: the algorithm layer's side of kernels/assemble.hpp.
/// The kernels compute tiles; here each tile becomes a task, with the priority that fits the
/// algorithm consuming it (the Cholesky factorization of K, linalg/priority.hpp).
#include <variant>

#include "gprat/core/types.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::gp {

/// Submit tasks K(i,j) <- k(X_i, Y_j) for every stored tile of K; a symmetric K uses Y = X and
/// adds `diagonal` on the global diagonal (or diagonal_rows[r] on row r when diagonal_rows is not
/// null: per-sample noise). `k`, X, Y and diagonal_rows must outlive g.wait().
/// @param K rows = points of X, cols = points of Y (Y ignored when K is symmetric).
template <typename T, kernels::CovarianceFunction Kernel>
void assemble_covariance(const tiles::TiledMatrix<T>& K, const T* X, const T* Y, Index d, const Kernel& k,
                         double diagonal, runtime::TaskGraph& g, const double* diagonal_rows = nullptr)
{
    using tiles::TileView;
    const bool symmetric = K.symmetric();
    const T* cols = symmetric ? X : Y;
    for (Index j = 0; j < K.nt(); ++j)
        for (Index i = symmetric ? j : 0; i < K.mt(); ++i) {
            // K(i,j) <- k(X_i, Y_j) (+ diagonal I)
            // assembling column j comes just before the factorization of panel j needs it
            g.add("assemble", linalg::priority(K.nt(), j, linalg::Stage::Factor) + 1,
                  [kp = &k, X, cols, d, symmetric, diagonal, diagonal_rows, r0 = K.row0(i), c0 = K.col0(j)](TileView<T> t) {
                      kernels::fill_covariance_tile(t, X, r0, cols, c0, d, *kp, symmetric, diagonal, diagonal_rows);
                  },
                  linalg::write(K, i, j));
        }
}

/// assemble_covariance for the kernel held by `k` (which must outlive g.wait()).
template <typename T>
void assemble_covariance(const tiles::TiledMatrix<T>& K, const T* X, const T* Y, Index d, const kernels::AnyKernel& k,
                         double diagonal, runtime::TaskGraph& g, const double* diagonal_rows = nullptr)
{
    std::visit([&](const auto& kernel) { assemble_covariance(K, X, Y, d, kernel, diagonal, g, diagonal_rows); }, k);
}

/// Submit tasks v <- k(x, x) + add for the points of X (v: rows of X, one column): the prior
/// variance (plus the noise when `add` holds it). `k` and X must outlive g.wait().
template <typename T>
void assemble_prior_variance(const tiles::TiledMatrix<T>& v, const T* X, Index d, const kernels::AnyKernel& k,
                             double add, runtime::TaskGraph& g)
{
    GPRAT_EXPECTS(v.cols() == 1, "assemble_prior_variance: v must be a column; got " << v.cols() << " columns");
    std::visit(
        [&](const auto& kernel) {
            for (Index j = 0; j < v.mt(); ++j)  // v(j) <- diag k(X_j, X_j) + add
                g.add("prior_var", 0,
                      [kp = &kernel, X, d, add, r0 = v.row0(j)](tiles::TileView<T> t) {
                          kernels::fill_diagonal_tile(t, X, r0, d, *kp, add);
                      },
                      linalg::write(v, j, 0));
        },
        k);
}

}  // namespace gprat::gp
