/// Per-operation cost of one SVGP training step (M x M and M x b BLAS/LAPACK calls of
/// gp/svgp.hpp, the K_ZB assembly and the kernel-gradient reductions), one thread, float64,
/// against the dgemm rate measured in the same run. Issue #10, "Speed and scale".
///
/// Build (scipy-openblas32, as the Python extension):
///   I=$(python3 -c "import scipy_openblas32 as s; print(s.get_include_dir())")
///   L=$(python3 -c "import scipy_openblas32 as s; print(s.get_lib_dir())")
///   g++ -std=c++20 -O3 -march=native -fopenmp-simd -fno-trapping-math -fno-math-errno \
///       -DGPRAT_BLAS_SCIPY_OPENBLAS=1 -Icpp/include -I$I \
///       benchmarks/svgp_profile.cpp cpp/src/linalg/blas_threads.cpp -L$L -lscipy_openblas \
///       -Wl,-rpath,$L -o /tmp/svgp_profile
///   /tmp/svgp_profile 512 1024 8
/// (the flags of gprat_core in CMakeLists.txt: without -fno-trapping-math and -fno-math-errno the
/// kernel loops' exp and sqrt stay scalar.)
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

#include "gprat/gp/svgp_gradient.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/kernels/squared_exponential.hpp"
#include "gprat/linalg/tile_kernels.hpp"

using namespace gprat;
using View = tiles::TileView<double>;

static View view(std::vector<double>& v, Index r, Index c) { return View(v.data(), r, c, std::max<Index>(r, 1)); }

