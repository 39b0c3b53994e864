/// Covariance building blocks: the inlinable exp against libm, and the vectorized tile
/// assembler against the kernels' own per-pair definitions.
#include <cmath>
#include <random>
#include <vector>

#include "check.hpp"
#include "gprat/core/exp.hpp"
#include "gprat/kernels/assemble.hpp"

using gprat::Index;

namespace {

double ulp_distance(double a, double b)
{
    if (a == b) return 0.0;
    return std::fabs(a - b) / (std::nextafter(b, INFINITY) - b);
}

}  // namespace

TEST(exp_nonpositive_within_two_ulp_of_libm)
{
    std::mt19937_64 gen(7);
    std::uniform_real_distribution<double> wide(-708.0, 0.0), narrow(-2.0, 0.0);
    double worst = 0.0;
    for (int i = 0; i < 2000000; ++i) {
        const double x = (i % 2 == 0) ? wide(gen) : narrow(gen);
        worst = std::max(worst, ulp_distance(gprat::exp_nonpositive(x), std::exp(x)));
    }
    CHECK(worst <= 2.0);
    CHECK_EQ(gprat::exp_nonpositive(0.0), 1.0);
    CHECK_EQ(gprat::exp_nonpositive(-709.0), 0.0);
    CHECK_EQ(gprat::exp_nonpositive(-1e300), 0.0);
}

template <typename K>
void check_tile_against_pairs(const K& k, Index d)
{
    std::mt19937_64 gen(3);
    std::normal_distribution<double> normal;
    const Index n = 37, m = 23;
    std::vector<double> X(static_cast<std::size_t>(n * d)), Y(static_cast<std::size_t>(m * d));
    for (double& v : X) v = normal(gen);
    for (double& v : Y) v = normal(gen);
    std::vector<double> tile(static_cast<std::size_t>(n * m));
    gprat::tiles::TileView<double> t(tile.data(), n, m, n);
    gprat::kernels::fill_covariance_tile(t, X.data(), 0, Y.data(), 0, d, k, false, 0.0);
    double worst = 0.0;
    for (Index j = 0; j < m; ++j)
        for (Index i = 0; i < n; ++i)
            worst = std::max(worst, std::fabs(t(i, j) - k(X.data() + i * d, Y.data() + j * d, d)));
    CHECK(worst <= 1e-14);
}

TEST(vectorized_tiles_equal_per_pair_kernels)
{
    using namespace gprat::kernels;
    check_tile_against_pairs(SquaredExponential({0.7, 1.1, 1.9}, 1.3), 3);
    check_tile_against_pairs(SquaredExponential({0.9}, 2.0), 3);
    check_tile_against_pairs(Matern12({0.7, 1.1, 1.9}, 1.3), 3);
    check_tile_against_pairs(Matern32({1.5}, 0.4), 3);
    check_tile_against_pairs(Matern52({0.7, 1.1, 1.9}, 1.3), 3);
}

int main(int argc, char** argv) { return gprat_test::run_all(argc, argv); }
