#pragma once
/// The regular grid U of KISS-GP (Wilson & Nickisch 2015) and the sparse cubic interpolation
/// matrix W, with K(X, X) ~ W K_UU W^T.
///
/// Grid: per dimension k, m_k points u_k(i) = lo_k + i h_k, i = 0 .. m_k - 1; m = prod_k m_k, the
/// flat index of (i_0, .., i_{d-1}) is sum_k i_k s_k with s_{d-1} = 1 (the last dimension fastest).
///
/// Interpolation: Keys' cubic convolution (Keys 1981) with a = -1/2, on s = |x - u| / h:
///   w(s) = (a + 2) s^3 - (a + 3) s^2 + 1          for s <= 1
///   w(s) = a s^3 - 5 a s^2 + 8 a s - 4 a           for 1 < s < 2,   0 beyond.
/// A coordinate at p = (x - lo) / h = j + t (j integer, 0 <= t <= 1) takes the four grid points
/// j - 1 .. j + 2 with weights w(1 + t), w(t), w(1 - t), w(2 - t) (they sum to 1 and reproduce
/// quadratics). A point is interpolable when 1 <= p <= m - 2 in every dimension: the whole
/// stencil lies on the grid, so the interpolant is the real cubic up to the edge (no weight-1
/// fallback). Outside that range the point is refused (InvalidArgument), never snapped to the
/// boundary. A row of W is the tensor product of the per-dimension weights: 4^d non-zeros.
///
/// Storage: per point and dimension the first stencil index (int32) and its 4 weights (for the
/// per-dimension products of cross-covariances), and the sparse rows of W themselves: 4^d flat
/// grid indices (int32) and weights per point, 36 d + 12 4^d bytes per point.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"

