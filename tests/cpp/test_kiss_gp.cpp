/// KISS-GP building blocks against naive references written from the definitions: the stencil
/// weights against Keys' kernel evaluated at the distance to each grid point, and the banded and
/// FFT Toeplitz / Kronecker products against dense loops over every pair of grid points, on
/// grids up to 9000 points per dimension.
#include <cmath>
#include <random>
#include <vector>

#include "check.hpp"
#include "gprat/approx/kiss_gp/grid.hpp"
#include "gprat/approx/kiss_gp/kiss_gp.hpp"
#include "gprat/approx/kiss_gp/kronecker_toeplitz.hpp"

using gprat::Index;
using namespace gprat::approx::kiss_gp;

namespace {

/// Keys' kernel u(s), a = -1/2, from its definition (Keys 1981, eq. 15).
double keys(double s)
{
    s = std::fabs(s);
    if (s <= 1) return 1.5 * s * s * s - 2.5 * s * s + 1;
    if (s < 2) return -0.5 * s * s * s + 2.5 * s * s - 4 * s + 2;
    return 0.0;
}

/// Dense (T_0 (x) .. (x) T_{d-1}) v, entry by entry: K(u, w) = prod_k t_k[|u_k - w_k|].
std::vector<double> dense_kron(const std::vector<std::vector<double>>& cols, const std::vector<double>& v)
{
    const Index d = static_cast<Index>(cols.size());
    Index m = 1;
    for (const auto& c : cols) m *= static_cast<Index>(c.size());
    std::vector<double> out(static_cast<std::size_t>(m), 0.0);
    std::vector<Index> iu(static_cast<std::size_t>(d)), iw(static_cast<std::size_t>(d));
    for (Index u = 0; u < m; ++u)
        for (Index w = 0; w < m; ++w) {
            Index a = u, b = w;
            double k = 1.0;
            for (Index dim = d - 1; dim >= 0; --dim) {
                const Index mk = static_cast<Index>(cols[static_cast<std::size_t>(dim)].size());
                k *= cols[static_cast<std::size_t>(dim)][static_cast<std::size_t>(std::abs(a % mk - b % mk))];
                a /= mk;
                b /= mk;
            }
            out[static_cast<std::size_t>(u)] += k * v[static_cast<std::size_t>(w)];
        }
    return out;
}

std::vector<double> se_column(Index m, double h, double l)
{
    std::vector<double> t(static_cast<std::size_t>(m));
    for (Index r = 0; r < m; ++r) t[static_cast<std::size_t>(r)] = std::exp(-0.5 * std::pow(r * h / l, 2));
    return t;
}

}  // namespace

TEST(stencil_weights_are_keys_kernel_up_to_the_edges)
{
    const GridAxis ax = make_axis(0.0, 1.0, 20, 0.1);
    std::mt19937_64 gen(1);
    std::uniform_real_distribution<double> u(ax.lo + ax.h, ax.lo + ax.h * (ax.m - 2));
    std::vector<double> xs = {ax.lo + ax.h, ax.lo + ax.h * (ax.m - 2), ax.lo + ax.h * 1.5, 0.0, 1.0};
    for (int i = 0; i < 200; ++i) xs.push_back(u(gen));
    for (double x : xs) {
        std::int32_t first = -1;
        double w[4];
        REQUIRE(stencil(ax, x, first, w));
        double sum = 0.0;
        for (Index g = 0; g < ax.m; ++g) {  // every grid point: inside the stencil w, outside 0
            const double expected = keys((x - (ax.lo + g * ax.h)) / ax.h);
            const double got = (g >= first && g < first + 4) ? w[g - first] : 0.0;
            CHECK(std::fabs(got - expected) < 1e-13);
        }
        for (double v : w) sum += v;
        CHECK(std::fabs(sum - 1.0) < 1e-14);
    }
    std::int32_t first = 0;
    double w[4];
    CHECK(!stencil(ax, ax.lo + 0.5 * ax.h, first, w));  // outside: refused, not snapped
    CHECK(!stencil(ax, ax.hi() - 0.5 * ax.h, first, w));
}

