#pragma once
/// A vectorizable exp for the kernels' non-positive arguments, and the Taylor coefficients it
/// shares with the other inlinable elementary functions (kernel_tree.hpp: sin and cos of pi t).
///
/// libm's exp is an opaque call, so loops over tile entries that call it run one element at a
/// time. This version is branch-free and inlinable, so `#pragma omp simd` loops vectorize:
///   exp(x) = 2^k e^r,  k = round(x / ln 2),  r = x - k ln 2 (Cody-Waite, |r| <= ln2/2),
///   e^r by its Taylor polynomial of degree 13 (truncation error < 2e-17 relative),
///   2^k assembled in the exponent bits. Accuracy: within 2 ulp of the correctly rounded
///   result for x in [-708, 0] (checked against libm in tests); exp(x) = 0 for x < -708,
///   where the true value is below 4e-308 (subnormal).
#include <bit>
#include <cstdint>
#include <utility>

#include "gprat/core/host_device.hpp"

namespace gprat {

namespace detail {

/// inverse_factorial[j] = 1 / j!, j = 0 .. 23, each the double nearest the exact value (the
/// quotient of two doubles rounded once; j! itself is exact in double up to 18!): the ONE table of
/// the Taylor coefficients of exp, sin and cos.
inline constexpr double inverse_factorial[24] = {
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
    1.0 / 87178291200.0,
    1.0 / 1307674368000.0,
    1.0 / 20922789888000.0,
    1.0 / 355687428096000.0,
    1.0 / 6402373705728000.0,
    1.0 / 121645100408832000.0,
    1.0 / 2432902008176640000.0,
    1.0 / 51090942171709440000.0,
    1.0 / 1124000727777607680000.0,
    1.0 / 25852016738884976640000.0};

/// sum_{q=0}^{N-1} c(q) x^q by Horner's rule, p <- p x + c(q) from q = N-1 down to 0, unrolled
/// at compile time (c is a constexpr callable: its values become immediate constants).
template <int N, typename Coefficient, int... Q>
GPRAT_HOST_DEVICE GPRAT_INLINE double horner_unrolled(double x, Coefficient c, std::integer_sequence<int, Q...>)
{
    double p = c(N - 1);
    ((p = p * x + c(N - 2 - Q)), ...);
    return p;
}

template <int N, typename Coefficient>
GPRAT_HOST_DEVICE GPRAT_INLINE double horner(double x, Coefficient c)
{
    static_assert(N >= 1);
    return horner_unrolled<N>(x, c, std::make_integer_sequence<int, N - 1>{});
}

}  // namespace detail

GPRAT_HOST_DEVICE GPRAT_INLINE double exp_nonpositive(double x) noexcept
{
    constexpr double log2e = 1.4426950408889634;
    constexpr double ln2_hi = 6.93147180369123816490e-01;  // high bits of ln 2 (exact k * ln2_hi)
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shifter = 0x1.8p52;  // adding it rounds to an integer kept in the low bits
    const double xc = x < -708.0 ? -708.0 : x;
    const double kd_shifted = xc * log2e + shifter;
    const std::uint64_t k_bits = std::bit_cast<std::uint64_t>(kd_shifted);
    const double kd = kd_shifted - shifter;
    const double r = (xc - kd * ln2_hi) - kd * ln2_lo;
    // sum_{j=0}^{13} r^j / j!
    const double p = detail::horner<14>(r, [](int j) constexpr { return detail::inverse_factorial[j]; });
    const double scale = std::bit_cast<double>((k_bits + 1023u) << 52);
    const double result = p * scale;
    return x < -708.0 ? 0.0 : result;
}

}  // namespace gprat
