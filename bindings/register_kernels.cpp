/// gprat._core.Kernel: one covariance function of AnyKernel, its hyperparameters, and dense
/// evaluation of K(X, Y) and of dK/dtheta through the generic tile assembler. Includes kernels/
/// and, for the tile-parallel dense evaluation, the assembly tasks (not the GP engine).
#include <pybind11/stl.h>

#include <optional>
#include <tuple>
#include <string>

#include "gprat/gp/assemble_tasks.hpp"
#include "gprat/kernels/any_kernel.hpp"
#include "gprat/kernels/assemble.hpp"
#include "gprat/runtime/task_graph.hpp"
#include "gprat/tiles/tiled_matrix.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

using kernels::AnyKernel;

KernelHandle make_kernel(const std::string& name, std::vector<double> lengthscale, double signal_variance)
{
    return {kernels::make_kernel(name, std::move(lengthscale), signal_variance)};
}

/// A KernelTree from its pre-order description: (kind, params, active_dims) per node.
KernelHandle make_tree(const std::vector<std::tuple<std::string, std::vector<double>, std::vector<Index>>>& spec)
{
    std::vector<kernels::TreeNodeSpec> nodes;
    nodes.reserve(spec.size());
    for (const auto& [kind, params, dims] : spec) nodes.push_back({kind, params, dims});
    return {kernels::KernelTree(nodes)};
}

template <typename T>
py::array_t<T> kernel_matrix(const KernelHandle& handle, const CArray<T>& X, std::optional<CArray<T>> Y, double diagonal,
                             std::optional<Index> tile_size)
{
    const AnyKernel& k = handle.value;
    GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D");
    const Index n = X.shape(0), d = X.shape(1);
    const bool symmetric = !Y.has_value();
    GPRAT_EXPECTS(symmetric || (Y->ndim() == 2 && Y->shape(1) == d),
                  "Y must be 2-D with " << d << " columns like X");
    kernels::check_features(k, d);
    const Index m = symmetric ? n : Y->shape(0);
    py::array_t<T> out({n, m});
    if (n == 0 || m == 0) return out;
    const Index nb = tile_size ? *tile_size : std::max<Index>(1, std::min<Index>(256, std::max(n, m)));
    GPRAT_EXPECTS(nb > 0, "tile_size must be a positive integer; got " << nb);
    const T* xs = X.data();
    const T* ys = symmetric ? xs : Y->data();
    T* dst = out.mutable_data();
    without_gil([&] {
        tiles::TiledMatrix<T> K(n, m, nb, symmetric ? tiles::Structure::SymmetricLower : tiles::Structure::General);
        runtime::TaskGraph g;
        gp::assemble_covariance(K, xs, ys, d, k, diagonal, g);
        g.wait();
        tiles::copy_to_row_major(K, dst, m, false);
    });
    if (symmetric)
        for (Index i = 0; i < n; ++i)
            for (Index j = i + 1; j < n; ++j) dst[i * n + j] = dst[j * n + i];
    return out;
}

/// dK/dtheta_p as an array of shape (n_params, n, m).
template <typename T>
py::array_t<T> kernel_gradient(const KernelHandle& handle, const CArray<T>& X, std::optional<CArray<T>> Y)
{
    const AnyKernel& k = handle.value;
    GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D");
    const Index n = X.shape(0), d = X.shape(1);
    GPRAT_EXPECTS(!Y || (Y->ndim() == 2 && Y->shape(1) == d), "Y must be 2-D with " << d << " columns like X");
    kernels::check_features(k, d);
    const Index m = Y ? Y->shape(0) : n;
    const Index p = kernels::kernel_params(k);
    // Stored as (p, m, n) row-major = p column-major n x m tiles; returned transposed to (p, n, m).
    py::array_t<T> out({p, m, n});
    const T* xs = X.data();
    const T* ys = Y ? Y->data() : xs;
    T* dst = out.mutable_data();
    std::vector<tiles::TileView<T>> views;
    for (Index q = 0; q < p; ++q) views.emplace_back(dst + q * n * m, n, m, std::max<Index>(n, 1));
    if (n > 0 && m > 0)
        std::visit([&](const auto& kern) { kernels::fill_gradient_tiles<T>(views, xs, 0, ys, 0, d, kern, !Y); }, k);
    return out.attr("transpose")(0, 2, 1).template cast<py::array_t<T>>();
}

