#pragma once
/// KernelTree: covariance functions composed from families by sums and products, nested to any
/// depth, each leaf acting on a subset of the features (its active dimensions). It models
/// CovarianceFunction, so the generic tile paths of assemble.hpp fill every tile in ONE pass
/// over the tree per pair of points (no n x n intermediate per term), and the fused gradient
/// reduction regenerates dK/dtheta entry by entry as for any other kernel.
///
/// Families, on one pair of points x, y restricted to the leaf's active dimensions, with the
/// parameters of scikit-learn's kernels (sklearn.gaussian_process.kernels) so that values agree
/// at equal hyperparameters; theta is the log of every parameter, in the leaf's order below.
/// With d(x, y) the Euclidean distance and r2 = sum_k ((x_k - y_k) / l_k)^2:
///   SquaredExponential [l..., s2]  k = s2 exp(-r2 / 2)               (sklearn: C * RBF)
///   Matern12/32/52     [l..., s2]  k = s2 f_nu(r2), matern.hpp       (sklearn: C * Matern(nu))
///     (one l: isotropic; one l per active dimension: ARD; gradients as in stationary.hpp)
///   RationalQuadratic  [l, alpha]  k = (1 + d^2 / (2 alpha l^2))^(-alpha)
///     with s = d^2 / (2 alpha l^2), b = 1 + s:
///     dk/dlog l = 2 alpha s k / b,   dk/dlog alpha = alpha k (s / b - log b)
///   Periodic           [l, p]      k = exp(-2 sin^2(pi d / p) / l^2)   (sklearn: ExpSineSquared)
///     with u = pi d / p:  dk/dlog l = 4 sin^2(u) k / l^2,  dk/dlog p = 4 u sin(u) cos(u) k / l^2
///     (positive semi-definite on one active dimension; of the Euclidean distance in several
///     it is not in general, as scikit-learn's is not: give it one feature with active_dims)
///   Linear             [sigma_0]   k = sigma_0^2 + x . y               (sklearn: DotProduct)
///     dk/dlog sigma_0 = 2 sigma_0^2
///   Constant           [c]         k = c                               (sklearn: ConstantKernel)
///     dk/dlog c = c
///   White              [noise]     k = noise if x and y are the SAME point (the same index on
///     the global diagonal of a symmetric assembly K(X)), else 0 (sklearn: WhiteKernel; so
///     K(X) = noise I but K(X, X) = 0).  dk/dlog noise = k.
/// Composition (sum and product rules), with a, b the children's values:
///   Sum:     k = a + b,  dk/dtheta_a = da/dtheta_a,  dk/dtheta_b = db/dtheta_b
///   Product: k = a b,    dk/dtheta_a = b da/dtheta_a, dk/dtheta_b = a db/dtheta_b
/// A scale c * k is the product Constant(c) * k (scikit-learn's definition of `c * k`).
///
/// Layout: the nodes are a flat array in post-order (children before their parent), so one
/// forward sweep with a small fixed-size value stack evaluates the tree; each subtree's
/// parameters are one contiguous range of theta (left subtree first, as in scikit-learn).
/// The per-pair evaluation (tree_evaluate) reads plain arrays and does plain arithmetic: no
/// allocation, no virtual calls, so a device build can compile it (GPRAT_HOST_DEVICE).
///
/// Tiles (assemble.hpp) take the column path instead: a tile column in blocks of column_block
/// rows, the tree walked once per block, each leaf's formula (the same functions leaf_evaluate
/// calls: stationary_value, periodic_value, rational_quadratic_value, with the per-leaf
/// constants 1/l^2, 1/p, 1/(2 alpha l^2) computed once per block) in a vectorized loop over the
/// block's rows; leaves with the same active dimensions share the squared distance (ARD leaves:
/// the squared differences per dimension); Constant children of Products are scalars; the
/// gradient reverse-accumulates per block into per-row sums. Memory: O(nb d + (nodes + params)
/// column_block) per tile task, never an nb x nb intermediate per term.
#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cmath>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/exp.hpp"
#include "gprat/core/host_device.hpp"
#include "gprat/core/types.hpp"
#include "gprat/kernels/matern.hpp"
#include "gprat/kernels/squared_exponential.hpp"

