/// Covariance building blocks: the inlinable exp against libm, the vectorized tile assembler
/// against the kernels' own per-pair definitions, and the generic (non-stationary) path of the
/// same assembler against naive dense loops written from the formulas.
#include <cmath>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "check.hpp"
#include "gprat/core/exp.hpp"
#include "gprat/distributed/block_cyclic.hpp"
#include "gprat/gp/assemble_tasks.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

using gprat::Index;
using gprat::tiles::Structure;
using gprat::tiles::TiledMatrix;
using gprat::tiles::TileView;

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

// ------------------------------------------------------------------------------------------------
// A covariance function that is NOT stationary: k(x, y) = a (x . y) + b, theta = log [a, b]
// (a linear kernel with a bias; PSD as a sum of PSD kernels). It models CovarianceFunction only,
// so the assembler must take its generic path for every tile function.

namespace {

class DotProduct
{
  public:
    DotProduct(double a, double b) : a_(a), b_(b) {}
    static constexpr const char* name() { return "TestDotProduct"; }
    Index n_params() const { return 2; }
    std::vector<double> theta() const { return {std::log(a_), std::log(b_)}; }
    DotProduct with_theta(std::span<const double> t) const { return DotProduct(std::exp(t[0]), std::exp(t[1])); }
    void check_features(Index) const {}

    template <typename T>
    double operator()(const T* x, const T* y, Index d) const
    {
        return a_ * dot(x, y, d) + b_;
    }
    template <typename T>
    double diagonal(const T* x, Index d) const
    {
        return a_ * dot(x, x, d) + b_;
    }
    /// dk/dlog a = a (x . y), dk/dlog b = b.
    template <typename T>
    double gradient(const T* x, const T* y, Index d, std::span<double> grad) const
    {
        const double xy = dot(x, y, d);
        grad[0] = a_ * xy;
        grad[1] = b_;
        return a_ * xy + b_;
    }

  private:
    template <typename T>
    static double dot(const T* x, const T* y, Index d)
    {
        double s = 0.0;
        for (Index k = 0; k < d; ++k) s += static_cast<double>(x[k]) * static_cast<double>(y[k]);
        return s;
    }
    double a_, b_;
};

/// Hides every member beyond CovarianceFunction, so a stationary kernel goes through the
/// generic path too (its results must equal the vectorized path's up to rounding).
template <typename K>
class GenericOnly
{
  public:
    explicit GenericOnly(K k) : k_(std::move(k)) {}
    static constexpr const char* name() { return K::name(); }
    Index n_params() const { return k_.n_params(); }
    std::vector<double> theta() const { return k_.theta(); }
    GenericOnly with_theta(std::span<const double> t) const { return GenericOnly(k_.with_theta(t)); }
    void check_features(Index d) const { k_.check_features(d); }
    template <typename T> double operator()(const T* x, const T* y, Index d) const { return k_(x, y, d); }
    template <typename T> double diagonal(const T* x, Index d) const { return k_.diagonal(x, d); }
    template <typename T> double gradient(const T* x, const T* y, Index d, std::span<double> g) const
    {
        return k_.gradient(x, y, d, g);
    }
    template <typename T>
    double diagonal_gradient(const T* x, Index d, std::span<double> g) const
        requires requires(const K& kk, const T* xx, Index dd, std::span<double> gg) { kk.diagonal_gradient(xx, dd, gg); }
    {
        return k_.diagonal_gradient(x, d, g);
    }

  private:
    K k_;
};

static_assert(gprat::kernels::CovarianceFunction<DotProduct>);
static_assert(!gprat::kernels::StationaryCovariance<DotProduct>);
static_assert(gprat::kernels::CovarianceFunction<GenericOnly<gprat::kernels::SquaredExponential>>);
static_assert(!gprat::kernels::StationaryCovariance<GenericOnly<gprat::kernels::SquaredExponential>>);
static_assert(gprat::kernels::StationaryCovariance<gprat::kernels::SquaredExponential> &&
              gprat::kernels::StationaryCovariance<gprat::kernels::Matern12>);

std::vector<double> random_points(Index n, Index d, unsigned seed)
{
    std::mt19937_64 gen(seed);
    std::normal_distribution<double> normal;
    std::vector<double> X(static_cast<std::size_t>(n * d));
    for (double& v : X) v = normal(gen);
    return X;
}

long double dot_ref(const double* x, const double* y, Index d)
{
    long double s = 0;
    for (Index k = 0; k < d; ++k) s += static_cast<long double>(x[k]) * y[k];
    return s;
}

/// Dense row-major copy of a symmetric tiled matrix (lower tiles mirrored).
std::vector<double> dense_symmetric(const TiledMatrix<double>& A)
{
    const Index n = A.rows();
    std::vector<double> a(static_cast<std::size_t>(n * n));
    gprat::tiles::copy_to_row_major(A, a.data(), n, false);
    for (Index i = 0; i < n; ++i)
        for (Index j = i + 1; j < n; ++j) a[static_cast<std::size_t>(i * n + j)] = a[static_cast<std::size_t>(j * n + i)];
    return a;
}

/// The fused reduction through the task-free tile function, summed over the lower tiles of a
/// symmetric W tiled by nb: out[p] = sum over lower tiles of accumulate_gradient_tile.
template <typename K>
std::vector<double> fused_gradient(const K& k, const std::vector<double>& X, Index n, Index d, Index nb,
                                   const std::vector<double>& W, const std::vector<double>& alpha, double noise)
{
    TiledMatrix<double> Wt(n, n, nb, Structure::SymmetricLower);
    gprat::tiles::copy_from_row_major(W.data(), n, Wt);
    std::vector<double> out(static_cast<std::size_t>(k.n_params() + 1), 0.0);
    for (Index j = 0; j < Wt.nt(); ++j)
        for (Index i = j; i < Wt.mt(); ++i)
            gprat::kernels::accumulate_gradient_tile(Wt.tile(i, j), alpha.data() + Wt.row0(i), alpha.data() + Wt.row0(j),
                                                     X.data(), Wt.row0(i), Wt.row0(j), d, k, noise, out.data());
    return out;
}

/// Random symmetric W and vector alpha (the roles of K^{-1} and K^{-1} y).
void random_weights(Index n, unsigned seed, std::vector<double>& W, std::vector<double>& alpha)
{
    std::mt19937_64 gen(seed);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    W.assign(static_cast<std::size_t>(n * n), 0.0);
    alpha.resize(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) {
        alpha[static_cast<std::size_t>(i)] = u(gen);
        for (Index j = 0; j <= i; ++j)
            W[static_cast<std::size_t>(i * n + j)] = W[static_cast<std::size_t>(j * n + i)] = u(gen);
    }
}

double rel(long double got, long double want) { return static_cast<double>(std::fabs(got - want) / std::max(1.0L, std::fabs(want))); }

}  // namespace

