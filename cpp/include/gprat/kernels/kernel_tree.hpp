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

/// The column path is called from the multiversioned tile loops (GPRAT_HOT_LOOP, dispatch.hpp);
/// forcing it inline compiles it into each instruction-set clone instead of the baseline only.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define GPRAT_COLUMN_INLINE [[gnu::always_inline]] inline
#else
#define GPRAT_COLUMN_INLINE inline
#endif

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
GPRAT_HOST_DEVICE inline void sin_cos_pi_reduced(double t, double& sn, double& cs)
{
    constexpr double shifter = 0x1.8p52;
    const double r = t < 0x1p52 ? (t + shifter) - shifter : t;
    const double x = std::numbers::pi * (t - r), x2 = x * x;
    double ps = -1.0 / 25852016738884976640000.0;   // -1/23!
    ps = ps * x2 + 1.0 / 51090942171709440000.0;    // 1/21!
    ps = ps * x2 - 1.0 / 121645100408832000.0;      // -1/19!
    ps = ps * x2 + 1.0 / 355687428096000.0;         // 1/17!
    ps = ps * x2 - 1.0 / 1307674368000.0;           // -1/15!
    ps = ps * x2 + 1.0 / 6227020800.0;              // 1/13!
    ps = ps * x2 - 1.0 / 39916800.0;                // -1/11!
    ps = ps * x2 + 1.0 / 362880.0;                  // 1/9!
    ps = ps * x2 - 1.0 / 5040.0;                    // -1/7!
    ps = ps * x2 + 1.0 / 120.0;                     // 1/5!
    ps = ps * x2 - 1.0 / 6.0;                       // -1/3!
    sn = x + x * x2 * ps;
    double pc = 1.0 / 1124000727777607680000.0;     // 1/22!
    pc = pc * x2 - 1.0 / 2432902008176640000.0;     // -1/20!
    pc = pc * x2 + 1.0 / 6402373705728000.0;        // 1/18!
    pc = pc * x2 - 1.0 / 20922789888000.0;          // -1/16!
    pc = pc * x2 + 1.0 / 87178291200.0;             // 1/14!
    pc = pc * x2 - 1.0 / 479001600.0;               // -1/12!
    pc = pc * x2 + 1.0 / 3628800.0;                 // 1/10!
    pc = pc * x2 - 1.0 / 40320.0;                   // -1/8!
    pc = pc * x2 + 1.0 / 720.0;                     // 1/6!
    pc = pc * x2 - 1.0 / 24.0;                      // -1/4!
    pc = pc * x2 + 0.5;                             // 1/2!
    cs = 1.0 - x2 * pc;
}