namespace gprat::kernels {

/// The families a tree's leaves take, in registry order (the first four are also the
/// single-family alternatives of AnyKernel, with the vectorized tile path).
enum class Family : int {
    SquaredExponential,
    Matern12,
    Matern32,
    Matern52,
    RationalQuadratic,
    Periodic,
    Linear,
    Constant,
    White
};

/// Registry names of the families, indexed by Family.
inline constexpr std::array<std::string_view, 9> family_names = {
    "SquaredExponential", "Matern12", "Matern32", "Matern52", "RationalQuadratic",
    "Periodic",           "Linear",   "Constant", "White"};

/// Names of the composition nodes a tree description takes besides the families.
inline constexpr std::array<std::string_view, 2> operator_names = {"Sum", "Product"};

enum class NodeKind : int { Leaf, Sum, Product };

/// One node of the flat post-order array.
struct TreeNode
{
    NodeKind kind = NodeKind::Leaf;
    Family family = Family::Constant;  ///< leaves only
    Index p_begin = 0, p_end = 0;      ///< this subtree's parameters: theta[p_begin .. p_end)
    Index p_split = 0;                 ///< Sum/Product: first parameter of the right child
    Index left = -1;                   ///< Sum/Product: index of the left child (the right one is just before)
    Index dim_begin = 0, n_dims = 0;   ///< leaves: active dimensions dims[dim_begin ..), 0 = all
    bool ard = false;                  ///< stationary leaves: one lengthscale per active dimension
    Index group = -1;                  ///< stationary, RationalQuadratic, Periodic leaves: their distance group (column path)
    bool folded = false;               ///< a Constant child of a Product: the column path uses its value as a scalar
};

/// The most values on the evaluation stack (a post-order sweep needs at most one per pending
/// subtree); trees deeper on the right than this are refused at construction.
inline constexpr Index max_tree_stack = 64;

namespace detail {

/// sin(pi t) and cos(pi t) for t >= 0, branch-free and inlinable so that tile-column loops
/// vectorize (libm's sin and cos are opaque calls). Periodicity reduces the argument:
///   f = t - round(t) in [-1/2, 1/2],  sin(pi t) = (-1)^round(t) sin(pi f), likewise cos,
/// and the Periodic kernel needs only sin^2 and sin * cos, in which the sign cancels, so the
/// reduced values are returned as they are. sin and cos of x = pi f in [-pi/2, pi/2] by their
/// Taylor polynomials to x^23 and x^22 (truncation below 2e-18). round() is the 1.5 * 2^52
/// shifter trick (exp.hpp), exact for t < 2^52; larger t are integers in double precision.
GPRAT_HOST_DEVICE GPRAT_INLINE void sin_cos_pi_reduced(double t, double& sn, double& cs)
{
    constexpr double shifter = 0x1.8p52;
    const double r = t < 0x1p52 ? (t + shifter) - shifter : t;
    const double x = std::numbers::pi * (t - r), x2 = x * x;
    // sin x = x + x x2 sum_{q=0}^{10} (-1)^(q+1) x2^q / (2q+3)!,  cos x = 1 - x2 sum_{q=0}^{10} (-1)^q x2^q / (2q+2)!
    const double ps = gprat::detail::horner<11>(
        x2, [](int q) constexpr { return (q % 2 == 0 ? -1.0 : 1.0) * gprat::detail::inverse_factorial[2 * q + 3]; });
    const double pc = gprat::detail::horner<11>(
        x2, [](int q) constexpr { return (q % 2 == 0 ? 1.0 : -1.0) * gprat::detail::inverse_factorial[2 * q + 2]; });
    sn = x + x * x2 * ps;
    cs = 1.0 - x2 * pc;
}

/// log(1 + s) for s >= 0, branch-free and inlinable (libm's log1p is an opaque call that keeps
/// the RationalQuadratic column loop scalar). With b = 1 + s = 2^e m, m in [sqrt(1/2), sqrt(2)):
///   log b = e ln 2 + log m,  log m = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...),  z = (m-1)/(m+1)
/// (|z| < 0.172; terms to z^25, truncation below 1e-19), and log1p(s) = log(b) s / (b - 1) for
/// b > 1 corrects the rounding of 1 + s (Goldberg's identity), exact at b = 1. Finite s only.
GPRAT_HOST_DEVICE GPRAT_INLINE double log1p_nonnegative(double s)
{
    constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double b = 1.0 + s;
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(b);
    // the biased exponent (bits >> 52 < 2^11) as a double, exactly: placed in the low mantissa
    // bits of 2^52 and 2^52 subtracted (no integer-to-double conversion, which AVX2 lacks for
    // 64-bit lanes and would keep the loops scalar)
    const double biased = std::bit_cast<double>((bits >> 52) | 0x4330000000000000ull) - 0x1p52;
    double m = std::bit_cast<double>((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
    const bool high = m > 1.4142135623730951;
    m = high ? 0.5 * m : m;
    const double ed = biased - 1023.0 + (high ? 1.0 : 0.0);
    const double z = (m - 1.0) / (m + 1.0), z2 = z * z;
    // 2 atanh(z) = 2 z + 2 z^3 sum_{q=0}^{11} z2^q / (2q + 3)
    const double p = gprat::detail::horner<12>(z2, [](int q) constexpr { return 1.0 / (2 * q + 3); });
    const double log_b = ed * ln2_hi + (2.0 * z + (ed * ln2_lo + 2.0 * z * z2 * p));
    const double bm1 = b - 1.0;
    // both branches computed (a division under a condition is not if-converted: it could trap)
    const double ratio = s / (bm1 == 0.0 ? 1.0 : bm1);
    return bm1 == 0.0 ? s : log_b * ratio;
}

/// The per-leaf constants the family formulas below take, computed once per leaf and tile-column
/// block in the column path and once per pair in leaf_evaluate (the same expressions, so both
/// paths round alike): 1/l_k, 1/l^2, 1/p, 1/(2 alpha l^2).
GPRAT_HOST_DEVICE GPRAT_INLINE double inverse_square(double l) { return 1.0 / (l * l); }
GPRAT_HOST_DEVICE GPRAT_INLINE double rational_quadratic_scale(double l, double alpha) { return 1.0 / (2.0 * alpha * l * l); }

/// Stationary leaf on its scaled squared distance r2: k = s2 f(r2), and c = -2 s2 f'(r2), of
/// which dk/dlog l_k = c u_k (stationary.hpp); f, f' from the family's Shape.
template <typename Shape>
GPRAT_HOST_DEVICE GPRAT_INLINE double stationary_value(double r2, double s2, double& c)
{
    double f = 0.0, slope = 0.0;
    Shape::value_and_slope(r2, f, slope);
    c = -2.0 * s2 * slope;
    return s2 * f;
}

/// Periodic leaf on a squared distance: k = exp(-2 sin^2(u) / l^2), u = pi d / p = pi t, with
/// inv_period = 1/p and inv_l2 = 1/l^2, and its gradient
///   dl = dk/dlog l = 4 sin^2(u) k / l^2,  dp = dk/dlog p = 4 u sin(u) cos(u) k / l^2.
/// (Outputs by reference, no branch: a caller that ignores them gets them optimized away, and the
/// column loops stay free of control flow, which keeps them vectorized.)
GPRAT_HOST_DEVICE GPRAT_INLINE double periodic_value(double dist2, double inv_period, double inv_l2, double& dl,
                                                     double& dp)
{
    const double t = std::sqrt(dist2) * inv_period;
    double sn = 0.0, cs = 0.0;
    sin_cos_pi_reduced(t, sn, cs);
    const double s2 = sn * sn;
    const double k = exp_nonpositive(-2.0 * s2 * inv_l2);
    dl = 4.0 * s2 * k * inv_l2;
    dp = 4.0 * std::numbers::pi * t * sn * cs * k * inv_l2;
    return k;
}

/// RationalQuadratic leaf on a squared distance: k = (1 + s)^(-alpha), s = d^2 scale with
/// scale = 1/(2 alpha l^2), b = 1 + s, and its gradient
///   dl = dk/dlog l = 2 alpha s k / b,  da = dk/dlog alpha = alpha k (s / b - log b).
GPRAT_HOST_DEVICE GPRAT_INLINE double rational_quadratic_value(double dist2, double alpha, double scale, double& dl,
                                                               double& da)
{
    const double s = dist2 * scale, b = 1.0 + s;
    const double logb = log1p_nonnegative(s);  // log b, accurate for small s
    const double k = exp_nonpositive(-alpha * logb);
    const double s_over_b = s / b;
    dl = 2.0 * alpha * k * s_over_b;
    da = alpha * k * (s_over_b - logb);
    return k;
}

/// Value of one leaf at (x, y), and its gradient into g[0 .. leaf's n_params) when g is not null.
/// v: the leaf's parameter values (exp theta), dims: the tree's active-dimension array.
/// The per-pair definition of every family; KernelTree's column path evaluates the same formulas
/// (stationary_value, periodic_value, rational_quadratic_value) over a block of rows.
template <typename T>
GPRAT_HOST_DEVICE inline double leaf_evaluate(const TreeNode& n, const double* v, const Index* dims, const T* x,
                                              const T* y, Index d, bool same, double* g)
{
    const Index m = n.n_dims > 0 ? n.n_dims : d;
    const Index* dim = n.n_dims > 0 ? dims + n.dim_begin : nullptr;
    const auto coordinate_difference = [&](Index k) {
        const Index c = dim ? dim[k] : k;
        return static_cast<double>(x[c]) - static_cast<double>(y[c]);
    };
    const auto squared_distance = [&] {
        double dist2 = 0.0;
        for (Index k = 0; k < m; ++k) {
            const double u = coordinate_difference(k);
            dist2 += u * u;
        }
        return dist2;
    };
    switch (n.family) {
    case Family::SquaredExponential:
    case Family::Matern12:
    case Family::Matern32:
    case Family::Matern52: {
        // r2 over the active dimensions: ARD sum_k u_k with u_k = ((x_k - y_k) / l_k)^2, kept in
        // g for the gradient; isotropic |x - y|^2 / l^2
        const Index n_l = n.ard ? m : 1;
        const double s2 = v[n_l];
        double r2 = 0.0;
        if (n.ard) {
            for (Index k = 0; k < m; ++k) {
                const double diff = coordinate_difference(k);
                const double u = (diff * diff) * inverse_square(v[k]);
                if (g) g[k] = u;
                r2 += u;
            }
        } else {
            r2 = squared_distance() * inverse_square(v[0]);
        }
        double c = 0.0, k = 0.0;
        switch (n.family) {
        case Family::SquaredExponential: k = stationary_value<SquaredExponentialShape>(r2, s2, c); break;
        case Family::Matern12: k = stationary_value<Matern12Shape>(r2, s2, c); break;
        case Family::Matern32: k = stationary_value<Matern32Shape>(r2, s2, c); break;
        default: k = stationary_value<Matern52Shape>(r2, s2, c); break;
        }
        if (g) {  // dk/dlog l_k = c u_k, isotropic c r2; dk/dlog s2 = k
            if (n.ard)
                for (Index q = 0; q < m; ++q) g[q] *= c;
            else
                g[0] = c * r2;
            g[n_l] = k;
        }
        return k;
    }
    case Family::RationalQuadratic:
    case Family::Periodic: {
        double d0 = 0.0, d1 = 0.0;
        const double k = n.family == Family::Periodic
                             ? periodic_value(squared_distance(), 1.0 / v[1], inverse_square(v[0]), d0, d1)
                             : rational_quadratic_value(squared_distance(), v[1], rational_quadratic_scale(v[0], v[1]), d0, d1);
        if (g) {
            g[0] = d0;
            g[1] = d1;
        }
        return k;
    }
    case Family::Linear: {
        const double s0 = v[0];
        double dot = 0.0;
        for (Index k = 0; k < m; ++k) {
            const Index c = dim ? dim[k] : k;
            dot += static_cast<double>(x[c]) * static_cast<double>(y[c]);
        }
        if (g) g[0] = 2.0 * s0 * s0;
        return s0 * s0 + dot;
    }
    case Family::Constant:
        if (g) g[0] = v[0];
        return v[0];
    case Family::White: {
        const double k = same ? v[0] : 0.0;
        if (g) g[0] = k;
        return k;
    }
    }
    return 0.0;
}

}  // namespace detail

/// k(x, y) of the tree (nodes in post-order) and, when grad is not null, dk/dtheta into
/// grad[0 .. n_params). `same`: x and y are the same point of a symmetric assembly (White).
template <typename T>
GPRAT_HOST_DEVICE inline double tree_evaluate(const TreeNode* nodes, Index n_nodes, const double* values,
                                              const Index* dims, const T* x, const T* y, Index d, bool same,
                                              double* grad)
{
    double stack[max_tree_stack];
    Index top = 0;
    for (Index i = 0; i < n_nodes; ++i) {
        const TreeNode& n = nodes[i];
        if (n.kind == NodeKind::Leaf) {
            stack[top++] = detail::leaf_evaluate(n, values + n.p_begin, dims, x, y, d, same,
                                                 grad ? grad + n.p_begin : nullptr);
            continue;
        }
        const double b = stack[--top];
        const double a = stack[--top];
        if (n.kind == NodeKind::Sum) {
            stack[top++] = a + b;  // gradients of the children stand as they are
        } else {
            if (grad) {  // product rule
                for (Index p = n.p_begin; p < n.p_split; ++p) grad[p] *= b;
                for (Index p = n.p_split; p < n.p_end; ++p) grad[p] *= a;
            }
            stack[top++] = a * b;
        }
    }
    return stack[0];
}

/// A tree description, one entry per node in pre-order (parent, then its left subtree, then its
/// right): kind is "Sum", "Product" or a family name; params are the family's parameter
/// values (not logs) in the order of the header comment; active_dims the features the leaf
/// acts on (empty: all).
struct TreeNodeSpec
{
    std::string kind;
    std::vector<double> params;
    std::vector<Index> active_dims;
};

class KernelTree
{
  public:
    /// @throws InvalidArgument for an unknown kind, a wrong number of parameters, a parameter
    /// that is not positive and finite (named), duplicated or negative active dimensions, an
    /// incomplete or over-long description, or a tree too deep for the evaluation stack.
    explicit KernelTree(const std::vector<TreeNodeSpec>& spec)
    {
        GPRAT_EXPECTS(!spec.empty(), "KernelTree: the description is empty");
        const std::size_t used = parse(spec, 0);
        GPRAT_EXPECTS(used == spec.size(), "KernelTree: the description has " << spec.size() - used
                                                                               << " entries after a complete tree");
        Index top = 0, most = 0;
        for (const TreeNode& n : nodes_) {
            top += n.kind == NodeKind::Leaf ? 1 : -1;
            most = std::max(most, top);
        }
        GPRAT_EXPECTS(most <= max_tree_stack, "KernelTree: the tree needs " << most << " pending subtrees; at most "
                                                                             << max_tree_stack << " are supported");
        assign_distance_groups();
    }

    static constexpr const char* name() { return "KernelTree"; }
    Index n_params() const noexcept { return static_cast<Index>(values_.size()); }
    Index n_nodes() const noexcept { return static_cast<Index>(nodes_.size()); }
    const std::vector<TreeNode>& nodes() const noexcept { return nodes_; }
    /// exp(theta), every parameter in theta's order, and the active-dimension array the leaves
    /// index (dim_begin, n_dims): with nodes(), all tree_evaluate reads (the CUDA backend copies
    /// the three arrays to the device and calls the same tree_evaluate there).
    const std::vector<double>& values() const noexcept { return values_; }
    const std::vector<Index>& dims() const noexcept { return dims_; }

    /// log of every parameter, leaves left to right.
    std::vector<double> theta() const
    {
        std::vector<double> t(values_.size());
        for (std::size_t p = 0; p < values_.size(); ++p) t[p] = std::log(values_[p]);
        return t;
    }

    /// The same tree at other log-parameters.  @throws InvalidArgument on a wrong length or
    /// a value whose exp is not positive and finite.
    KernelTree with_theta(std::span<const double> theta) const
    {
        GPRAT_EXPECTS(static_cast<Index>(theta.size()) == n_params(),
                      "KernelTree: theta must have " << n_params() << " entries; got " << theta.size());
        KernelTree out(*this);
        for (std::size_t p = 0; p < theta.size(); ++p) {
            const double v = std::exp(theta[p]);
            GPRAT_EXPECTS(std::isfinite(v) && v > 0, "KernelTree: " << parameter_names_[p] << " = exp(" << theta[p]
                                                                     << ") must be positive and finite");
            out.values_[p] = v;
        }
        return out;
    }

    /// k(x, y) for two points of different sets (or the same set off the diagonal): White is 0.
    template <typename T>
    double operator()(const T* x, const T* y, Index d) const
    {
        return tree_evaluate(nodes_.data(), n_nodes(), values_.data(), dims_.data(), x, y, d, false, nullptr);
    }

    /// k(x, y) and dk/dtheta into grad[0 .. n_params()) (White: 0, as in operator()).
    template <typename T>
    double gradient(const T* x, const T* y, Index d, std::span<double> grad) const
    {
        return tree_evaluate(nodes_.data(), n_nodes(), values_.data(), dims_.data(), x, y, d, false, grad.data());
    }

    /// k(x, x) of a point with itself: the prior variance, White included.
    template <typename T>
    double diagonal(const T* x, Index d) const
    {
        return tree_evaluate(nodes_.data(), n_nodes(), values_.data(), dims_.data(), x, x, d, true, nullptr);
    }

    /// diagonal(x) and its gradient: the entries on the global diagonal of a symmetric K(X).
    template <typename T>
    double diagonal_gradient(const T* x, Index d, std::span<double> grad) const
    {
        return tree_evaluate(nodes_.data(), n_nodes(), values_.data(), dims_.data(), x, x, d, true, grad.data());
    }

    /// Throws InvalidArgument if an active dimension is not below d, or an ARD leaf (all
    /// features active) has a lengthscale count other than d.
    void check_features(Index d) const
    {
        for (const TreeNode& n : nodes_) {
            if (n.kind != NodeKind::Leaf) continue;
            const std::string_view fam = family_names[static_cast<int>(n.family)];
            for (Index k = 0; k < n.n_dims; ++k)
                GPRAT_EXPECTS(dims_[static_cast<std::size_t>(n.dim_begin + k)] < d,
                              fam << ": active_dims entry " << dims_[static_cast<std::size_t>(n.dim_begin + k)]
                                  << " is out of range for data with " << d << " features");
            if (n.ard && n.n_dims == 0)
                GPRAT_EXPECTS(n.p_end - n.p_begin - 1 == d, fam << ": ARD lengthscale has " << n.p_end - n.p_begin - 1
                                                                << " entries but the data have " << d << " features");
        }
    }

    /// k(x, z) and dk(x, z)/dz into grad_z[0 .. d): the input derivative (InputDifferentiable),
    /// defined with the rest of it in the section "Input derivatives" at the end of this file.
    template <typename T>
    double input_gradient(const T* x, const T* z, Index d, std::span<double> grad_z) const;

    /// Rows per pass of the column path: each call works through a tile column in blocks of this
    /// many rows, so that every node's block of values, adjoints and derivatives (a few KiB per
    /// node) stays in cache whatever the tile size.
    static constexpr Index column_block = 128;

    /// Scratch for the column path of one tile (assemble.hpp, ColumnCovariance): the tile's row
    /// points dimension-major (n_rows x d), and for one block of column_block rows: per node its
    /// values and adjoints (dk_root/dk_node times the reduction weight), per parameter of a
    /// leaf with transcendental derivatives the leaf's own derivative, per distance group what
    /// its leaves share (the squared distance, or for ARD leaves the squared difference in each
    /// active dimension), two scratch columns, and per parameter the running
    /// gradient of the tile by row of the block (summed over rows once, by column_gradient_sums).
    /// O(nb d + (nodes + params) column_block).
    struct ColumnWorkspace
    {
        std::vector<double> rows, values, adjoints, derivatives, distances, scratch, gradient;
        std::vector<const double*> adjoint_of;  ///< per node: where its adjoint column is
        std::vector<unsigned char> distance_ready;
        std::vector<Index> distance_offset;  ///< per distance group: its first column in `distances`
        Index n_rows = 0, d = 0;
    };

    /// Loads the rows X[r0 .. r0 + count) of a tile into w (dimension-major) and sizes its columns.
    template <typename T>
    GPRAT_INLINE void prepare_rows(ColumnWorkspace& w, const T* X, Index r0, Index count, Index d) const
    {
        w.n_rows = count;
        w.d = d;
        const auto sz = [](Index a) { return static_cast<std::size_t>(a); };
        w.rows.resize(sz(count * d));
        for (Index i = 0; i < count; ++i)
            for (Index k = 0; k < d; ++k) w.rows[sz(k * count + i)] = static_cast<double>(X[(r0 + i) * d + k]);
        w.values.resize(sz(n_nodes() * column_block));
        w.adjoints.resize(sz(n_nodes() * column_block));
        w.derivatives.resize(sz(n_params() * column_block));
        w.gradient.assign(sz(n_params() * column_block), 0.0);
        w.distance_offset.resize(group_leaders_.size());
        Index columns = 0;
        for (std::size_t g = 0; g < group_leaders_.size(); ++g) {
            const TreeNode& leader = nodes_[static_cast<std::size_t>(group_leaders_[g])];
            w.distance_offset[g] = columns;
            columns += leader.ard ? (leader.n_dims > 0 ? leader.n_dims : d) : 1;
        }
        w.distances.resize(sz(columns * column_block));
        w.scratch.resize(sz(2 * column_block));
        w.adjoint_of.resize(sz(n_nodes()));
        w.distance_ready.resize(group_leaders_.size());
    }

    /// out[i] = k(x_i, y) for the prepared rows i in [first, n_rows); same_row: the row that is
    /// the point y itself on the global diagonal of a symmetric K(X) (White), or -1.
    template <typename T>
    GPRAT_INLINE void column(ColumnWorkspace& w, const T* y, Index first, Index same_row, double* out) const
    {
        const double* root = w.values.data() + (n_nodes() - 1) * column_block;
        for (Index b0 = first; b0 < w.n_rows; b0 += column_block) {
            const Index count = std::min(column_block, w.n_rows - b0);
            forward(w, y, b0, count, local_row(same_row, b0, count), false);
            double* o = out + b0;
#pragma omp simd
            for (Index i = 0; i < count; ++i) o[i] = root[i];
        }
    }

    /// Adds weight[i] dk(x_i, y)/dtheta_p for the prepared rows i >= first to the workspace's
    /// running gradient (column_gradient_sums turns it into sums), by reverse accumulation per
    /// block of rows: the adjoint of the root is the weight; a Sum passes its adjoint to both
    /// children (by reference, no copy), a Product to each child times the other child's value;
    /// each leaf adds its adjoint times its own derivatives. O(nodes + params) per pair. The
    /// running gradient is kept per row of the block and summed once per tile: a sum per column
    /// would be one dependent chain of additions per parameter, which bounds the loop by the
    /// add latency instead of its throughput.
    template <typename T>
    GPRAT_INLINE void column_gradient(ColumnWorkspace& w, const T* y, Index first, Index same_row,
                                      const double* weight) const
    {
        constexpr Index B = column_block;
        for (Index b0 = first; b0 < w.n_rows; b0 += B) {
            const Index count = std::min(B, w.n_rows - b0);
            const Index same = local_row(same_row, b0, count);
            forward(w, y, b0, count, same, true);
            const double* val = w.values.data();
            w.adjoint_of[static_cast<std::size_t>(n_nodes() - 1)] = weight + b0;
            for (Index t = n_nodes() - 1; t >= 0; --t) {
                const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
                const double* a = w.adjoint_of[static_cast<std::size_t>(t)];
                if (n.kind == NodeKind::Leaf) {
                    if (!n.folded) leaf_accumulate(w, n, a, count, same);
                    continue;
                }
                const Index right = t - 1;
                if (n.kind == NodeKind::Sum) {
                    w.adjoint_of[static_cast<std::size_t>(n.left)] = a;
                    w.adjoint_of[static_cast<std::size_t>(right)] = a;
                    continue;
                }
                double* al = w.adjoints.data() + n.left * B;
                double* ar = w.adjoints.data() + right * B;
                const TreeNode& lnode = nodes_[static_cast<std::size_t>(n.left)];
                const TreeNode& rnode = nodes_[static_cast<std::size_t>(right)];
                if (lnode.folded || rnode.folded) {
                    // k = c k_other: dk/dlog c = c k_other = k, so the constant gets a k; the other
                    // child's adjoint is a c (both constants: each gets a k)
                    const double* out = val + t * B;
                    for (const TreeNode* cn : {&lnode, &rnode}) {
                        if (!cn->folded) continue;
                        double* g = w.gradient.data() + cn->p_begin * B;
#pragma omp simd
                        for (Index i = 0; i < count; ++i) g[i] += a[i] * out[i];
                    }
                    if (lnode.folded && rnode.folded) continue;
                    const double c = values_[static_cast<std::size_t>(lnode.folded ? lnode.p_begin : rnode.p_begin)];
                    double* ao = lnode.folded ? ar : al;
#pragma omp simd
                    for (Index i = 0; i < count; ++i) ao[i] = a[i] * c;
                    w.adjoint_of[static_cast<std::size_t>(lnode.folded ? right : n.left)] = ao;
                    continue;
                }
                const double* vl = val + n.left * B;
                const double* vr = val + right * B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) {
                    al[i] = a[i] * vr[i];
                    ar[i] = a[i] * vl[i];
                }
                w.adjoint_of[static_cast<std::size_t>(n.left)] = al;
                w.adjoint_of[static_cast<std::size_t>(right)] = ar;
            }
        }
    }

    /// sums[p] += the running gradient of parameter p (column_gradient), which is reset to 0.
    GPRAT_INLINE void column_gradient_sums(ColumnWorkspace& w, double* sums) const
    {
        for (Index p = 0; p < n_params(); ++p) {
            double* g = w.gradient.data() + p * column_block;
            double total = 0.0;
            for (Index i = 0; i < column_block; ++i) {
                total += g[i];
                g[i] = 0.0;
            }
            sums[p] += total;
        }
    }

  private:
    /// same_row as an index into the block [b0, b0 + count), or -1 if it is not in it.
    static Index local_row(Index same_row, Index b0, Index count)
    {
        return same_row >= b0 && same_row < b0 + count ? same_row - b0 : -1;
    }

    /// What the leaves of leaf n's distance group share on the block, computed by the first leaf
    /// of the group that asks: the squared distance |x_i - y|^2 over the active dimensions (one
    /// column), or for ARD leaves the squared differences (x_ik - y_k)^2 (one column per active
    /// dimension k), from which each leaf forms its own r2 = sum_k (x_ik - y_k)^2 / l_k^2.
    template <typename T>
    GPRAT_INLINE const double* group_distance(ColumnWorkspace& w, const TreeNode& n, const T* y, Index b0,
                                              Index count) const
    {
        constexpr Index B = column_block;
        const std::size_t g = static_cast<std::size_t>(n.group);
        double* dist2 = w.distances.data() + w.distance_offset[g] * B;
        if (w.distance_ready[g]) return dist2;
        w.distance_ready[g] = 1;
        const Index m = n.n_dims > 0 ? n.n_dims : w.d;
        if (!n.ard)
            for (Index i = 0; i < count; ++i) dist2[i] = 0.0;
        for (Index k = 0; k < m; ++k) {
            const Index c = feature(n, k);
            const double* xc = w.rows.data() + c * w.n_rows + b0;
            const double yc = static_cast<double>(y[c]);
            if (n.ard) {
                double* dk = dist2 + k * B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) {
                    const double u = xc[i] - yc;
                    dk[i] = u * u;
                }
            } else {
#pragma omp simd
                for (Index i = 0; i < count; ++i) {
                    const double u = xc[i] - yc;
                    dist2[i] += u * u;
                }
            }
        }
        return dist2;
    }

