#pragma once
/// The ONE generic tile assembler: pure functions on single tiles that turn a covariance
/// function (defined on one pair of points, covariance_function.hpp) into covariance tiles,
/// cross-covariance tiles k(X, Z), diagonals k(x, x), derivative tiles and the fused gradient
/// reduction, for every kernel and both precisions. No task submission here: the algorithm
/// layer (gp/assemble_tasks.hpp) decides when each tile is computed.
///
/// Each function has one generic path, written on the pair functions k(x, y), k.gradient and
/// k.diagonal, that any CovarianceFunction compiles through; StationaryCovariance kernels take a
/// vectorized path instead, which computes the scaled squared distances r2 of a whole tile
/// column at once and applies the kernel's profile f(r2), and ColumnCovariance kernels (the
/// KernelTree) evaluate a whole column per call (`if constexpr` picks the path).
/// Points are rows of row-major arrays: point i of X is X[i*d .. i*d + d).
///
/// Derivatives with respect to the inputs (SVGP: dk(x, z)/dz for the inducing points) will be
/// one more function here, fill_input_gradient_tiles, on a per-pair `input_gradient`.
#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/dispatch.hpp"
#include "gprat/core/types.hpp"
#include "gprat/kernels/covariance_function.hpp"
#include "gprat/tiles/tile_view.hpp"

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

namespace detail {

/// The points of a tile's rows and columns divided by the lengthscales, dimension-major, and
/// the squared scaled distances of one column to a range of rows: the vectorized core of the
/// stationary tile loops below (r2 is all a stationary kernel needs of a pair).
template <typename K, typename T>
class ScaledTile
{
  public:
    ScaledTile(const K& k, const T* X, Index r0, Index rows, const T* Y, Index c0, Index cols, Index d)
        : rows_(static_cast<std::size_t>(rows * d)), cols_(static_cast<std::size_t>(cols * d)),
          r2_(static_cast<std::size_t>(rows)), n_rows_(rows), n_cols_(cols), d_(d)
    {
        k.scale_points(X, r0, rows, d, rows_.data());
        k.scale_points(Y, c0, cols, d, cols_.data());
    }

    /// r2[i] = sum_k (x_ik - y_jk)^2 / l_k^2 for rows i in [first, rows); returns r2.
    const double* squared_distances(Index j, Index first)
    {
        double* r2 = r2_.data();
        for (Index i = first; i < n_rows_; ++i) r2[i] = 0.0;
        for (Index k = 0; k < d_; ++k) {
            const double yk = cols_[static_cast<std::size_t>(k * n_cols_ + j)];
            const double* xk = rows_.data() + k * n_rows_;
#pragma omp simd
            for (Index i = first; i < n_rows_; ++i) {
                const double u = xk[i] - yk;
                r2[i] += u * u;
            }
        }
        return r2;
    }

    /// Scaled coordinate k of the rows, and of column j.
    const double* row_coordinate(Index k) const { return rows_.data() + k * n_rows_; }
    double col_coordinate(Index k, Index j) const { return cols_[static_cast<std::size_t>(k * n_cols_ + j)]; }

  private:
    std::vector<double> rows_, cols_, r2_;
    Index n_rows_, n_cols_, d_;
};

/// The gradient of an entry on the global diagonal of a symmetric K(X): the kernel's
/// diagonal_gradient where it has one (same-point terms such as White), else k.gradient(x, x).
template <CovarianceFunction K, typename T>
double same_point_gradient(const K& k, const T* x, Index d, std::span<double> grad)
{
    if constexpr (requires { k.diagonal_gradient(x, d, grad); }) {
        return k.diagonal_gradient(x, d, grad);
    } else {
        return k.gradient(x, x, d, grad);
    }
}

/// Vectorized fill_covariance_tile: t(i, j) = s2 f(r2_ij).
template <typename T, StationaryCovariance K>
GPRAT_HOT_LOOP void fill_stationary_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                          bool diagonal_tile, double diagonal)
{
    const double s2 = k.signal_variance();
    ScaledTile<K, T> block(k, X, r0, t.rows(), Y, c0, t.cols(), d);
    for (Index j = 0; j < t.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, t.rows()) : 0;
        const double* r2 = block.squared_distances(j, first);
        T* column = &t(0, j);
        for (Index i = 0; i < first; ++i) column[i] = T(0);
#pragma omp simd
        for (Index i = first; i < t.rows(); ++i) column[i] = static_cast<T>(s2 * K::profile(r2[i]));
        if (diagonal_tile && j < t.rows()) column[j] = static_cast<T>(s2 * K::profile(r2[j]) + diagonal);
    }
}

