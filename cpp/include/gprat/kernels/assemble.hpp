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
/// Derivatives with respect to the inputs (SGPR/SVGP: dk(x, z)/dz for the inducing points) go
/// through the per-pair `input_gradient` (InputDifferentiable): fill_input_gradient_tiles
/// (dense, for tests) and the weighted reductions accumulate_inducing_gradient and
/// accumulate_diagonal_gradient, generic per-pair paths for every kernel.
#include <algorithm>
#include <cstddef>
#include <span>
#include <type_traits>
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

/// The alpha = K^{-1} (y - mean) rows a gradient tile reads: rows a of the tile's row block and
/// rows b of its column block, for `outputs` right-hand sides stored column by column
/// (entry (i, c) at rows[i + c ld_rows]).
template <typename T>
struct GradientAlpha
{
    const T* rows;
    const T* cols;
    Index ld_rows = 0, ld_cols = 0, outputs = 1;
};

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
                          bool diagonal_tile, double diagonal, const double* diagonal_rows)
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
        if (diagonal_tile && j < t.rows())
            column[j] = static_cast<T>(s2 * K::profile(r2[j]) + (diagonal_rows ? diagonal_rows[r0 + j] : diagonal));
    }
}

/// Generic fill_covariance_tile: t(i, j) = k(x_i, y_j), one pair at a time.
template <typename T, CovarianceFunction K>
void fill_generic_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                       bool diagonal_tile, double diagonal, const double* diagonal_rows)
{
    if (diagonal_tile)
        for (Index j = 1; j < t.cols(); ++j)
            for (Index i = 0; i < std::min(j, t.rows()); ++i) t(i, j) = T(0);
    for_each_entry(t.rows(), t.cols(), X, r0, Y, c0, d, diagonal_tile, [&](Index i, Index j, const T* x, const T* y) {
        // On the global diagonal: a point with itself, k.diagonal (White acts there only), plus the
        // added diagonal: diagonal_rows[global row] (per-sample noise) or the scalar `diagonal`.
        if (diagonal_tile && i == j)
            t(i, j) = static_cast<T>(k.diagonal(x, d) + (diagonal_rows ? diagonal_rows[r0 + i] : diagonal));
        else
            t(i, j) = static_cast<T>(k(x, y, d));
    });
}

/// w(i, j) = sum_c A(i, c) B(j, c) - outputs Kinv(i, j) for rows i in [first, rows) of one
/// column j: the weights of the fused gradient, (alpha alpha^T - p K^{-1}) for p outputs.
/// For one output this is alpha_i alpha_j - Kinv_ij, the same operations as before.
template <typename T>
inline void gradient_weights(const GradientAlpha<T>& a, const T* kinv_column, Index j, Index first, Index rows,
                             double* w)
{
    if (a.outputs == 1) {
        const double alpha_j = static_cast<double>(a.cols[j]);
#pragma omp simd
        for (Index i = first; i < rows; ++i)
            w[i] = static_cast<double>(a.rows[i]) * alpha_j - static_cast<double>(kinv_column[i]);
        return;
    }
    for (Index i = first; i < rows; ++i) w[i] = 0.0;
    for (Index c = 0; c < a.outputs; ++c) {
        const T* ac = a.rows + c * a.ld_rows;
        const double alpha_j = static_cast<double>(a.cols[j + c * a.ld_cols]);
#pragma omp simd
        for (Index i = first; i < rows; ++i) w[i] += static_cast<double>(ac[i]) * alpha_j;
    }
    const double p = static_cast<double>(a.outputs);
#pragma omp simd
    for (Index i = first; i < rows; ++i) w[i] -= p * static_cast<double>(kinv_column[i]);
}

