/// Whole-matrix tiled linear algebra on dense NumPy arrays (copied into tiles and back):
/// used by gprat.linalg, the tests (against LAPACK) and the Cholesky benchmark.
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "gprat/gp/tile_size.hpp"
#include "gprat/linalg/cholesky.hpp"
#include "gprat/linalg/inverse.hpp"
#include "gprat/linalg/tile_access.hpp"
#include "gprat/linalg/tiled_products.hpp"
#include "gprat/linalg/triangular_solve.hpp"
#include "gprat/runtime/executor.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

using tiles::Structure;
using tiles::TiledMatrix;

Index square_order(const py::array& a, const char* name)
{
    GPRAT_EXPECTS(a.ndim() == 2 && a.shape(0) == a.shape(1),
                  name << " must be a square 2-D array; got shape " << py::str(py::tuple(py::cast(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim())))).cast<std::string>());
    return a.shape(0);
}

Index resolve_tile_size(std::optional<Index> nb, Index n)
{
    GPRAT_EXPECTS(!nb || *nb > 0, "tile_size must be a positive integer; got " << *nb);
    return nb ? *nb : gp::choose_tile_size(n, runtime::Executor::instance().num_threads());
}

/// Tile-parallel copies between a dense row-major n x n array and the lower tiles of A, as
/// tasks of the same graph as the algorithm (so copying overlaps computing). copy_out writes
/// zeros above the diagonal.
template <typename T>
void copy_in(const T* src, const TiledMatrix<T>& A, runtime::TaskGraph& g)
{
    for (Index j = 0; j < A.nt(); ++j)
        for (Index i = j; i < A.mt(); ++i)
            g.add("copy_in", linalg::priority(A.nt(), j, linalg::Stage::Factor) + 1,
                  [&A, src, i, j](tiles::TileView<T>) { tiles::copy_tile_from_row_major(src, A.cols(), A, i, j); },
                  linalg::write(A, i, j));
}

template <typename T>
void copy_out(const TiledMatrix<T>& A, T* dst, runtime::TaskGraph& g)
{
    const Index n = A.rows();
    for (Index i = 0; i < A.mt(); ++i)
        for (Index j = i + 1; j < A.nt(); ++j)  // strict upper tiles of the output
            for (Index r = 0; r < A.tile_rows(i); ++r)
                std::memset(dst + (A.row0(i) + r) * n + A.col0(j), 0, sizeof(T) * A.tile_cols(j));
    for (Index j = 0; j < A.nt(); ++j)
        for (Index i = j; i < A.mt(); ++i)
            g.add("copy_out", 0,
                  [&A, dst, i, j](tiles::TileView<T>) { tiles::copy_tile_to_row_major(A, i, j, dst, A.cols(), true); },
                  linalg::read(A, i, j));
}

template <typename T>
py::array_t<T> cholesky(const CArray<T>& a, std::optional<Index> tile_size)
{
    const Index n = square_order(a, "A");
    GPRAT_EXPECTS(n >= 1, "A must not be empty");
    const Index nb = resolve_tile_size(tile_size, n);
    py::array_t<T> out({n, n});
    const T* src = a.data();
    T* dst = out.mutable_data();
    without_gil([&] {
        TiledMatrix<T> A(n, n, nb, Structure::SymmetricLower);
        runtime::TaskGraph g;
        copy_in(src, A, g);
        linalg::cholesky(A, g);
        copy_out(A, dst, g);
        g.wait();
    });
    return out;
}

template <typename T>
py::array_t<T> solve_lower(const CArray<T>& l, const CArray<T>& b, bool trans, std::optional<Index> tile_size)
{
    const Index n = square_order(l, "L");
    GPRAT_EXPECTS(b.ndim() == 1 || b.ndim() == 2, "B must be 1-D or 2-D; got " << b.ndim() << " dimensions");
    GPRAT_EXPECTS(b.shape(0) == n, "B must have " << n << " rows (one per row of L); got " << b.shape(0));
    GPRAT_EXPECTS(n >= 1, "L must not be empty");
    const Index k = b.ndim() == 2 ? b.shape(1) : 1;
    const Index nb = resolve_tile_size(tile_size, n);
    py::array_t<T> out(std::vector<py::ssize_t>(b.shape(), b.shape() + b.ndim()));
    const T* ls = l.data();
    const T* bs = b.data();
    T* dst = out.mutable_data();
    if (k == 0) { return out; }
    without_gil([&] {
        TiledMatrix<T> L(n, n, nb, Structure::SymmetricLower), B(n, k, nb);
        tiles::copy_from_row_major(ls, n, L);
        tiles::copy_from_row_major(bs, k, B);
        runtime::TaskGraph g;
        linalg::solve_lower(L, trans ? Op::Trans : Op::NoTrans, B, g);
        g.wait();
        tiles::copy_to_row_major(B, dst, k);
    });
    return out;
}