/// log(1 + s) for s >= 0, branch-free and inlinable (libm's log1p is an opaque call that keeps
/// the RationalQuadratic column loop scalar). With b = 1 + s = 2^e m, m in [sqrt(1/2), sqrt(2)):
///   log b = e ln 2 + log m,  log m = 2 atanh(z) = 2 (z + z^3/3 + z^5/5 + ...),  z = (m-1)/(m+1)
/// (|z| < 0.172; terms to z^25, truncation below 1e-19), and log1p(s) = log(b) s / (b - 1) for
/// b > 1 corrects the rounding of 1 + s (Goldberg's identity), exact at b = 1. Finite s only.
GPRAT_HOST_DEVICE inline double log1p_nonnegative(double s)
{
    constexpr double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double b = 1.0 + s;
    const std::uint64_t bits = std::bit_cast<std::uint64_t>(b);
    std::int64_t e = static_cast<std::int64_t>(bits >> 52) - 1023;
    double m = std::bit_cast<double>((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
    const bool high = m > 1.4142135623730951;
    m = high ? 0.5 * m : m;
    e += high ? 1 : 0;
    const double z = (m - 1.0) / (m + 1.0), z2 = z * z;
    double p = 1.0 / 25.0;
    p = p * z2 + 1.0 / 23.0;
    p = p * z2 + 1.0 / 21.0;
    p = p * z2 + 1.0 / 19.0;
    p = p * z2 + 1.0 / 17.0;
    p = p * z2 + 1.0 / 15.0;
    p = p * z2 + 1.0 / 13.0;
    p = p * z2 + 1.0 / 11.0;
    p = p * z2 + 1.0 / 9.0;
    p = p * z2 + 1.0 / 7.0;
    p = p * z2 + 1.0 / 5.0;
    p = p * z2 + 1.0 / 3.0;
    const double ed = static_cast<double>(e);
    const double log_b = ed * ln2_hi + (2.0 * z + (ed * ln2_lo + 2.0 * z * z2 * p));
    const double bm1 = b - 1.0;
    return bm1 == 0.0 ? s : log_b * (s / bm1);
}

/// Periodic leaf on a squared distance: k = exp(-2 sin^2(u) / l^2), u = pi d / p, and when g is
/// not null dk/dlog l = 4 sin^2(u) k / l^2, dk/dlog p = 4 u sin(u) cos(u) k / l^2 into g[0], g[stride].
GPRAT_HOST_DEVICE inline double periodic_value(double dist2, double l, double p, double* g, Index stride)
{
    const double t = std::sqrt(dist2) / p;
    double sn = 0.0, cs = 0.0;
    sin_cos_pi_reduced(t, sn, cs);
    const double s2 = sn * sn, il2 = 1.0 / (l * l);
    const double k = exp_nonpositive(-2.0 * s2 * il2);
    if (g) {
        g[0] = 4.0 * s2 * k * il2;
        g[stride] = 4.0 * std::numbers::pi * t * sn * cs * k * il2;
    }
    return k;
}

/// Value of one leaf at (x, y), and its gradient into g[0 .. leaf's n_params) when g is not null.
/// v: the leaf's parameter values (exp theta), dims: the tree's active-dimension array.
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
    switch (n.family) {
    case Family::SquaredExponential:
    case Family::Matern12:
    case Family::Matern32:
    case Family::Matern52: {
        // r2 over the active dimensions; ARD: u_k = ((x_k - y_k) / l_k)^2 kept in g for the gradient
        const Index n_l = n.ard ? m : 1;
        const double s2 = v[n_l];
        double r2 = 0.0;
        for (Index k = 0; k < m; ++k) {
            const double u = coordinate_difference(k) / v[n.ard ? k : 0];
            if (g && n.ard) g[k] = u * u;
            r2 += u * u;
        }
        double f = 0.0, slope = 0.0;
        switch (n.family) {
        case Family::SquaredExponential: SquaredExponentialShape::value_and_slope(r2, f, slope); break;
        case Family::Matern12: Matern12Shape::value_and_slope(r2, f, slope); break;
        case Family::Matern32: Matern32Shape::value_and_slope(r2, f, slope); break;
        default: Matern52Shape::value_and_slope(r2, f, slope); break;
        }
        const double k = s2 * f;
        if (g) {
            const double c = -2.0 * s2 * slope;  // dk/dlog l_k = c u_k (stationary.hpp)
            if (n.ard)
                for (Index q = 0; q < m; ++q) g[q] *= c;
            else
                g[0] = c * r2;
            g[n_l] = k;  // dk/dlog s2
        }
        return k;
    }
    case Family::RationalQuadratic: {
        const double l = v[0], alpha = v[1];
        double dist2 = 0.0;
        for (Index k = 0; k < m; ++k) {
            const double u = coordinate_difference(k);
            dist2 += u * u;
        }
        const double s = dist2 / (2.0 * alpha * l * l), b = 1.0 + s;
        const double logb = log1p_nonnegative(s);  // log b, accurate for small s
        const double k = exp_nonpositive(-alpha * logb);
        if (g) {
            g[0] = 2.0 * alpha * s * k / b;
            g[1] = alpha * k * (s / b - logb);
        }
        return k;
    }
    case Family::Periodic: {
        const double l = v[0], p = v[1];
        double dist2 = 0.0;
        for (Index k = 0; k < m; ++k) {
            const double u = coordinate_difference(k);
            dist2 += u * u;
        }
        return periodic_value(dist2, l, p, g, 1);
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

    /// Scratch for the column path of one tile (assemble.hpp, ColumnCovariance): the tile's row
    /// points dimension-major, and per node a column of values, of adjoints (dk_root/dk_node
    /// times the reduction weight) and per parameter a column of the leaf's own derivative.
    struct ColumnWorkspace
    {
        std::vector<double> rows, values, adjoints, derivatives, t1, t2;
        Index n_rows = 0, d = 0;
    };

    /// Loads the rows X[r0 .. r0 + count) of a tile into w (dimension-major) and sizes its columns.
    template <typename T>
    GPRAT_COLUMN_INLINE void prepare_rows(ColumnWorkspace& w, const T* X, Index r0, Index count, Index d) const
    {
        w.n_rows = count;
        w.d = d;
        const auto sz = [](Index a) { return static_cast<std::size_t>(a); };
        w.rows.resize(sz(count * d));
        for (Index i = 0; i < count; ++i)
            for (Index k = 0; k < d; ++k) w.rows[sz(k * count + i)] = static_cast<double>(X[(r0 + i) * d + k]);
        w.values.resize(sz(n_nodes() * count));
        w.adjoints.resize(sz(n_nodes() * count));
        w.derivatives.resize(sz(n_params() * count));
        w.t1.resize(sz(count));
        w.t2.resize(sz(count));
    }

    /// out[i] = k(x_i, y) for the prepared rows i in [first, n_rows); same_row: the row that is
    /// the point y itself on the global diagonal of a symmetric K(X) (White), or -1.
    template <typename T>
    GPRAT_COLUMN_INLINE void column(ColumnWorkspace& w, const T* y, Index first, Index same_row, double* out) const
    {
        forward(w, y, first, same_row, false);
        const double* root = w.values.data() + (n_nodes() - 1) * w.n_rows;
        for (Index i = first; i < w.n_rows; ++i) out[i] = root[i];
    }

    /// sums[p] += sum_{i >= first} weight[i] dk(x_i, y)/dtheta_p over the prepared rows, by
    /// reverse accumulation: the adjoint of the root is the weight; a Sum passes its adjoint to
    /// both children, a Product to each child times the other child's value; each leaf adds its
    /// adjoint times its own derivatives. O(nodes + params) per pair.
    template <typename T>
    GPRAT_COLUMN_INLINE void column_gradient(ColumnWorkspace& w, const T* y, Index first, Index same_row, const double* weight,
                         double* sums) const
    {
        forward(w, y, first, same_row, true);
        const Index rows = w.n_rows;
        double* adj = w.adjoints.data();
        const double* val = w.values.data();
        for (Index i = first; i < rows; ++i) adj[(n_nodes() - 1) * rows + i] = weight[i];
        for (Index t = n_nodes() - 1; t >= 0; --t) {
            const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
            const double* a = adj + t * rows;
            if (n.kind == NodeKind::Leaf) {
                for (Index p = n.p_begin; p < n.p_end; ++p) {
                    const double* der = w.derivatives.data() + p * rows;
                    double acc = 0.0;
#pragma omp simd reduction(+ : acc)
                    for (Index i = first; i < rows; ++i) acc += a[i] * der[i];
                    sums[p] += acc;
                }
                continue;
            }
            double* al = adj + n.left * rows;
            double* ar = adj + (t - 1) * rows;
            if (n.kind == NodeKind::Sum) {
                for (Index i = first; i < rows; ++i) al[i] = ar[i] = a[i];
            } else {
                const double* vl = val + n.left * rows;
                const double* vr = val + (t - 1) * rows;
#pragma omp simd
                for (Index i = first; i < rows; ++i) {
                    al[i] = a[i] * vr[i];
                    ar[i] = a[i] * vl[i];
                }
            }
        }
    }

  private:
    /// Values of every node on the column (and, with derivatives, each leaf's own derivative
    /// columns), children before parents.
    template <typename T>
    GPRAT_COLUMN_INLINE void forward(ColumnWorkspace& w, const T* y, Index first, Index same_row, bool derivatives) const
    {
        const Index rows = w.n_rows;
        double* val = w.values.data();
        for (Index t = 0; t < n_nodes(); ++t) {
            const TreeNode& n = nodes_[static_cast<std::size_t>(t)];
            double* out = val + t * rows;
            if (n.kind == NodeKind::Leaf) {
                leaf_column(w, n, y, first, same_row, out, derivatives ? w.derivatives.data() + n.p_begin * rows : nullptr);
                continue;
            }
            const double* vl = val + n.left * rows;
            const double* vr = val + (t - 1) * rows;
            if (n.kind == NodeKind::Sum) {
#pragma omp simd
                for (Index i = first; i < rows; ++i) out[i] = vl[i] + vr[i];
            } else {
#pragma omp simd
                for (Index i = first; i < rows; ++i) out[i] = vl[i] * vr[i];
            }
        }
    }

    /// One leaf on the column: the formulas of tree_evaluate's leaves with the family chosen
    /// once per column and loops over contiguous rows. der[q * rows + i]: dk_i/dlog param q.
    template <typename T>
    GPRAT_COLUMN_INLINE void leaf_column(ColumnWorkspace& w, const TreeNode& n, const T* y, Index first, Index same_row, double* out,
                     double* der) const
    {
        const Index rows = w.n_rows, d = w.d;
        const Index m = n.n_dims > 0 ? n.n_dims : d;
        const double* v = values_.data() + n.p_begin;
        const auto feature = [&](Index k) { return n.n_dims > 0 ? dims_[static_cast<std::size_t>(n.dim_begin + k)] : k; };
        double* acc = w.t1.data();
        double* tmp = w.t2.data();
        // squared (scaled) distance or dot product over the active features into acc
        const auto accumulate = [&](bool scaled, bool dot) {
            for (Index i = first; i < rows; ++i) acc[i] = 0.0;
            for (Index k = 0; k < m; ++k) {
                const Index c = feature(k);
                const double* xc = w.rows.data() + c * rows;
                const double yc = static_cast<double>(y[c]);
                if (dot) {
#pragma omp simd
                    for (Index i = first; i < rows; ++i) acc[i] += xc[i] * yc;
                    continue;
                }
                const double inv = scaled ? 1.0 / v[n.ard ? k : 0] : 1.0;
                double* dk = (der && n.ard) ? der + k * rows : nullptr;
#pragma omp simd
                for (Index i = first; i < rows; ++i) {
                    const double u = (xc[i] - yc) * inv;
                    acc[i] += u * u;
                }
                if (dk)
                    for (Index i = first; i < rows; ++i) {
                        const double u = (xc[i] - yc) * inv;
                        dk[i] = u * u;
                    }
            }
        };
        switch (n.family) {
        case Family::SquaredExponential:
        case Family::Matern12:
        case Family::Matern32:
        case Family::Matern52: {
            accumulate(true, false);
            const Index n_l = n.ard ? m : 1;
            const double s2 = v[n_l];
            switch (n.family) {
            case Family::SquaredExponential: stationary_column<SquaredExponentialShape>(acc, tmp, out, s2, first, rows); break;
            case Family::Matern12: stationary_column<Matern12Shape>(acc, tmp, out, s2, first, rows); break;
            case Family::Matern32: stationary_column<Matern32Shape>(acc, tmp, out, s2, first, rows); break;
            default: stationary_column<Matern52Shape>(acc, tmp, out, s2, first, rows); break;
            }
            if (der) {  // tmp holds c = -2 s2 f'(r2): dk/dlog l_k = c u_k, dk/dlog s2 = k
                if (n.ard) {
                    for (Index q = 0; q < m; ++q) {
                        double* dq = der + q * rows;
#pragma omp simd
                        for (Index i = first; i < rows; ++i) dq[i] *= tmp[i];
                    }
                } else {
#pragma omp simd
                    for (Index i = first; i < rows; ++i) der[i] = tmp[i] * acc[i];
                }
                double* ds = der + n_l * rows;
                for (Index i = first; i < rows; ++i) ds[i] = out[i];
            }
            return;
        }
        case Family::RationalQuadratic: {
            accumulate(false, false);
            const double l = v[0], alpha = v[1];
#pragma omp simd
            for (Index i = first; i < rows; ++i) {
                const double sc = acc[i] / (2.0 * alpha * l * l), b = 1.0 + sc;
                const double logb = detail::log1p_nonnegative(sc);
                const double k = exp_nonpositive(-alpha * logb);
                out[i] = k;
                if (der) {
                    der[i] = 2.0 * alpha * sc * k / b;
                    der[rows + i] = alpha * k * (sc / b - logb);
                }
            }
            return;
        }
        case Family::Periodic: {
            accumulate(false, false);
            const double l = v[0], p = v[1];
            if (der) {
#pragma omp simd
                for (Index i = first; i < rows; ++i) out[i] = detail::periodic_value(acc[i], l, p, der + i, rows);
            } else {
#pragma omp simd
                for (Index i = first; i < rows; ++i) out[i] = detail::periodic_value(acc[i], l, p, nullptr, 0);
            }
            return;
        }
        case Family::Linear: {
            accumulate(false, true);
            const double s0 = v[0];
            for (Index i = first; i < rows; ++i) out[i] = s0 * s0 + acc[i];
            if (der)
                for (Index i = first; i < rows; ++i) der[i] = 2.0 * s0 * s0;
            return;
        }
        case Family::Constant:
            for (Index i = first; i < rows; ++i) out[i] = v[0];
            if (der)
                for (Index i = first; i < rows; ++i) der[i] = v[0];
            return;
        case Family::White:
            for (Index i = first; i < rows; ++i) out[i] = i == same_row ? v[0] : 0.0;
            if (der)
                for (Index i = first; i < rows; ++i) der[i] = out[i];
            return;
        }
    }

    /// out = s2 f(r2), c = -2 s2 f'(r2) over rows [first, rows) (vectorizable: exp_nonpositive).
    template <typename Shape>
    GPRAT_COLUMN_INLINE static void stationary_column(const double* r2, double* c, double* out, double s2, Index first, Index rows)
    {
#pragma omp simd
        for (Index i = first; i < rows; ++i) {
            double f = 0.0, slope = 0.0;
            Shape::value_and_slope(r2[i], f, slope);
            out[i] = s2 * f;
            c[i] = -2.0 * s2 * slope;
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
};

}  // namespace gprat::kernels
