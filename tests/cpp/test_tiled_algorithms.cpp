/// Tiled algorithms (task graphs over TiledMatrix) against naive dense loops, float and double,
/// for n in {1, 2, 7, 100, 257} with tile sizes that divide n and tile sizes that do not.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numbers>
#include <optional>
#include <stdexcept>
#include <utility>
#include <random>
#include <string>
#include <typeinfo>
#include <vector>

#include "check.hpp"
#include "dense.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/gp/exact_gp.hpp"
#include "gprat/kernels/squared_exponential.hpp"
#include "gprat/linalg/cholesky.hpp"
#include "gprat/linalg/inverse.hpp"
#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/linalg/tiled_products.hpp"
#include "gprat/linalg/triangular_solve.hpp"
#include "gprat/runtime/executor.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"

using gprat::Index;
using gprat::Op;
using gprat::runtime::Executor;
using gprat::runtime::TaskGraph;
using gprat::tiles::Structure;
using gprat::tiles::TiledMatrix;
using gprat_test::eps;
using gprat_test::Ref;
using gprat_test::type_name;

namespace {

struct Case
{
    Index n, nb;
};

/// Every n with tile sizes dividing it and not (257 is prime: only 1 and 257 divide it).
const Case kCases[] = {{1, 1},   {1, 4},   {2, 1},    {2, 2},    {2, 3},   {7, 1},   {7, 3},
                       {7, 7},   {7, 10},  {100, 10}, {100, 25}, {100, 32}, {100, 100}, {100, 128},
                       {257, 32}, {257, 64}, {257, 100}, {257, 257}};

std::string label(const char* what, Case c, const char* type)
{
    return std::string(what) + " " + type + " n=" + std::to_string(c.n) + " nb=" + std::to_string(c.nb);
}

/// Entries of `r` rounded to T (the reference then sees exactly what the library sees).
template <typename T>
Ref rounded(Ref r)
{
    for (long double& x : r.v) x = static_cast<T>(x);
    return r;
}

Ref random_ref(Index rows, Index cols, std::mt19937_64& rng)
{
    std::uniform_real_distribution<double> d(-1.0, 1.0);
    Ref r(rows, cols);
    for (long double& x : r.v) x = d(rng);
    return r;
}

/// SPD: M M^T / n + I, rounded to T.
template <typename T>
Ref spd_ref(Index n, std::mt19937_64& rng)
{
    const Ref m = random_ref(n, n, rng);
    Ref a = gprat_test::multiply(m, gprat_test::transpose(m));
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) a(i, j) = a(i, j) / static_cast<long double>(n) + (i == j ? 1.0L : 0.0L);
    return rounded<T>(a);
}

/// A well-conditioned SPD test matrix of order n with its reference factor and inverse, computed
/// once per (n, T) and shared by the tile sizes (the naive loops dominate the test's run time).
struct Spd
{
    Ref a, l, inv;
};

template <typename T>
const Spd& spd(Index n)
{
    static std::vector<std::pair<Index, std::unique_ptr<Spd>>> cache;
    for (const auto& [m, s] : cache)
        if (m == n) return *s;
    std::mt19937_64 rng(static_cast<std::uint64_t>(1000 + n));
    auto s = std::make_unique<Spd>(Spd{spd_ref<T>(n, rng), Ref(0, 0), Ref(0, 0)});
    s->l = s->a;
    if (gprat_test::cholesky_ref(s->l) != 0) throw std::logic_error("test matrix not SPD");
    const Ref linv = gprat_test::solve_triangular(s->l, true, gprat_test::identity(n));
    s->inv = gprat_test::multiply(gprat_test::transpose(linv), linv);
    cache.emplace_back(n, std::move(s));
    return *cache.back().second;
}

/// Tiled copy of r with nb x nbc tiles (nbc = nb when 0).
template <typename T>
TiledMatrix<T> to_tiled(const Ref& r, Index nb, Structure s = Structure::General, Index nbc = 0)
{
    std::vector<T> dense(static_cast<std::size_t>(r.rows * r.cols));
    for (Index i = 0; i < r.rows; ++i)
        for (Index j = 0; j < r.cols; ++j) dense[static_cast<std::size_t>(i * r.cols + j)] = static_cast<T>(r(i, j));
    TiledMatrix<T> m(r.rows, r.cols, nb, nbc > 0 ? nbc : nb, s);
    gprat::tiles::copy_from_row_major(dense.data(), r.cols, m);
    return m;
}

/// Dense copy of the stored tiles (upper part zero for a symmetric matrix).
template <typename T>
Ref from_tiled(const TiledMatrix<T>& m)
{
    std::vector<T> dense(static_cast<std::size_t>(m.rows() * m.cols()), std::numeric_limits<T>::quiet_NaN());
    gprat::tiles::copy_to_row_major(m, dense.data(), m.cols());
    Ref r(m.rows(), m.cols());
    for (Index i = 0; i < m.rows(); ++i)
        for (Index j = 0; j < m.cols(); ++j) r(i, j) = dense[static_cast<std::size_t>(i * m.cols() + j)];
    return r;
}

