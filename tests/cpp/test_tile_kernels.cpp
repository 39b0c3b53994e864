/// Single-tile kernels (gprat::linalg::tile) against naive loops, float and double, on square and
/// ragged shapes, with padded leading dimensions. Also checks what a kernel must not touch: the
/// unreferenced triangle, the padding rows, read-only inputs.
#include <cmath>
#include <cstring>
#include <limits>
#include <initializer_list>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.hpp"
#include "dense.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/linalg/tile_kernels.hpp"

using gprat::Diag;
using gprat::Index;
using gprat::Op;
using gprat::Side;
using gprat::Uplo;
using gprat_test::eps;
using gprat_test::Matrix;
using gprat_test::Ref;
using gprat_test::rel_err;
namespace tile = gprat::linalg::tile;

namespace {

const Index kSquare[] = {1, 2, 3, 7, 16, 33};
struct Shape
{
    Index rows, cols;
};
const Shape kRagged[] = {{1, 1}, {1, 5}, {5, 1}, {7, 3}, {3, 7}, {13, 17}, {16, 9}};
const Index kPads[] = {0, 3};
/// Shapes whose triangular order exceeds tile::detail::trsm_leaf_order, so trsm recurses
/// (odd orders give ragged splits; 200 is split twice).
const Shape kTrsmRecursive[] = {{131, 131}, {200, 37}, {37, 200}, {97, 250},
                                 {300, 1}, {1, 300}};  ///< one right-hand side: trsv, no recursion
const Index kTrsmRecursivePads[] = {3};  ///< padded only: the sub-blocks must honour ld != rows

constexpr double kTol = 30.0;  ///< allowed error in units of (inner dimension) * eps(T)

const char* name(Side s) { return s == Side::Left ? "Left" : "Right"; }
const char* name(Uplo u) { return u == Uplo::Lower ? "Lower" : "Upper"; }
const char* name(Op o) { return o == Op::NoTrans ? "NoTrans" : "Trans"; }
const char* name(Diag d) { return d == Diag::Unit ? "Unit" : "NonUnit"; }

bool same_bits(const std::vector<float>& a, const std::vector<float>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_bits(const std::vector<double>& a, const std::vector<double>& b)
{
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

/// The strict upper triangle (i < j) is untouched by a Lower-only kernel.
template <typename T>
bool upper_untouched(const Matrix<T>& after, const Matrix<T>& before)
{
    for (Index j = 0; j < after.cols; ++j)
        for (Index i = 0; i < std::min(j, after.rows); ++i)
            if (std::memcmp(&after.buf[i + j * after.ld], &before.buf[i + j * before.ld], sizeof(T)) != 0) return false;
    return true;
}

/// Symmetric positive definite n x n: M M^T / n + I (full storage).
template <typename T>
Matrix<T> spd_matrix(Index n, Index pad, std::mt19937_64& rng)
{
    Matrix<double> m(n, n);
    gprat_test::fill_uniform(m, rng);
    Matrix<T> a(n, n, pad);
    for (Index i = 0; i < n; ++i)
        for (Index j = 0; j < n; ++j) {
            double s = i == j ? 1.0 : 0.0;
            for (Index k = 0; k < n; ++k) s += m(i, k) * m(j, k) / static_cast<double>(n);
            a(i, j) = static_cast<T>(s);
        }
    return a;
}

/// Triangular n x n test matrix: the referenced triangle is well conditioned (diagonal in
/// [1, 2], off-diagonal entries scaled by 1/n); the unreferenced triangle, and the diagonal when
/// diag is Unit, hold NaN, which would poison the result if the kernel read them.
template <typename T>
Matrix<T> triangular_matrix(Index n, Uplo uplo, Diag diag, Index pad, std::mt19937_64& rng)
{
    std::uniform_real_distribution<double> off(-1.0, 1.0), on(1.0, 2.0);
    Matrix<T> a(n, n, pad);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < n; ++i) {
            const bool referenced = uplo == Uplo::Lower ? i > j : i < j;
            if (i == j) {
                a(i, j) = diag == Diag::Unit ? std::numeric_limits<T>::quiet_NaN() : static_cast<T>(on(rng));
            } else {
                a(i, j) = referenced ? static_cast<T>(off(rng) / static_cast<double>(n))
                                     : std::numeric_limits<T>::quiet_NaN();
            }
        }
    return a;
}

/// The dense matrix a triangular tile stands for (zeros outside, unit diagonal if asked).
template <typename T>
Ref triangular_ref(const Matrix<T>& a, Uplo uplo, Diag diag)
{
    Ref r(a.rows, a.cols);
    for (Index i = 0; i < a.rows; ++i)
        for (Index j = 0; j < a.cols; ++j) {
            if (i == j) {
                r(i, j) = diag == Diag::Unit ? 1.0L : static_cast<long double>(a(i, j));
            } else if (uplo == Uplo::Lower ? i > j : i < j) {
                r(i, j) = a(i, j);
            }
        }
    return r;
}

Ref scaled(Ref a, long double alpha)
{
    for (long double& x : a.v) x *= alpha;
    return a;
}

Ref op_of(const Ref& a, Op op) { return op == Op::Trans ? gprat_test::transpose(a) : a; }

// ------------------------------------------------------------------------------------------------

template <typename T>
void potrf_case(Index n, Index pad, std::mt19937_64& rng)
{
    Matrix<T> a = spd_matrix<T>(n, pad, rng);
    // Something recognisable in the strict upper triangle, which potrf must leave alone.
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) a(i, j) = T(7.25);
    const Matrix<T> before = a;
    Ref ref = gprat_test::to_ref(a);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) ref(i, j) = ref(j, i);
    REQUIRE_EQ(gprat_test::cholesky_ref(ref), 0);
    tile::potrf(a.view(), 0);
    const double err = rel_err(gprat_test::to_ref(a), ref, [](Index i, Index j) { return i >= j; });
    CHECK_MSG(err < kTol * n * eps<T>(), gprat_test::type_name<T>() << " n=" << n << " pad=" << pad << " err=" << err);
    CHECK(upper_untouched(a, before));
    CHECK(a.padding_intact());
}

