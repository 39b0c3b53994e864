/// gprat._distributed: the per-rank part of the distributed exact GP (python/gprat/distributed.py).
/// Conversion only: BLACS grids from an mpi4py communicator's Fortran handle, ScaLAPACK calls on
/// a rank's local arrays (column-major, leading dimension = the layout's lld), and the engine's
/// tile functions on this rank's blocks (distributed/block_cyclic.hpp). MPI itself (allreduce,
/// broadcast) stays in Python through mpi4py, except the panel exchange inside the inversion's
/// block products (distributed/panel_gemm.hpp), on the model's communicator. Built only when CMake finds MPI and ScaLAPACK
/// (GPRAT_MPI); loaded only by gprat.distributed. Kernels arrive as gprat._core.Kernel objects
/// (pybind11 shares registered types across the two modules; _core must be imported first).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "../kernel_handle.hpp"
#include "../registration.hpp"
#include "gprat/core/check.hpp"
#include "gprat/distributed/block_cyclic.hpp"
#include "gprat/distributed/scalapack.hpp"

namespace py = pybind11;
using gprat::Index;
using gprat::bindings::CArray;
using gprat::bindings::KernelHandle;
using gprat::bindings::without_gil;
using gprat::distributed::BlockCyclic;

namespace {

/// A writable Fortran-ordered float64 array holding the local part of `A`: shape (lld, >= local cols).
using FArray = py::array_t<double, py::array::f_style>;

double* local_data(const BlockCyclic& A, FArray& a, const char* name)
{
    GPRAT_EXPECTS(a.ndim() == 2 && a.shape(0) == A.lld && a.shape(1) >= std::max<Index>(1, A.local_cols()),
                  name << " must be the local array of its layout, shape (" << A.lld << ", "
                       << std::max<Index>(1, A.local_cols()) << "); got ndim " << a.ndim());
    GPRAT_EXPECTS(a.writeable() && (a.flags() & py::array::f_style), name << " must be writable and Fortran-ordered");
    return a.mutable_data();
}

/// A square block-cyclic matrix that an in-place ScaLAPACK routine takes whole: its local array
/// (checked by local_data), its descriptor and its global order.
struct WholeSquare
{
    double* data;
    gprat::distributed::Descriptor desc;
    int n;
};

WholeSquare whole_square(const BlockCyclic& A, int context, FArray& a, const char* name)
{
    return {local_data(A, a, name), gprat::distributed::describe(A, context), gprat::distributed::to_int(A.n)};
}

/// The base order of the 2 x 2 block recursions (distributed/scalapack.hpp).
void check_base(int base) { GPRAT_EXPECTS(base >= 1, "base must be >= 1; got " << base); }

/// The recursions' block products: panel_gemm over the communicator whose Fortran handle is
/// `fortran_comm` (the one the BLACS context was made from), or pdgemm when it is None.
struct Products
{
    std::optional<gprat::distributed::PanelGrid> grid;
    const gprat::distributed::PanelGrid* get() const { return grid ? &*grid : nullptr; }
};

Products products(int context, std::optional<int> fortran_comm, Index panel_columns)
{
    GPRAT_EXPECTS(panel_columns >= 1, "panel_columns must be >= 1; got " << panel_columns);
    Products out;
    if (fortran_comm) {
        gprat::distributed::PanelGrid g{MPI_Comm_f2c(*fortran_comm), context, 0, 0, -1, -1, panel_columns};
        blacs_gridinfo_(&context, &g.nprow, &g.npcol, &g.myrow, &g.mycol);
        GPRAT_EXPECTS(g.myrow >= 0 && g.mycol >= 0, "this rank is not in BLACS context " << context);
        out.grid = g;
    }
    return out;
}

void check_points(const CArray<double>& X, Index rows, const char* name)
{
    GPRAT_EXPECTS(X.ndim() == 2 && X.shape(0) == rows && X.shape(1) >= 1,
                  name << " must have shape (" << rows << ", d); got ndim " << X.ndim() << ", "
                       << (X.ndim() >= 1 ? X.shape(0) : 0) << " rows");
}

const char L = 'L';

}  // namespace

