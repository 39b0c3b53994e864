#pragma once
/// Dense helpers for the linear-algebra tests: column-major test matrices with padding, and
/// naive reference loops evaluated in double (or long double) precision.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gprat/core/types.hpp"
#include "gprat/tiles/tile_view.hpp"

namespace gprat_test {

using gprat::Index;

template <typename T>
const char* type_name()
{
    return sizeof(T) == sizeof(float) ? "float" : "double";
}

/// Tolerance unit for precision T.
template <typename T>
double eps()
{
    return static_cast<double>(std::numeric_limits<T>::epsilon());
}

/// Column-major rows x cols matrix with leading dimension rows + pad; the padding rows hold a
/// sentinel so a kernel that writes outside its tile is caught.
template <typename T>
struct Matrix
{
    Index rows = 0, cols = 0, ld = 1;
    std::vector<T> buf;
    static constexpr T sentinel = T(-12345.5);

    Matrix(Index r, Index c, Index pad = 0) : rows(r), cols(c), ld(std::max<Index>(1, r + pad))
    {
        buf.assign(static_cast<std::size_t>(ld * std::max<Index>(c, 1)), sentinel);
    }
    T& operator()(Index i, Index j) { return buf[static_cast<std::size_t>(i + j * ld)]; }
    T operator()(Index i, Index j) const { return buf[static_cast<std::size_t>(i + j * ld)]; }
    gprat::tiles::TileView<T> view() { return {buf.data(), rows, cols, ld}; }

    bool padding_intact() const
    {
        for (Index j = 0; j < cols; ++j)
            for (Index i = rows; i < ld; ++i)
                if (!(buf[static_cast<std::size_t>(i + j * ld)] == sentinel)) return false;
        return true;
    }
};

/// Dense double-precision matrix, row-major-agnostic (i, j) access; used as the reference.
struct Ref
{
    Index rows = 0, cols = 0;
    std::vector<long double> v;
    Ref(Index r, Index c) : rows(r), cols(c), v(static_cast<std::size_t>(r * c), 0.0L) {}
    long double& operator()(Index i, Index j) { return v[static_cast<std::size_t>(i * cols + j)]; }
    long double operator()(Index i, Index j) const { return v[static_cast<std::size_t>(i * cols + j)]; }
};

template <typename T>
Ref to_ref(const Matrix<T>& m)
{
    Ref r(m.rows, m.cols);
    for (Index i = 0; i < m.rows; ++i)
        for (Index j = 0; j < m.cols; ++j) r(i, j) = m(i, j);
    return r;
}

inline Ref transpose(const Ref& a)
{
    Ref t(a.cols, a.rows);
    for (Index i = 0; i < a.rows; ++i)
        for (Index j = 0; j < a.cols; ++j) t(j, i) = a(i, j);
    return t;
}

inline Ref multiply(const Ref& a, const Ref& b)
{
    Ref c(a.rows, b.cols);
    for (Index i = 0; i < a.rows; ++i)
        for (Index k = 0; k < a.cols; ++k) {
            const long double aik = a(i, k);
            if (aik == 0) continue;  // triangular operands: half the work
            for (Index j = 0; j < b.cols; ++j) c(i, j) += aik * b(k, j);
        }
    return c;
}

/// Solve M x = rhs (columns of rhs) for a triangular M (lower or upper), by substitution.
inline Ref solve_triangular(const Ref& m, bool lower, const Ref& rhs)
{
    const Index n = m.rows;
    Ref x = rhs;
    for (Index c = 0; c < rhs.cols; ++c) {
        if (lower) {
            for (Index i = 0; i < n; ++i) {
                long double s = x(i, c);
                for (Index k = 0; k < i; ++k) s -= m(i, k) * x(k, c);
                x(i, c) = s / m(i, i);
            }
        } else {
            for (Index i = n - 1; i >= 0; --i) {
                long double s = x(i, c);
                for (Index k = i + 1; k < n; ++k) s -= m(i, k) * x(k, c);
                x(i, c) = s / m(i, i);
            }
        }
    }
    return x;
}

/// Lower Cholesky factor by the textbook loop; returns the failing 1-based order, or 0.
inline Index cholesky_ref(Ref& a)
{
    const Index n = a.rows;
    for (Index j = 0; j < n; ++j) {
        long double d = a(j, j);
        for (Index k = 0; k < j; ++k) d -= a(j, k) * a(j, k);
        if (!(d > 0)) return j + 1;
        d = std::sqrt(d);
        a(j, j) = d;
        for (Index i = j + 1; i < n; ++i) {
            long double s = a(i, j);
            for (Index k = 0; k < j; ++k) s -= a(i, k) * a(j, k);
            a(i, j) = s / d;
        }
        for (Index k = j + 1; k < n; ++k) a(j, k) = 0;
    }
    return 0;
}

inline Ref identity(Index n)
{
    Ref e(n, n);
    for (Index i = 0; i < n; ++i) e(i, i) = 1;
    return e;
}

inline long double max_abs(const Ref& a)
{
    long double m = 0;
    for (long double x : a.v) m = std::max(m, std::fabs(x));
    return m;
}

inline long double frobenius(const Ref& a)
{
    long double s = 0;
    for (long double x : a.v) s += x * x;
    return std::sqrt(s);
}

/// max |a - b| over the entries selected by `which(i, j)`, relative to max(1, max |b|).
template <typename Pred>
double rel_err(const Ref& a, const Ref& b, Pred which)
{
    long double err = 0, scale = 1;
    for (Index i = 0; i < b.rows; ++i)
        for (Index j = 0; j < b.cols; ++j) {
            if (!which(i, j)) continue;
            const long double d = std::fabs(a(i, j) - b(i, j));
            if (std::isnan(d)) return std::numeric_limits<double>::infinity();
            err = std::max(err, d);
            scale = std::max(scale, std::fabs(b(i, j)));
        }
    return static_cast<double>(err / scale);
}

inline double rel_err(const Ref& a, const Ref& b)
{
    return rel_err(a, b, [](Index, Index) { return true; });
}

template <typename T>
void fill_uniform(Matrix<T>& m, std::mt19937_64& rng, double lo = -1.0, double hi = 1.0)
{
    std::uniform_real_distribution<double> d(lo, hi);
    for (Index j = 0; j < m.cols; ++j)
        for (Index i = 0; i < m.rows; ++i) m(i, j) = static_cast<T>(d(rng));
}

}  // namespace gprat_test