/// Column fill_covariance_tile (ColumnCovariance): t(:, j) = k(X rows, y_j) one column at a time.
/// The kernel's own same-point value (White) comes from k.column through `same`; the added
/// diagonal is diagonal_rows[global row] when given, else `diagonal`.
template <typename T, ColumnCovariance K>
GPRAT_HOT_LOOP void fill_column_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                      bool diagonal_tile, double diagonal, const double* diagonal_rows)
{
    typename K::ColumnWorkspace w;
    k.prepare_rows(w, X, r0, t.rows(), d);
    std::vector<double> col(std::is_same_v<T, double> ? 0 : static_cast<std::size_t>(t.rows()));
    for (Index j = 0; j < t.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, t.rows()) : 0;
        const Index same = diagonal_tile && j < t.rows() ? j : -1;  // the point y_j itself (White)
        T* column = &t(0, j);
        double* values = col.data();
        if constexpr (std::is_same_v<T, double>) values = column;  // straight into the tile
        k.column(w, Y + (c0 + j) * d, first, same, values);
        for (Index i = 0; i < first; ++i) column[i] = T(0);
        if constexpr (!std::is_same_v<T, double>)
            for (Index i = first; i < t.rows(); ++i) column[i] = static_cast<T>(values[i]);
        if (same >= 0) column[same] = static_cast<T>(values[same] + (diagonal_rows ? diagonal_rows[r0 + same] : diagonal));
    }
}

/// Column accumulate_gradient_tile (ColumnCovariance): the weights w_ij of one column
/// (gradient_weights, 2x below the diagonal) go to k.column_gradient, which accumulates them
/// against dk/dtheta in the workspace, summed once per tile by k.column_gradient_sums; a learned
/// noise (when `noise` is not null) gets sum_a w_aa sigma2.
template <typename T, ColumnCovariance K>
GPRAT_HOT_LOOP void accumulate_column_gradient(tiles::TileView<T> kinv, const GradientAlpha<T>& a, const T* X,
                                Index r0, Index c0, Index d, const K& k, const double* noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params(), rows = kinv.rows();
    typename K::ColumnWorkspace w;
    k.prepare_rows(w, X, r0, rows, d);
    std::vector<double> weight(static_cast<std::size_t>(rows)), sum(static_cast<std::size_t>(p + 1), 0.0);
    for (Index j = 0; j < kinv.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, rows) : 0;
        const Index same = diagonal_tile && j < rows ? j : -1;
        gradient_weights(a, &kinv(0, j), j, first, rows, weight.data());
        for (Index i = first; i < rows; ++i)
            if (i != same) weight[static_cast<std::size_t>(i)] *= 2.0;
        k.column_gradient(w, X + (c0 + j) * d, first, same, weight.data());
        if (noise && same >= 0) sum[static_cast<std::size_t>(p)] += weight[static_cast<std::size_t>(same)] * *noise;
    }
    k.column_gradient_sums(w, sum.data());
    for (Index q = 0; q < p + (noise ? 1 : 0); ++q) out[q] += sum[static_cast<std::size_t>(q)];
}

