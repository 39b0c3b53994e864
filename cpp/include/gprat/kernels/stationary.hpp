#pragma once
/// Stationary covariance functions k(x, x') = s2 * f(r2), r2 = sum_k ((x_k - x'_k) / l_k)^2,
/// defined on ONE pair of points, with the gradient with respect to
/// theta = log [l_1, ..., l_p, s2] (p = 1 isotropic, p = d with ARD lengthscales).
///   dk/dlog s2  = k
///   dk/dlog l_k = s2 f'(r2) dr2/dlog l_k = -2 s2 f'(r2) u_k,   u_k = ((x_k - x'_k) / l_k)^2
/// (isotropic: the sum over k, -2 s2 f'(r2) r2). Shape supplies f and f' = df/dr2.
/// With respect to the second point z (input_gradient): dk/dz_c = -2 s2 f'(r2) (x_c - z_c) / l_c^2.
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/core/types.hpp"

namespace gprat::kernels {

template <typename Shape>
class Stationary
{
  public:
    /// @param lengthscale one value (isotropic) or one per feature (ARD); all > 0 and finite.
    /// @param signal_variance s2 > 0 and finite.
    Stationary(std::vector<double> lengthscale, double signal_variance)
        : lengthscale_(std::move(lengthscale)), signal_variance_(signal_variance)
    {
        GPRAT_EXPECTS(!lengthscale_.empty(), Shape::name << ": lengthscale must have at least one entry");
        for (double l : lengthscale_)
            GPRAT_EXPECTS(std::isfinite(l) && l > 0,
                          Shape::name << ": lengthscale must be positive and finite; got " << l);
        GPRAT_EXPECTS(std::isfinite(signal_variance) && signal_variance > 0,
                      Shape::name << ": signal_variance must be positive and finite; got " << signal_variance);
        inverse_lengthscale_.reserve(lengthscale_.size());
        for (double l : lengthscale_) inverse_lengthscale_.push_back(1.0 / l);
    }

    static constexpr const char* name() { return Shape::name; }
    /// f(r2), and f with its slope f' = df/dr2: the kernel's shape, shared by the per-pair
    /// functions below and the batched tile loops in assemble.hpp.
    static double profile(double r2) { return Shape::value(r2); }
    static void profile_and_slope(double r2, double& f, double& slope) { Shape::value_and_slope(r2, f, slope); }
    const std::vector<double>& lengthscale() const noexcept { return lengthscale_; }
    double signal_variance() const noexcept { return signal_variance_; }
    bool ard() const noexcept { return lengthscale_.size() > 1; }
    /// Number of hyperparameters: lengthscales, then the signal variance.
    Index n_params() const noexcept { return static_cast<Index>(lengthscale_.size()) + 1; }

    /// log [l..., s2]
    std::vector<double> theta() const
    {
        std::vector<double> t;
        for (double l : lengthscale_) t.push_back(std::log(l));
        t.push_back(std::log(signal_variance_));
        return t;
    }
    /// The same kernel at theta = log [l..., s2].
    Stationary with_theta(std::span<const double> theta) const
    {
        GPRAT_EXPECTS(static_cast<Index>(theta.size()) == n_params(),
                      Shape::name << ": theta must have " << n_params() << " entries; got " << theta.size());
        std::vector<double> l(theta.begin(), theta.end() - 1);
        for (double& v : l) v = std::exp(v);
        return Stationary(std::move(l), std::exp(theta.back()));
    }

    /// k(x, y) for one pair of d-dimensional points.
    template <typename T>
    double operator()(const T* x, const T* y, Index d) const
    {
        return signal_variance_ * Shape::value(scaled_squared_distance(x, y, d));
    }

    /// k(x, x) = s2 f(0), the prior variance at x.
    template <typename T>
    double diagonal(const T*, Index) const
    {
        return signal_variance_ * Shape::value(0.0);
    }