namespace gprat::approx::kiss_gp {

/// Keys' cubic convolution weights (a = -1/2) of the stencil j-1 .. j+2 at offset t in [0, 1].
inline void keys_weights(double t, double* w)
{
    // w(1 + t), w(t), w(1 - t), w(2 - t), each polynomial written out for its branch
    const double s0 = 1.0 + t, s1 = t, s2 = 1.0 - t, s3 = 2.0 - t;
    constexpr double a = -0.5;
    const auto outer = [](double s) { return a * s * s * s - 5.0 * a * s * s + 8.0 * a * s - 4.0 * a; };
    const auto inner = [](double s) { return (a + 2.0) * s * s * s - (a + 3.0) * s * s + 1.0; };
    w[0] = outer(s0);
    w[1] = inner(s1);
    w[2] = inner(s2);
    w[3] = outer(s3);
}

/// One dimension of the grid: m points lo + i h.
struct GridAxis
{
    double lo = 0.0;
    double h = 1.0;
    Index m = 0;
    double hi() const noexcept { return lo + h * static_cast<double>(m - 1); }
};

/// The grid rule used when no size is given: this many grid spacings per lengthscale.
inline constexpr double points_per_lengthscale = 4.0;
/// Spacings added beyond the data range on each side: one for the 4-point stencil (the point
/// j - 1 left of the data, j + 2 right of it), one more so that test points a little outside
/// the training range still interpolate.
inline constexpr Index padding = 2;
/// Fewest points per dimension (the stencil needs 4; 8 keeps the rule sane for tiny ranges).
inline constexpr Index min_points = 8;

/// The axis covering [a, b] (data range, or the bounds given) with `padding` spacings on each
/// side: m points given, or (m <= 0) h = lengthscale / points_per_lengthscale, i.e.
/// m = ceil((b - a) / h) + 1 + 2 padding.
/// @throws InvalidArgument for a non-finite or reversed range, or a grid of fewer than 8 points.
inline GridAxis make_axis(double a, double b, Index m, double lengthscale)
{
    GPRAT_EXPECTS(std::isfinite(a) && std::isfinite(b) && a <= b, "grid bounds must be finite with low <= high; got ("
                                                                    << a << ", " << b << ")");
    if (b - a <= 0.0) {  // a single coordinate: a grid of one lengthscale around it
        a -= 0.5 * lengthscale;
        b += 0.5 * lengthscale;
    }
    GridAxis ax;
    if (m <= 0) {
        GPRAT_EXPECTS(std::isfinite(lengthscale) && lengthscale > 0, "lengthscale must be positive; got " << lengthscale);
        const double h = lengthscale / points_per_lengthscale;
        const double cells = std::ceil((b - a) / h - 1e-9);
        GPRAT_EXPECTS(cells < 1e9, "the automatic grid would have " << cells << " points in one dimension (range "
                                                                   << (b - a) << ", lengthscale " << lengthscale
                                                                   << "); give grid_size");
        m = std::max<Index>(min_points, static_cast<Index>(cells) + 1 + 2 * padding);
    }
    GPRAT_EXPECTS(m >= min_points, "grid_size must be at least " << min_points << " per dimension; got " << m);
    // m - 1 - 2 padding spacings span [a, b]
    ax.m = m;
    ax.h = (b - a) / static_cast<double>(m - 1 - 2 * padding);
    ax.lo = a - static_cast<double>(padding) * ax.h;
    return ax;
}

/// W for n points: first stencil index and weights per point and dimension.
struct Interpolation
{
    Index n = 0, d = 0;
    std::vector<std::int32_t> first;  ///< (n, d): j - 1 of each coordinate
    std::vector<double> weight;       ///< (n, d, 4)
    Index nnz = 0;                    ///< 4^d non-zeros per row
    std::vector<std::int32_t> index;  ///< (n, 4^d) flat grid index of each non-zero
    std::vector<double> value;        ///< (n, 4^d) its weight: the product of the per-dimension weights
};

/// The stencil of one coordinate x on axis ax; false when x is not interpolable (p outside [1, m-2]).
inline bool stencil(const GridAxis& ax, double x, std::int32_t& first, double* w)
{
    const double p = (x - ax.lo) / ax.h;
    // a tolerance of a few ulps of the grid coordinate, so that a point on the edge of the data
    // range computed as lo + (m - 1 - padding) h still counts as inside
    const double tol = 1e-9;
    if (!(p >= 1.0 - tol && p <= static_cast<double>(ax.m - 2) + tol)) return false;
    double j = std::floor(p);
    j = std::min(std::max(j, 1.0), static_cast<double>(ax.m - 3));  // p = m - 2 takes t = 1 on the last cell
    const double t = std::min(std::max(p - j, 0.0), 1.0);
    first = static_cast<std::int32_t>(j) - 1;
    keys_weights(t, w);
    return true;
}

/// W for the row-major (n, d) points X on the grid `axes`.
/// @throws InvalidArgument naming the first point outside the interpolable box, and the box.
template <typename T>
Interpolation interpolate(const std::vector<GridAxis>& axes, const T* X, Index n, const char* what)
{
    const Index d = static_cast<Index>(axes.size());
    Interpolation W;
    W.n = n;
    W.d = d;
    W.first.resize(static_cast<std::size_t>(n * d));
    W.weight.resize(static_cast<std::size_t>(n * d * 4));
    for (Index i = 0; i < n; ++i)
        for (Index k = 0; k < d; ++k) {
            const double x = static_cast<double>(X[i * d + k]);
            const std::size_t at = static_cast<std::size_t>(i * d + k);
            if (!stencil(axes[k], x, W.first[at], &W.weight[at * 4])) {
                const GridAxis& ax = axes[k];
                GPRAT_EXPECTS(false, what << " row " << i << " has feature " << k << " = " << x
                                          << ", outside the interpolable range [" << ax.lo + ax.h << ", "
                                          << ax.lo + ax.h * static_cast<double>(ax.m - 2)
                                          << "] of the KISS-GP grid (cubic interpolation needs one grid point "
                                             "beyond it on each side); refit with grid_bounds covering it");
            }
        }
    // rows of W: entry s = (s_0 .. s_{d-1}) in base 4 (s_{d-1} fastest) has index
    // sum_k (first_k + s_k) stride_k and weight prod_k w_k[s_k]
    std::vector<Index> strides(static_cast<std::size_t>(d));
    Index stride = 1, m = 1;
    for (Index k = d - 1; k >= 0; --k) {
        strides[static_cast<std::size_t>(k)] = stride;
        stride *= axes[static_cast<std::size_t>(k)].m;
    }
    m = stride;
    GPRAT_EXPECTS(m <= std::numeric_limits<std::int32_t>::max(),
                  "the KISS-GP grid has " << m << " points; at most 2^31 - 1 are supported");
    W.nnz = 1;
    for (Index k = 0; k < d; ++k) W.nnz *= 4;
    W.index.resize(static_cast<std::size_t>(n * W.nnz));
    W.value.resize(static_cast<std::size_t>(n * W.nnz));
    for (Index i = 0; i < n; ++i)
        for (Index s = 0; s < W.nnz; ++s) {
            Index rest = s, u = 0;
            double w = 1.0;
            for (Index k = d - 1; k >= 0; --k) {
                const Index sk = rest & 3;
                rest >>= 2;
                const std::size_t at = static_cast<std::size_t>(i * d + k);
                u += (static_cast<Index>(W.first[at]) + sk) * strides[static_cast<std::size_t>(k)];
                w *= W.weight[at * 4 + static_cast<std::size_t>(sk)];
            }
            W.index[static_cast<std::size_t>(i * W.nnz + s)] = static_cast<std::int32_t>(u);
            W.value[static_cast<std::size_t>(i * W.nnz + s)] = w;
        }
    return W;
}

}  // namespace gprat::approx::kiss_gp