/// Vectorized accumulate_gradient_tile. dK entries are regenerated from r2 (stationary.hpp:
/// dk/dlog s2 = k, dk/dlog l_k = c u_k with c = -2 s2 f'(r2)) and never stored.
/// The sums run per row, across the tile's columns, and are reduced over the rows once per tile:
/// a reduction per column and dimension is a dependent chain of adds ending in a horizontal sum
/// per column, a row accumulator an independent update per entry (5-8 % faster for the whole
/// tile in a CPU-time micro-benchmark, 128 x 128 tiles, d = 6, SE and Matern-5/2; at 512 x 512
/// within the run-to-run spread, SE a few % slower and Matern-5/2 a few % faster).
template <typename T, StationaryCovariance K>
GPRAT_HOT_LOOP void accumulate_stationary_gradient(tiles::TileView<T> kinv, const GradientAlpha<T>& a, const T* X,
                                    Index r0, Index c0, Index d, const K& k, const double* noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params();
    const bool ard = k.ard();
    const double s2 = k.signal_variance();
    const Index rows = kinv.rows();
    ScaledTile<K, T> block(k, X, r0, rows, X, c0, kinv.cols(), d);
    // row_sums[q * rows + i]: the sum over the tile's columns of entry (i, .)'s contribution to
    // dtheta_q (q < p - 1: lengthscales, ARD or the one isotropic; q = p - 1: the signal variance).
    std::vector<double> weighted_slope(static_cast<std::size_t>(rows)), weight(static_cast<std::size_t>(rows)),
        row_sums(static_cast<std::size_t>(p * rows), 0.0);
    double* cw = weighted_slope.data();
    double* wt = weight.data();
    double* signal_rows = row_sums.data() + (p - 1) * rows;
    double noise_sum = 0.0;
    for (Index j = 0; j < kinv.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, rows) : 0;
        const double* r2 = block.squared_distances(j, first);
        gradient_weights(a, &kinv(0, j), j, first, rows, wt);
#pragma omp simd
        for (Index i = first; i < rows; ++i) {
            const double w = wt[i];
            const double ww = (diagonal_tile && i == j) ? w : 2.0 * w;
            double f = 0.0, slope = 0.0;
            K::profile_and_slope(r2[i], f, slope);
            signal_rows[i] += ww * s2 * f;             // dk/dlog s2 = k
            cw[i] = ww * (-2.0 * s2 * slope);          // weight times c
        }
        if (ard) {
            for (Index q = 0; q < d; ++q) {  // dk/dlog l_q = c u_q, u_q = (x_q - y_q)^2 / l_q^2
                const double* xq = block.row_coordinate(q);
                const double yq = block.col_coordinate(q, j);
                double* acc = row_sums.data() + q * rows;
#pragma omp simd
                for (Index i = first; i < rows; ++i) {
                    const double u = xq[i] - yq;
                    acc[i] += cw[i] * u * u;
                }
            }
        } else {
#pragma omp simd
            for (Index i = first; i < rows; ++i) row_sums[static_cast<std::size_t>(i)] += cw[i] * r2[i];  // c r2
        }
        if (noise && diagonal_tile && j < rows) noise_sum += wt[j] * *noise;
    }
    for (Index q = 0; q < p; ++q) {
        const double* acc = row_sums.data() + q * rows;
        double total = 0.0;
#pragma omp simd reduction(+ : total)
        for (Index i = 0; i < rows; ++i) total += acc[i];
        out[q] += total;
    }
    if (noise) out[p] += noise_sum;
}

/// Generic accumulate_gradient_tile, from the per-pair gradient k.gradient.
template <typename T, CovarianceFunction K>
void accumulate_generic_gradient(tiles::TileView<T> kinv, const GradientAlpha<T>& a, const T* X, Index r0, Index c0,
                                 Index d, const K& k, const double* noise, double* out)
{
    const bool diagonal_tile = r0 == c0;
    const Index p = k.n_params();
    const Index rows = kinv.rows();
    std::vector<double> grad(static_cast<std::size_t>(p)), sum(static_cast<std::size_t>(p + 1), 0.0),
        weight(static_cast<std::size_t>(rows));
    for (Index j = 0; j < kinv.cols(); ++j) {
        const Index first = diagonal_tile ? std::min(j, rows) : 0;
        gradient_weights(a, &kinv(0, j), j, first, rows, weight.data());
        const T* y = X + (c0 + j) * d;
        for (Index i = first; i < rows; ++i) {
            const double w = weight[static_cast<std::size_t>(i)];
            const bool on_diagonal = diagonal_tile && i == j;
            const double ww = on_diagonal ? w : 2.0 * w;
            const T* x = X + (r0 + i) * d;
            if (on_diagonal)
                same_point_gradient(k, x, d, std::span<double>(grad));  // White's gradient is here only
            else
                k.gradient(x, y, d, std::span<double>(grad));
            for (Index q = 0; q < p; ++q) sum[static_cast<std::size_t>(q)] += ww * grad[static_cast<std::size_t>(q)];
            if (noise && on_diagonal) sum[static_cast<std::size_t>(p)] += w * *noise;
        }
    }
    for (Index q = 0; q < p + (noise ? 1 : 0); ++q) out[q] += sum[static_cast<std::size_t>(q)];
}

}  // namespace detail

