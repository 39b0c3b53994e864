#pragma once
/// AnyKernel: the closed set of covariance functions the engine runs, and the ONE kernel
/// registry. The variant's alternatives, in order, are the list; names, construction by name and
/// the error message for an unknown name are all generated from it, so adding a kernel means
/// adding it to the variant and nothing else in C++ (Python builds its table from
/// _core.kernel_names()). Generic code is written once and std::visit picks the kernel outside
/// the inner loops.
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
#include "gprat/kernels/kernel_tree.hpp"
#include "gprat/kernels/matern.hpp"
#include "gprat/kernels/squared_exponential.hpp"

namespace gprat::kernels {

/// The single stationary families first (they take the vectorized tile path), then KernelTree,
/// which holds every other family and every composition (kernel_tree.hpp; its leaves are the
/// families of `family_names`).
using AnyKernel = std::variant<SquaredExponential, Matern12, Matern32, Matern52, KernelTree>;

namespace detail {

template <std::size_t... I>
constexpr bool all_covariance_functions(std::index_sequence<I...>)
{
    return (CovarianceFunction<std::variant_alternative_t<I, AnyKernel>> && ...);
}

template <std::size_t... I>
constexpr std::array<std::string_view, sizeof...(I)> names_of(std::index_sequence<I...>)
{
    return {std::string_view(std::variant_alternative_t<I, AnyKernel>::name())...};
}

using AnyKernelIndices = std::make_index_sequence<std::variant_size_v<AnyKernel>>;

}  // namespace detail

static_assert(detail::all_covariance_functions(detail::AnyKernelIndices{}),
              "every alternative of AnyKernel must model CovarianceFunction");

namespace detail {
template <std::size_t... I>
constexpr bool all_input_differentiable(std::index_sequence<I...>)
{
    return (InputDifferentiable<std::variant_alternative_t<I, AnyKernel>> && ...);
}
}  // namespace detail

static_assert(detail::all_input_differentiable(detail::AnyKernelIndices{}),
              "every alternative of AnyKernel must model InputDifferentiable (SGPR/SVGP inducing points)");

/// Registry names of the kernels, in the variant's order.
inline constexpr std::array<std::string_view, std::variant_size_v<AnyKernel>> kernel_names =
    detail::names_of(detail::AnyKernelIndices{});

static_assert(
    [] {
        for (std::size_t a = 0; a < kernel_names.size(); ++a)
            for (std::size_t b = a + 1; b < kernel_names.size(); ++b)
                if (kernel_names[a] == kernel_names[b]) return false;
        return true;
    }(),
    "kernel names must be unique");
static_assert(kernel_names.back() == std::string_view(KernelTree::name()),
              "KernelTree must be the last alternative (kernel_name_list lists the others)");

/// "A, B, C or D": the names make_kernel takes (the single stationary families: every
/// alternative but the last, KernelTree, which is built from a description instead).
inline std::string kernel_name_list()
{
    std::string s;
    const std::size_t count = kernel_names.size() - 1;
    for (std::size_t i = 0; i < count; ++i) {
        if (i > 0) s += i + 1 == count ? " or " : ", ";
        s += kernel_names[i];
    }
    return s;
}

namespace detail {

/// The alternative named `name`, built from Args, by a fold over the variant's index sequence.
/// Alternatives that cannot be built from Args are skipped (kernels of another parameter form).
template <typename... Args, std::size_t... I>
std::optional<AnyKernel> make_by_name(std::string_view name, std::index_sequence<I...>, Args&&... args)
{
    std::optional<AnyKernel> out;
    const auto try_one = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
        using K = std::variant_alternative_t<J, AnyKernel>;
        if constexpr (std::is_constructible_v<K, Args...>) {
            if (name == K::name()) {
                out.emplace(std::in_place_index<J>, std::forward<Args>(args)...);
                return true;
            }
        }
        return false;
    };
    (try_one(std::integral_constant<std::size_t, I>{}) || ...);
    return out;
}

}  // namespace detail

/// The stationary kernel `name` with these hyperparameters.
/// @throws InvalidArgument for an unknown name (the message lists the registry) or bad values.
inline AnyKernel make_kernel(std::string_view name, std::vector<double> lengthscale, double signal_variance)
{
    std::optional<AnyKernel> k =
        detail::make_by_name(name, detail::AnyKernelIndices{}, std::move(lengthscale), signal_variance);
    GPRAT_EXPECTS(k.has_value(), "unknown kernel '" << name << "'; expected " << kernel_name_list());
    return std::move(*k);
}

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