template <typename T>
void potrf_not_spd_case(Index n, Index fail, Index row0, std::mt19937_64& rng)
{
    Matrix<T> a = spd_matrix<T>(n, 1, rng);
    // Make the pivot of column `fail` negative: a(fail, fail) = sum_k L(fail, k)^2 - 1/2.
    Ref l = gprat_test::to_ref(a);
    REQUIRE_EQ(gprat_test::cholesky_ref(l), 0);
    long double s = 0;
    for (Index k = 0; k < fail; ++k) s += l(fail, k) * l(fail, k);
    a(fail, fail) = static_cast<T>(s - 0.5L);
    bool caught = false;
    try {
        tile::potrf(a.view(), row0);
    } catch (const gprat::NotPositiveDefinite& e) {
        caught = true;
        CHECK_EQ(e.order(), row0 + fail + 1);
        CHECK(std::string(e.what()).find(std::to_string(row0 + fail + 1)) != std::string::npos);
    }
    CHECK_MSG(caught, gprat_test::type_name<T>() << " n=" << n << " fail=" << fail << ": no NotPositiveDefinite");
}

template <typename T>
void trsm_case(Side side, Uplo uplo, Op op, Diag diag, T alpha, Shape shape, Index pad, std::mt19937_64& rng)
{
    const Index na = side == Side::Left ? shape.rows : shape.cols;
    Matrix<T> a = triangular_matrix<T>(na, uplo, diag, pad, rng);
    Matrix<T> b(shape.rows, shape.cols, pad);
    gprat_test::fill_uniform(b, rng);
    const Matrix<T> a_before = a;
    const Ref b_ref = gprat_test::to_ref(b);
    tile::trsm(side, uplo, op, diag, alpha, a.view(), b.view());

    // Reference: Left  op(A) X = alpha B;   Right  X op(A) = alpha B  <=>  op(A)^T X^T = alpha B^T.
    const Ref opa = op_of(triangular_ref(a_before, uplo, diag), op);
    const bool opa_lower = (uplo == Uplo::Lower) == (op == Op::NoTrans);
    Ref x(0, 0);
    if (side == Side::Left) {
        x = gprat_test::solve_triangular(opa, opa_lower, scaled(b_ref, alpha));
    } else {
        x = gprat_test::transpose(gprat_test::solve_triangular(gprat_test::transpose(opa), !opa_lower,
                                                               gprat_test::transpose(scaled(b_ref, alpha))));
    }
    const double err = rel_err(gprat_test::to_ref(b), x);
    CHECK_MSG(err < kTol * na * eps<T>(), gprat_test::type_name<T>() << " trsm " << name(side) << " " << name(uplo) << " "
                                                                  << name(op) << " " << name(diag) << " alpha="
                                                                  << alpha << " " << shape.rows << "x" << shape.cols
                                                                  << " pad=" << pad << " err=" << err);
    CHECK(same_bits(a.buf, a_before.buf));
    CHECK(b.padding_intact());
}