/// dK(X, Z)/dZ: entry (c, i, j) = dk(x_i, z_j)/dz_{j,c}, shape (d, n, m).
template <typename T>
py::array_t<T> kernel_input_gradient(const KernelHandle& handle, const CArray<T>& X, const CArray<T>& Z)
{
    const AnyKernel& k = handle.value;
    GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D");
    const Index n = X.shape(0), d = X.shape(1);
    GPRAT_EXPECTS(Z.ndim() == 2 && Z.shape(1) == d, "Z must be 2-D with " << d << " columns like X");
    kernels::check_features(k, d);
    const Index m = Z.shape(0);
    // Stored as (d, m, n) row-major = d column-major n x m tiles; returned transposed to (d, n, m).
    py::array_t<T> out({d, m, n});
    T* dst = out.mutable_data();
    std::vector<tiles::TileView<T>> views;
    for (Index c = 0; c < d; ++c) views.emplace_back(dst + c * n * m, n, m, std::max<Index>(n, 1));
    if (n > 0 && m > 0 && d > 0)
        std::visit([&](const auto& kern) { kernels::fill_input_gradient_tiles<T>(views, X.data(), 0, Z.data(), 0, d, kern); },
                   k);
    return out.attr("transpose")(0, 2, 1).template cast<py::array_t<T>>();
}

/// k(x, x) of every row of X: the prior variances (White included).
template <typename T>
py::array_t<T> kernel_diagonal(const KernelHandle& handle, const CArray<T>& X)
{
    const AnyKernel& k = handle.value;
    GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D");
    const Index n = X.shape(0), d = X.shape(1);
    kernels::check_features(k, d);
    py::array_t<T> out(n);
    if (n > 0)
        std::visit(
            [&](const auto& kern) {
                kernels::fill_diagonal_tile(tiles::TileView<T>(out.mutable_data(), n, 1, n), X.data(), 0, d, kern, 0.0);
            },
            k);
    return out;
}

template <typename T>
void define_evaluation(py::class_<KernelHandle>& cls)
{
    cls.def("diagonal", &kernel_diagonal<T>, py::arg("X").noconvert());
    cls.def("matrix", &kernel_matrix<T>, py::arg("X").noconvert(), py::arg("Y").noconvert() = py::none(),
            py::arg("diagonal") = 0.0, py::arg("tile_size") = py::none());
    cls.def("gradient", &kernel_gradient<T>, py::arg("X").noconvert(), py::arg("Y").noconvert() = py::none());
    cls.def("input_gradient", &kernel_input_gradient<T>, py::arg("X").noconvert(), py::arg("Z").noconvert(),
            "dK(X, Z)/dZ as an array of shape (d, n, m): entry (c, i, j) = dk(x_i, z_j)/dz_{j,c}.");
}

}  // namespace

void register_kernels(py::module_& m)
{
    m.def(
        "kernel_names",
        [] {
            py::tuple names(kernels::family_names.size());
            for (std::size_t i = 0; i < kernels::family_names.size(); ++i)
                names[i] = py::str(kernels::family_names[i].data(), kernels::family_names[i].size());
            return names;
        },
        "Names of the covariance families the core runs, in registry order: Kernel(name, lengthscale, "
        "signal_variance) takes the stationary ones, Kernel.tree takes every one.");
    m.def(
        "kernel_operators",
        [] {
            py::tuple names(kernels::operator_names.size());
            for (std::size_t i = 0; i < kernels::operator_names.size(); ++i)
                names[i] = py::str(kernels::operator_names[i].data(), kernels::operator_names[i].size());
            return names;
        },
        "Names of the composition nodes Kernel.tree takes besides the families.");
    py::class_<KernelHandle> cls(m, "Kernel");
    cls.def(py::init(&make_kernel), py::arg("name"), py::arg("lengthscale"), py::arg("signal_variance"));
    cls.def_static("tree", &make_tree, py::arg("nodes"),
                   "A composed kernel from its pre-order description: a list of (kind, params, active_dims) "
                   "with kind 'Sum', 'Product' or a family name, params the family's positive parameter values "
                   "and active_dims the features it acts on (empty: all).");
    cls.def_property_readonly("name", [](const KernelHandle& h) { return std::string(kernels::kernel_name(h.value)); });
    // Stationary kernels have a lengthscale and a signal variance; a kernel without them (the
    // composable kernels of the next issue) answers with a clear error instead of not compiling.
    cls.def_property_readonly("lengthscale", [](const KernelHandle& h) {
        return std::visit(
            [](const auto& kern) -> std::vector<double> {
                if constexpr (requires { kern.lengthscale(); }) { return kern.lengthscale(); }
                else { throw InvalidArgument(std::string("kernel ") + kern.name() + " has no lengthscale"); }
            },
            h.value);
    });
    cls.def_property_readonly("signal_variance", [](const KernelHandle& h) {
        return std::visit(
            [](const auto& kern) -> double {
                if constexpr (requires { kern.signal_variance(); }) { return kern.signal_variance(); }
                else { throw InvalidArgument(std::string("kernel ") + kern.name() + " has no signal_variance"); }
            },
            h.value);
    });
    cls.def_property_readonly("n_params", [](const KernelHandle& h) { return kernels::kernel_params(h.value); });
    cls.def_property_readonly("theta", [](const KernelHandle& h) { return kernels::kernel_theta(h.value); });
    cls.def("with_theta", [](const KernelHandle& h, const std::vector<double>& theta) {
        return KernelHandle{kernels::kernel_with_theta(h.value, theta)};
    });
    define_evaluation<double>(cls);
    define_evaluation<float>(cls);
}

}  // namespace gprat::bindings