TEST(non_stationary_kernel_assembles_through_the_task_assembler)
{
    gprat::runtime::Executor::instance().start(2);
    const Index d = 3;
    const double a = 0.7, b = 1.3, noise = 0.25;
    const DotProduct k(a, b);
    for (const Index n : {1, 7, 23}) {
        for (const Index nb : {1, 5, 23}) {  // ragged (5 into 7, 23) and whole tiles
            const std::vector<double> X = random_points(n, d, 11);
            const std::vector<double> Y = random_points(n + 4, d, 12);
            // Symmetric K + noise I through the task graph.
            TiledMatrix<double> K(n, n, nb, Structure::SymmetricLower);
            TiledMatrix<double> C(n, n + 4, nb, nb + 2);  // cross-covariance k(X, Y), other column tiling
            gprat::runtime::TaskGraph g;
            gprat::gp::assemble_covariance(K, X.data(), X.data(), d, k, noise, g);
            gprat::gp::assemble_covariance(C, X.data(), Y.data(), d, k, 0.0, g);
            g.wait();
            const std::vector<double> kd = dense_symmetric(K);
            std::vector<double> cd(static_cast<std::size_t>(n * (n + 4)));
            gprat::tiles::copy_to_row_major(C, cd.data(), n + 4, false);
            double worst = 0.0;
            for (Index i = 0; i < n; ++i) {
                for (Index j = 0; j < n; ++j) {
                    const long double want = a * dot_ref(&X[i * d], &X[j * d], d) + b + (i == j ? noise : 0.0);
                    worst = std::max(worst, rel(kd[static_cast<std::size_t>(i * n + j)], want));
                }
                for (Index j = 0; j < n + 4; ++j) {
                    const long double want = a * dot_ref(&X[i * d], &Y[j * d], d) + b;
                    worst = std::max(worst, rel(cd[static_cast<std::size_t>(i * (n + 4) + j)], want));
                }
            }
            CHECK_MSG(worst <= 1e-14, "n=" << n << " nb=" << nb << " worst=" << worst);
            // Upper triangle of each diagonal tile is zero (the factorization reads the lower one).
            for (Index t = 0; t < K.nt(); ++t) {
                const TileView<double> v = K.tile(t, t);
                for (Index j = 1; j < v.cols(); ++j)
                    for (Index i = 0; i < j; ++i) CHECK_EQ(v(i, j), 0.0);
            }

            // Fused gradient reduction against sum_{a,b} (alpha_a alpha_b - W_ab) dK_ab/dtheta.
            std::vector<double> W, alpha;
            random_weights(n, 5, W, alpha);
            const std::vector<double> got = fused_gradient(k, X, n, d, nb, W, alpha, noise);
            long double want[3] = {0, 0, 0};
            for (Index i = 0; i < n; ++i)
                for (Index j = 0; j < n; ++j) {
                    const long double w = static_cast<long double>(alpha[i]) * alpha[j] - W[static_cast<std::size_t>(i * n + j)];
                    want[0] += w * a * dot_ref(&X[i * d], &X[j * d], d);  // dk/dlog a
                    want[1] += w * b;                                     // dk/dlog b
                    if (i == j) want[2] += w * noise;                     // dK/dlog noise = noise I
                }
            for (int q = 0; q < 3; ++q) CHECK_MSG(rel(got[q], want[q]) <= 1e-13, "n=" << n << " nb=" << nb << " q=" << q);
        }
    }
}

TEST(non_stationary_kernel_gradient_and_diagonal_tiles)
{
    const Index n = 9, m = 6, d = 4;
    const double a = 1.7, b = 0.3;
    const DotProduct k(a, b);
    const std::vector<double> X = random_points(n, d, 21), Y = random_points(m, d, 22);
    std::vector<double> g0(static_cast<std::size_t>(n * m)), g1(g0.size());
    const std::vector<TileView<double>> tiles{TileView<double>(g0.data(), n, m, n), TileView<double>(g1.data(), n, m, n)};
    gprat::kernels::fill_gradient_tiles<double>(tiles, X.data(), 0, Y.data(), 0, d, k);
    double worst = 0.0;
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < m; ++j) {
            worst = std::max(worst, rel(tiles[0](i, j), a * dot_ref(&X[i * d], &Y[j * d], d)));
            worst = std::max(worst, rel(tiles[1](i, j), b));
        }
    CHECK(worst <= 1e-14);
    // Prior variance k(x, x) + add through the task assembler.
    TiledMatrix<double> v(n, 1, 4);
    gprat::runtime::TaskGraph g;
    // The kernel must outlive g.wait() (the tasks hold a pointer to it): a named variable, not
    // a temporary (ASan: stack-use-after-scope when a worker ran the task after the statement).
    const gprat::kernels::AnyKernel prior_kernel(gprat::kernels::Matern32({2.0}, 0.6));
    gprat::gp::assemble_prior_variance(v, X.data(), d, prior_kernel, 0.1, g);
    g.wait();
    for (Index i = 0; i < n; ++i) CHECK(rel(v.tile(i / 4, 0)(i % 4, 0), 0.6 + 0.1) <= 1e-15);
    std::vector<double> diag(static_cast<std::size_t>(n));
    gprat::kernels::fill_diagonal_tile(TileView<double>(diag.data(), n, 1, n), X.data(), 0, d, k, 0.5);
    for (Index i = 0; i < n; ++i) CHECK(rel(diag[i], a * dot_ref(&X[i * d], &X[i * d], d) + b + 0.5) <= 1e-14);
}