    Index feature(const TreeNode& n, Index k) const
    {
        return n.n_dims > 0 ? dims_[static_cast<std::size_t>(n.dim_begin + k)] : k;
    }

    /// Values of every node on the block (and, with derivatives, each leaf's own derivative
    /// columns), children before parents.
    template <typename T>
    GPRAT_INLINE void forward(ColumnWorkspace& w, const T* y, Index b0, Index count, Index same, bool derivatives) const
    {
        constexpr Index B = column_block;
        std::fill(w.distance_ready.begin(), w.distance_ready.end(), static_cast<unsigned char>(0));
        double* val = w.values.data();
        for (Index t = 0; t < n_nodes(); ++t) {
            const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
            double* out = val + t * B;
            if (n.kind == NodeKind::Leaf) {
                if (!n.folded)
                    leaf_column(w, n, y, b0, count, same, out, derivatives ? w.derivatives.data() + n.p_begin * B : nullptr);
                continue;
            }
            const TreeNode& left = nodes_[static_cast<std::size_t>(n.left)];
            const TreeNode& right = nodes_[static_cast<std::size_t>(t - 1)];
            const double* vl = val + n.left * B;
            const double* vr = val + (t - 1) * B;
            if (n.kind == NodeKind::Sum) {
#pragma omp simd
                for (Index i = 0; i < count; ++i) out[i] = vl[i] + vr[i];
            } else if (left.folded || right.folded) {  // c * k: the constant as a scalar
                const double c = left.folded ? values_[static_cast<std::size_t>(left.p_begin)] : 1.0;
                const double c2 = right.folded ? values_[static_cast<std::size_t>(right.p_begin)] : 1.0;
                const double* other = left.folded ? vr : vl;
                if (left.folded && right.folded) {
                    for (Index i = 0; i < count; ++i) out[i] = c * c2;
                } else {
                    const double scale = left.folded ? c : c2;
#pragma omp simd
                    for (Index i = 0; i < count; ++i) out[i] = scale * other[i];
                }
            } else {
#pragma omp simd
                for (Index i = 0; i < count; ++i) out[i] = vl[i] * vr[i];
            }
        }
    }