template <typename T>
void trmm_case(Side side, Uplo uplo, Op op, Diag diag, T alpha, Shape shape, Index pad, std::mt19937_64& rng)
{
    const Index na = side == Side::Left ? shape.rows : shape.cols;
    Matrix<T> a = triangular_matrix<T>(na, uplo, diag, pad, rng);
    Matrix<T> b(shape.rows, shape.cols, pad);
    gprat_test::fill_uniform(b, rng);
    const Matrix<T> a_before = a;
    const Ref b_ref = gprat_test::to_ref(b);
    tile::trmm(side, uplo, op, diag, alpha, a.view(), b.view());
    const Ref opa = op_of(triangular_ref(a_before, uplo, diag), op);
    const Ref expected =
        scaled(side == Side::Left ? gprat_test::multiply(opa, b_ref) : gprat_test::multiply(b_ref, opa), alpha);
    const double err = rel_err(gprat_test::to_ref(b), expected);
    CHECK_MSG(err < kTol * na * eps<T>(), gprat_test::type_name<T>() << " trmm " << name(side) << " " << name(uplo) << " "
                                                                  << name(op) << " " << name(diag) << " "
                                                                  << shape.rows << "x" << shape.cols << " err=" << err);
    CHECK(same_bits(a.buf, a_before.buf));
    CHECK(b.padding_intact());
}

/// C (n x n, lower) <- alpha op(A) op(A)^T + beta C; NoTrans: A is n x k, Trans: A is k x n.
template <typename T>
void syrk_case(Op op, Index n, Index k, T alpha, T beta, Index pad, std::mt19937_64& rng)
{
    Matrix<T> a(op == Op::NoTrans ? n : k, op == Op::NoTrans ? k : n, pad);
    gprat_test::fill_uniform(a, rng);
    Matrix<T> c(n, n, pad);
    gprat_test::fill_uniform(c, rng);
    if (beta == T(0)) {  // beta = 0: C need not be set on input (BLAS); its NaNs must not leak
        for (Index j = 0; j < n; ++j)
            for (Index i = j; i < n; ++i) c(i, j) = std::numeric_limits<T>::quiet_NaN();
    }
    const Matrix<T> a_before = a, c_before = c;
    tile::syrk(op, alpha, a.view(), beta, c.view());
    const Ref ar = gprat_test::to_ref(a_before);
    const Ref prod = op == Op::NoTrans ? gprat_test::multiply(ar, gprat_test::transpose(ar))
                                       : gprat_test::multiply(gprat_test::transpose(ar), ar);
    Ref expected = scaled(prod, alpha);
    if (beta != T(0)) {
        const Ref cr = gprat_test::to_ref(c_before);
        for (std::size_t i = 0; i < expected.v.size(); ++i) expected.v[i] += static_cast<long double>(beta) * cr.v[i];
    }
    const double err = rel_err(gprat_test::to_ref(c), expected, [](Index i, Index j) { return i >= j; });
    CHECK_MSG(err < kTol * (k + 2) * eps<T>(), gprat_test::type_name<T>() << " syrk " << name(op) << " n=" << n << " k="
                                                                       << k << " alpha=" << alpha << " beta=" << beta
                                                                       << " err=" << err);
    CHECK(upper_untouched(c, c_before));
    CHECK(same_bits(a.buf, a_before.buf));
    CHECK(c.padding_intact());
}