PYBIND11_MODULE(_distributed, m)
{
    m.doc() = "gprat distributed core: BLACS grids, ScaLAPACK on block-cyclic local arrays, per-rank assembly";

    py::class_<BlockCyclic>(m, "BlockCyclic")
        .def(py::init([](Index rows, Index cols, Index mb, Index nb, Index nprow, Index npcol, Index myrow,
                         Index mycol) {
                 const Index local = gprat::distributed::numroc(rows, mb, myrow, nprow);
                 return BlockCyclic(rows, cols, mb, nb, nprow, npcol, myrow, mycol, std::max<Index>(1, local));
             }),
             py::arg("m"), py::arg("n"), py::arg("mb"), py::arg("nb"), py::arg("nprow"), py::arg("npcol"),
             py::arg("myrow"), py::arg("mycol"))
        .def_readonly("m", &BlockCyclic::m)
        .def_readonly("n", &BlockCyclic::n)
        .def_readonly("lld", &BlockCyclic::lld)
        .def_property_readonly("local_rows", &BlockCyclic::local_rows)
        .def_property_readonly("local_cols", &BlockCyclic::local_cols)
        .def("global_rows",
             [](const BlockCyclic& A) {
                 py::array_t<Index> out(A.local_rows());
                 for (Index r = 0; r < A.local_rows(); ++r) out.mutable_at(r) = A.global_row(r);
                 return out;
             },
             "Global row index of each local row.")
        .def("global_cols", [](const BlockCyclic& A) {
            py::array_t<Index> out(A.local_cols());
            for (Index c = 0; c < A.local_cols(); ++c) out.mutable_at(c) = A.global_col(c);
            return out;
        });

    m.def("numroc", &gprat::distributed::numroc, py::arg("n"), py::arg("nb"), py::arg("p"), py::arg("procs"));

    m.def(
        "grid_init",
        [](int fortran_comm, int nprow, int npcol) {
            int context = sys2blacs_handle_(&fortran_comm);
            blacs_gridinit_(&context, "R", &nprow, &npcol, 1);
            int pr = 0, pc = 0, myrow = -1, mycol = -1;
            blacs_gridinfo_(&context, &pr, &pc, &myrow, &mycol);
            GPRAT_EXPECTS(myrow >= 0 && mycol >= 0, "this rank is not in the " << nprow << " x " << npcol
                                                                                << " BLACS grid (context " << context
                                                                                << ")");
            return py::make_tuple(context, myrow, mycol);
        },
        py::arg("fortran_comm"), py::arg("nprow"), py::arg("npcol"),
        "A row-major nprow x npcol BLACS grid over the communicator; returns (context, myrow, mycol).");
    m.def("grid_exit", [](int context) { blacs_gridexit_(&context); }, py::arg("context"));

    m.def(
        "assemble_covariance",
        [](const BlockCyclic& A, FArray& a, const KernelHandle& k, const CArray<double>& X, double diagonal) {
            double* data = local_data(A, a, "K");
            check_points(X, A.n, "X");
            gprat::kernels::check_features(k.value, X.shape(1));
            without_gil([&] { gprat::distributed::assemble_local_covariance(A, data, X.data(), X.shape(1), k.value, diagonal); });
        },
        py::arg("layout"), py::arg("local"), py::arg("kernel"), py::arg("X"), py::arg("diagonal"),
        "This rank's lower blocks of K = k(X, X) + diagonal I.");
    m.def(
        "assemble_cross_covariance",
        [](const BlockCyclic& A, FArray& a, const KernelHandle& k, const CArray<double>& X, const CArray<double>& Xs) {
            double* data = local_data(A, a, "K*^T");
            check_points(X, A.m, "X");
            check_points(Xs, A.n, "Xs");
            GPRAT_EXPECTS(Xs.shape(1) == X.shape(1), "Xs must have " << X.shape(1) << " columns like X; got " << Xs.shape(1));
            gprat::kernels::check_features(k.value, X.shape(1));
            without_gil([&] {
                gprat::distributed::assemble_local_cross_covariance(A, data, X.data(), Xs.data(), X.shape(1), k.value);
            });
        },
        py::arg("layout"), py::arg("local"), py::arg("kernel"), py::arg("X"), py::arg("Xs"),
        "This rank's blocks of K*^T = k(X, Xs).");
    m.def(
        "local_gradient",
        [](const BlockCyclic& A, FArray& kinv, const CArray<double>& alpha, const KernelHandle& k,
           const CArray<double>& X, std::optional<double> noise) {
            double* data = local_data(A, kinv, "K^{-1}");
            check_points(X, A.n, "X");
            GPRAT_EXPECTS(alpha.ndim() == 1 && alpha.shape(0) == A.n, "alpha must have " << A.n << " entries");
            const double value = noise.value_or(0.0);
            std::vector<double> out;
            without_gil([&] {
                out = gprat::distributed::local_gradient(A, data, alpha.data(), X.data(), X.shape(1), k.value,
                                                         noise ? &value : nullptr);
            });
            return py::array_t<double>(static_cast<py::ssize_t>(out.size()), out.data());
        },
        py::arg("layout"), py::arg("kinv"), py::arg("alpha"), py::arg("kernel"), py::arg("X"), py::arg("noise"),
        "This rank's partial sums of the fused gradient (without the factor 1/2).");

    m.def(
        "potrf",
        [](const BlockCyclic& A, int context, FArray& a) {
            auto K = whole_square(A, context, a, "K");
            const int one = 1;
            int info = 0;
            without_gil([&] { pdpotrf_(&L, &K.n, K.data, &one, &one, K.desc.d, &info, 1); });
            return info;
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), "pdpotrf (lower); returns info (collective).");
    m.def(
        "potrs",
        [](const BlockCyclic& A, int context, FArray& a, const BlockCyclic& B, FArray& b) {
            double* da = local_data(A, a, "L");
            double* db = local_data(B, b, "B");
            const auto desca = gprat::distributed::describe(A, context), descb = gprat::distributed::describe(B, context);
            const int n = gprat::distributed::to_int(A.n), nrhs = gprat::distributed::to_int(B.n), one = 1;
            int info = 0;
            without_gil([&] { pdpotrs_(&L, &n, &nrhs, da, &one, &one, desca.d, db, &one, &one, descb.d, &info, 1); });
            return info;
        },
        py::arg("layout"), py::arg("context"), py::arg("factor"), py::arg("rhs_layout"), py::arg("rhs"),
        "pdpotrs: B <- K^{-1} B with the lower factor; returns info.");
    m.def(
        "potri",
        [](const BlockCyclic& A, int context, FArray& a) {
            auto F = whole_square(A, context, a, "L");
            const int one = 1;
            int info = 0;
            without_gil([&] { pdpotri_(&L, &F.n, F.data, &one, &one, F.desc.d, &info, 1); });
            return info;
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), "pdpotri: L <- lower triangle of K^{-1}; returns info.");
    m.def(
        "trtri",
        [](const BlockCyclic& A, int context, FArray& a) {
            auto F = whole_square(A, context, a, "L");
            const int one = 1;
            const char diag = 'N';
            int info = 0;
            without_gil([&] { pdtrtri_(&L, &diag, &F.n, F.data, &one, &one, F.desc.d, &info, 1, 1); });
            return info;
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), "pdtrtri: L <- L^{-1} (lower); returns info.");
    m.def(
        "trtri_recursive",
        [](const BlockCyclic& A, int context, FArray& a, int base, std::optional<int> fortran_comm,
           Index panel_columns) {
            auto F = whole_square(A, context, a, "L");
            check_base(base);
            const auto via = products(context, fortran_comm, panel_columns);
            int info = 0;
            without_gil([&] { info = gprat::distributed::trtri_lower(F.n, F.data, 1, F.desc.d, base, via.get()); });
            return info;
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), py::arg("base"), py::arg("fortran_comm") = py::none(),
        py::arg("panel_columns") = gprat::distributed::PANEL_COLUMNS,
        "L <- L^{-1} (lower) by 2 x 2 recursion down to `base` rows, then pdtrtri/pdtrmm; block products by "
        "panel_gemm over fortran_comm (the grid's communicator, mpi4py's py2f()), panel_columns per exchange, "
        "or by pdgemm when None; "
        "returns pdtrtri's info.");
    m.def(
        "lauum",
        [](const BlockCyclic& A, int context, FArray& a) {
            auto M = whole_square(A, context, a, "L^{-1}");
            const int one = 1;
            without_gil([&] { pdlauum_(&L, &M.n, M.data, &one, &one, M.desc.d, 1); });
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), "pdlauum: M <- M^T M for lower M (in place).");
    m.def(
        "lauum_recursive",
        [](const BlockCyclic& A, int context, FArray& a, int base, std::optional<int> fortran_comm,
           Index panel_columns) {
            auto M = whole_square(A, context, a, "L^{-1}");
            check_base(base);
            const auto via = products(context, fortran_comm, panel_columns);
            without_gil([&] { gprat::distributed::lauum_lower(M.n, M.data, 1, M.desc.d, base, via.get()); });
        },
        py::arg("layout"), py::arg("context"), py::arg("local"), py::arg("base"), py::arg("fortran_comm") = py::none(),
        py::arg("panel_columns") = gprat::distributed::PANEL_COLUMNS,
        "M <- lower(M^T M) (lower M) by 2 x 2 recursion down to `base` rows, then pdlauum; block products as "
        "trtri_recursive's.");
    m.def(
        "trsm_lower",
        [](const BlockCyclic& A, int context, FArray& a, const BlockCyclic& B, FArray& b) {
            double* da = local_data(A, a, "L");
            double* db = local_data(B, b, "B");
            const auto desca = gprat::distributed::describe(A, context), descb = gprat::distributed::describe(B, context);
            const int mrows = gprat::distributed::to_int(B.m), ncols = gprat::distributed::to_int(B.n), one = 1;
            const double unit = 1.0;
            const char side = 'L', trans = 'N', diag = 'N';
            without_gil([&] {
                pdtrsm_(&side, &L, &trans, &diag, &mrows, &ncols, &unit, da, &one, &one, desca.d, db, &one, &one, descb.d,
                        1, 1, 1, 1);
            });
        },
        py::arg("layout"), py::arg("context"), py::arg("factor"), py::arg("rhs_layout"), py::arg("rhs"),
        "pdtrsm: B <- L^{-1} B (lower, no transpose).");
}