/// SE with ARD: dk/dlog l_q = k u_q (f' = -f/2, so c = -2 s2 f' = k), dk/dlog s2 = k.
TEST(stationary_fast_and_generic_paths_match_the_dense_gradient)
{
    using gprat::kernels::SquaredExponential;
    const Index n = 19, d = 3, nb = 7;
    const double noise = 0.2;
    const std::vector<double> X = random_points(n, d, 31);
    std::vector<double> W, alpha;
    random_weights(n, 6, W, alpha);
    for (const std::vector<double>& ls : {std::vector<double>{0.8, 1.4, 2.1}, std::vector<double>{1.1}}) {
        const SquaredExponential k(ls, 1.6);
        const bool ard = ls.size() > 1;
        std::vector<long double> want(static_cast<std::size_t>(k.n_params() + 1), 0.0L);
        for (Index i = 0; i < n; ++i)
            for (Index j = 0; j < n; ++j) {
                long double r2 = 0, u[3] = {0, 0, 0};
                for (Index q = 0; q < d; ++q) {
                    const long double l = ls[ard ? q : 0];
                    u[q] = (X[i * d + q] - X[j * d + q]) * (X[i * d + q] - X[j * d + q]) / (l * l);
                    r2 += u[q];
                }
                const long double kij = 1.6L * std::exp(-0.5L * r2);
                const long double w = static_cast<long double>(alpha[i]) * alpha[j] - W[static_cast<std::size_t>(i * n + j)];
                if (ard)
                    for (Index q = 0; q < d; ++q) want[q] += w * kij * u[q];
                else
                    want[0] += w * kij * r2;
                want[static_cast<std::size_t>(k.n_params() - 1)] += w * kij;
                if (i == j) want[static_cast<std::size_t>(k.n_params())] += w * noise;
            }
        const std::vector<double> fast = fused_gradient(k, X, n, d, nb, W, alpha, noise);
        const std::vector<double> generic = fused_gradient(GenericOnly(k), X, n, d, nb, W, alpha, noise);
        for (std::size_t q = 0; q < want.size(); ++q) {
            CHECK_MSG(rel(fast[q], want[q]) <= 1e-12, "fast q=" << q << ": " << fast[q] << " vs " << static_cast<double>(want[q]));
            CHECK_MSG(rel(generic[q], want[q]) <= 1e-12, "generic q=" << q << ": " << generic[q] << " vs " << static_cast<double>(want[q]));
        }
        // Value tiles: generic and vectorized paths give the same K (symmetric, with a diagonal).
        std::vector<double> t1(static_cast<std::size_t>(n * n)), t2(t1.size());
        gprat::kernels::fill_covariance_tile(TileView<double>(t1.data(), n, n, n), X.data(), 0, X.data(), 0, d, k, true, noise);
        gprat::kernels::fill_covariance_tile(TileView<double>(t2.data(), n, n, n), X.data(), 0, X.data(), 0, d,
                                             GenericOnly(k), true, noise);
        double worst = 0.0;
        for (std::size_t e = 0; e < t1.size(); ++e) worst = std::max(worst, std::fabs(t1[e] - t2[e]));
        CHECK(worst <= 1e-14);
    }
}

// ------------------------------------------------------------------------------------------------
// The kernel registry is generated from the variant.

TEST(kernel_registry_is_the_variant)
{
    using namespace gprat::kernels;
    const std::vector<std::string> expected{"SquaredExponential", "Matern12", "Matern32", "Matern52"};
    REQUIRE_EQ(kernel_names.size(), expected.size() + 1);  // + KernelTree, built from a description
    CHECK_EQ(std::string(kernel_names.back()), std::string("KernelTree"));
    for (std::size_t i = 0; i < expected.size(); ++i) {
        CHECK_EQ(std::string(kernel_names[i]), expected[i]);
        const AnyKernel k = make_kernel(expected[i], {0.5, 2.0}, 1.5);
        CHECK_EQ(k.index(), i);  // the alternative at the name's position
        CHECK_EQ(std::string(kernel_name(k)), expected[i]);
        CHECK_EQ(kernel_params(k), 3);
        // the kernel made by name is the kernel of that type: same values on a pair
        const double x[2] = {0.3, -1.0}, y[2] = {1.1, 0.4};
        const double direct = std::visit([&](const auto& kern) { return kern(x, y, 2); }, k);
        double by_type = 0.0;
        if (i == 0) by_type = SquaredExponential({0.5, 2.0}, 1.5)(x, y, 2);
        if (i == 1) by_type = Matern12({0.5, 2.0}, 1.5)(x, y, 2);
        if (i == 2) by_type = Matern32({0.5, 2.0}, 1.5)(x, y, 2);
        if (i == 3) by_type = Matern52({0.5, 2.0}, 1.5)(x, y, 2);
        CHECK_EQ(direct, by_type);
    }
    CHECK_EQ(kernel_name_list(), std::string("SquaredExponential, Matern12, Matern32 or Matern52"));
    try {
        (void)make_kernel("RBF", {1.0}, 1.0);
        CHECK(false);
    } catch (const gprat::InvalidArgument& e) {
        CHECK_EQ(std::string(e.what()),
                 std::string("unknown kernel 'RBF'; expected SquaredExponential, Matern12, Matern32 or Matern52"));
    }
    CHECK_THROWS_AS(make_kernel("Matern32", {-1.0}, 1.0), gprat::InvalidArgument);  // values still checked
}

// ------------------------------------------------------------------------------------------------
// KernelTree: families and compositions on one pair of points.

