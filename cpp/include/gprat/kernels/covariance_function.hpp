#pragma once
/// What the tile code requires of a covariance function, as two concepts.
///
/// CovarianceFunction: a kernel defined on ONE pair of points (tinygp's rule). The generic tile
/// loops in assemble.hpp need nothing more, so any kernel that models it (stationary or not:
/// a dot product, a sum of kernels, ...) assembles value tiles, derivative tiles and the fused
/// gradient reduction.
///   k(x, y, d)                  covariance of two d-dimensional points (float or double)
///   k.gradient(x, y, d, grad)   k(x, y), and dk/dtheta_p into grad[0 .. n_params())
///   k.diagonal(x, d)            k(x, x) of a point with ITSELF (the prior variance; often
///                               cheaper than k(x, x, d)). The assembler uses it for the entries
///                               on the global diagonal of a symmetric K(X), so a kernel with a
///                               term that only acts on the same point (White: K(X) = noise I,
///                               K(X, X) = 0) puts it here and not in k(x, y, d).
///   k.diagonal_gradient(x, d, grad)  optional: diagonal(x) and its gradient, for those entries;
///                               without it the assembler uses k.gradient(x, x, d, grad).
///   k.n_params(), k.theta(), k.with_theta(theta)   theta: the kernel's free log-parameters
///   k.check_features(d)         throws InvalidArgument if the kernel cannot take d features
///   K::name()                   the registry name (any_kernel.hpp; model files, Python)
///
/// StationaryCovariance refines it for k(x, y) = s2 f(r2), r2 = sum_k ((x_k - y_k) / l_k)^2: the
/// vectorized tile paths compute r2 for a whole tile column at once from pre-scaled points and
/// then only need the profile f (and its slope f' = df/dr2 for the gradient).
///   K::profile(r2), K::profile_and_slope(r2, f, slope), k.signal_variance(), k.ard(),
///   k.scale_points(X, first, count, d, out)
///
/// ColumnCovariance refines it for kernels that evaluate a whole tile column at once (KernelTree:
/// the tree is walked once per column instead of once per pair, each leaf's distances computed
/// in contiguous loops over the rows, gradients by reverse accumulation):
///   K::ColumnWorkspace, k.prepare_rows(w, X, r0, rows, d), k.column(w, y, first, same_row, out),
///   k.column_gradient(w, y, first, same_row, weight) (accumulates in w),
///   k.column_gradient_sums(w, sums) (adds the tile's gradient to sums, once per tile)
///
/// The assembler picks the path with `if constexpr (StationaryCovariance<K>)`, then
/// `ColumnCovariance<K>`, else the generic per-pair loops.
/// InputDifferentiable refines it with the derivative with respect to the SECOND point, which
/// SGPR and SVGP need for their inducing points Z (dk(x, z)/dz; by symmetry of k it is also
/// d k(z, x)/dz):
///   k.input_gradient(x, z, d, grad_z)   k(x, z), and dk(x, z)/dz_c into grad_z[0 .. d)
/// Terms that act only on the same point (White) have no input derivative: k(x, z) of two
/// points of different sets does not contain them.
#include <concepts>
#include <span>
#include <vector>

#include "gprat/core/types.hpp"

namespace gprat::kernels {

template <typename K>
concept CovarianceFunction =
    std::copy_constructible<K> &&
    requires(const K& k, const double* x, const float* xf, std::span<double> grad, Index d,
             std::span<const double> theta) {
        { K::name() } -> std::convertible_to<const char*>;
        { k(x, x, d) } -> std::convertible_to<double>;
        { k(xf, xf, d) } -> std::convertible_to<double>;
        { k.gradient(x, x, d, grad) } -> std::convertible_to<double>;
        { k.gradient(xf, xf, d, grad) } -> std::convertible_to<double>;
        { k.diagonal(x, d) } -> std::convertible_to<double>;
        { k.diagonal(xf, d) } -> std::convertible_to<double>;
        { k.n_params() } -> std::convertible_to<Index>;
        { k.theta() } -> std::convertible_to<std::vector<double>>;
        { k.with_theta(theta) } -> std::same_as<K>;
        k.check_features(d);
    };

template <typename K>
concept StationaryCovariance =
    CovarianceFunction<K> &&
    requires(const K& k, double r2, double& f, const double* x, const float* xf, double* out, Index i) {
        { K::profile(r2) } -> std::convertible_to<double>;
        K::profile_and_slope(r2, f, f);
        { k.signal_variance() } -> std::convertible_to<double>;
        { k.ard() } -> std::convertible_to<bool>;
        k.scale_points(x, i, i, i, out);
        k.scale_points(xf, i, i, i, out);
    };

template <typename K>
concept ColumnCovariance =
    CovarianceFunction<K> &&
    requires(const K& k, typename K::ColumnWorkspace& w, const double* x, const float* xf, double* out,
             const double* weight, Index i) {
        k.prepare_rows(w, x, i, i, i);
        k.prepare_rows(w, xf, i, i, i);
        k.column(w, x, i, i, out);
        k.column(w, xf, i, i, out);
        k.column_gradient(w, x, i, i, weight);
        k.column_gradient(w, xf, i, i, weight);
        k.column_gradient_sums(w, out);
    };

template <typename K>
concept InputDifferentiable =
    CovarianceFunction<K> && requires(const K& k, const double* x, const float* xf, std::span<double> grad, Index d) {
        { k.input_gradient(x, x, d, grad) } -> std::convertible_to<double>;
        { k.input_gradient(xf, xf, d, grad) } -> std::convertible_to<double>;
    };

}  // namespace gprat::kernels