/// C (m x n) <- alpha op(A) op(B) + beta C.
template <typename T>
void gemm_case(Op op_a, Op op_b, Index m, Index n, Index k, T alpha, T beta, Index pad, std::mt19937_64& rng)
{
    Matrix<T> a(op_a == Op::NoTrans ? m : k, op_a == Op::NoTrans ? k : m, pad);
    Matrix<T> b(op_b == Op::NoTrans ? k : n, op_b == Op::NoTrans ? n : k, pad);
    Matrix<T> c(m, n, pad);
    gprat_test::fill_uniform(a, rng);
    gprat_test::fill_uniform(b, rng);
    gprat_test::fill_uniform(c, rng);
    if (beta == T(0)) {
        for (T& x : c.buf) x = std::numeric_limits<T>::quiet_NaN();
        for (Index j = 0; j < n; ++j)
            for (Index i = m; i < c.ld; ++i) c(i, j) = Matrix<T>::sentinel;
    }
    const Matrix<T> a_before = a, b_before = b, c_before = c;
    tile::gemm(op_a, op_b, alpha, a.view(), b.view(), beta, c.view());
    Ref expected = scaled(gprat_test::multiply(op_of(gprat_test::to_ref(a_before), op_a),
                                               op_of(gprat_test::to_ref(b_before), op_b)),
                          alpha);
    if (beta != T(0)) {
        const Ref cr = gprat_test::to_ref(c_before);
        for (std::size_t i = 0; i < expected.v.size(); ++i) expected.v[i] += static_cast<long double>(beta) * cr.v[i];
    }
    const double err = rel_err(gprat_test::to_ref(c), expected);
    CHECK_MSG(err < kTol * (k + 2) * eps<T>(), gprat_test::type_name<T>() << " gemm " << name(op_a) << " "
                                                                       << name(op_b) << " m=" << m << " n=" << n
                                                                       << " k=" << k << " alpha=" << alpha
                                                                       << " beta=" << beta << " err=" << err);
    CHECK(same_bits(a.buf, a_before.buf));
    CHECK(same_bits(b.buf, b_before.buf));
    CHECK(c.padding_intact());
}

template <typename T>
void trtri_case(Index n, Index pad, std::mt19937_64& rng)
{
    Matrix<T> a = triangular_matrix<T>(n, Uplo::Lower, Diag::NonUnit, pad, rng);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) a(i, j) = T(3.5);  // must survive
    const Matrix<T> before = a;
    tile::trtri(a.view(), 0);
    const Ref inv = gprat_test::solve_triangular(triangular_ref(before, Uplo::Lower, Diag::NonUnit), true,
                                                 gprat_test::identity(n));
    const double err = rel_err(gprat_test::to_ref(a), inv, [](Index i, Index j) { return i >= j; });
    CHECK_MSG(err < kTol * n * eps<T>(), gprat_test::type_name<T>() << " trtri n=" << n << " err=" << err);
    CHECK(upper_untouched(a, before));
    CHECK(a.padding_intact());
}

template <typename T>
void trtri_singular_case(Index n, Index zero_at, Index row0, std::mt19937_64& rng)
{
    Matrix<T> a = triangular_matrix<T>(n, Uplo::Lower, Diag::NonUnit, 0, rng);
    a(zero_at, zero_at) = T(0);
    bool caught = false;
    try {
        tile::trtri(a.view(), row0);
    } catch (const gprat::NotPositiveDefinite& e) {
        caught = true;
        CHECK_EQ(e.order(), row0 + zero_at + 1);
    }
    CHECK_MSG(caught, gprat_test::type_name<T>() << " trtri singular n=" << n << " at " << zero_at);
}

