/// gprat._core.ExactGP64 / ExactGP32: the exact GP engine for each precision. The wrapper keeps
/// the training arrays alive (the engine borrows them: no copy of C-contiguous input).
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "gprat/gp/exact_gp.hpp"
#include "gprat/runtime/executor.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

template <typename T>
struct BoundExactGP
{
    CArray<T> X, y;
    gp::ExactGP<T> engine;

    BoundExactGP(const KernelHandle& k, CArray<T> X_, CArray<T> y_, double noise, std::optional<Index> nb)
        : X(std::move(X_)), y(std::move(y_)),
          engine(k.value, noise, X.data(), y.data(), check_rows(X, y), X.ndim() == 2 ? X.shape(1) : 0, nb)
    {}

    static Index check_rows(const CArray<T>& X, const CArray<T>& y)
    {
        GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D; got " << X.ndim() << " dimensions");
        GPRAT_EXPECTS(y.ndim() == 1 && y.shape(0) == X.shape(0),
                      "y must have one entry per row of X; got len(y)=" << (y.ndim() == 1 ? y.shape(0) : -1)
                                                                         << ", X.shape[0]=" << X.shape(0));
        return X.shape(0);
    }
};

template <typename T>
void define(py::module_& m, const char* name)
{
    using G = BoundExactGP<T>;
    py::class_<G>(m, name)
        .def(py::init<const KernelHandle&, CArray<T>, CArray<T>, double, std::optional<Index>>(),
             py::arg("kernel"), py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("noise_variance"),
             py::arg("tile_size") = py::none())
        .def_property_readonly("n", [](const G& g) { return g.engine.n(); })
        .def_property_readonly("d", [](const G& g) { return g.engine.d(); })
        .def_property_readonly("tile_size", [](const G& g) { return g.engine.tile_size(); })
        .def_property_readonly("n_params", [](const G& g) { return g.engine.n_params(); })
        .def_property_readonly("kernel", [](const G& g) { return KernelHandle{g.engine.kernel()}; })
        .def_property_readonly("noise_variance", [](const G& g) { return g.engine.noise_variance(); })
        .def_property("theta", [](const G& g) { return g.engine.theta(); },
                      [](G& g, const std::vector<double>& t) { g.engine.set_theta(t); })
        .def("fit", [](G& g) { return without_gil([&] { return g.engine.fit(); }); })
        .def("log_marginal_likelihood",
             [](G& g) { return without_gil([&] { return g.engine.log_marginal_likelihood(); }); })
        .def(
            "training_step",
            [](G& g, const std::vector<double>& theta, bool eval_gradient) -> py::object {
                std::vector<double> grad(eval_gradient ? theta.size() : 0);
                const double lml = without_gil(
                    [&] { return g.engine.training_step(theta, eval_gradient ? grad.data() : nullptr); });
                if (!eval_gradient) return py::float_(lml);
                return py::make_tuple(lml, py::array_t<double>(static_cast<py::ssize_t>(grad.size()), grad.data()));
            },
            py::arg("theta"), py::arg("eval_gradient"))
        .def(
            "predict",
            [](G& g, const CArray<T>& Xs, bool want_var, bool want_cov, bool include_noise) {
                GPRAT_EXPECTS(Xs.ndim() == 2 && Xs.shape(1) == g.engine.d(),
                              "X must be 2-D with " << g.engine.d() << " features (as at fit)");
                const Index m = Xs.shape(0);
                py::array_t<T> mean(m);
                py::object var = py::none(), cov = py::none();
                T* vp = nullptr;
                T* cp = nullptr;
                if (want_var) {
                    py::array_t<T> v(m);
                    vp = v.mutable_data();
                    var = v;
                }
                if (want_cov) {
                    py::array_t<T> c({m, m});
                    cp = c.mutable_data();
                    cov = c;
                }
                T* mp = mean.mutable_data();
                const T* xs = Xs.data();
                without_gil([&] { g.engine.predict(xs, m, mp, vp, cp, include_noise); });
                return py::make_tuple(mean, var, cov);
            },
            py::arg("Xs").noconvert(), py::arg("return_var"), py::arg("return_cov"), py::arg("include_noise"))
        .def("cholesky_factor",
             [](G& g) {
                 py::array_t<T> out({g.engine.n(), g.engine.n()});
                 T* dst = out.mutable_data();
                 without_gil([&] { g.engine.cholesky_factor(dst); });
                 return out;
             })
        .def_static("fit_bytes", &gp::ExactGP<T>::fit_bytes, py::arg("n"), py::arg("tile_size"),
                    "Bytes the model holds once fitted (K and alpha tiles).")
        .def_static("training_step_bytes", &gp::ExactGP<T>::training_step_bytes, py::arg("n"), py::arg("tile_size"),
                    py::arg("n_params"),
                    "Bytes a training step with the gradient allocates beyond fit_bytes (n_params: the "
                    "engine's, kernel hyperparameters + noise).")
        .def_static(
            "predict_bytes",
            [](Index n, Index m, Index nb, bool return_var, bool return_cov, std::optional<Index> n_threads) {
                const Index workers = n_threads ? *n_threads : runtime::Executor::instance().num_threads();
                return gp::ExactGP<T>::predict_bytes(n, m, nb, return_var, return_cov, workers);
            },
            py::arg("n"), py::arg("m"), py::arg("tile_size"), py::arg("return_var"), py::arg("return_cov"),
            py::arg("n_threads") = py::none(),
            "Bytes predict needs beyond fit_bytes (its tiled workspace for the largest pass, and the "
            "mean/variance/covariance arrays returned); n_threads defaults to the runtime's.");
}

}  // namespace

void register_gp(py::module_& m)
{
    define<double>(m, "ExactGP64");
    define<float>(m, "ExactGP32");
    m.def("choose_tile_size", &gp::choose_tile_size, py::arg("n"), py::arg("n_threads"));
}

}  // namespace gprat::bindings