/// t <- k(X[r0..], Y[c0..]) (+ diagonal on the global diagonal when `symmetric`). In a symmetric
/// diagonal tile only the lower triangle is computed; the strict upper triangle is set to 0.
/// @param diagonal_rows  when not null, the global diagonal entry of row r gets diagonal_rows[r]
///        (indexed by global row, n entries) instead of `diagonal`: per-sample noise.
template <typename T, CovarianceFunction K>
void fill_covariance_tile(tiles::TileView<T> t, const T* X, Index r0, const T* Y, Index c0, Index d, const K& k,
                          bool symmetric, double diagonal, const double* diagonal_rows = nullptr)
{
    const bool diagonal_tile = symmetric && r0 == c0;
    if constexpr (StationaryCovariance<K>) {
        detail::fill_stationary_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal, diagonal_rows);
    } else if constexpr (ColumnCovariance<K>) {
        detail::fill_column_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal, diagonal_rows);
    } else {
        detail::fill_generic_tile(t, X, r0, Y, c0, d, k, diagonal_tile, diagonal, diagonal_rows);
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
///   out[p] += sum_{a,b} w_ab (sum_c alpha_ac alpha_bc - outputs Kinv_ab) dK_ab/dtheta_p
/// with w = 1 on the global diagonal and 2 below it (the tile stands for itself and its mirror),
/// and, when `noise` is not null (a learned noise variance sigma2),
///   out[n_params] += sum_a (sum_c alpha_ac^2 - outputs Kinv_aa) sigma2   (dK/dlog sigma2 = sigma2 I).
/// For `outputs` right-hand sides this is the gradient of the summed log likelihood:
///   sum_c [1/2 a_c^T dK a_c - 1/2 tr(K^{-1} dK)] = 1/2 tr((A A^T - outputs K^{-1}) dK).
/// A fixed (per-sample) noise has no derivative and no entry. out has n_params() (+ 1 with
/// noise) entries. dK is regenerated entry by entry and never stored.
template <typename T, CovarianceFunction K>
void accumulate_gradient_tile(tiles::TileView<T> kinv, const GradientAlpha<T>& alpha, const T* X, Index r0, Index c0,
                              Index d, const K& k, const double* noise, double* out)
{
    if constexpr (StationaryCovariance<K>) {
        detail::accumulate_stationary_gradient(kinv, alpha, X, r0, c0, d, k, noise, out);
    } else if constexpr (ColumnCovariance<K>) {
        detail::accumulate_column_gradient(kinv, alpha, X, r0, c0, d, k, noise, out);
    } else {
        detail::accumulate_generic_gradient(kinv, alpha, X, r0, c0, d, k, noise, out);
    }
}

/// accumulate_gradient_tile for one output (alpha vectors) and a learned noise variance `noise`:
/// out has n_params() + 1 entries.
template <typename T, CovarianceFunction K>
void accumulate_gradient_tile(tiles::TileView<T> kinv, const T* alpha_rows, const T* alpha_cols, const T* X, Index r0,
                              Index c0, Index d, const K& k, double noise, double* out)
{
    const GradientAlpha<T> a{alpha_rows, alpha_cols, kinv.rows(), kinv.cols(), 1};
    accumulate_gradient_tile(kinv, a, X, r0, c0, d, k, &noise, out);
}

/// tiles[c] <- dk(x_i, z_j)/dz_{j,c} for c in [0, d): the derivative of each entry of the cross
/// tile k(X[r0..], Z[c0..]) with respect to feature c of its column point (full tiles).
template <typename T, InputDifferentiable K>
void fill_input_gradient_tiles(std::span<const tiles::TileView<T>> tiles, const T* X, Index r0, const T* Z, Index c0,
                               Index d, const K& k)
{
    GPRAT_ASSERT(static_cast<Index>(tiles.size()) == d);
    std::vector<double> gz(static_cast<std::size_t>(d));
    for_each_entry(tiles[0].rows(), tiles[0].cols(), X, r0, Z, c0, d, false,
                   [&](Index i, Index j, const T* x, const T* z) {
                       k.input_gradient(x, z, d, std::span<double>(gz));
                       for (Index c = 0; c < d; ++c) tiles[static_cast<std::size_t>(c)](i, j) = static_cast<T>(gz[static_cast<std::size_t>(c)]);
                   });
}

namespace detail {

/// Vectorized accumulate_inducing_gradient for k = s2 f(r2) (stationary.hpp): per row z_j, the
/// scaled differences u_ic = (x_ic - z_jc) / l_c of a whole row of the tile in contiguous loops,
/// then with c_i = -2 s2 f'(r2_i) and the weights w_i = w(j, i):
///   dk/dlog l_c = c u_c^2 (ARD; isotropic: c r2),  dk/dlog s2 = s2 f,  dk/dz_c = c u_c / l_c.
/// The same formulas hold at r2 = 0 (the diagonal of K(Z)): a stationary family has no
/// same-point term.
template <typename P, StationaryCovariance K>
GPRAT_HOT_LOOP void accumulate_stationary_inducing_gradient(tiles::TileView<double> w, const P* Z, Index z0, const P* X,
                                                            Index x0, Index d, const K& k, double theta_scale,
                                                            double input_scale, double* theta_sums, double* z_grad)
{
    const Index rows = w.rows(), cols = w.cols();
    const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
    std::vector<double> xs(sz(cols * d)), zs(sz(rows * d)), r2(sz(cols)), cw(sz(cols)), wr(sz(cols));
    k.scale_points(X, x0, cols, d, xs.data());  // dimension-major: xs[c * cols + i]
    k.scale_points(Z, z0, rows, d, zs.data());
    const bool ard = k.ard();
    const double s2 = k.signal_variance();
    const auto& ls = k.lengthscale();
    std::vector<double> acc_l(sz(ard ? d : 1), 0.0);
    double acc_s = 0.0;
    for (Index j = 0; j < rows; ++j) {
        for (Index i = 0; i < cols; ++i) {
            wr[sz(i)] = w(j, i);
            r2[sz(i)] = 0.0;
        }
        for (Index c = 0; c < d; ++c) {
            const double zc = zs[sz(c * rows + j)];
            const double* xc = xs.data() + c * cols;
#pragma omp simd
            for (Index i = 0; i < cols; ++i) {
                const double u = xc[i] - zc;
                r2[sz(i)] += u * u;
            }
        }
        double ks = 0.0;
#pragma omp simd reduction(+ : ks)
        for (Index i = 0; i < cols; ++i) {
            double f = 0.0, slope = 0.0;
            K::profile_and_slope(r2[sz(i)], f, slope);
            ks += wr[sz(i)] * s2 * f;
            cw[sz(i)] = wr[sz(i)] * (-2.0 * s2 * slope);
        }
        acc_s += ks;
        if (theta_sums && !ard) {
            double a = 0.0;
#pragma omp simd reduction(+ : a)
            for (Index i = 0; i < cols; ++i) a += cw[sz(i)] * r2[sz(i)];
            acc_l[0] += a;
        }
        for (Index c = 0; c < d; ++c) {
            const double zc = zs[sz(c * rows + j)];
            const double* xc = xs.data() + c * cols;
            double a2 = 0.0, a1 = 0.0;
#pragma omp simd reduction(+ : a1, a2)
            for (Index i = 0; i < cols; ++i) {
                const double u = xc[i] - zc;
                a1 += cw[sz(i)] * u;
                a2 += cw[sz(i)] * u * u;
            }
            if (theta_sums && ard) acc_l[sz(c)] += a2;
            if (z_grad) z_grad[j * d + c] += input_scale * a1 / ls[sz(ard ? c : 0)];
        }
    }
    if (theta_sums) {
        for (std::size_t q = 0; q < acc_l.size(); ++q) theta_sums[q] += theta_scale * acc_l[q];
        theta_sums[acc_l.size()] += theta_scale * acc_s;
    }
}

}  // namespace detail

/// Weighted reductions over one tile whose rows are inducing points z_j = Z[z0 + j] and whose
/// columns are points x_i = X[x0 + i], with weights w(j, i) (w: rows x cols):
///   theta_sums[p]    += theta_scale sum_{j,i} w(j, i) dk(z_j, x_i)/dtheta_p
///   z_grad[j d + c]  += input_scale sum_i w(j, i) dk(x_i, z_j)/dz_{j,c}      (z_grad: rows x d, row-major)
/// (k is symmetric, so the second is also d k(z_j, x_i)/dz_j). With `symmetric` (X is Z, the
/// tile of K(Z)), entries on the global diagonal (z0 + j == x0 + i) take same_point_gradient
/// for theta (White) and their input derivative, 2 dk(z, z)/dz_2 = d k(z, z)/dz, comes with
/// input_scale = 2 as for the other entries. theta_sums or z_grad may be null (skipped).
template <typename P, InputDifferentiable K>
void accumulate_inducing_gradient(tiles::TileView<double> w, const P* Z, Index z0, const P* X, Index x0, Index d,
                                  const K& k, bool symmetric, double theta_scale, double input_scale,
                                  double* theta_sums, double* z_grad)
{
    if constexpr (StationaryCovariance<K> && requires { k.lengthscale(); }) {
        detail::accumulate_stationary_inducing_gradient(w, Z, z0, X, x0, d, k, theta_scale, input_scale, theta_sums,
                                                        z_grad);
        return;
    }
    const std::size_t np = static_cast<std::size_t>(k.n_params());
    std::vector<double> grad(np), gz(static_cast<std::size_t>(d)), local(np, 0.0);
    for (Index j = 0; j < w.rows(); ++j) {
        const P* z = Z + (z0 + j) * d;
        double* zg = z_grad ? z_grad + j * d : nullptr;
        for (Index i = 0; i < w.cols(); ++i) {
            const double wij = w(j, i);
            if (wij == 0.0) continue;
            const P* x = X + (x0 + i) * d;
            if (theta_sums) {
                if (symmetric && z0 + j == x0 + i)
                    detail::same_point_gradient(k, z, d, std::span<double>(grad));
                else
                    k.gradient(z, x, d, std::span<double>(grad));
                for (std::size_t p = 0; p < np; ++p) local[p] += wij * grad[p];
            }
            if (zg) {
                k.input_gradient(x, z, d, std::span<double>(gz));
                const double s = input_scale * wij;
                for (Index c = 0; c < d; ++c) zg[c] += s * gz[static_cast<std::size_t>(c)];
            }
        }
    }
    if (theta_sums)
        for (std::size_t p = 0; p < np; ++p) theta_sums[p] += theta_scale * local[p];
}

/// theta_sums[p] += scale sum_i dk(x_i, x_i)/dtheta_p over the points X[r0 .. r0 + count): the
/// gradient of the prior variances (tr K_XX of the SGPR bound), same-point terms included.
template <typename P, CovarianceFunction K>
void accumulate_diagonal_gradient(const P* X, Index r0, Index count, Index d, const K& k, double scale,
                                  double* theta_sums)
{
    const std::size_t np = static_cast<std::size_t>(k.n_params());
    std::vector<double> grad(np), local(np, 0.0);
    for (Index i = 0; i < count; ++i) {
        detail::same_point_gradient(k, X + (r0 + i) * d, d, std::span<double>(grad));
        for (std::size_t p = 0; p < np; ++p) local[p] += grad[p];
    }
    for (std::size_t p = 0; p < np; ++p) theta_sums[p] += scale * local[p];
}

}  // namespace gprat::kernels