    /// k(x, y), and dk/dtheta for one pair into grad[0 .. n_params()).
    template <typename T>
    double gradient(const T* x, const T* y, Index d, std::span<double> grad) const
    {
        double r2 = 0.0;
        const bool ard_ = ard();
        if (ard_) {
            for (Index k = 0; k < d; ++k) {
                const double u = (static_cast<double>(x[k]) - static_cast<double>(y[k])) * inverse_lengthscale_[k];
                grad[k] = u * u;
                r2 += u * u;
            }
        } else {
            r2 = scaled_squared_distance(x, y, d);
        }
        double f = 0.0, slope = 0.0;
        Shape::value_and_slope(r2, f, slope);
        const double k = signal_variance_ * f;
        const double c = -2.0 * signal_variance_ * slope;  // dk/dlog l_k = c u_k
        if (ard_) {
            for (Index j = 0; j < d; ++j) grad[j] *= c;
            grad[d] = k;
        } else {
            grad[0] = c * r2;
            grad[1] = k;
        }
        return k;
    }

    /// k(x, z), and the derivative with respect to the SECOND point into grad_z[0 .. d):
    ///   dk/dz_c = s2 f'(r2) dr2/dz_c = c (x_c - z_c) / l_c^2,  c = -2 s2 f'(r2)
    /// (the inducing-point gradients of SGPR/SVGP). At r = 0 every (x_c - z_c) is 0, so the
    /// Matern12 kink (f' unbounded, slope set to 0 there, matern.hpp) gives 0, the mean of the
    /// one-sided derivatives.
    template <typename T>
    double input_gradient(const T* x, const T* z, Index d, std::span<double> grad_z) const
    {
        const double r2 = scaled_squared_distance(x, z, d);
        double f = 0.0, slope = 0.0;
        Shape::value_and_slope(r2, f, slope);
        const double c = -2.0 * signal_variance_ * slope;
        for (Index k = 0; k < d; ++k) {
            const double il = inverse_lengthscale_[ard() ? k : 0];
            grad_z[static_cast<std::size_t>(k)] = c * (static_cast<double>(x[k]) - static_cast<double>(z[k])) * il * il;
        }
        return signal_variance_ * f;
    }

    /// out[k * count + i] = X_{first+i, k} / l_k: `count` points divided by their lengthscales,
    /// stored dimension-major so that distance loops over points run along contiguous memory.
    template <typename T>
    void scale_points(const T* X, Index first, Index count, Index d, double* out) const
    {
        for (Index i = 0; i < count; ++i) {
            const T* x = X + (first + i) * d;
            for (Index k = 0; k < d; ++k)
                out[k * count + i] = static_cast<double>(x[k]) * inverse_lengthscale_[ard() ? k : 0];
        }
    }

    /// Checks that the kernel fits data with d features.
    void check_features(Index d) const
    {
        GPRAT_EXPECTS(!ard() || static_cast<Index>(lengthscale_.size()) == d,
                      Shape::name << ": ARD lengthscale has " << lengthscale_.size()
                                  << " entries but the data have " << d << " features");
    }

  private:
    template <typename T>
    double scaled_squared_distance(const T* x, const T* y, Index d) const
    {
        double r2 = 0.0;
        if (ard()) {
            for (Index k = 0; k < d; ++k) {
                const double u = (static_cast<double>(x[k]) - static_cast<double>(y[k])) * inverse_lengthscale_[k];
                r2 += u * u;
            }
        } else {
            for (Index k = 0; k < d; ++k) {
                const double u = static_cast<double>(x[k]) - static_cast<double>(y[k]);
                r2 += u * u;
            }
            r2 *= inverse_lengthscale_[0] * inverse_lengthscale_[0];
        }
        return r2;
    }

    std::vector<double> lengthscale_;
    std::vector<double> inverse_lengthscale_;
    double signal_variance_;
};

}  // namespace gprat::kernels