namespace {

using gprat::kernels::KernelTree;
using gprat::kernels::TreeNodeSpec;

/// A random tree of `leaves` leaves over d features, seeded: random families (every one of
/// them), random Sum/Product shapes, random active dimensions and ARD, parameters in [0.5, 2].
std::vector<TreeNodeSpec> random_tree(std::mt19937_64& gen, int leaves, Index d)
{
    std::uniform_real_distribution<double> u(0.5, 2.0);
    std::uniform_int_distribution<int> family(0, 8), coin(0, 1);
    if (leaves == 1) {
        TreeNodeSpec s;
        s.kind = std::string(gprat::kernels::family_names[static_cast<std::size_t>(family(gen))]);
        if (coin(gen))  // a random non-empty subset of the features, in random order
            for (Index k = d - 1; k >= 0; --k)
                if (coin(gen) || (k == 0 && s.active_dims.empty())) s.active_dims.push_back(k);
        const Index m = s.active_dims.empty() ? d : static_cast<Index>(s.active_dims.size());
        const bool stationary = s.kind == "SquaredExponential" || s.kind.rfind("Matern", 0) == 0;
        const Index count = stationary ? (coin(gen) ? m : 1) + 1
                            : (s.kind == "RationalQuadratic" || s.kind == "Periodic") ? 2 : 1;
        for (Index q = 0; q < count; ++q) s.params.push_back(u(gen));
        return {s};
    }
    std::uniform_int_distribution<int> split(1, leaves - 1);
    const int left = split(gen);
    std::vector<TreeNodeSpec> out{TreeNodeSpec{coin(gen) ? "Sum" : "Product", {}, {}}};
    for (auto& n : random_tree(gen, left, d)) out.push_back(n);
    for (auto& n : random_tree(gen, leaves - left, d)) out.push_back(n);
    return out;
}

/// Central finite differences of k(x, y) (same = false) or diagonal(x) (same = true) in theta.
std::vector<double> finite_difference(const KernelTree& k, const double* x, const double* y, Index d, bool same)
{
    const double h = 1e-6;
    std::vector<double> t = k.theta(), out(t.size());
    for (std::size_t p = 0; p < t.size(); ++p) {
        std::vector<double> up = t, down = t;
        up[p] += h;
        down[p] -= h;
        const KernelTree ku = k.with_theta(up), kd = k.with_theta(down);
        const double fu = same ? ku.diagonal(x, d) : ku(x, y, d), fd = same ? kd.diagonal(x, d) : kd(x, y, d);
        out[p] = (fu - fd) / (2 * h);
    }
    return out;
}

}  // namespace

static_assert(gprat::kernels::CovarianceFunction<KernelTree>);
static_assert(!gprat::kernels::StationaryCovariance<KernelTree>);

TEST(tree_gradient_matches_finite_differences_for_every_family_and_random_trees)
{
    const Index d = 3;
    std::mt19937_64 gen(2026);
    std::normal_distribution<double> normal;
    int checked = 0;
    for (int trial = 0; trial < 300; ++trial) {
        const int leaves = trial < 60 ? 1 : 2 + trial % 5;  // every family alone first, then trees
        const KernelTree k(random_tree(gen, leaves, d));
        double x[d], y[d];
        for (Index q = 0; q < d; ++q) {
            x[q] = normal(gen);
            y[q] = normal(gen);
        }
        std::vector<double> grad(static_cast<std::size_t>(k.n_params()));
        for (const bool same : {false, true}) {
            const double value = same ? k.diagonal_gradient(x, d, grad) : k.gradient(x, y, d, grad);
            CHECK_EQ(value, same ? k.diagonal(x, d) : k(x, y, d));  // gradient returns the value itself
            const std::vector<double> fd = finite_difference(k, x, y, d, same);
            for (std::size_t p = 0; p < grad.size(); ++p) {
                CHECK_MSG(std::fabs(grad[p] - fd[p]) <= 1e-6 * std::max(1.0, std::fabs(fd[p])),
                          "trial " << trial << " same=" << same << " p=" << p << ": " << grad[p] << " vs " << fd[p]);
                ++checked;
            }
        }
    }
    CHECK(checked > 1000);
}

TEST(tree_families_equal_their_formulas)
{
    // Values written out from scikit-learn's definitions, on x, y in 2-D: d = |x - y|.
    const double x[2] = {0.3, -1.2}, y[2] = {1.1, 0.5};
    const double dist2 = 0.8 * 0.8 + 1.7 * 1.7, dist = std::sqrt(dist2), pi = std::acos(-1.0);
    const auto one = [&](const std::string& kind, std::vector<double> p, std::vector<Index> dims = {}) {
        return KernelTree({TreeNodeSpec{kind, std::move(p), std::move(dims)}})(x, y, 2);
    };
    CHECK(rel(one("RationalQuadratic", {0.7, 1.9}), std::pow(1 + dist2 / (2 * 1.9 * 0.49), -1.9)) <= 1e-15);
    CHECK(rel(one("Periodic", {0.8, 2.5}), std::exp(-2 * std::pow(std::sin(pi * dist / 2.5), 2) / 0.64)) <= 1e-15);
    CHECK(rel(one("Linear", {0.6}), 0.36 + 0.3 * 1.1 - 1.2 * 0.5) <= 1e-15);
    CHECK_EQ(one("Constant", {1.7}), 1.7);
    CHECK_EQ(one("White", {0.4}), 0.0);  // different points (and K(X, Y) in general)
    CHECK(rel(one("SquaredExponential", {0.9, 1.3}), 1.3 * std::exp(-0.5 * dist2 / 0.81)) <= 1e-15);
    CHECK(rel(one("SquaredExponential", {0.9, 1.3}, {1}), 1.3 * std::exp(-0.5 * 1.7 * 1.7 / 0.81)) <= 1e-15);
    CHECK(rel(one("Linear", {0.6}, {0}), 0.36 + 0.3 * 1.1) <= 1e-15);
    // (2 * SE_ARD) + RQ * White, and its diagonal (White counts on the same point only)
    const KernelTree t({{"Sum", {}, {}},
                        {"Product", {}, {}},
                        {"Constant", {2.0}, {}},
                        {"SquaredExponential", {0.5, 1.5, 1.0}, {}},
                        {"Product", {}, {}},
                        {"RationalQuadratic", {0.7, 1.9}, {}},
                        {"White", {0.3}, {}}});
    const double se = std::exp(-0.5 * (0.8 * 0.8 / 0.25 + 1.7 * 1.7 / 2.25));
    CHECK(rel(t(x, y, 2), 2.0 * se) <= 1e-15);
    CHECK(rel(t.diagonal(x, 2), 2.0 + 0.3) <= 1e-15);
    CHECK_EQ(t.n_params(), 7);
    const std::vector<double> theta = t.theta();
    CHECK(rel(theta[0], std::log(2.0)) <= 1e-15 && rel(theta[6], std::log(0.3)) <= 1e-15);
}