template <typename T>
py::array_t<T> spd_inverse(const CArray<T>& l, std::optional<Index> tile_size)
{
    const Index n = square_order(l, "L");
    GPRAT_EXPECTS(n >= 1, "L must not be empty");
    const Index nb = resolve_tile_size(tile_size, n);
    py::array_t<T> out({n, n});
    const T* src = l.data();
    T* dst = out.mutable_data();
    without_gil([&] {
        TiledMatrix<T> A(n, n, nb, Structure::SymmetricLower);
        tiles::copy_from_row_major(src, n, A);
        runtime::TaskGraph g;
        linalg::spd_inverse_from_factor(A, g);
        g.wait();
        tiles::copy_to_row_major(A, dst, n, false);
    });
    for (Index i = 0; i < n; ++i)  // mirror the lower triangle
        for (Index j = i + 1; j < n; ++j) dst[i * n + j] = dst[j * n + i];
    return out;
}

template <typename T>
double log_determinant(const CArray<T>& l, std::optional<Index> tile_size)
{
    const Index n = square_order(l, "L");
    const Index nb = resolve_tile_size(tile_size, std::max<Index>(n, 1));
    TiledMatrix<T> L(n, n, nb, Structure::SymmetricLower);
    tiles::copy_from_row_major(l.data(), n, L);
    return linalg::log_determinant_from_factor(L);
}

/// A symmetric matrix held in the tiled layout (lower tiles), for callers that factor in place
/// and keep the result tiled, as the GP engine does: no layout conversion in the timed path.
template <typename T>
struct TiledSymmetric
{
    TiledMatrix<T> A;
    bool factored = false;
};

template <typename T>
void define_tiled(py::module_& m, const char* name)
{
    using S = TiledSymmetric<T>;
    py::class_<S>(m, name)
        .def(py::init([](const CArray<T>& a, std::optional<Index> tile_size) {
                 const Index n = square_order(a, "A");
                 GPRAT_EXPECTS(n >= 1, "A must not be empty");
                 auto s = std::make_unique<S>();
                 s->A = TiledMatrix<T>(n, n, resolve_tile_size(tile_size, n), Structure::SymmetricLower);
                 const T* src = a.data();
                 without_gil([&] {
                     runtime::TaskGraph g;
                     copy_in(src, s->A, g);
                     g.wait();
                 });
                 return s;
             }),
             py::arg("a").noconvert(), py::arg("tile_size") = py::none())
        .def_property_readonly("n", [](const S& s) { return s.A.rows(); })
        .def_property_readonly("tile_size", [](const S& s) { return s.A.nb(); })
        .def("cholesky",
             [](S& s) {
                 GPRAT_EXPECTS(!s.factored, "this tiled matrix already holds its Cholesky factor");
                 without_gil([&] {
                     runtime::TaskGraph g;
                     linalg::cholesky(s.A, g);
                     g.wait();
                 });
                 s.factored = true;
             })
        .def("log_determinant",
             [](const S& s) {
                 GPRAT_EXPECTS(s.factored, "call cholesky() first");
                 return linalg::log_determinant_from_factor(s.A);
             })
        .def("to_numpy", [](const S& s) {
            const Index n = s.A.rows();
            py::array_t<T> out({n, n});
            T* dst = out.mutable_data();
            without_gil([&] {
                runtime::TaskGraph g;
                copy_out(s.A, dst, g);
                g.wait();
            });
            return out;
        });
}

template <typename T>
void define(py::module_& m)
{
    m.def("cholesky", &cholesky<T>, py::arg("a").noconvert(), py::arg("tile_size") = py::none(),
          "Lower Cholesky factor of a dense SPD matrix by the tiled task-parallel algorithm.");
    m.def("solve_lower", &solve_lower<T>, py::arg("l").noconvert(), py::arg("b").noconvert(), py::arg("trans"),
          py::arg("tile_size") = py::none(), "Solve L X = B (trans=False) or L^T X = B (trans=True).");
    m.def("spd_inverse", &spd_inverse<T>, py::arg("l").noconvert(), py::arg("tile_size") = py::none(),
          "A^{-1} = L^{-T} L^{-1} from the lower Cholesky factor L of A.");
    m.def("log_determinant", &log_determinant<T>, py::arg("l").noconvert(), py::arg("tile_size") = py::none(),
          "log det(A) = 2 sum log L_ii from the lower Cholesky factor L of A.");
}

}  // namespace

void register_linalg(py::module_& m)
{
    define<double>(m);
    define<float>(m);
    define_tiled<double>(m, "TiledSymmetric64");
    define_tiled<float>(m, "TiledSymmetric32");
}

}  // namespace gprat::bindings