TEST(toeplitz_banded_and_fft_products_match_dense_on_a_large_grid)
{
    const Index m = 9000;  // more than 8192 points in one dimension
    for (double l : {0.002, 0.3}) {  // a narrow band and the full band
        const std::vector<double> col = se_column(m, 1.0 / (m - 1), l);
        std::vector<double> v(static_cast<std::size_t>(m));
        std::mt19937_64 gen(2);
        std::normal_distribution<double> nd;
        for (double& x : v) x = nd(gen);
        const std::vector<double> ref = dense_kron({col}, v);
        for (bool fft : {false, true}) {
            const ToeplitzFactor f(col, fft);
            std::vector<double> out(static_cast<std::size_t>(m)), work(static_cast<std::size_t>(m));
            apply_kronecker({&f}, 2.0, v.data(), out.data(), work.data(), 1);
            double err = 0.0, scale = 0.0;
            for (Index i = 0; i < m; ++i) {
                err = std::max(err, std::fabs(out[static_cast<std::size_t>(i)] - 2.0 * ref[static_cast<std::size_t>(i)]));
                scale = std::max(scale, std::fabs(ref[static_cast<std::size_t>(i)]));
            }
            CHECK(err < 1e-11 * scale);
        }
    }
}

TEST(kronecker_products_on_blocks_match_dense)
{
    const std::vector<Index> sizes = {7, 9, 8};
    std::vector<std::vector<double>> cols;
    for (Index k = 0; k < 3; ++k) cols.push_back(se_column(sizes[static_cast<std::size_t>(k)], 0.1, 0.15 + 0.1 * k));
    std::vector<ToeplitzFactor> f;
    for (const auto& c : cols) f.emplace_back(c);
    const std::vector<const ToeplitzFactor*> fp = {&f[0], &f[1], &f[2]};
    const Index m = 7 * 9 * 8, c = 3;
    std::vector<double> V(static_cast<std::size_t>(m * c)), out(V.size()), work(V.size());
    std::mt19937_64 gen(3);
    std::normal_distribution<double> nd;
    for (double& x : V) x = nd(gen);
    apply_kronecker(fp, 1.0, V.data(), out.data(), work.data(), c);
    for (Index j = 0; j < c; ++j) {
        std::vector<double> v(static_cast<std::size_t>(m));
        for (Index u = 0; u < m; ++u) v[static_cast<std::size_t>(u)] = V[static_cast<std::size_t>(u * c + j)];
        const std::vector<double> ref = dense_kron(cols, v);
        for (Index u = 0; u < m; ++u) CHECK(std::fabs(out[static_cast<std::size_t>(u * c + j)] - ref[static_cast<std::size_t>(u)]) < 1e-12);
    }
}

/// A probe stream positioned with skip_to(q) continues exactly as the stream drawn from its
/// start does from its normal number q (the probes are drawn by row chunks this way), for even
/// and odd q (an odd q starts on the second normal of a Box-Muller pair).
TEST(normal_stream_skip_to_matches_sequential_draws)
{
    for (std::uint64_t stream : {0ULL, 3ULL}) {
        NormalStream seq(12345, stream);
        std::vector<double> all(200);
        for (double& v : all) v = seq.next();
        for (std::uint64_t q : {0ULL, 1ULL, 2ULL, 15ULL, 16ULL, 101ULL}) {
            NormalStream s(12345, stream);
            (void)s.next();  // a used stream (a spare pending) is repositioned too
            s.skip_to(q);
            for (std::uint64_t x = q; x < q + 20; ++x) CHECK(s.next() == all[static_cast<std::size_t>(x)]);
        }
    }
}

int main(int argc, char** argv) { return gprat_test::run_all(argc, argv); }