    /// One leaf on the block rows [b0, b0 + count): the formulas of leaf_evaluate with the family
    /// chosen and its constants computed once per block, in loops over contiguous rows.
    /// der[q * column_block + i]: dk_i/dlog param q, for the leaves whose leaf_reduce reads it.
    template <typename T>
    GPRAT_INLINE void leaf_column(ColumnWorkspace& w, const TreeNode& n, const T* y, Index b0, Index count, Index same,
                                  double* out, double* der) const
    {
        constexpr Index B = column_block;
        const Index m = n.n_dims > 0 ? n.n_dims : w.d;
        const double* v = values_.data() + n.p_begin;
        switch (n.family) {
        case Family::SquaredExponential:
        case Family::Matern12:
        case Family::Matern32:
        case Family::Matern52: {
            double* r2 = w.scratch.data();
            double* c = w.scratch.data() + B;
            if (n.ard) {  // r2 = sum_k (x_k - y_k)^2 / l_k^2 from the group's squared differences
                const double* diff2 = group_distance(w, n, y, b0, count);
                for (Index i = 0; i < count; ++i) r2[i] = 0.0;
                for (Index k = 0; k < m; ++k) {
                    const double* dk = diff2 + k * B;
                    const double il2 = detail::inverse_square(v[k]);
#pragma omp simd
                    for (Index i = 0; i < count; ++i) r2[i] += dk[i] * il2;
                }
            } else {
                const double* dist2 = group_distance(w, n, y, b0, count);
                const double il2 = detail::inverse_square(v[0]);
#pragma omp simd
                for (Index i = 0; i < count; ++i) r2[i] = dist2[i] * il2;
            }
            const Index n_l = n.ard ? m : 1;
            const double s2 = v[n_l];
            switch (n.family) {
            case Family::SquaredExponential: stationary_column<SquaredExponentialShape>(r2, c, out, s2, count, der); break;
            case Family::Matern12: stationary_column<Matern12Shape>(r2, c, out, s2, count, der); break;
            case Family::Matern32: stationary_column<Matern32Shape>(r2, c, out, s2, count, der); break;
            default: stationary_column<Matern52Shape>(r2, c, out, s2, count, der); break;
            }
            if (der) {  // dk/dlog l_k = c u_k (isotropic: c r2), dk/dlog s2 = k
                // ARD: der[0] holds c, and leaf_accumulate forms c u_k from the group's differences
#pragma omp simd
                for (Index i = 0; i < count; ++i) der[i] = n.ard ? c[i] : c[i] * r2[i];
                double* ds = der + n_l * B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) ds[i] = out[i];
            }
            return;
        }
        case Family::RationalQuadratic: {
            const double* dist2 = group_distance(w, n, y, b0, count);
            const double alpha = v[1], scale = detail::rational_quadratic_scale(v[0], v[1]);
            if (der) {
                double* d1 = der + B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) out[i] = detail::rational_quadratic_value(dist2[i], alpha, scale, der[i], d1[i]);
            } else {
#pragma omp simd
                for (Index i = 0; i < count; ++i) {
                    double d0 = 0.0, d1 = 0.0;  // unused
                    out[i] = detail::rational_quadratic_value(dist2[i], alpha, scale, d0, d1);
                }
            }
            return;
        }
        case Family::Periodic: {
            const double* dist2 = group_distance(w, n, y, b0, count);
            const double inv_period = 1.0 / v[1], il2 = detail::inverse_square(v[0]);
            if (der) {
                double* d1 = der + B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) out[i] = detail::periodic_value(dist2[i], inv_period, il2, der[i], d1[i]);
            } else {
#pragma omp simd
                for (Index i = 0; i < count; ++i) {
                    double d0 = 0.0, d1 = 0.0;  // unused
                    out[i] = detail::periodic_value(dist2[i], inv_period, il2, d0, d1);
                }
            }
            return;
        }
        case Family::Linear: {
            for (Index i = 0; i < count; ++i) out[i] = 0.0;
            for (Index k = 0; k < m; ++k) {
                const Index f = feature(n, k);
                const double* xc = w.rows.data() + f * w.n_rows + b0;
                const double yc = static_cast<double>(y[f]);
#pragma omp simd
                for (Index i = 0; i < count; ++i) out[i] += xc[i] * yc;
            }
            const double s0s0 = v[0] * v[0];
#pragma omp simd
            for (Index i = 0; i < count; ++i) out[i] = s0s0 + out[i];
            return;
        }
        case Family::Constant:
            for (Index i = 0; i < count; ++i) out[i] = v[0];
            return;
        case Family::White:
            for (Index i = 0; i < count; ++i) out[i] = 0.0;
            if (same >= 0) out[same] = v[0];
            return;
        }
    }

    /// gradient[p][i] += a_i dk_i/dlog param p for the parameters of one leaf on the block, from
    /// the derivative columns leaf_column wrote, or from closed forms where the derivative does
    /// not depend on the pair (Linear 2 sigma_0^2, Constant c) or lives on one row (White).
    GPRAT_INLINE void leaf_accumulate(ColumnWorkspace& w, const TreeNode& n, const double* a, Index count,
                                      Index same) const
    {
        const double* v = values_.data() + n.p_begin;
        double* g = w.gradient.data() + n.p_begin * column_block;
        switch (n.family) {
        case Family::Linear:
        case Family::Constant: {
            const double dk = n.family == Family::Linear ? 2.0 * v[0] * v[0] : v[0];
#pragma omp simd
            for (Index i = 0; i < count; ++i) g[i] += dk * a[i];
            return;
        }
        case Family::White:
            if (same >= 0) g[same] += a[same] * v[0];
            return;
        default:
            if (n.ard) {  // g_k += a c u_k, u_k = (x_k - y_k)^2 / l_k^2; then g_s2 += a k
                constexpr Index B = column_block;
                const Index m = n.n_dims > 0 ? n.n_dims : w.d;
                const double* c = w.derivatives.data() + n.p_begin * B;
                const double* diff2 = w.distances.data() + w.distance_offset[static_cast<std::size_t>(n.group)] * B;
                double* ac = w.scratch.data();
#pragma omp simd
                for (Index i = 0; i < count; ++i) ac[i] = a[i] * c[i];
                for (Index k = 0; k < m; ++k) {
                    const double il2 = detail::inverse_square(v[k]);
                    const double* dk = diff2 + k * B;
                    double* gk = g + k * B;
#pragma omp simd
                    for (Index i = 0; i < count; ++i) gk[i] += ac[i] * (dk[i] * il2);
                }
                const double* ks = c + m * B;
                double* gs = g + m * B;
#pragma omp simd
                for (Index i = 0; i < count; ++i) gs[i] += a[i] * ks[i];
                return;
            }
            for (Index p = n.p_begin; p < n.p_end; ++p, g += column_block) {
                const double* der = w.derivatives.data() + p * column_block;
#pragma omp simd
                for (Index i = 0; i < count; ++i) g[i] += a[i] * der[i];
            }
        }
    }

    /// out = s2 f(r2), and c = -2 s2 f'(r2) when `slope`, over the block (stationary_value, vectorized).
    template <typename Shape>
    GPRAT_INLINE static void stationary_column(const double* r2, double* c, double* out, double s2, Index count,
                                               bool slope)
    {
        if (slope) {
#pragma omp simd
            for (Index i = 0; i < count; ++i) out[i] = detail::stationary_value<Shape>(r2[i], s2, c[i]);
        } else {
#pragma omp simd
            for (Index i = 0; i < count; ++i) {
                double unused = 0.0;
                out[i] = detail::stationary_value<Shape>(r2[i], s2, unused);
            }
        }
    }

    /// Marks the Constant children of Products as folded (the column path multiplies by their
    /// value instead of filling and multiplying a column), and puts every stationary,
    /// RationalQuadratic and Periodic leaf into the group of the leaves with the same active
    /// dimensions and the same kind of distance (ARD or not), so that the column path computes
    /// what they share once per block for all of them (group_distance).
    void assign_distance_groups()
    {
        for (std::size_t t = 0; t < nodes_.size(); ++t) {  // Constant children of Products: scalars
            const TreeNode& n = nodes_[t];
            if (n.kind != NodeKind::Product) continue;
            for (const Index c : {n.left, static_cast<Index>(t) - 1}) {
                TreeNode& child = nodes_[static_cast<std::size_t>(c)];
                child.folded = child.kind == NodeKind::Leaf && child.family == Family::Constant;
            }
        }
        group_leaders_.clear();
        for (TreeNode& n : nodes_) {
            const bool reads_distance = n.kind == NodeKind::Leaf && n.family != Family::Linear &&
                                        n.family != Family::Constant && n.family != Family::White;
            n.group = -1;
            if (!reads_distance) continue;
            for (std::size_t g = 0; g < group_leaders_.size() && n.group < 0; ++g) {
                const TreeNode& o = nodes_[static_cast<std::size_t>(group_leaders_[g])];
                if (o.ard == n.ard && o.n_dims == n.n_dims &&
                    std::equal(dims_.begin() + o.dim_begin, dims_.begin() + o.dim_begin + o.n_dims, dims_.begin() + n.dim_begin))
                    n.group = static_cast<Index>(g);
            }
            if (n.group < 0) {
                n.group = static_cast<Index>(group_leaders_.size());
                group_leaders_.push_back(static_cast<Index>(&n - nodes_.data()));
            }
        }
    }

    /// Parses the subtree starting at spec[i] (pre-order), appends its nodes in post-order and
    /// returns the index after it.
    std::size_t parse(const std::vector<TreeNodeSpec>& spec, std::size_t i)
    {
        GPRAT_EXPECTS(i < spec.size(), "KernelTree: the description ends inside a Sum or Product");
        const TreeNodeSpec& s = spec[i];
        if (s.kind == "Sum" || s.kind == "Product") {
            GPRAT_EXPECTS(s.params.empty() && s.active_dims.empty(),
                          "KernelTree: " << s.kind << " takes no parameters or active dimensions");
            TreeNode n;
            n.kind = s.kind == "Sum" ? NodeKind::Sum : NodeKind::Product;
            n.p_begin = n_params();
            std::size_t next = parse(spec, i + 1);
            n.left = n_nodes() - 1;
            n.p_split = n_params();
            next = parse(spec, next);
            n.p_end = n_params();
            nodes_.push_back(n);
            return next;
        }
        int family = -1;
        for (std::size_t f = 0; f < family_names.size(); ++f)
            if (s.kind == family_names[f]) family = static_cast<int>(f);
        GPRAT_EXPECTS(family >= 0, "KernelTree: unknown kernel '" << s.kind << "'; expected Sum, Product or "
                                                                  << family_list());
        TreeNode n;
        n.family = static_cast<Family>(family);
        n.p_begin = n_params();
        n.dim_begin = static_cast<Index>(dims_.size());
        n.n_dims = static_cast<Index>(s.active_dims.size());
        for (std::size_t a = 0; a < s.active_dims.size(); ++a) {
            GPRAT_EXPECTS(s.active_dims[a] >= 0, s.kind << ": active_dims entries must be non-negative; got "
                                                         << s.active_dims[a]);
            for (std::size_t b = 0; b < a; ++b)
                GPRAT_EXPECTS(s.active_dims[a] != s.active_dims[b],
                              s.kind << ": active_dims entry " << s.active_dims[a] << " is duplicated");
            dims_.push_back(s.active_dims[a]);
        }
        std::vector<std::string> names;
        switch (n.family) {
        case Family::RationalQuadratic: names = {"lengthscale", "alpha"}; break;
        case Family::Periodic: names = {"lengthscale", "period"}; break;
        case Family::Linear: names = {"sigma_0"}; break;
        case Family::Constant: names = {"constant_value"}; break;
        case Family::White: names = {"noise_level"}; break;
        default: {  // stationary: lengthscale(s), then the signal variance
            GPRAT_EXPECTS(s.params.size() >= 2, s.kind << ": expects lengthscale(s) and signal_variance; got "
                                                       << s.params.size() << " parameters");
            const std::size_t n_l = s.params.size() - 1;
            n.ard = n_l > 1;
            GPRAT_EXPECTS(!n.ard || n.n_dims == 0 || static_cast<Index>(n_l) == n.n_dims,
                          s.kind << ": ARD lengthscale has " << n_l << " entries but " << n.n_dims
                                 << " active dimensions");
            for (std::size_t q = 0; q < n_l; ++q)
                names.push_back(n.ard ? "lengthscale[" + std::to_string(q) + "]" : std::string("lengthscale"));
            names.push_back("signal_variance");
        }
        }
        GPRAT_EXPECTS(s.params.size() == names.size(), s.kind << ": expects " << names.size()
                                                              << " parameters; got " << s.params.size());
        for (std::size_t q = 0; q < names.size(); ++q) {
            GPRAT_EXPECTS(std::isfinite(s.params[q]) && s.params[q] > 0,
                          s.kind << ": " << names[q] << " must be positive and finite; got " << s.params[q]);
            values_.push_back(s.params[q]);
            parameter_names_.push_back(s.kind + "." + names[q]);
        }
        n.p_end = n_params();
        nodes_.push_back(n);
        return i + 1;
    }

    static std::string family_list()
    {
        std::string out;
        for (std::size_t f = 0; f < family_names.size(); ++f) {
            if (f > 0) out += f + 1 == family_names.size() ? " or " : ", ";
            out += family_names[f];
        }
        return out;
    }

    std::vector<TreeNode> nodes_;
    std::vector<double> values_;  ///< exp(theta)
    std::vector<Index> dims_;
    std::vector<std::string> parameter_names_;
    std::vector<Index> group_leaders_;  ///< per distance group: its first leaf (node index)
};