/// Generic fill_covariance_tile: t(i, j) = k(x_i, y_j), one pair at a time.
template <typename T, CovarianceFunction K>
void fill_generic_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                       bool diagonal_tile, double diagonal)
{
    if (diagonal_tile)
        for (Index j = 1; j < t.cols(); ++j)
            for (Index i = 0; i < std::min(j, t.rows()); ++i) t(i, j) = T(0);
    for_each_entry(t.rows(), t.cols(), X, r0, Y, c0, d, diagonal_tile, [&](Index i, Index j, const T* x, const T* y) {
        // a point with itself on the global diagonal: k.diagonal (White acts there only)
        t(i, j) = static_cast<T>(diagonal_tile && i == j ? k.diagonal(x, d) + diagonal : k(x, y, d));
    });
}

/// Column fill_covariance_tile (ColumnCovariance): t(:, j) = k(X rows, y_j) one column at a time.
template <typename T, ColumnCovariance K>
GPRAT_HOT_LOOP void fill_column_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                      bool diagonal_tile, double diagonal)
{
    typename K::ColumnWorkspace w;
    k.prepare_rows(w, X, r0, t.rows(), d);
    std::vector<double> col(static_cast<std::size_t>(t.rows()));
    for (Index j = 0; j < t.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, t.rows()) : 0;
        const Index same = diagonal_tile && j < t.rows() ? j : -1;  // the point y_j itself (White)
        k.column(w, Y + (c0 + j) * d, first, same, col.data());
        T* column = &t(0, j);
        for (Index i = 0; i < first; ++i) column[i] = T(0);
        for (Index i = first; i < t.rows(); ++i)
            column[i] = static_cast<T>(col[static_cast<std::size_t>(i)] + (i == same ? diagonal : 0.0));
    }
}

/// Column accumulate_gradient_tile (ColumnCovariance): the weights w_ij (2x below the
/// diagonal) of one column go to k.column_gradient, which reduces them against dk/dtheta.
template <typename T, ColumnCovariance K>
GPRAT_HOT_LOOP void accumulate_column_gradient(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X,
                                Index r0, Index c0, Index d, const K& k, double noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params(), rows = kinv.rows();
    typename K::ColumnWorkspace w;
    k.prepare_rows(w, X, r0, rows, d);
    std::vector<double> weight(static_cast<std::size_t>(rows)), sum(static_cast<std::size_t>(p + 1), 0.0);
    for (Index j = 0; j < kinv.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, rows) : 0;
        const Index same = diagonal_tile && j < rows ? j : -1;
        const T* kinv_column = &kinv(0, j);
        const double alpha_j = static_cast<double>(alpha_cols[j]);
        for (Index i = first; i < rows; ++i) {
            const double wij = static_cast<double>(alpha_rows[i]) * alpha_j - static_cast<double>(kinv_column[i]);
            weight[static_cast<std::size_t>(i)] = i == same ? wij : 2.0 * wij;
        }
        k.column_gradient(w, X + (c0 + j) * d, first, same, weight.data(), sum.data());
        if (same >= 0) sum[static_cast<std::size_t>(p)] += weight[static_cast<std::size_t>(same)] * noise;
    }
    for (Index q = 0; q <= p; ++q) out[q] += sum[static_cast<std::size_t>(q)];
}

