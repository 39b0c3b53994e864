#pragma once
/// The kernel-gradient reduction of SVGP's K_ZB weights, column by column: for a weight tile
/// W (M x nb, column-major) over the pairs (z_j, x_i),
///   theta_sums[p] += sum_ji W_ji dk(z_j, x_i)/dtheta_p,   z_grad[j d + c] += sum_i W_ji dk(x_i, z_j)/dz_jc,
/// the same sums as kernels::accumulate_inducing_gradient. That one walks the rows of W (one
/// inducing point at a time, strided reads of a column-major tile); here each column x_i is
/// read contiguously and the sums over i are kept per (c, j) in d x M accumulators, so every
/// inner loop runs over the M inducing points at unit stride. For k = s2 f(r2) with
/// r2 = sum_c u_c^2, u_c = (x_c - z_jc) / l_c, and h = W_ji (-2 s2 f'(r2)):
///   dk/dlog l_c = h u_c^2 (ARD; isotropic: h r2),  dk/dlog s2 = W_ji s2 f,  dk/dz_jc = h u_c / l_c.
/// Other kernels go to kernels::accumulate_inducing_gradient.
#include <algorithm>
#include <vector>

#include "gprat/kernels/assemble.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat::gp::detail {

template <typename K>
GPRAT_HOT_LOOP void accumulate_columns_stationary(tiles::TileView<double> w, const double* Z, const double* X, Index x0,
                                                  Index d, const K& k, double* theta_sums, double* z_grad)
{
    const Index rows = w.rows(), cols = w.cols();
    const auto sz = [](Index v) { return static_cast<std::size_t>(v); };
    std::vector<double> xs(sz(cols * d)), zs(sz(rows * d)), r2(sz(rows)), h(sz(rows));
    std::vector<double> a1(sz(rows * d), 0.0), a2(sz(rows * d), 0.0);
    k.scale_points(X, x0, cols, d, xs.data());  // dimension-major: xs[c * cols + i]
    k.scale_points(Z, 0, rows, d, zs.data());   // zs[c * rows + j]
    const bool ard = k.ard();
    const double s2 = k.signal_variance();
    const auto& ls = k.lengthscale();
    double acc_s = 0.0, acc_iso = 0.0;
    // blocks of rows_per_block inducing points: their 2 d accumulators stay in L1 over the columns
    constexpr Index rows_per_block = 128;
    for (Index j0 = 0; j0 < rows; j0 += rows_per_block) {
        const Index jn = std::min(rows, j0 + rows_per_block);
        for (Index i = 0; i < cols; ++i) {
            const double* wi = &w(0, i);
            for (Index j = j0; j < jn; ++j) r2[sz(j)] = 0.0;
            for (Index c = 0; c < d; ++c) {
                const double xc = xs[sz(c * cols + i)];
                const double* zc = zs.data() + c * rows;
#pragma omp simd
                for (Index j = j0; j < jn; ++j) {
                    const double u = xc - zc[j];
                    r2[sz(j)] += u * u;
                }
            }
            double ks = 0.0, ki = 0.0;
#pragma omp simd reduction(+ : ks, ki)
            for (Index j = j0; j < jn; ++j) {
                double f = 0.0, slope = 0.0;
                K::profile_and_slope(r2[sz(j)], f, slope);
                ks += wi[j] * s2 * f;
                h[sz(j)] = wi[j] * (-2.0 * s2 * slope);
                ki += h[sz(j)] * r2[sz(j)];
            }
            acc_s += ks;
            acc_iso += ki;
            for (Index c = 0; c < d; ++c) {
                const double xc = xs[sz(c * cols + i)];
                const double* zc = zs.data() + c * rows;
                double* s1 = a1.data() + c * rows;
                double* s2c = a2.data() + c * rows;
#pragma omp simd
                for (Index j = j0; j < jn; ++j) {
                    const double u = xc - zc[j];
                    s1[j] += h[sz(j)] * u;
                    s2c[j] += h[sz(j)] * u * u;
                }
            }
        }
    }
    if (theta_sums) {
        if (ard) {
            for (Index c = 0; c < d; ++c) {
                double a = 0.0;
                for (Index j = 0; j < rows; ++j) a += a2[sz(c * rows + j)];
                theta_sums[c] += a;
            }
            theta_sums[d] += acc_s;
        } else {
            theta_sums[0] += acc_iso;
            theta_sums[1] += acc_s;
        }
    }
    if (z_grad)
        for (Index j = 0; j < rows; ++j)
            for (Index c = 0; c < d; ++c) z_grad[j * d + c] += a1[sz(c * rows + j)] / ls[sz(ard ? c : 0)];
}

/// theta_sums and z_grad (M x d, row-major) += the K_ZB-weight reduction of w (header).
template <typename K>
void accumulate_kzb_gradient(tiles::TileView<double> w, const double* Z, const double* X, Index x0, Index d, const K& k,
                             double* theta_sums, double* z_grad)
{
    if constexpr (kernels::StationaryCovariance<K> && requires { k.lengthscale(); }) {
        accumulate_columns_stationary(w, Z, X, x0, d, k, theta_sums, z_grad);
    } else {
        kernels::accumulate_inducing_gradient(w, Z, 0, X, x0, d, k, false, 1.0, 1.0, theta_sums, z_grad);
    }
}

}  // namespace gprat::gp::detail
