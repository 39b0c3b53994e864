#pragma once
/// A vectorizable exp for the kernels' non-positive arguments.
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

#include "gprat/core/host_device.hpp"

namespace gprat {

GPRAT_HOST_DEVICE inline double exp_nonpositive(double x) noexcept
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
    // Horner form of sum_{j=0}^{13} r^j / j!
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const double scale = std::bit_cast<double>((k_bits + 1023u) << 52);
    const double result = p * scale;
    return x < -708.0 ? 0.0 : result;
}

}  // namespace gprat