Ref symmetrize_lower(Ref a)
{
    for (Index i = 0; i < a.rows; ++i)
        for (Index j = i + 1; j < a.cols; ++j) a(i, j) = a(j, i);
    return a;
}

Ref minus(const Ref& a, const Ref& b)
{
    Ref c = a;
    for (std::size_t i = 0; i < c.v.size(); ++i) c.v[i] -= b.v[i];
    return c;
}

/// Tiled Cholesky of the SPD `a`; returns the tiled factor.
template <typename T>
TiledMatrix<T> tiled_cholesky(const Ref& a, Index nb)
{
    TiledMatrix<T> t = to_tiled<T>(a, nb, Structure::SymmetricLower);
    TaskGraph g;
    gprat::linalg::cholesky(t, g);
    g.wait();
    return t;
}

// ------------------------------------------------------------------------------------------------

template <typename T>
void cholesky_case(Case c)
{
    const Ref& a = spd<T>(c.n).a;
    const TiledMatrix<T> t = tiled_cholesky<T>(a, c.nb);
    const Ref l = from_tiled(t);
    // Backward error ||A - L L^T||_F / (n eps ||A||_F).
    const double residual = static_cast<double>(gprat_test::frobenius(minus(a, gprat_test::multiply(l, gprat_test::transpose(l)))) /
                                                (c.n * eps<T>() * gprat_test::frobenius(a)));
    CHECK_MSG(residual < 10.0, label("cholesky", c, type_name<T>()) << " residual " << residual);
    // Forward: against the textbook loop (A is well conditioned).
    const Ref& lref = spd<T>(c.n).l;
    const double err = gprat_test::rel_err(l, lref);
    CHECK_MSG(err < 50.0 * c.n * eps<T>(), label("cholesky", c, type_name<T>()) << " forward error " << err);
    // log det from the factor.
    long double logdet = 0;
    for (Index i = 0; i < c.n; ++i) logdet += 2 * std::log(lref(i, i));
    const double ld = gprat::linalg::log_determinant_from_factor(t);
    CHECK_MSG(std::fabs(ld - static_cast<double>(logdet)) < 50.0 * c.n * eps<T>() * (1 + std::fabs(static_cast<double>(logdet))),
              label("logdet", c, type_name<T>()) << " " << ld << " vs " << static_cast<double>(logdet));
}

template <typename T>
void solve_case(Case c, const TiledMatrix<T>& l_tiled, const Ref& l, Op op, Index k, std::mt19937_64& rng)
{
    const Ref b = rounded<T>(random_ref(c.n, k, rng));
    TiledMatrix<T> x_tiled = to_tiled<T>(b, c.nb);
    TaskGraph g;
    gprat::linalg::solve_lower(l_tiled, op, x_tiled, g);
    g.wait();
    const Ref x = from_tiled(x_tiled);
    const Ref opl = op == Op::Trans ? gprat_test::transpose(l) : l;
    const Ref xref = gprat_test::solve_triangular(opl, op == Op::NoTrans, b);
    const std::string what = label(op == Op::Trans ? "solve_lower(Trans)" : "solve_lower(NoTrans)", c, type_name<T>()) +
                             " k=" + std::to_string(k);
    const double err = gprat_test::rel_err(x, xref);
    CHECK_MSG(err < 50.0 * c.n * eps<T>(), what << " forward error " << err);
    const double residual =
        static_cast<double>(gprat_test::frobenius(minus(gprat_test::multiply(opl, x), b)) /
                            (c.n * eps<T>() * gprat_test::frobenius(l) * gprat_test::frobenius(x)));
    CHECK_MSG(residual < 10.0, what << " residual " << residual);
}

template <typename T>
void inverse_case(Case c)
{
    const Ref& a = spd<T>(c.n).a;
    TiledMatrix<T> t = tiled_cholesky<T>(a, c.nb);
    {
        TaskGraph g;
        gprat::linalg::spd_inverse_from_factor(t, g);
        g.wait();
    }
    const Ref inv = symmetrize_lower(from_tiled(t));
    const Ref& ref = spd<T>(c.n).inv;  // L^{-T} L^{-1} by substitution
    const double err = gprat_test::rel_err(inv, ref);
    CHECK_MSG(err < 100.0 * c.n * eps<T>(), label("spd_inverse_from_factor", c, type_name<T>()) << " forward error " << err);
    const double residual = static_cast<double>(
        gprat_test::frobenius(minus(gprat_test::multiply(a, inv), gprat_test::identity(c.n))) /
        (c.n * eps<T>() * gprat_test::frobenius(a) * gprat_test::frobenius(inv)));
    CHECK_MSG(residual < 10.0, label("spd_inverse_from_factor", c, type_name<T>()) << " residual " << residual);
}

