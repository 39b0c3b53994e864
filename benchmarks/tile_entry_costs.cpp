/// Per-entry cost of one tile of covariance assembly and of the fused gradient, single thread,
/// in CPU time of the thread (robust to other jobs on a shared machine): one SE against the
/// composed kernels of benchmarks/composed_kernels.py (Mauna Loa on d = 1, C SE_ARD + C Matern52_ARD
/// + White on d = 8), on nb x nb tiles (an off-diagonal one, and a diagonal one).
///
///   g++ -std=c++20 -O3 -fopenmp-simd -fno-trapping-math -fno-math-errno -march=x86-64 \
///       -Icpp/include benchmarks/tile_entry_costs.cpp -o /tmp/tile_entry_costs && /tmp/tile_entry_costs 1024 5
///
/// (the flags of gprat_core in CMakeLists.txt; arguments: nb, repeats; min over repeats). Against
/// the headers of another checkout, point -I at its cpp/include (and drop the two -fno- flags
/// where its CMakeLists.txt does not set them).
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
using namespace gprat;
using namespace gprat::kernels;
#include <ctime>
struct clk { static double now() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; } };

template <class Kern>
void bench(const char* name, const Kern& k, const std::vector<double>& X, Index d, Index nb, int reps)
{
    std::vector<double> tile(nb * nb), kinv(nb * nb), alpha(2 * nb);
    std::mt19937 g(1);
    std::normal_distribution<double> nd;
    for (auto& v : kinv) v = nd(g) * 1e-3;
    for (auto& v : alpha) v = nd(g);
    tiles::TileView<double> t(tile.data(), nb, nb, nb), ki(kinv.data(), nb, nb, nb);
    std::vector<double> out(k.n_params() + 1);
    double best_f = 1e9, best_g = 1e9, best_fd = 1e9;
    for (int r = 0; r < reps; ++r) {
        auto t0 = clk::now();
        fill_covariance_tile(t, X.data(), nb, X.data(), 0, d, k, true, 0.01);  // off-diagonal tile
        auto t1 = clk::now();
        GradientAlpha<double> a{alpha.data(), alpha.data() + nb, nb, nb, 1};
        accumulate_gradient_tile(ki, a, X.data(), nb, 0, d, k, nullptr, out.data());
        auto t2 = clk::now();
        fill_covariance_tile(t, X.data(), 0, X.data(), 0, d, k, true, 0.01);  // diagonal tile
        auto t3 = clk::now();
        best_f = std::min(best_f, (t1 - t0));
        best_g = std::min(best_g, (t2 - t1));
        best_fd = std::min(best_fd, (t3 - t2));
    }
    const double e = double(nb) * nb;
    std::printf("%-12s fill %6.2f ns/entry  gradient %6.2f ns/entry  (diagonal tile fill %6.2f ns/entry)\n", name,
                best_f / e * 1e9, best_g / e * 1e9, best_fd / e * 1e9 * 2);
    volatile double sink = out[0] + tile[5];  // keeps the results alive
    (void)sink;
}

int main(int argc, char** argv)
{
    const Index nb = argc > 1 ? std::atoi(argv[1]) : 1024;
    const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
    std::mt19937 g(0);
    std::uniform_real_distribution<double> u(0, 45);
    std::normal_distribution<double> nd;
    std::vector<double> X1(2 * nb), X8(2 * nb * 8);
    for (auto& v : X1) v = u(g);
    for (auto& v : X8) v = nd(g);
    bench("SE d1", SquaredExponential({1.0}, 1.0), X1, 1, nb, reps);
    std::vector<TreeNodeSpec> ml = {
        {"Sum", {}, {}}, {"Sum", {}, {}}, {"Sum", {}, {}}, {"Sum", {}, {}},
        {"Product", {}, {}}, {"Constant", {2500}, {}}, {"SquaredExponential", {50, 1}, {}},
        {"Product", {}, {}}, {"Product", {}, {}}, {"Constant", {4}, {}}, {"SquaredExponential", {100, 1}, {}}, {"Periodic", {1, 1}, {}},
        {"Product", {}, {}}, {"Constant", {0.25}, {}}, {"RationalQuadratic", {1, 1}, {}},
        {"Product", {}, {}}, {"Constant", {0.01}, {}}, {"SquaredExponential", {0.1, 1}, {}},
        {"White", {0.01}, {}}};
    bench("MaunaLoa d1", KernelTree(ml), X1, 1, nb, reps);
    std::vector<double> ls = {0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 2.0};
    std::vector<double> p1 = ls; p1.push_back(1.0);
    bench("SE ARD d8", SquaredExponential(ls, 1.0), X8, 8, nb, reps);
    std::vector<TreeNodeSpec> as = {
        {"Sum", {}, {}}, {"Sum", {}, {}}, {"Product", {}, {}}, {"Constant", {1.0}, {}}, {"SquaredExponential", p1, {}},
        {"Product", {}, {}}, {"Constant", {0.5}, {}}, {"Matern52", p1, {}}, {"White", {0.01}, {}}};
    bench("ARDsum d8", KernelTree(as), X8, 8, nb, reps);
}
