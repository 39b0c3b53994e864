#pragma once
/// Matérn kernels with half-integer smoothness, r = sqrt(r2):
///   nu = 1/2: f = exp(-r),                           f' = df/dr2 = -exp(-r) / (2 r)
///   nu = 3/2: f = (1 + sqrt3 r) exp(-sqrt3 r),       f' = -3/2 exp(-sqrt3 r)
///   nu = 5/2: f = (1 + sqrt5 r + 5/3 r2) exp(-sqrt5 r), f' = -5/6 (1 + sqrt5 r) exp(-sqrt5 r)
/// For nu = 1/2, f' is unbounded at r = 0, but dk/dlog l_k = -2 s2 f' u_k with u_k <= r2,
/// which tends to 0; the slope is set to 0 at r = 0 so the product is that limit.
#include <cmath>

#include "gprat/core/exp.hpp"

#include "gprat/kernels/stationary.hpp"

namespace gprat::kernels {

struct Matern12Shape
{
    static constexpr const char* name = "Matern12";
    GPRAT_HOST_DEVICE static double value(double r2) { return exp_nonpositive(-std::sqrt(r2)); }
    GPRAT_HOST_DEVICE static void value_and_slope(double r2, double& f, double& slope)
    {
        const double r = std::sqrt(r2);
        f = exp_nonpositive(-r);
        slope = r > 0.0 ? -f / (2.0 * r) : 0.0;
    }
};

struct Matern32Shape
{
    static constexpr const char* name = "Matern32";
    GPRAT_HOST_DEVICE static double value(double r2)
    {
        const double s = std::sqrt(3.0 * r2);
        return (1.0 + s) * exp_nonpositive(-s);
    }
    GPRAT_HOST_DEVICE static void value_and_slope(double r2, double& f, double& slope)
    {
        const double s = std::sqrt(3.0 * r2);
        const double e = exp_nonpositive(-s);
        f = (1.0 + s) * e;
        slope = -1.5 * e;
    }
};

struct Matern52Shape
{
    static constexpr const char* name = "Matern52";
    GPRAT_HOST_DEVICE static double value(double r2)
    {
        const double s = std::sqrt(5.0 * r2);
        return (1.0 + s + 5.0 / 3.0 * r2) * exp_nonpositive(-s);
    }
    GPRAT_HOST_DEVICE static void value_and_slope(double r2, double& f, double& slope)
    {
        const double s = std::sqrt(5.0 * r2);
        const double e = exp_nonpositive(-s);
        f = (1.0 + s + 5.0 / 3.0 * r2) * e;
        slope = -5.0 / 6.0 * (1.0 + s) * e;
    }
};

using Matern12 = Stationary<Matern12Shape>;
using Matern32 = Stationary<Matern32Shape>;
using Matern52 = Stationary<Matern52Shape>;

}  // namespace gprat::kernels