TEST(tree_white_is_on_the_diagonal_of_k_of_x_only)
{
    const Index n = 11, d = 2, nb = 4;
    const std::vector<double> X = random_points(n, d, 41);
    const gprat::kernels::AnyKernel k{KernelTree({{"Sum", {}, {}}, {"Matern32", {0.9, 1.2}, {}}, {"White", {0.3}, {}}})};
    const KernelTree& tree = std::get<KernelTree>(k);
    TiledMatrix<double> K(n, n, nb, Structure::SymmetricLower);
    TiledMatrix<double> C(n, n, nb, nb);  // K(X, X) as a cross-covariance
    gprat::runtime::TaskGraph g;
    gprat::gp::assemble_covariance(K, X.data(), X.data(), d, k, 0.05, g);
    gprat::gp::assemble_covariance(C, X.data(), X.data(), d, k, 0.0, g);
    g.wait();
    const std::vector<double> kd = dense_symmetric(K);
    std::vector<double> cd(static_cast<std::size_t>(n * n));
    gprat::tiles::copy_to_row_major(C, cd.data(), n, false);
    const gprat::kernels::Matern32 m32({0.9}, 1.2);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) {
            const double base = m32(&X[i * d], &X[j * d], d);
            CHECK(rel(kd[static_cast<std::size_t>(i * n + j)], base + (i == j ? 0.3 + 0.05 : 0.0)) <= 1e-14);
            CHECK(rel(cd[static_cast<std::size_t>(i * n + j)], base) <= 1e-14);
        }
    // The fused gradient reduction: White's entry is sum_a w_aa noise_level (dK/dlog noise = noise I).
    std::vector<double> W, alpha;
    random_weights(n, 9, W, alpha);
    const std::vector<double> got = fused_gradient(tree, X, n, d, nb, W, alpha, 0.05);
    long double want_white = 0, want_noise = 0;
    for (Index i = 0; i < n; ++i) {
        const long double w = static_cast<long double>(alpha[i]) * alpha[i] - W[static_cast<std::size_t>(i * n + i)];
        want_white += w * 0.3;
        want_noise += w * 0.05;
    }
    CHECK(rel(got[2], want_white) <= 1e-13);
    CHECK(rel(got[3], want_noise) <= 1e-13);
    // dense gradient tiles: symmetric puts White's gradient on the diagonal, cross does not
    std::vector<double> g0(static_cast<std::size_t>(n * n)), g1(g0.size()), g2(g0.size());
    const std::vector<TileView<double>> tiles{TileView<double>(g0.data(), n, n, n), TileView<double>(g1.data(), n, n, n),
                                              TileView<double>(g2.data(), n, n, n)};
    gprat::kernels::fill_gradient_tiles<double>(tiles, X.data(), 0, X.data(), 0, d, tree, true);
    CHECK_EQ(tiles[2](3, 3), 0.3);
    CHECK_EQ(tiles[2](3, 4), 0.0);
    gprat::kernels::fill_gradient_tiles<double>(tiles, X.data(), 0, X.data(), 0, d, tree, false);
    CHECK_EQ(tiles[2](3, 3), 0.0);
}

TEST(tree_fused_gradient_matches_dense_reduction_of_finite_differences)
{
    // sum_ab w_ab dK_ab/dtheta for a random composite tree, dK from central differences of K.
    const Index n = 13, d = 3, nb = 5;
    std::mt19937_64 gen(77);
    const std::vector<double> X = random_points(n, d, 51);
    std::vector<double> W, alpha;
    random_weights(n, 10, W, alpha);
    for (int trial = 0; trial < 10; ++trial) {
        const KernelTree k(random_tree(gen, 4, d));
        const std::vector<double> got = fused_gradient(k, X, n, d, nb, W, alpha, 0.1);
        const std::vector<double> t = k.theta();
        for (std::size_t p = 0; p < t.size(); ++p) {
            long double want = 0;
            std::vector<double> up = t, down = t;
            up[p] += 1e-6;
            down[p] -= 1e-6;
            const KernelTree ku = k.with_theta(up), kd = k.with_theta(down);
            for (Index i = 0; i < n; ++i)
                for (Index j = 0; j < n; ++j) {
                    const double* xi = &X[i * d];
                    const double* xj = &X[j * d];
                    const double du = i == j ? ku.diagonal(xi, d) : ku(xi, xj, d);
                    const double dd = i == j ? kd.diagonal(xi, d) : kd(xi, xj, d);
                    const long double w = static_cast<long double>(alpha[i]) * alpha[j] - W[static_cast<std::size_t>(i * n + j)];
                    want += w * (du - dd) / 2e-6;
                }
            CHECK_MSG(std::fabs(got[p] - want) <= 1e-5 * std::max(1.0L, std::fabs(want)),
                      "trial " << trial << " p=" << p << ": " << got[p] << " vs " << static_cast<double>(want));
        }
    }
}

static_assert(gprat::kernels::ColumnCovariance<KernelTree>);
static_assert(!gprat::kernels::ColumnCovariance<GenericOnly<KernelTree>>);