/// Y = A^T X (A n x m in nb x nbc tiles, X n x k in nb x nbk tiles, Y m x k in nbc x nbk tiles);
/// Y starts as NaN (the first product overwrites it, beta = 0).
template <typename T>
void transpose_times_case(Case c, Index m, Index nbc, Index k, Index nbk, std::mt19937_64& rng)
{
    const Ref a = rounded<T>(random_ref(c.n, m, rng));
    const Ref x = rounded<T>(random_ref(c.n, k, rng));
    const TiledMatrix<T> at = to_tiled<T>(a, c.nb, Structure::General, nbc);
    const TiledMatrix<T> xt = to_tiled<T>(x, c.nb, Structure::General, nbk);
    Ref nan(m, k);
    for (long double& v : nan.v) v = std::numeric_limits<long double>::quiet_NaN();
    const TiledMatrix<T> yt = to_tiled<T>(nan, nbc, Structure::General, nbk);
    TaskGraph g;
    gprat::linalg::transpose_times(at, xt, yt, g);
    g.wait();
    const Ref expected = gprat_test::multiply(gprat_test::transpose(a), x);
    const double err = gprat_test::rel_err(from_tiled(yt), expected);
    CHECK_MSG(err < 10.0 * c.n * eps<T>(), label("transpose_times", c, type_name<T>())
                                               << " m=" << m << " nbc=" << nbc << " k=" << k << " nbk=" << nbk
                                               << " err " << err);
}

/// y (m, tiles of nbc) -= column sums of squares of V (n x m, nb x nbc tiles).
template <typename T>
void column_squares_case(Case c, Index m, Index nbc, std::mt19937_64& rng)
{
    const Ref v = rounded<T>(random_ref(c.n, m, rng));
    const Ref y0 = rounded<T>(random_ref(m, 1, rng));
    const TiledMatrix<T> vt = to_tiled<T>(v, c.nb, Structure::General, nbc), yt = to_tiled<T>(y0, nbc);
    TaskGraph g;
    gprat::linalg::subtract_column_squares(vt, yt, g);
    g.wait();
    Ref expected = y0;
    for (Index j = 0; j < m; ++j)
        for (Index i = 0; i < c.n; ++i) expected(j, 0) -= v(i, j) * v(i, j);
    const double err = gprat_test::rel_err(from_tiled(yt), expected);
    CHECK_MSG(err < 10.0 * c.n * eps<T>(),
              label("subtract_column_squares", c, type_name<T>()) << " m=" << m << " nbc=" << nbc << " err " << err);
}

/// C (m x m symmetric, nbc x nbc tiles) -= V^T V (V n x m, nb x nbc tiles).
template <typename T>
void gram_case(Case c, Index m, Index nbc, std::mt19937_64& rng)
{
    const Ref v = rounded<T>(random_ref(c.n, m, rng));
    const Ref c0 = rounded<T>(symmetrize_lower(random_ref(m, m, rng)));
    const TiledMatrix<T> vt = to_tiled<T>(v, c.nb, Structure::General, nbc);
    const TiledMatrix<T> ct = to_tiled<T>(c0, nbc, Structure::SymmetricLower);
    TaskGraph g;
    gprat::linalg::subtract_gram(vt, ct, g);
    g.wait();
    const Ref expected = minus(c0, gprat_test::multiply(gprat_test::transpose(v), v));
    const double err = gprat_test::rel_err(from_tiled(ct), expected, [](Index i, Index j) { return i >= j; });
    CHECK_MSG(err < 10.0 * c.n * eps<T>(),
              label("subtract_gram", c, type_name<T>()) << " m=" << m << " nbc=" << nbc << " err " << err);
}

/// SPD matrix whose pivot `fail` (0-based) is made negative; every earlier leading minor stays
/// positive definite. The tiled factorization must report the order LAPACK's potrf reports on
/// the whole dense matrix.
template <typename T>
void not_spd_case(Case c, Index fail)
{
    Ref a = spd<T>(c.n).a;
    const Ref& l = spd<T>(c.n).l;
    long double s = 0;
    for (Index k = 0; k < fail; ++k) s += l(fail, k) * l(fail, k);
    a(fail, fail) = static_cast<T>(s - 0.5L);

    // LAPACK on the dense matrix (column-major; symmetric, so the layout does not matter).
    std::vector<T> dense(static_cast<std::size_t>(c.n * c.n));
    for (Index i = 0; i < c.n; ++i)
        for (Index j = 0; j < c.n; ++j) dense[static_cast<std::size_t>(i + j * c.n)] = static_cast<T>(a(i, j));
    lapack_int info = 0;
    if constexpr (sizeof(T) == sizeof(float)) {
        info = GPRAT_LAPACKE(spotrf)(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(c.n), dense.data(),
                                     static_cast<lapack_int>(c.n));
    } else {
        info = GPRAT_LAPACKE(dpotrf)(LAPACK_COL_MAJOR, 'L', static_cast<lapack_int>(c.n), dense.data(),
                                     static_cast<lapack_int>(c.n));
    }
    CHECK_EQ(static_cast<Index>(info), fail + 1);  // the construction is what we think it is

    TiledMatrix<T> t = to_tiled<T>(a, c.nb, Structure::SymmetricLower);
    TaskGraph g;
    gprat::linalg::cholesky(t, g);
    bool caught = false;
    try {
        g.wait();
    } catch (const gprat::NotPositiveDefinite& e) {
        caught = true;
        CHECK_MSG(e.order() == static_cast<Index>(info),
                  label("cholesky(not SPD)", c, type_name<T>()) << " fail=" << fail << ": order " << e.order()
                                                                 << ", LAPACK info " << info);
    }
    CHECK_MSG(caught, label("cholesky(not SPD)", c, type_name<T>()) << " fail=" << fail << ": no NotPositiveDefinite");
}