/// Median seconds of `reps` runs of f (setup() before each, untimed).
static double timed(const std::function<void()>& setup, const std::function<void()>& f, int reps = 7)
{
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
        setup();
        const auto t0 = std::chrono::steady_clock::now();
        f();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

int main(int argc, char** argv)
{
    const Index M = argc > 1 ? std::atoi(argv[1]) : 512, b = argc > 2 ? std::atoi(argv[2]) : 1024,
                d = argc > 3 ? std::atoi(argv[3]) : 8;
    linalg::use_single_threaded_blas();
    std::mt19937_64 rng(0);
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> Z(M * d), X(b * d);
    for (auto& v : Z) v = u(rng);
    for (auto& v : X) v = u(rng);
    const kernels::SquaredExponential k(std::vector<double>(d, 0.5), 1.0);
    std::vector<double> K(M * M), L(M * M), A(M * b), B(M * b), P(M * M), Q(M * M), R(M * M);
    const auto spd = [&] {
        kernels::fill_covariance_tile(view(K, M, M), Z.data(), 0, Z.data(), 0, d, k, true, 1e-3);
    };
    spd();
    L = K;
    linalg::tile::potrf(view(L, M, M), 0);
    for (Index j = 1; j < M; ++j)
        for (Index i = 0; i < j; ++i) L[i + j * M] = 0.0;
    const double bM2 = double(b) * M * M, M3 = double(M) * M * M;
    struct Row
    {
        const char* what;
        double flops, seconds;
    };
    std::vector<Row> rows;
    const auto none = [] {};
    const auto resetA = [&] { std::copy(B.begin(), B.end(), A.begin()); };
    kernels::fill_cross_covariance_tile(view(B, M, b), Z.data(), 0, X.data(), 0, d, k);
    rows.push_back({"dgemm M x M x b (rate reference)", 2 * bM2,
                    timed(none, [&] { linalg::tile::gemm(Op::NoTrans, Op::Trans, 1.0, view(A, M, b), view(B, M, b), 0.0, view(P, M, M)); })});
    rows.push_back({"K_ZB assembly (SE ARD)", 0,
                    timed(none, [&] { kernels::fill_cross_covariance_tile(view(A, M, b), Z.data(), 0, X.data(), 0, d, k); })});
    rows.push_back({"K_ZZ assembly", 0, timed(none, spd)});
    rows.push_back({"potrf M", M3 / 3, timed([&] { Q = K; }, [&] { linalg::tile::potrf(view(Q, M, M), 0); })});
    rows.push_back({"trsm L^{-1} K_ZB", bM2,
                    timed(resetA, [&] { linalg::tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, view(L, M, M), view(A, M, b)); })});
    rows.push_back({"trmm C^T A", bM2,
                    timed(resetA, [&] { linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(A, M, b)); })});
    rows.push_back({"syrk A A^T", bM2, timed(none, [&] { linalg::tile::syrk(Op::NoTrans, 1.0, view(B, M, b), 0.0, view(P, M, M)); })});
    rows.push_back({"gemm A (C^T A)^T", 2 * bM2,
                    timed(none, [&] { linalg::tile::gemm(Op::NoTrans, Op::Trans, 1.0, view(A, M, b), view(B, M, b), 0.0, view(P, M, M)); })});
    rows.push_back({"trtri M", M3 / 3, timed([&] { Q = L; }, [&] { linalg::tile::trtri(view(Q, M, M), 0); })});
    rows.push_back({"lauum M", M3 / 3, timed([&] { Q = L; }, [&] { linalg::tile::lauum(view(Q, M, M)); })});
    rows.push_back({"trmm M x M (L^T G)", M3,
                    timed([&] { Q = K; }, [&] { linalg::tile::trmm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(Q, M, M)); })});
    rows.push_back({"trsm M x M (one side of the sandwich)", M3,
                    timed([&] { Q = K; }, [&] { linalg::tile::trsm(Side::Left, Uplo::Lower, Op::Trans, Diag::NonUnit, 1.0, view(L, M, M), view(Q, M, M)); })});
    std::vector<double> gt(d + 1), gz(M * d);
    rows.push_back({"kernel gradient over K_ZB weights (theta + Z)", 0,
                    timed(none, [&] { kernels::accumulate_inducing_gradient(view(B, M, b), Z.data(), 0, X.data(), 0, d, k, false, 1.0, 1.0, gt.data(), gz.data()); })});
    // the same weights with a padded leading dimension (M + 8: columns 4 KiB apart alias in the caches)
    std::vector<double> Bp((M + 8) * b);
    for (Index i = 0; i < b; ++i)
        for (Index j = 0; j < M; ++j) Bp[j + i * (M + 8)] = B[j + i * M];
    rows.push_back({"  the same, weights with ld = M + 8", 0,
                    timed(none, [&] { kernels::accumulate_inducing_gradient(View(Bp.data(), M, b, M + 8), Z.data(), 0, X.data(), 0, d, k, false, 1.0, 1.0, gt.data(), gz.data()); })});
    std::vector<double> gt2(d + 1), gz2(M * d);
    rows.push_back({"  the same, column-wise (gp/svgp_gradient.hpp)", 0,
                    timed([&] { std::fill(gt2.begin(), gt2.end(), 0.0); std::fill(gz2.begin(), gz2.end(), 0.0); },
                          [&] { gp::detail::accumulate_kzb_gradient(view(B, M, b), Z.data(), X.data(), 0, d, k, gt2.data(), gz2.data()); })});
    {
        std::fill(gt.begin(), gt.end(), 0.0);
        std::fill(gz.begin(), gz.end(), 0.0);
        kernels::accumulate_inducing_gradient(view(B, M, b), Z.data(), 0, X.data(), 0, d, k, false, 1.0, 1.0, gt.data(), gz.data());
        double e = 0.0, s = 0.0;
        for (Index q = 0; q <= d; ++q) { e = std::max(e, std::abs(gt[q] - gt2[q])); s = std::max(s, std::abs(gt[q])); }
        for (Index q = 0; q < M * d; ++q) { e = std::max(e, std::abs(gz[q] - gz2[q])); s = std::max(s, std::abs(gz[q])); }
        std::printf("column-wise vs row-wise reduction: max |difference| %.3g (max |value| %.3g)\n", e, s);
    }
    rows.push_back({"kernel gradient over K_ZZ weights (theta + Z)", 0,
                    timed(none, [&] { kernels::accumulate_inducing_gradient(view(K, M, M), Z.data(), 0, Z.data(), 0, d, k, true, 1.0, 2.0, gt.data(), gz.data()); })});
    const double rate = rows[0].flops / rows[0].seconds;
    std::printf("M=%ld b=%ld d=%ld, 1 thread; dgemm %.2f GFLOP/s\n", long(M), long(b), long(d), rate / 1e9);
    std::printf("%-48s %10s %10s %10s\n", "operation", "MFLOP", "ms", "GFLOP/s");
    for (const Row& r : rows)
        std::printf("%-48s %10.1f %10.2f %10.2f\n", r.what, r.flops / 1e6, 1e3 * r.seconds,
                    r.flops > 0 ? r.flops / r.seconds / 1e9 : 0.0);
}
