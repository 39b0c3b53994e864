#pragma once
/// The ONE generic tile assembler: every covariance tile, derivative tile and fused gradient
/// reduction goes through for_each_entry, for every kernel in AnyKernel and both precisions.
/// Points are rows of row-major arrays: point i of X is X[i*d .. i*d + d).
#include <algorithm>
#include <span>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/kernels/covariance_function.hpp"
#include "gprat/linalg/priority.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

namespace gprat::kernels {

/// Calls visit(i, j, x, y) for every entry (i, j) of a rows x cols tile whose rows are the points
/// X[r0 + i] and whose columns are the points Y[c0 + j]. With lower_only, entries above the
/// global diagonal (c0 + j > r0 + i) are skipped.
template <typename T, typename Visit>
inline void for_each_entry(Index rows, Index cols, const T* X, Index r0, const T* Y, Index c0, Index d,
                           bool lower_only, Visit&& visit)
{
    for (Index j = 0; j < cols; ++j) {
        const T* y = Y + (c0 + j) * d;
        const Index first = lower_only ? std::clamp<Index>(c0 + j - r0, 0, rows) : 0;
        for (Index i = first; i < rows; ++i) visit(i, j, X + (r0 + i) * d, y);
    }
}

/// t <- k(X[r0..], Y[c0..]) (+ diagonal on the global diagonal when `symmetric`). In a symmetric
/// diagonal tile only the lower triangle is computed; the strict upper triangle is set to 0.
template <typename T, CovarianceFunction K>
void fill_covariance_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                          bool symmetric, double diagonal)
{
    const bool diagonal_tile = symmetric && r0 == c0;
    if (diagonal_tile)
        for (Index j = 1; j < t.cols(); ++j)
            for (Index i = 0; i < std::min(j, t.rows()); ++i) t(i, j) = T(0);
    for_each_entry(t.rows(), t.cols(), X, r0, Y, c0, d, diagonal_tile, [&](Index i, Index j, const T* x, const T* y) {
        const double extra = (diagonal_tile && i == j) ? diagonal : 0.0;
        t(i, j) = static_cast<T>(k(x, y, d) + extra);
    });
}

/// tiles[p] <- dk/dtheta_p (X[r0..], Y[c0..]) for every hyperparameter p of k (full tiles).
template <typename T, CovarianceFunction K>
void fill_gradient_tiles(std::span<const tiles::TileView<T>> tiles, const T* X, Index r0, const T* Y, Index c0,
                         Index d, const K& k)
{
    GPRAT_ASSERT(static_cast<Index>(tiles.size()) == k.n_params());
    std::vector<double> grad(static_cast<std::size_t>(k.n_params()));
    for_each_entry(tiles[0].rows(), tiles[0].cols(), X, r0, Y, c0, d, false,
                   [&](Index i, Index j, const T* x, const T* y) {
                       k.gradient(x, y, d, grad.data());
                       for (std::size_t p = 0; p < grad.size(); ++p) tiles[p](i, j) = static_cast<T>(grad[p]);
                   });
}

/// Fused gradient reduction over one lower tile of K^{-1} (global rows r0.., columns c0..):
///   out[p] += sum_{a,b} w_ab (alpha_a alpha_b - Kinv_ab) dK_ab/dtheta_p
/// with w = 1 on the global diagonal and 2 below it (the tile stands for itself and its mirror),
/// and out[n_params] += sum_a (alpha_a^2 - Kinv_aa) noise  (dK/dlog noise = noise I).
/// dK tiles are regenerated entry by entry and never stored.
template <typename T, CovarianceFunction K>
void accumulate_gradient_tile(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X, Index r0,
                              Index c0, Index d, const K& k, double noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params();
    std::vector<double> grad(static_cast<std::size_t>(p)), sum(static_cast<std::size_t>(p + 1), 0.0);
    for_each_entry(kinv.rows(), kinv.cols(), X, r0, X, c0, d, diagonal_tile,
                   [&](Index i, Index j, const T* x, const T* y) {
                       const bool on_diagonal = diagonal_tile && i == j;
                       const double w = static_cast<double>(alpha_rows[i]) * static_cast<double>(alpha_cols[j]) -
                                        static_cast<double>(kinv(i, j));
                       k.gradient(x, y, d, grad.data());
                       const double ww = on_diagonal ? w : 2.0 * w;
                       for (Index q = 0; q < p; ++q) sum[q] += ww * grad[q];
                       if (on_diagonal) sum[p] += w * noise;
                   });
    for (Index q = 0; q <= p; ++q) out[q] += sum[q];
}

/// Submit tasks K(i,j) <- k(X_i, Y_j) for every stored tile of K; a symmetric K uses Y = X and
/// adds `diagonal` on the global diagonal. `k`, X and Y must outlive g.wait().
/// @param K rows = points of X, cols = points of Y (Y ignored when K is symmetric).
template <typename T>
void assemble_covariance(const tiles::TiledMatrix<T>& K, const T* X, const T* Y, Index d, const AnyKernel& k,
                         double diagonal, runtime::TaskGraph& g)
{
    using tiles::TileView;
    const bool symmetric = K.symmetric();
    const T* cols = symmetric ? X : Y;
    std::visit(
        [&](const auto& kernel) {
            for (Index j = 0; j < K.nt(); ++j)
                for (Index i = symmetric ? j : 0; i < K.mt(); ++i) {
                    // K(i,j) <- k(X_i, Y_j) (+ diagonal I)
                    // assembling column j comes just before the factorization of panel j needs it
                    g.add("assemble", linalg::priority(K.nt(), j, linalg::Stage::Factor) + 1,
                          [kp = &kernel, X, cols, d, symmetric, diagonal, r0 = K.row0(i), c0 = K.col0(j)](TileView<T> t) {
                              fill_covariance_tile(t, X, r0, cols, c0, d, *kp, symmetric, diagonal);
                          },
                          K.write(i, j));
                }
        },
        k);
}

}  // namespace gprat::kernels