TEST(tree_column_path_equals_the_per_pair_path)
{
    // The column path (KernelTree models ColumnCovariance) against the per-pair generic path
    // (GenericOnly hides the column members): value tiles, symmetric with a diagonal and cross,
    // and the fused gradient reduction over ragged tiles, for random trees with every family.
    const Index n = 29, d = 3;
    std::mt19937_64 gen(99);
    const std::vector<double> X = random_points(n, d, 61), Y = random_points(n, d, 62);
    std::vector<float> Xf(X.begin(), X.end());
    std::vector<double> W, alpha;
    random_weights(n, 11, W, alpha);
    for (int trial = 0; trial < 40; ++trial) {
        const KernelTree k(random_tree(gen, 1 + trial % 6, d));
        const GenericOnly<KernelTree> g(k);
        for (const bool symmetric : {true, false}) {
            std::vector<double> a(static_cast<std::size_t>(n * n)), b(a.size());
            const double* cols = symmetric ? X.data() : Y.data();
            gprat::kernels::fill_covariance_tile(TileView<double>(a.data(), n, n, n), X.data(), 0, cols, 0, d, k, symmetric, 0.3);
            gprat::kernels::fill_covariance_tile(TileView<double>(b.data(), n, n, n), X.data(), 0, cols, 0, d, g, symmetric, 0.3);
            double worst = 0.0;
            for (std::size_t e = 0; e < a.size(); ++e) worst = std::max(worst, rel(a[e], b[e]));
            CHECK_MSG(worst <= 1e-13, "trial " << trial << " symmetric=" << symmetric << " worst=" << worst);
        }
        // an off-diagonal block of rows 7.. against columns 2.. (r0 != c0), float points
        std::vector<float> a(static_cast<std::size_t>(20 * 9)), b(a.size());
        gprat::kernels::fill_covariance_tile(TileView<float>(a.data(), 20, 9, 20), Xf.data(), 7, Xf.data(), 2, d, k, true, 0.3);
        gprat::kernels::fill_covariance_tile(TileView<float>(b.data(), 20, 9, 20), Xf.data(), 7, Xf.data(), 2, d, g, true, 0.3);
        for (std::size_t e = 0; e < a.size(); ++e) CHECK(std::fabs(a[e] - b[e]) <= 1e-5f * std::max(1.0f, std::fabs(b[e])));
        for (const Index nb : {4, 10, 29}) {
            const std::vector<double> fast = fused_gradient(k, X, n, d, nb, W, alpha, 0.2);
            const std::vector<double> slow = fused_gradient(g, X, n, d, nb, W, alpha, 0.2);
            for (std::size_t q = 0; q < fast.size(); ++q)
                CHECK_MSG(rel(fast[q], slow[q]) <= 1e-12,
                          "trial " << trial << " nb=" << nb << " q=" << q << ": " << fast[q] << " vs " << slow[q]);
        }
    }
}

TEST(tree_column_path_over_several_row_blocks_equals_the_per_pair_path)
{
    // Tiles taller than KernelTree::column_block (128 rows), so the column path works through
    // several blocks, with the lower-triangle start `first` and the diagonal row inside later
    // blocks; a tree whose leaves share distance groups (two ARD leaves and two isotropic ones
    // on the same dimensions), Constants folded into Products (one Product of two Constants),
    // White, Linear, RationalQuadratic and Periodic. Against the per-pair path (GenericOnly),
    // values and the fused gradient, and the gradient against central differences of K.
    static_assert(KernelTree::column_block == 128, "the sizes below straddle two and three blocks");
    const Index n = 300, d = 3;
    const std::vector<double> X = random_points(n, d, 71);
    std::vector<double> W, alpha;
    random_weights(n, 12, W, alpha);
    const KernelTree k({{"Sum", {}, {}},
                        {"Sum", {}, {}},
                        {"Sum", {}, {}},
                        {"Product", {}, {}},
                        {"Constant", {1.7}, {}},
                        {"SquaredExponential", {0.8, 1.3, 1.1}, {0, 2}},
                        {"Product", {}, {}},
                        {"Matern52", {1.2, 0.7, 0.9}, {0, 2}},
                        {"Constant", {0.6}, {}},
                        {"Sum", {}, {}},
                        {"Product", {}, {}},
                        {"Product", {}, {}},
                        {"Constant", {2.0}, {}},
                        {"SquaredExponential", {1.4, 1.0}, {1}},
                        {"Periodic", {0.9, 1.3}, {1}},
                        {"Sum", {}, {}},
                        {"RationalQuadratic", {0.7, 1.6}, {1}},
                        {"Product", {}, {}},
                        {"Product", {}, {}},
                        {"Constant", {0.3}, {}},
                        {"Constant", {0.5}, {}},
                        {"Linear", {0.4}, {0, 1}},
                        {"White", {0.2}, {}}});
    const GenericOnly<KernelTree> g(k);
    std::vector<double> a(static_cast<std::size_t>(n * n)), b(a.size());
    gprat::kernels::fill_covariance_tile(TileView<double>(a.data(), n, n, n), X.data(), 0, X.data(), 0, d, k, true, 0.1);
    gprat::kernels::fill_covariance_tile(TileView<double>(b.data(), n, n, n), X.data(), 0, X.data(), 0, d, g, true, 0.1);
    double worst = 0.0;
    for (std::size_t e = 0; e < a.size(); ++e) worst = std::max(worst, rel(a[e], b[e]));
    CHECK_MSG(worst <= 1e-13, "symmetric 300 x 300: worst " << worst);
    // rows 37.. (263 rows: blocks of 128, 128, 7) against columns 5.. (150), a symmetric
    // assembly's off-diagonal tile whose global diagonal crosses it
    std::vector<double> c(static_cast<std::size_t>(263 * 150)), e(c.size());
    gprat::kernels::fill_covariance_tile(TileView<double>(c.data(), 263, 150, 263), X.data(), 37, X.data(), 5, d, k, true, 0.1);
    gprat::kernels::fill_covariance_tile(TileView<double>(e.data(), 263, 150, 263), X.data(), 37, X.data(), 5, d, g, true, 0.1);
    worst = 0.0;
    for (std::size_t q = 0; q < c.size(); ++q) worst = std::max(worst, rel(c[q], e[q]));
    CHECK_MSG(worst <= 1e-13, "263 x 150 at (37, 5): worst " << worst);
    for (const Index nb : {300, 137, 129}) {
        const std::vector<double> fast = fused_gradient(k, X, n, d, nb, W, alpha, 0.2);
        const std::vector<double> slow = fused_gradient(g, X, n, d, nb, W, alpha, 0.2);
        for (std::size_t q = 0; q < fast.size(); ++q)
            CHECK_MSG(rel(fast[q], slow[q]) <= 1e-11, "nb=" << nb << " q=" << q << ": " << fast[q] << " vs " << slow[q]);
    }
    // the gradient against central differences of the dense K (rows and columns < 150 only, to
    // keep the O(n^2 p) reference short): sum_ab (alpha_a alpha_b - W_ab) dK_ab/dtheta_p
    const Index m = 150;
    std::vector<double> Xm(X.begin(), X.begin() + m * d), Wm(static_cast<std::size_t>(m * m)), am(alpha.begin(), alpha.begin() + m);
    for (Index i = 0; i < m; ++i)
        for (Index j = 0; j < m; ++j) Wm[static_cast<std::size_t>(i * m + j)] = W[static_cast<std::size_t>(i * n + j)];
    const std::vector<double> got = fused_gradient(k, Xm, m, d, 140, Wm, am, 0.2);
    const std::vector<double> t = k.theta();
    for (std::size_t p = 0; p < t.size(); ++p) {
        std::vector<double> up = t, down = t;
        up[p] += 1e-6;
        down[p] -= 1e-6;
        const KernelTree ku = k.with_theta(up), kd = k.with_theta(down);
        long double want = 0;
        for (Index i = 0; i < m; ++i)
            for (Index j = 0; j < m; ++j) {
                const double* xi = &Xm[static_cast<std::size_t>(i * d)];
                const double* xj = &Xm[static_cast<std::size_t>(j * d)];
                const double du = i == j ? ku.diagonal(xi, d) : ku(xi, xj, d);
                const double dd = i == j ? kd.diagonal(xi, d) : kd(xi, xj, d);
                want += (static_cast<long double>(am[i]) * am[j] - Wm[static_cast<std::size_t>(i * m + j)]) * (du - dd) / 2e-6;
            }
        CHECK_MSG(std::fabs(got[p] - want) <= 1e-5 * std::max(1.0L, std::fabs(want)),
                  "p=" << p << ": " << got[p] << " vs " << static_cast<double>(want));
    }
}

