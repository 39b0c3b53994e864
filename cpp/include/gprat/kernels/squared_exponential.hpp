#pragma once
/// Squared exponential: k(x, x') = s2 exp(-r2 / 2);  f(r2) = exp(-r2/2),  f'(r2) = -f/2.
#include <cmath>

#include "gprat/core/exp.hpp"

#include "gprat/kernels/stationary.hpp"

namespace gprat::kernels {

struct SquaredExponentialShape
{
    static constexpr const char* name = "SquaredExponential";
    GPRAT_HOST_DEVICE static double value(double r2) { return exp_nonpositive(-0.5 * r2); }
    GPRAT_HOST_DEVICE static void value_and_slope(double r2, double& f, double& slope)
    {
        f = exp_nonpositive(-0.5 * r2);
        slope = -0.5 * f;
    }
};

using SquaredExponential = Stationary<SquaredExponentialShape>;

}  // namespace gprat::kernels