/// Vectorized accumulate_gradient_tile. dK entries are regenerated from r2 (stationary.hpp:
/// dk/dlog s2 = k, dk/dlog l_k = c u_k with c = -2 s2 f'(r2)) and never stored.
template <typename T, StationaryCovariance K>
GPRAT_HOT_LOOP void accumulate_stationary_gradient(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X,
                                    Index r0, Index c0, Index d, const K& k, double noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params();
    const bool ard = k.ard();
    const double s2 = k.signal_variance();
    const Index rows = kinv.rows();
    ScaledTile<K, T> block(k, X, r0, rows, X, c0, kinv.cols(), d);
    std::vector<double> weighted_slope(static_cast<std::size_t>(rows)), sum(static_cast<std::size_t>(p + 1), 0.0);
    double* cw = weighted_slope.data();
    for (Index j = 0; j < kinv.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, rows) : 0;
        const double* r2 = block.squared_distances(j, first);
        const T* kinv_column = &kinv(0, j);
        const double alpha_j = static_cast<double>(alpha_cols[j]);
        double sum_signal = 0.0, sum_iso = 0.0;
#pragma omp simd reduction(+ : sum_signal, sum_iso)
        for (Index i = first; i < rows; ++i) {
            const double w = static_cast<double>(alpha_rows[i]) * alpha_j - static_cast<double>(kinv_column[i]);
            const double ww = (diagonal_tile && i == j) ? w : 2.0 * w;
            double f = 0.0, slope = 0.0;
            K::profile_and_slope(r2[i], f, slope);
            sum_signal += ww * s2 * f;                 // dk/dlog s2 = k
            cw[i] = ww * (-2.0 * s2 * slope);          // weight times c
            sum_iso += cw[i] * r2[i];                  // isotropic: dk/dlog l = c r2
        }
        sum[p - 1] += sum_signal;
        if (ard) {
            for (Index q = 0; q < d; ++q) {  // dk/dlog l_q = c u_q, u_q = (x_q - y_q)^2 / l_q^2
                const double* xq = block.row_coordinate(q);
                const double yq = block.col_coordinate(q, j);
                double acc = 0.0;
#pragma omp simd reduction(+ : acc)
                for (Index i = first; i < rows; ++i) {
                    const double u = xq[i] - yq;
                    acc += cw[i] * u * u;
                }
                sum[q] += acc;
            }
        } else {
            sum[0] += sum_iso;
        }
        if (diagonal_tile && j < rows) {
            const double w = static_cast<double>(alpha_rows[j]) * alpha_j - static_cast<double>(kinv_column[j]);
            sum[p] += w * noise;
        }
    }
    for (Index q = 0; q <= p; ++q) out[q] += sum[q];
}

/// Generic accumulate_gradient_tile, from the per-pair gradient k.gradient.
template <typename T, CovarianceFunction K>
void accumulate_generic_gradient(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X,
                                 Index r0, Index c0, Index d, const K& k, double noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params();
    std::vector<double> grad(static_cast<std::size_t>(p)), sum(static_cast<std::size_t>(p + 1), 0.0);
    for_each_entry(kinv.rows(), kinv.cols(), X, r0, X, c0, d, diagonal_tile,
                   [&](Index i, Index j, const T* x, const T* y) {
                       const double w = static_cast<double>(alpha_rows[i]) * static_cast<double>(alpha_cols[j]) -
                                        static_cast<double>(kinv(i, j));
                       const bool on_diagonal = diagonal_tile && i == j;
                       const double ww = on_diagonal ? w : 2.0 * w;
                       if (on_diagonal)
                           same_point_gradient(k, x, d, std::span<double>(grad));
                       else
                           k.gradient(x, y, d, std::span<double>(grad));
                       for (Index q = 0; q < p; ++q) sum[static_cast<std::size_t>(q)] += ww * grad[static_cast<std::size_t>(q)];
                       if (on_diagonal) sum[static_cast<std::size_t>(p)] += w * noise;
                   });
    for (Index q = 0; q <= p; ++q) out[q] += sum[static_cast<std::size_t>(q)];
}

}  // namespace detail