// ============================================================================================
// Input derivatives (SGPR/SVGP inducing points, issue #10): dk(x, z)/dz, z the SECOND point.
// Kept apart from the evaluation paths above; it reuses leaf_evaluate for the node values.
//   SquaredExponential, Matern:  dk/dz_c = -2 s2 f'(r2) (x_c - z_c) / l_c^2
//   RationalQuadratic:           dk/dz_c = k (x_c - z_c) / (b l^2),  b = 1 + d^2 / (2 alpha l^2)
//   Periodic:                    dk/dz_c = 4 pi sin(u) cos(u) k (x_c - z_c) / (p l^2 d),  u = pi d / p
//                                (0 at d = 0, where every x_c - z_c is 0)
//   Linear:                      dk/dz_c = x_c
//   Constant, White:             0 (White is 0 between two point sets)
// only on the leaf's active dimensions c. Through the tree by reverse accumulation: the root's
// adjoint is 1, a Sum passes its adjoint to both children, a Product to each child times the
// other child's value, and each leaf adds adjoint * dleaf/dz.
// ============================================================================================

namespace detail {

/// grad_z += adjoint * d leaf(x, z) / dz for one leaf (v: its parameter values).
template <typename T>
inline void leaf_input_gradient(const TreeNode& n, const double* v, const Index* dims, const T* x, const T* z, Index d,
                                double adjoint, double* grad_z)
{
    const Index m = n.n_dims > 0 ? n.n_dims : d;
    const auto feature = [&](Index k) { return n.n_dims > 0 ? dims[n.dim_begin + k] : k; };
    const auto diff = [&](Index c) { return static_cast<double>(x[c]) - static_cast<double>(z[c]); };
    switch (n.family) {
    case Family::SquaredExponential:
    case Family::Matern12:
    case Family::Matern32:
    case Family::Matern52: {
        const Index n_l = n.ard ? m : 1;
        const double s2 = v[n_l];
        double r2 = 0.0;
        for (Index k = 0; k < m; ++k) {
            const double u = diff(feature(k)) / v[n.ard ? k : 0];
            r2 += u * u;
        }
        double f = 0.0, slope = 0.0;
        switch (n.family) {
        case Family::SquaredExponential: SquaredExponentialShape::value_and_slope(r2, f, slope); break;
        case Family::Matern12: Matern12Shape::value_and_slope(r2, f, slope); break;
        case Family::Matern32: Matern32Shape::value_and_slope(r2, f, slope); break;
        default: Matern52Shape::value_and_slope(r2, f, slope); break;
        }
        const double c = -2.0 * s2 * slope * adjoint;
        for (Index k = 0; k < m; ++k) {
            const Index col = feature(k);
            const double l = v[n.ard ? k : 0];
            grad_z[col] += c * diff(col) / (l * l);
        }
        return;
    }
    case Family::RationalQuadratic: {
        const double l = v[0], alpha = v[1];
        double dist2 = 0.0;
        for (Index k = 0; k < m; ++k) dist2 += diff(feature(k)) * diff(feature(k));
        const double sc = dist2 / (2.0 * alpha * l * l), b = 1.0 + sc;
        const double k = exp_nonpositive(-alpha * log1p_nonnegative(sc));
        const double coef = adjoint * k / (b * l * l);
        for (Index q = 0; q < m; ++q) grad_z[feature(q)] += coef * diff(feature(q));
        return;
    }
    case Family::Periodic: {
        const double l = v[0], p = v[1];
        double dist2 = 0.0;
        for (Index k = 0; k < m; ++k) dist2 += diff(feature(k)) * diff(feature(k));
        const double dist = std::sqrt(dist2);
        if (dist == 0.0) return;
        double sn = 0.0, cs = 0.0;
        sin_cos_pi_reduced(dist / p, sn, cs);  // sin * cos: the reduction's signs cancel
        const double k = exp_nonpositive(-2.0 * sn * sn / (l * l));
        const double coef = adjoint * 4.0 * std::numbers::pi * sn * cs * k / (p * l * l * dist);
        for (Index q = 0; q < m; ++q) grad_z[feature(q)] += coef * diff(feature(q));
        return;
    }
    case Family::Linear:
        for (Index q = 0; q < m; ++q) grad_z[feature(q)] += adjoint * static_cast<double>(x[feature(q)]);
        return;
    case Family::Constant:
    case Family::White: return;
    }
}

}  // namespace detail