template <typename T>
void lauum_case(Index n, Index pad, std::mt19937_64& rng)
{
    Matrix<T> a = triangular_matrix<T>(n, Uplo::Lower, Diag::NonUnit, pad, rng);
    for (Index j = 0; j < n; ++j)
        for (Index i = 0; i < j; ++i) a(i, j) = T(-2.5);
    const Matrix<T> before = a;
    tile::lauum(a.view());
    const Ref l = triangular_ref(before, Uplo::Lower, Diag::NonUnit);
    const Ref expected = gprat_test::multiply(gprat_test::transpose(l), l);
    const double err = rel_err(gprat_test::to_ref(a), expected, [](Index i, Index j) { return i >= j; });
    CHECK_MSG(err < kTol * n * eps<T>(), gprat_test::type_name<T>() << " lauum n=" << n << " err=" << err);
    CHECK(upper_untouched(a, before));
    CHECK(a.padding_intact());
}

template <typename T>
void all_potrf(std::mt19937_64& rng)
{
    for (Index n : kSquare)
        for (Index pad : kPads) potrf_case<T>(n, pad, rng);
    for (Index row0 : {0, 64})
        for (Index fail : {0, 1, 3, 6}) potrf_not_spd_case<T>(7, fail, row0, rng);
    potrf_not_spd_case<T>(1, 0, 5, rng);
    potrf_not_spd_case<T>(33, 32, 0, rng);
    // Orders above tile::detail::potrf_leaf_order: potrf recurses. The failure may lie in the
    // first half, at the split, in the second half's first or last column.
    static_assert(301 > 2 * tile::detail::potrf_leaf_order);
    for (Index n : {129, 301})
        for (Index pad : kPads) potrf_case<T>(n, pad, rng);
    for (Index fail : {0, 100, 143, 144, 160, 299, 300}) potrf_not_spd_case<T>(301, fail, 1024, rng);
}

/// trsm_case for every side, uplo, op and diag, at the given alphas, shapes and paddings.
template <typename T>
void all_trsm(std::mt19937_64& rng, std::initializer_list<T> alphas, std::span<const Shape> shapes,
              std::span<const Index> pads)
{
    for (Side side : {Side::Left, Side::Right})
        for (Uplo uplo : {Uplo::Lower, Uplo::Upper})
            for (Op op : {Op::NoTrans, Op::Trans})
                for (Diag diag : {Diag::NonUnit, Diag::Unit})
                    for (T alpha : alphas)
                        for (Shape s : shapes)
                            for (Index pad : pads) trsm_case<T>(side, uplo, op, diag, alpha, s, pad, rng);
}

template <typename T>
void all_trmm(std::mt19937_64& rng)
{
    for (Side side : {Side::Left, Side::Right})
        for (Uplo uplo : {Uplo::Lower, Uplo::Upper})
            for (Op op : {Op::NoTrans, Op::Trans})
                for (Diag diag : {Diag::NonUnit, Diag::Unit})
                    for (T alpha : {T(1), T(-0.75)})
                        for (Shape s : kRagged)
                            for (Index pad : kPads) trmm_case<T>(side, uplo, op, diag, alpha, s, pad, rng);
}

template <typename T>
void all_syrk(std::mt19937_64& rng)
{
    for (Op op : {Op::NoTrans, Op::Trans})
        for (Shape s : kRagged)
            for (auto [alpha, beta] : {std::pair<T, T>{T(-1), T(1)}, {T(1), T(0)}, {T(0.5), T(-2)}})
                for (Index pad : kPads) syrk_case<T>(op, s.rows, s.cols, alpha, beta, pad, rng);
}