TEST(sin_cos_pi_reduced_matches_long_double_libm)
{
    // sin(pi t)^2 and sin(pi t) cos(pi t), what the Periodic kernel uses, against sinl/cosl of a
    // long double pi t (whose argument error is below 1e-18 for t < 8).
    std::mt19937_64 gen(5);
    std::uniform_real_distribution<double> u(0.0, 8.0);
    const long double pi = 3.141592653589793238462643383279502884L;
    double worst = 0.0;
    for (int i = 0; i < 200000; ++i) {
        const double t = i < 9 ? 0.5 * i : u(gen);
        double sn = 0.0, cs = 0.0;
        gprat::kernels::detail::sin_cos_pi_reduced(t, sn, cs);
        const long double a = pi * static_cast<long double>(t);
        worst = std::max(worst, static_cast<double>(std::fabs(sn * sn - sinl(a) * sinl(a))));
        worst = std::max(worst, static_cast<double>(std::fabs(sn * cs - sinl(a) * cosl(a))));
        CHECK(std::fabs(sn * sn + cs * cs - 1.0) <= 1e-15);
    }
    CHECK_MSG(worst <= 8e-16, "worst " << worst);  // a few ulp of values up to 1
    double s1 = 0, c1 = 0, s2 = 0, c2 = 0;  // periodic in t with period 1 (for sin^2 and sin cos)
    gprat::kernels::detail::sin_cos_pi_reduced(0.3, s1, c1);
    gprat::kernels::detail::sin_cos_pi_reduced(1000.3, s2, c2);
    CHECK(std::fabs(s1 * s1 - s2 * s2) <= 1e-12 && std::fabs(s1 * c1 - s2 * c2) <= 1e-12);
}

TEST(log1p_nonnegative_within_four_ulp_of_libm)
{
    std::mt19937_64 gen(6);
    std::uniform_real_distribution<double> expo(-20.0, 30.0);
    double worst = 0.0;
    for (int i = 0; i < 1000000; ++i) {
        const double s = i == 0 ? 0.0 : std::pow(10.0, expo(gen));  // 1e-20 .. 1e30
        worst = std::max(worst, ulp_distance(gprat::kernels::detail::log1p_nonnegative(s), std::log1p(s)));
    }
    CHECK_MSG(worst <= 4.0, "worst " << worst << " ulp");  // seen: 4
    CHECK_EQ(gprat::kernels::detail::log1p_nonnegative(0.0), 0.0);
}

TEST(tree_bad_descriptions_name_the_parameter)
{
    const auto message = [](std::vector<TreeNodeSpec> spec) -> std::string {
        try {
            KernelTree k(spec);
            k.check_features(2);
        } catch (const gprat::InvalidArgument& e) {
            return e.what();
        }
        return "no error";
    };
    CHECK_EQ(message({{"Cosine", {1.0}, {}}}).rfind("KernelTree: unknown kernel 'Cosine'; expected Sum, Product or ", 0), 0u);
    CHECK_EQ(message({{"Periodic", {1.0, -2.0}, {}}}), std::string("Periodic: period must be positive and finite; got -2"));
    CHECK_EQ(message({{"RationalQuadratic", {1.0, 0.0}, {}}}),
             std::string("RationalQuadratic: alpha must be positive and finite; got 0"));
    CHECK_EQ(message({{"Linear", {1.0}, {0, 0}}}), std::string("Linear: active_dims entry 0 is duplicated"));
    CHECK_EQ(message({{"Linear", {1.0}, {5}}}),
             std::string("Linear: active_dims entry 5 is out of range for data with 2 features"));
    CHECK_EQ(message({{"Linear", {1.0}, {-1}}}), std::string("Linear: active_dims entries must be non-negative; got -1"));
    CHECK_EQ(message({{"Sum", {}, {}}, {"Constant", {1.0}, {}}}),
             std::string("KernelTree: the description ends inside a Sum or Product"));
    CHECK_EQ(message({{"Constant", {1.0}, {}}, {"Constant", {1.0}, {}}}),
             std::string("KernelTree: the description has 1 entries after a complete tree"));
    CHECK_EQ(message({{"SquaredExponential", {1.0, 2.0, 3.0, 1.0}, {}}}),
             std::string("SquaredExponential: ARD lengthscale has 3 entries but the data have 2 features"));
    CHECK_EQ(message({{"White", {1.0, 2.0}, {}}}), std::string("White: expects 1 parameters; got 2"));
}

