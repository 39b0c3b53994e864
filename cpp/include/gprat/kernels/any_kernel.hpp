#pragma once
/// AnyKernel: the closed set of covariance functions the engine runs, and the helpers on it.
/// Generic code is written once and std::visit picks the kernel outside the inner loops.
#include <array>
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "gprat/core/check.hpp"
#include "gprat/kernels/covariance_function.hpp"
#include "gprat/kernels/matern.hpp"
#include "gprat/kernels/squared_exponential.hpp"

namespace gprat::kernels {

using AnyKernel = std::variant<SquaredExponential, Matern12, Matern32, Matern52>;

namespace detail {

template <std::size_t... I>
constexpr bool all_covariance_functions(std::index_sequence<I...>)
{
    return (CovarianceFunction<std::variant_alternative_t<I, AnyKernel>> && ...);
}

using AnyKernelIndices = std::make_index_sequence<std::variant_size_v<AnyKernel>>;

}  // namespace detail

static_assert(detail::all_covariance_functions(detail::AnyKernelIndices{}),
              "every alternative of AnyKernel must model CovarianceFunction");

/// Registry name of the kernel held.
inline std::string_view kernel_name(const AnyKernel& k)
{
    return std::visit([](const auto& kern) { return std::string_view(kern.name()); }, k);
}

/// Number of hyperparameters of the kernel (for the stationary ones: lengthscales + signal variance).
inline Index kernel_params(const AnyKernel& k)
{
    return std::visit([](const auto& kern) { return kern.n_params(); }, k);
}

/// The kernel's log-hyperparameters theta.
inline std::vector<double> kernel_theta(const AnyKernel& k)
{
    return std::visit([](const auto& kern) { return kern.theta(); }, k);
}

/// The same kernel at other log-hyperparameters.  @throws InvalidArgument on a wrong length.
inline AnyKernel kernel_with_theta(const AnyKernel& k, std::span<const double> theta)
{
    return std::visit([&](const auto& kern) -> AnyKernel { return kern.with_theta(theta); }, k);
}

/// Throws InvalidArgument if the kernel cannot take data with d features.
inline void check_features(const AnyKernel& k, Index d)
{
    std::visit([d](const auto& kern) { kern.check_features(d); }, k);
}

}  // namespace gprat::kernels