/// t <- k(X[r0..], Y[c0..]) (+ diagonal on the global diagonal when `symmetric`). In a symmetric
/// diagonal tile only the lower triangle is computed; the strict upper triangle is set to 0.
template <typename T, CovarianceFunction K>
void fill_covariance_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                          bool symmetric, double diagonal)
{
    const bool diagonal_tile = symmetric && r0 == c0;
    if constexpr (StationaryCovariance<K>) {
        detail::fill_stationary_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal);
    } else if constexpr (ColumnCovariance<K>) {
        detail::fill_column_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal);
    } else {
        detail::fill_generic_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal);
    }
}

/// Cross-covariance tile t <- k(X[r0..], Z[c0..]) between two point sets (K*^T in prediction,
/// K_XZ of inducing points): all entries, nothing added.
template <typename T, CovarianceFunction K>
void fill_cross_covariance_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Z, Index c0, Index d, const K& k)
{
    fill_covariance_tile(t, X, r0, Z, c0, d, k, false, 0.0);
}

/// v(r, 0) <- k(x, x) + add for the points x = X[r0 + r] of one column tile (the prior variance).
template <typename T, CovarianceFunction K>
void fill_diagonal_tile(tiles::TileView<T> v, const T* X, Index r0, Index d, const K& k, double add)
{
    for (Index r = 0; r < v.rows(); ++r) v(r, 0) = static_cast<T>(k.diagonal(X + (r0 + r) * d, d) + add);
}

/// tiles[p] <- dk/dtheta_p (X[r0..], Y[c0..]) for every hyperparameter p of k (full tiles).
/// With `symmetric` (Y is X), the entries on the global diagonal (r0 + i == c0 + j) are those of
/// a point with itself (same_point_gradient: White's gradient is there and nowhere else).
template <typename T, CovarianceFunction K>
void fill_gradient_tiles(std::span<const tiles::TileView<T>> tiles, const T* X, Index r0, const T* Y, Index c0,
                         Index d, const K& k, bool symmetric = false)
{
    GPRAT_ASSERT(static_cast<Index>(tiles.size()) == k.n_params());
    std::vector<double> grad(static_cast<std::size_t>(k.n_params()));
    for_each_entry(tiles[0].rows(), tiles[0].cols(), X, r0, Y, c0, d, false,
                   [&](Index i, Index j, const T* x, const T* y) {
                       if (symmetric && r0 + i == c0 + j)
                           detail::same_point_gradient(k, x, d, std::span<double>(grad));
                       else
                           k.gradient(x, y, d, std::span<double>(grad));
                       for (std::size_t p = 0; p < grad.size(); ++p) tiles[p](i, j) = static_cast<T>(grad[p]);
                   });
}

/// Fused gradient reduction over one lower tile of K^{-1} (global rows r0.., columns c0..):
///   out[p] += sum_{a,b} w_ab (alpha_a alpha_b - Kinv_ab) dK_ab/dtheta_p
/// with w = 1 on the global diagonal and 2 below it (the tile stands for itself and its mirror),
/// and out[n_params] += sum_a (alpha_a^2 - Kinv_aa) noise  (dK/dlog noise = noise I).
/// out has n_params() + 1 entries. dK is regenerated entry by entry and never stored.
template <typename T, CovarianceFunction K>
void accumulate_gradient_tile(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X, Index r0,
                              Index c0, Index d, const K& k, double noise, double* out)
{
    if constexpr (StationaryCovariance<K>) {
        detail::accumulate_stationary_gradient(kinv, alpha_rows, alpha_cols, X, r0, c0, d, k, noise, out);
    } else if constexpr (ColumnCovariance<K>) {
        detail::accumulate_column_gradient(kinv, alpha_rows, alpha_cols, X, r0, c0, d, k, noise, out);
    } else {
        detail::accumulate_generic_gradient(kinv, alpha_rows, alpha_cols, X, r0, c0, d, k, noise, out);
    }
}

}  // namespace gprat::kernels