template <typename T>
double KernelTree::input_gradient(const T* x, const T* z, Index d, std::span<double> grad_z) const
{
    const Index nn = n_nodes();
    constexpr Index small = 128;
    double fixed_values[small], fixed_adjoints[small];
    std::vector<double> heap;
    double* val = fixed_values;
    double* adj = fixed_adjoints;
    if (nn > small) {
        heap.assign(static_cast<std::size_t>(2 * nn), 0.0);
        val = heap.data();
        adj = heap.data() + nn;
    }
    for (Index c = 0; c < d; ++c) grad_z[static_cast<std::size_t>(c)] = 0.0;
    // forward: every node's value, children before parents
    for (Index t = 0; t < nn; ++t) {
        const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
        if (n.kind == NodeKind::Leaf) {
            val[t] = detail::leaf_evaluate(n, values_.data() + n.p_begin, dims_.data(), x, z, d, false, nullptr);
        } else {
            const double a = val[n.left], b = val[t - 1];
            val[t] = n.kind == NodeKind::Sum ? a + b : a * b;
        }
    }
    // reverse: adjoints dk_root/dk_node, parents before children
    for (Index t = 0; t < nn; ++t) adj[t] = 0.0;
    adj[nn - 1] = 1.0;
    for (Index t = nn - 1; t >= 0; --t) {
        const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
        if (n.kind == NodeKind::Leaf) {
            if (adj[t] != 0.0)
                detail::leaf_input_gradient(n, values_.data() + n.p_begin, dims_.data(), x, z, d, adj[t], grad_z.data());
        } else if (n.kind == NodeKind::Sum) {
            adj[n.left] += adj[t];
            adj[t - 1] += adj[t];
        } else {
            adj[n.left] += adj[t] * val[t - 1];
            adj[t - 1] += adj[t] * val[n.left];
        }
    }
    return val[nn - 1];
}

}  // namespace gprat::kernels
