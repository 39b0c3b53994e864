#pragma once
/// The set of covariance functions the engine runs, as one closed variant: generic code is
/// written once and std::visit picks the kernel outside the inner loops.
#include <concepts>
#include <variant>

#include "gprat/kernels/matern.hpp"
#include "gprat/kernels/squared_exponential.hpp"

namespace gprat::kernels {

/// What a covariance function must provide (on one pair of points).
template <typename K>
concept CovarianceFunction = requires(const K& k, const double* x, double* g, Index d) {
    { k(x, x, d) } -> std::convertible_to<double>;
    { k.gradient(x, x, d, g) } -> std::convertible_to<double>;
    { k.n_params() } -> std::convertible_to<Index>;
};

using AnyKernel = std::variant<SquaredExponential, Matern12, Matern32, Matern52>;

static_assert(CovarianceFunction<SquaredExponential> && CovarianceFunction<Matern12> &&
              CovarianceFunction<Matern32> && CovarianceFunction<Matern52>);

}  // namespace gprat::kernels