template <typename T>
void all_gemm(std::mt19937_64& rng)
{
    // {13, 1, 17}, {1, 9, 4}, {40, 1, 300}, {1, 40, 300}: one column or row of C, the gemv path;
    // {6, 1, 0}: an empty inner dimension, where only beta acts
    const Index dims[][3] = {{1, 1, 1}, {7, 5, 3}, {5, 7, 1}, {1, 9, 4}, {16, 16, 16}, {13, 1, 17}, {9, 11, 13},
                             {40, 1, 300}, {1, 40, 300}, {6, 1, 0}};
    for (Op op_a : {Op::NoTrans, Op::Trans})
        for (Op op_b : {Op::NoTrans, Op::Trans})
            for (const auto& d : dims)
                for (auto [alpha, beta] : {std::pair<T, T>{T(-1), T(1)}, {T(1), T(0)}, {T(0.5), T(-2)}})
                    for (Index pad : kPads) gemm_case<T>(op_a, op_b, d[0], d[1], d[2], alpha, beta, pad, rng);
}

template <typename T>
void all_trtri_lauum(std::mt19937_64& rng)
{
    for (Index n : kSquare)
        for (Index pad : kPads) {
            trtri_case<T>(n, pad, rng);
            lauum_case<T>(n, pad, rng);
        }
    for (Index at : {0, 4, 6}) trtri_singular_case<T>(7, at, 32, rng);
    // trtri recurses above order 32 (and its solves above 96): several levels, ragged splits
    for (Index n : {50, 97, 130, 257}) trtri_case<T>(n, 3, rng);
    for (Index at : {0, 40, 129}) trtri_singular_case<T>(130, at, 32, rng);
}

}  // namespace

TEST(potrf_matches_naive_cholesky_and_reports_failing_order)
{
    std::mt19937_64 rng(1);
    all_potrf<double>(rng);
    all_potrf<float>(rng);
}

TEST(trsm_all_side_uplo_op_diag_combinations)
{
    std::mt19937_64 rng(2);
    all_trsm<double>(rng, {1, -1, 0.5}, kRagged, kPads);
    all_trsm<float>(rng, {1, -1, 0.5}, kRagged, kPads);
}

TEST(trsm_recursive_split_matches_the_direct_solve_for_every_combination)
{
    static_assert(131 > tile::detail::trsm_leaf_order);
    std::mt19937_64 rng(2027);
    all_trsm<double>(rng, {1, -0.5}, kTrsmRecursive, kTrsmRecursivePads);
    all_trsm<float>(rng, {1, -0.5}, kTrsmRecursive, kTrsmRecursivePads);
}

TEST(trmm_all_side_uplo_op_diag_combinations)
{
    std::mt19937_64 rng(3);
    all_trmm<double>(rng);
    all_trmm<float>(rng);
}

TEST(syrk_notrans_and_trans)
{
    std::mt19937_64 rng(4);
    all_syrk<double>(rng);
    all_syrk<float>(rng);
}

TEST(gemm_all_op_combinations)
{
    std::mt19937_64 rng(5);
    all_gemm<double>(rng);
    all_gemm<float>(rng);
}

TEST(trtri_and_lauum)
{
    std::mt19937_64 rng(6);
    all_trtri_lauum<double>(rng);
    all_trtri_lauum<float>(rng);
}

TEST(shape_mismatches_are_internal_errors)
{
    Matrix<double> rect(3, 4), sq(3, 3), b(4, 2), c(3, 3);
    CHECK_THROWS_AS(tile::potrf(rect.view(), 0), std::logic_error);
    CHECK_THROWS_AS(tile::trtri(rect.view(), 0), std::logic_error);
    CHECK_THROWS_AS(tile::lauum(rect.view()), std::logic_error);
    CHECK_THROWS_AS(tile::trsm(Side::Left, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, sq.view(), b.view()),
                    std::logic_error);
    CHECK_THROWS_AS(tile::trmm(Side::Right, Uplo::Lower, Op::NoTrans, Diag::NonUnit, 1.0, sq.view(), b.view()),
                    std::logic_error);
    CHECK_THROWS_AS(tile::syrk(Op::NoTrans, 1.0, b.view(), 0.0, c.view()), std::logic_error);
    CHECK_THROWS_AS(tile::gemm(Op::NoTrans, Op::NoTrans, 1.0, rect.view(), sq.view(), 0.0, c.view()), std::logic_error);
}

int main(int argc, char** argv)
{
    gprat::linalg::use_single_threaded_blas();
    return gprat_test::run_all(argc, argv);
}