// ------------------------------------------------------------------------------------------------
// distributed/block_cyclic.hpp (no MPI needed): ScaLAPACK's layout arithmetic against a direct
// count, and every rank's blocks of a virtual P_r x P_c grid against dense loops over the pairs.

TEST(numroc_and_global_rows_match_a_direct_count)
{
    for (Index n = 1; n <= 40; ++n)
        for (Index nb = 1; nb <= 7; ++nb)
            for (Index procs = 1; procs <= 5; ++procs) {
                Index total = 0;
                for (Index p = 0; p < procs; ++p) {
                    std::vector<Index> owned;  // rows g with block g / nb on process p
                    for (Index g = 0; g < n; ++g)
                        if ((g / nb) % procs == p) owned.push_back(g);
                    const Index local = gprat::distributed::numroc(n, nb, p, procs);
                    CHECK_MSG(local == static_cast<Index>(owned.size()), "n=" << n << " nb=" << nb << " P=" << procs);
                    const gprat::distributed::BlockCyclic A(n, 1, nb, 1, procs, 1, p, 0, std::max<Index>(1, local));
                    for (Index r = 0; r < local; ++r) CHECK_EQ(A.global_row(r), owned[static_cast<std::size_t>(r)]);
                    total += local;
                }
                CHECK_EQ(total, n);
            }
}

TEST(virtual_grid_blocks_equal_dense_kernel_and_gradient)
{
    using gprat::kernels::SquaredExponential;
    const Index n = 23, d = 2, nb = 4, P_r = 2, P_c = 3;
    std::mt19937 gen(7);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    std::vector<double> X(static_cast<std::size_t>(n * d)), alpha(static_cast<std::size_t>(n)),
        W(static_cast<std::size_t>(n * n));
    for (double& v : X) v = u(gen);
    for (double& v : alpha) v = u(gen);
    for (Index i = 0; i < n; ++i)  // a symmetric stand-in for K^{-1}
        for (Index j = 0; j <= i; ++j) W[static_cast<std::size_t>(i * n + j)] = W[static_cast<std::size_t>(j * n + i)] = u(gen);
    const SquaredExponential se({0.7, 1.3}, 1.2);
    const gprat::kernels::AnyKernel k = se;
    const double noise = 0.1, sentinel = -7.0;
    // dense reference: sum over ALL pairs (a, b) of (alpha_a alpha_b - W_ab) dK_ab/dtheta, + noise entry
    const Index kp = se.n_params();  // 2 lengthscales (ARD) + signal variance
    std::vector<double> want(static_cast<std::size_t>(kp + 1), 0.0), grad(static_cast<std::size_t>(kp));
    for (Index a = 0; a < n; ++a)
        for (Index b = 0; b < n; ++b) {
            const double w = alpha[static_cast<std::size_t>(a)] * alpha[static_cast<std::size_t>(b)] -
                             W[static_cast<std::size_t>(a * n + b)];
            se.gradient(X.data() + a * d, X.data() + b * d, d, std::span<double>(grad));
            for (Index q = 0; q < kp; ++q) want[static_cast<std::size_t>(q)] += w * grad[static_cast<std::size_t>(q)];
            if (a == b) want[static_cast<std::size_t>(kp)] += w * noise;
        }
    std::vector<double> got(want.size(), 0.0);
    for (Index pr = 0; pr < P_r; ++pr)
        for (Index pc = 0; pc < P_c; ++pc) {
            const Index lr = gprat::distributed::numroc(n, nb, pr, P_r);
            const gprat::distributed::BlockCyclic A(n, n, nb, nb, P_r, P_c, pr, pc, std::max<Index>(1, lr));
            const Index lc = A.local_cols();
            std::vector<double> local(static_cast<std::size_t>(A.lld * std::max<Index>(1, lc)), sentinel);
            gprat::distributed::assemble_local_covariance(A, local.data(), X.data(), d, k, noise);
            for (Index c = 0; c < lc; ++c)
                for (Index r = 0; r < lr; ++r) {
                    const Index gi = A.global_row(r), gj = A.global_col(c);
                    const double v = local[static_cast<std::size_t>(r + c * A.lld)];
                    if (gi / nb < gj / nb) {
                        CHECK_EQ(v, sentinel);  // blocks above the diagonal: not touched
                    } else if (gi < gj) {
                        CHECK_EQ(v, 0.0);  // strict upper part of a diagonal block
                    } else {
                        const double ref = se(X.data() + gi * d, X.data() + gj * d, d) + (gi == gj ? noise : 0.0);
                        CHECK_MSG(std::fabs(v - ref) <= 1e-14, "(" << gi << ", " << gj << ") " << v << " vs " << ref);
                    }
                }
            for (Index c = 0; c < lc; ++c)  // this rank's part of W, as pdpotri leaves K^{-1}
                for (Index r = 0; r < lr; ++r)
                    local[static_cast<std::size_t>(r + c * A.lld)] = W[static_cast<std::size_t>(A.global_row(r) * n + A.global_col(c))];
            const std::vector<double> part =
                gprat::distributed::local_gradient(A, local.data(), alpha.data(), X.data(), d, k, &noise);
            REQUIRE(part.size() == want.size());
            for (std::size_t q = 0; q < want.size(); ++q) got[q] += part[q];
        }
    for (std::size_t q = 0; q < want.size(); ++q)
        CHECK_MSG(std::fabs(got[q] - want[q]) <= 1e-11 * (1.0 + std::fabs(want[q])), "q=" << q << " " << got[q] << " vs " << want[q]);
}

int main(int argc, char** argv) { return gprat_test::run_all(argc, argv); }