/// Widths of the rectangular operands: a vector, one tile, and a ragged two tiles.
std::vector<Index> other_dims(Case c)
{
    std::vector<Index> d = {1, c.nb, c.nb + (c.nb + 1) / 2};
    if (c.n < 10) d.push_back(3 * c.nb + 2);  // many small tiles
    return d;
}

/// Column tile sizes for the rectangular operands: square tiles, and a different width.
std::vector<Index> col_tiles(Case c) { return {c.nb, c.nb > 8 ? c.nb / 2 + 3 : c.nb + 2}; }

}  // namespace

TEST(tiled_cholesky_residual_and_forward_error)
{
    Executor::instance().start(2);
    for (const Case& c : kCases) {
        cholesky_case<double>(c);
        cholesky_case<float>(c);
    }
}

TEST(tiled_cholesky_thread_counts)
{
    for (Index threads : {1, 3, 4}) {
        Executor::instance().start(threads);
        cholesky_case<double>({100, 10});
        cholesky_case<float>({257, 64});
    }
    Executor::instance().start(2);
}

TEST(tiled_solve_lower_vector_and_matrix_rhs)
{
    Executor::instance().start(2);
    std::mt19937_64 rng(13);
    for (const Case& c : kCases) {
        const TiledMatrix<double> ld = tiled_cholesky<double>(spd<double>(c.n).a, c.nb);
        const TiledMatrix<float> lf = tiled_cholesky<float>(spd<float>(c.n).a, c.nb);
        const Ref ld_ref = from_tiled(ld), lf_ref = from_tiled(lf);
        for (Op op : {Op::NoTrans, Op::Trans})
            for (Index k : {Index(1), Index(3), c.nb + 2}) {
                solve_case<double>(c, ld, ld_ref, op, k, rng);
                solve_case<float>(c, lf, lf_ref, op, k, rng);
            }
    }
}

TEST(tiled_spd_inverse_from_factor)
{
    Executor::instance().start(2);
    for (const Case& c : kCases) {
        inverse_case<double>(c);
        inverse_case<float>(c);
    }
}

TEST(tiled_transpose_times)
{
    Executor::instance().start(2);
    std::mt19937_64 rng(15);
    for (const Case& c : kCases)
        for (Index m : other_dims(c))
            for (Index nbc : col_tiles(c))
                for (auto [k, nbk] : {std::pair<Index, Index>{1, 1}, {5, 5}, {5, 2}}) {
                    transpose_times_case<double>(c, m, nbc, k, nbk, rng);
                    transpose_times_case<float>(c, m, nbc, k, nbk, rng);
                }
}

TEST(tiled_subtract_column_squares)
{
    Executor::instance().start(2);
    std::mt19937_64 rng(16);
    for (const Case& c : kCases)
        for (Index m : other_dims(c))
            for (Index nbc : col_tiles(c)) {
                column_squares_case<double>(c, m, nbc, rng);
                column_squares_case<float>(c, m, nbc, rng);
            }
}

TEST(tiled_subtract_gram)
{
    Executor::instance().start(2);
    std::mt19937_64 rng(17);
    for (const Case& c : kCases)
        for (Index m : other_dims(c))
            for (Index nbc : col_tiles(c)) {
                gram_case<double>(c, m, nbc, rng);
                gram_case<float>(c, m, nbc, rng);
            }
}

TEST(tiled_cholesky_not_spd_reports_lapack_order)
{
    Executor::instance().start(2);
    for (const Case& c : kCases) {
        std::vector<Index> fails = {0, c.n - 1, c.n / 2};
        if (c.nb < c.n) {
            fails.push_back(c.nb - 1);  // last column of the first tile
            fails.push_back(c.nb);      // first column of the second tile
        }
        for (Index f : fails) {
            not_spd_case<double>(c, f);
            not_spd_case<float>(c, f);
        }
    }
}

TEST(tiled_algorithms_reject_bad_shapes)
{
    TiledMatrix<double> general(4, 4, 2), sym(4, 4, 2, Structure::SymmetricLower), rhs(5, 1, 2);
    TaskGraph g;
    CHECK_THROWS_AS(gprat::linalg::cholesky(general, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::solve_lower(sym, Op::NoTrans, rhs, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::solve_lower(general, Op::NoTrans, general, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::spd_inverse_from_factor(general, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::subtract_gram(general, general, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::subtract_column_squares(general, rhs, g), gprat::InvalidArgument);
    CHECK_THROWS_AS(gprat::linalg::transpose_times(general, rhs, rhs, g), gprat::InvalidArgument);
    CHECK_THROWS_AS((TiledMatrix<double>(3, 4, 2, Structure::SymmetricLower)), gprat::InvalidArgument);
    CHECK_THROWS_AS((TiledMatrix<double>(3, 3, 0)), gprat::InvalidArgument);
    CHECK_THROWS_AS((TiledMatrix<double>(4, 4, 2, 3, Structure::SymmetricLower)), gprat::InvalidArgument);
    TiledMatrix<double> wide(5, 7, 2, 3), x5(5, 2, 2, 2), y7(7, 2, 2, 2);  // y7 must be tiled 3 x 2
    CHECK_THROWS_AS(gprat::linalg::transpose_times(wide, x5, y7, g), gprat::InvalidArgument);
    CHECK_EQ(g.size(), 0);
    g.wait();
}

TEST(solve_lower_rejects_rhs_tiled_differently)
{
    // A right-hand side whose row tiles differ from L's (9 rows: L in 4+4+1, B in 3+3+3, the
    // same tile count) is a caller error (InvalidArgument), not an internal one.
    TiledMatrix<double> l9(9, 9, 4, Structure::SymmetricLower), b9(9, 1, 3);
    TaskGraph g2;
    bool invalid = false;
    try {
        gprat::linalg::solve_lower(l9, Op::NoTrans, b9, g2);
        g2.wait();
    } catch (const gprat::InvalidArgument&) {
        invalid = true;
    } catch (const std::exception& e) {
        CHECK_MSG(false, "solve_lower with a differently tiled right-hand side threw " << typeid(e).name() << ": "
                                                                                        << e.what());
    }
    CHECK(invalid);
}

// ------------------------------------------------------------------------------------------------
// ExactGP's memory estimates against what the engine really allocates: TileMemory counts the
// bytes of every tile as it is allocated and freed, so its peak during a call is the tile memory
// that call needed. Element counts below are summed tile by tile, not taken from the estimate.

namespace {

using gprat::tiles::TileMemory;

/// Elements in the stored tiles of a rows x cols matrix tiled nb x nbc, counted tile by tile.
Index stored_elements(Index rows, Index cols, Index nb, Index nbc, bool lower)
{
    Index total = 0;
    for (Index c0 = 0; c0 < cols; c0 += nbc)
        for (Index r0 = 0; r0 < rows; r0 += nb)
            if (!lower || r0 >= c0) total += std::min(nb, rows - r0) * std::min(nbc, cols - c0);
    return total;
}

template <typename T>
void memory_case(Index n, Index m, Index nb)
{
    using G = gprat::gp::ExactGP<T>;
    const std::string what = label("memory", Case{n, nb}, type_name<T>()) + " m=" + std::to_string(m);
    const Index d = 2;
    std::mt19937_64 rng(static_cast<std::uint64_t>(n * 1000 + m));
    std::normal_distribution<double> normal;
    std::vector<T> X(static_cast<std::size_t>(n * d)), y(static_cast<std::size_t>(n)), Xs(static_cast<std::size_t>(m * d));
    for (T& v : X) v = static_cast<T>(normal(rng));
    for (T& v : y) v = static_cast<T>(normal(rng));
    for (T& v : Xs) v = static_cast<T>(normal(rng));
    const Index workers = Executor::instance().num_threads();
    const Index nbm = std::min(nb, n);  // the model's tile size

    const std::size_t before = TileMemory::live();
    G gp(gprat::kernels::SquaredExponential({0.8}, 1.0), 0.1, X.data(), y.data(), n, d, nb);
    REQUIRE_EQ(gp.tile_size(), nbm);
    TileMemory::reset_peak();
    gp.fit();
    const std::size_t fitted = TileMemory::live() - before;
    CHECK_MSG(fitted == G::fit_bytes(n, nb), what << ": fit holds " << fitted << ", estimate " << G::fit_bytes(n, nb));
    CHECK_MSG(TileMemory::peak() - before == fitted, what << ": fit peak");
    // the lower tiles of K, alpha (n) and z = L \ y (n, kept for add_observations)
    CHECK_EQ(fitted, static_cast<std::size_t>(stored_elements(n, n, nbm, nbm, true) + 2 * n) * sizeof(T));

    std::vector<T> mean(static_cast<std::size_t>(m)), var(static_cast<std::size_t>(m)), cov(static_cast<std::size_t>(m * m));
    for (const bool want_var : {false, true})
        for (const bool want_cov : {false, true}) {
            const std::size_t base = TileMemory::live();
            TileMemory::reset_peak();
            gp.predict(Xs.data(), m, mean.data(), want_var ? var.data() : nullptr, want_cov ? cov.data() : nullptr, false);
            const std::size_t used = TileMemory::peak() - base;
            const std::size_t estimate = G::predict_workspace_bytes(n, m, nb, want_var, want_cov, workers);
            CHECK_MSG(used == estimate, what << " var=" << want_var << " cov=" << want_cov << ": predict allocated " << used
                                             << " tile bytes, estimate " << estimate);
            CHECK_EQ(TileMemory::live(), base);  // the workspace is freed
            // No chunking at these sizes: K*^T is n x m, so the workspace holds at least n m + m
            // elements (+ m for the variance, + the lower triangle of K** for the covariance).
            const Index at_least = n * m + m + (want_var ? m : 0) + (want_cov ? m * (m + 1) / 2 : 0);
            CHECK_MSG(estimate >= static_cast<std::size_t>(at_least) * sizeof(T), what);
            const std::size_t outputs = static_cast<std::size_t>(m + (want_var ? m : 0) + (want_cov ? m * m : 0)) * sizeof(T);
            CHECK_EQ(G::predict_bytes(n, m, nb, want_var, want_cov, workers), estimate + outputs);
        }

    // A training step forms K^{-1} in place: no tiles beyond the fitted model; its own workspace
    // is one row of n_params partial sums per lower tile of K.
    const std::vector<double> theta = gp.theta();
    std::vector<double> grad(theta.size());
    const std::size_t base = TileMemory::live();
    TileMemory::reset_peak();
    gp.training_step(theta, grad.data());
    CHECK_MSG(TileMemory::peak() == base, what << ": training step allocated tiles");
    Index lower_tiles = 0;
    for (Index j = 0; j * nbm < n; ++j)
        for (Index i = j; i * nbm < n; ++i) ++lower_tiles;
    CHECK_EQ(G::training_step_bytes(n, nb, gp.n_params()),
             static_cast<std::size_t>(lower_tiles * gp.n_params()) * sizeof(double));
}

}  // namespace

TEST(exact_gp_memory_estimates_match_allocations)
{
    for (const Index threads : {1, 2}) {
        Executor::instance().start(threads);
        // ragged (7 by 3, 100 by 32, 257 by 64, 130 by 40), one tile, tile size above n
        const Index cases[][3] = {{1, 1, 1}, {7, 5, 3}, {100, 37, 32}, {257, 300, 64}, {130, 1000, 40}, {50, 200, 100}};
        for (const auto& c : cases) {
            memory_case<double>(c[0], c[1], c[2]);
            memory_case<float>(c[0], c[1], c[2]);
        }
    }
    Executor::instance().start(2);
}

TEST(exact_gp_predict_plan_chunks_within_the_budget)
{
    using G = gprat::gp::ExactGP<double>;
    const Index n = 4096, m = 100000, nb = 256;
    const G::PredictPlan plan = G::predict_plan(n, m, nb, false, 2);
    CHECK_EQ(plan.nbc, nb);  // ceil(m / 8) = 12500 columns per worker tile, capped at nb
    CHECK(plan.chunk < m && plan.chunk % plan.nbc == 0);
    const std::size_t per_column = sizeof(double) * n;
    CHECK(static_cast<std::size_t>(plan.chunk) * per_column <= G::predict_chunk_budget);
    CHECK(static_cast<std::size_t>(plan.chunk + plan.nbc) * per_column > G::predict_chunk_budget);  // the largest such
    CHECK_EQ(G::predict_workspace_bytes(n, m, nb, true, false, 2),
             static_cast<std::size_t>(stored_elements(n, plan.chunk, nb, plan.nbc, false) + 2 * plan.chunk) * sizeof(double));
    CHECK_EQ(G::predict_plan(n, m, nb, true, 2).chunk, m);  // K** needs every test point at once
    // Few test points: at least min(64, m) columns per tile, at most nb.
    CHECK_EQ(G::predict_plan(n, 10, nb, false, 4).nbc, 10);
    CHECK_EQ(G::predict_plan(n, 1000, nb, false, 4).nbc, 64);
    CHECK_EQ(G::predict_plan(n, 1000, 32, false, 4).nbc, 32);
    CHECK_THROWS_AS(G::predict_bytes(0, 5, 4, true, false, 2), gprat::InvalidArgument);
    CHECK_THROWS_AS(G::predict_bytes(5, 5, 0, true, false, 2), gprat::InvalidArgument);
    CHECK_THROWS_AS(G::training_step_bytes(5, 2, 0), gprat::InvalidArgument);
}

namespace {

/// The ExactGP options (per-sample fixed noise, learned noise, p outputs, constant mean) against
/// a dense long-double reference written from the formulas, per output j:
///   K = s2 exp(-r^2 / (2 l^2)) + diag(s) + sigma2 I,  a_j = K^{-1} (y_j - c_j)
///   lml = sum_j -1/2 (y_j - c_j)^T a_j - p sum log L_ii - p n/2 log(2 pi)
///   d/dtheta_q = sum_j 1/2 a_j^T dK_q a_j - p/2 tr(K^{-1} dK_q),  d/dc_j = 1^T a_j
/// With n0 < n the model is first fitted on the first n0 rows and then grown by add_observations
/// (the block update of the factor), and must equal the same reference at n before any refit;
/// a copy made before the update (the start of condition_on) must keep the n0-row model.
void exact_gp_options_case(Index n, Index nb, bool learned, bool mean, Index n0 = 0)
{
    const Index d = 2, p = 3, m = 4;
    const double l = 0.8, s2 = 1.2, sigma2 = 0.03;
    std::mt19937_64 rng(static_cast<std::uint64_t>(n * 31 + nb));
    std::uniform_real_distribution<double> u(-1.5, 1.5), un(0.0, 0.2);
    std::vector<double> X(static_cast<std::size_t>(n * d)), Y(static_cast<std::size_t>(n * p)), Xs(static_cast<std::size_t>(m * d));
    for (double& v : X) v = u(rng);
    for (double& v : Y) v = u(rng) + 2.0;
    for (double& v : Xs) v = u(rng);
    std::vector<double> s(static_cast<std::size_t>(n));
    for (Index i = 0; i < n; ++i) s[static_cast<std::size_t>(i)] = i % 5 == 0 ? 0.0 : un(rng);
    const std::vector<double> c = mean ? std::vector<double>{0.5, -1.0, 2.0} : std::vector<double>{0.0, 0.0, 0.0};

    gprat::gp::ExactGPOptions o;
    o.fixed_noise = s;
    if (learned) o.learned_noise = sigma2;
    o.outputs = p;
    o.constant_mean = mean;
    if (mean) o.mean = c;
    const bool grow = n0 > 0 && n0 < n;
    std::vector<double> s_new;
    if (grow) {
        s_new.assign(s.begin() + n0, s.end());
        o.fixed_noise.resize(static_cast<std::size_t>(n0));
    }
    gprat::gp::ExactGP<double> gp(gprat::kernels::SquaredExponential({l}, s2), o, X.data(), Y.data(), grow ? n0 : n, d, nb);
    std::optional<gprat::gp::ExactGP<double>> before;
    double lml_before = 0.0;
    if (grow) {
        lml_before = gp.fit();
        before.emplace(gp);
        gp.add_observations(X.data(), Y.data(), n - n0, s_new);
        REQUIRE_EQ(gp.n(), n);
    }
    const Index n_params = 2 + (learned ? 1 : 0) + (mean ? p : 0);
    REQUIRE_EQ(gp.n_params(), n_params);
    const std::vector<double> theta = gp.theta();
    REQUIRE_EQ(static_cast<Index>(theta.size()), n_params);
    if (mean) CHECK_EQ(theta.back(), 2.0);  // the constants themselves, not logarithms

    auto r2 = [&](const double* a, const double* b) {
        long double t = 0;
        for (Index k = 0; k < d; ++k) t += (long double)(a[k] - b[k]) * (a[k] - b[k]);
        return t / (l * l);
    };
    Ref Kf(n, n), K(n, n), D(n, n);  // D = r^2 / l^2
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) {
            D(i, j) = r2(&X[i * d], &X[j * d]);
            Kf(i, j) = s2 * std::exp(-0.5L * D(i, j));
            K(i, j) = Kf(i, j) + (i == j ? s[static_cast<std::size_t>(i)] + (learned ? sigma2 : 0.0) : 0.0);
        }
    Ref L = K;
    REQUIRE_EQ(gprat_test::cholesky_ref(L), 0);
    Ref R(n, p);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < p; ++j) R(i, j) = Y[static_cast<std::size_t>(i * p + j)] - c[static_cast<std::size_t>(j)];
    const Ref A = gprat_test::solve_triangular(gprat_test::transpose(L), false, gprat_test::solve_triangular(L, true, R));
    const Ref Kinv = gprat_test::solve_triangular(gprat_test::transpose(L), false,
                                                  gprat_test::solve_triangular(L, true, gprat_test::identity(n)));
    long double lml = 0, logdet = 0;
    for (Index i = 0; i < n; ++i) logdet += std::log(L(i, i));
    for (Index j = 0; j < p; ++j)
        for (Index i = 0; i < n; ++i) lml -= 0.5L * R(i, j) * A(i, j);
    lml -= p * logdet + 0.5L * p * n * std::log(2.0L * std::numbers::pi_v<long double>);

    std::vector<Ref> dK;
    Ref dl(n, n), dnoise(n, n);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) dl(i, j) = Kf(i, j) * D(i, j);  // dk/dlog l = k r^2 / l^2
    for (Index i = 0; i < n; ++i) dnoise(i, i) = sigma2;
    dK.push_back(dl);
    dK.push_back(Kf);  // dk/dlog s2 = k
    if (learned) dK.push_back(dnoise);
    std::vector<long double> want;
    for (const Ref& dk : dK) {
        long double g = 0, tr = 0;
        for (Index j = 0; j < p; ++j)
            for (Index a = 0; a < n; ++a)
                for (Index b = 0; b < n; ++b) g += 0.5L * A(a, j) * dk(a, b) * A(b, j);
        for (Index a = 0; a < n; ++a)
            for (Index b = 0; b < n; ++b) tr += Kinv(a, b) * dk(b, a);
        want.push_back(g - 0.5L * p * tr);
    }
    if (mean)
        for (Index j = 0; j < p; ++j) {
            long double t = 0;
            for (Index i = 0; i < n; ++i) t += A(i, j);
            want.push_back(t);
        }

    const std::string what = "exact_gp options n=" + std::to_string(n) + " nb=" + std::to_string(nb) +
                             (learned ? " learned" : "") + (mean ? " mean" : "") +
                             (grow ? " grown from n0=" + std::to_string(n0) : "");
    auto check_predict = [&](const std::string& when) {
        std::vector<double> mu(static_cast<std::size_t>(m * p)), var(static_cast<std::size_t>(m));
        gp.predict(Xs.data(), m, mu.data(), var.data(), nullptr, false);
        for (Index t = 0; t < m; ++t) {
            long double v = s2;
            std::vector<long double> ks(static_cast<std::size_t>(n));
            for (Index i = 0; i < n; ++i) ks[static_cast<std::size_t>(i)] = s2 * std::exp(-0.5L * r2(&Xs[t * d], &X[i * d]));
            for (Index a = 0; a < n; ++a)
                for (Index b = 0; b < n; ++b) v -= ks[static_cast<std::size_t>(a)] * Kinv(a, b) * ks[static_cast<std::size_t>(b)];
            CHECK_MSG(std::fabs(var[static_cast<std::size_t>(t)] - v) <= 1e-9L * s2, what << when << ": variance " << t);
            for (Index j = 0; j < p; ++j) {
                long double want_mu = c[static_cast<std::size_t>(j)];
                for (Index i = 0; i < n; ++i) want_mu += ks[static_cast<std::size_t>(i)] * A(i, j);
                CHECK_MSG(std::fabs(mu[static_cast<std::size_t>(t * p + j)] - want_mu) <= 1e-9L * std::max(1.0L, std::fabs(want_mu)),
                          what << when << ": mean (" << t << ", " << j << ")");
            }
        }
    };
    if (grow) {  // the block-updated factor, before anything refactors
        CHECK_MSG(std::fabs(gp.log_marginal_likelihood() - lml) <= 1e-10L * std::fabs(lml), what << ": lml after the update");
        check_predict(" after the update");
        CHECK_EQ(before->n(), n0);
        CHECK_EQ(before->log_marginal_likelihood(), lml_before);
    }
    CHECK_MSG(std::fabs(gp.fit() - lml) <= 1e-10L * std::fabs(lml), what << ": lml");
    std::vector<double> grad(theta.size());
    const double step = gp.training_step(theta, grad.data());
    CHECK_MSG(std::fabs(step - lml) <= 1e-10L * std::fabs(lml), what << ": lml of the training step");
    long double scale = 0;
    for (long double w : want) scale = std::max(scale, std::fabs(w));
    for (std::size_t q = 0; q < want.size(); ++q)
        CHECK_MSG(std::fabs(grad[q] - want[q]) <= 1e-9L * std::max(std::fabs(want[q]), 1e-3L * scale),
                  what << ": gradient entry " << q << " = " << grad[q] << ", want " << static_cast<double>(want[q]));

    check_predict("");
}

}  // namespace

TEST(exact_gp_fixed_noise_outputs_and_mean_match_dense_reference)
{
    for (const bool learned : {true, false})
        for (const bool mean : {false, true}) {
            exact_gp_options_case(23, 5, learned, mean);  // ragged: 5 tiles, the last of 3 rows
            exact_gp_options_case(23, 23, learned, mean);
        }
}

TEST(exact_gp_add_observations_matches_dense_reference)
{
    for (const bool learned : {true, false})
        for (const bool mean : {false, true}) {
            exact_gp_options_case(23, 5, learned, mean, 13);  // ragged before (13 = 2*5 + 3) and after
            exact_gp_options_case(23, 5, learned, mean, 22);  // k = 1
            exact_gp_options_case(23, 5, learned, mean, 10);  // tile-aligned n0, k larger than a tile
            exact_gp_options_case(23, 23, learned, mean, 4);  // nb clamped to n0 = 4: 5 tiles after
        }
}

TEST(exact_gp_options_reject_bad_input)
{
    std::vector<double> X(6, 0.5), Y(3, 1.0);
    X[2] = 1.0;
    X[4] = -1.0;
    gprat::gp::ExactGPOptions o;
    o.fixed_noise = {0.1, 0.1};  // n = 3
    CHECK_THROWS_AS(gprat::gp::ExactGP<double>(gprat::kernels::SquaredExponential({1.0}, 1.0), o, X.data(), Y.data(), 3, 2, 2),
                    gprat::InvalidArgument);
    o.fixed_noise = {0.1, -0.1, 0.1};
    CHECK_THROWS_AS(gprat::gp::ExactGP<double>(gprat::kernels::SquaredExponential({1.0}, 1.0), o, X.data(), Y.data(), 3, 2, 2),
                    gprat::InvalidArgument);
    o.fixed_noise = {0.1, std::numeric_limits<double>::quiet_NaN(), 0.1};
    CHECK_THROWS_AS(gprat::gp::ExactGP<double>(gprat::kernels::SquaredExponential({1.0}, 1.0), o, X.data(), Y.data(), 3, 2, 2),
                    gprat::InvalidArgument);
    o.fixed_noise = {};
    o.constant_mean = true;
    o.mean = {0.0, 1.0};  // one output
    CHECK_THROWS_AS(gprat::gp::ExactGP<double>(gprat::kernels::SquaredExponential({1.0}, 1.0), o, X.data(), Y.data(), 3, 2, 2),
                    gprat::InvalidArgument);
    // zero noise, no learned entry: theta holds the kernel only, and the jitter is outside it
    gprat::gp::ExactGPOptions zero;
    gprat::gp::ExactGP<double> gp(gprat::kernels::SquaredExponential({1.0}, 1.0), zero, X.data(), Y.data(), 3, 2, 2);
    CHECK_EQ(gp.n_params(), 2);
    gp.set_jitter(1e-6);
    CHECK_EQ(gp.theta().size(), std::size_t(2));
    CHECK_THROWS_AS(gp.set_jitter(-1.0), gprat::InvalidArgument);
}

int main(int argc, char** argv)
{
    gprat::linalg::use_single_threaded_blas();
    return gprat_test::run_all(argc, argv);
}
