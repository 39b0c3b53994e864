/// gprat._core.SGPR64 / SGPR32: the SGPR engine (gp/sgpr.hpp) for each precision. The wrapper
/// keeps the training arrays alive (the engine borrows them).
#include <pybind11/stl.h>

#include <optional>
#include <vector>

#include "gprat/gp/sgpr.hpp"
#include "gprat/runtime/executor.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

template <typename T>
struct BoundSGPR
{
    CArray<T> X, y;
    gp::SGPR<T> engine;

    static std::vector<double> points(const CArray<double>& Z, Index d)
    {
        GPRAT_EXPECTS(Z.ndim() == 2 && Z.shape(1) == d,
                      "inducing points must be 2-D with " << d << " features (as X); got shape ("
                                                         << (Z.ndim() >= 1 ? Z.shape(0) : -1) << ", "
                                                         << (Z.ndim() >= 2 ? Z.shape(1) : -1) << ")");
        return std::vector<double>(Z.data(), Z.data() + Z.size());
    }
    static Index checked_rows(const CArray<T>& X, const CArray<T>& y)
    {
        GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D; got " << X.ndim() << " dimensions");
        GPRAT_EXPECTS(y.ndim() == 1 && y.shape(0) == X.shape(0),
                      "y must be 1-D with one entry per row of X; got y.ndim=" << y.ndim() << ", X.shape[0]="
                                                                               << X.shape(0));
        return X.shape(0);
    }

    BoundSGPR(const KernelHandle& k, CArray<T> X_, CArray<T> y_, const CArray<double>& Z, double noise,
              std::optional<Index> nb)
        : X(std::move(X_)), y(std::move(y_)),
          engine(k.value, noise, X.data(), y.data(), checked_rows(X, y), X.shape(1), points(Z, X.shape(1)), nb)
    {}

    py::array_t<double> inducing_points() const
    {
        const std::vector<double> z = engine.inducing_points();
        py::array_t<double> out({engine.m(), engine.d()});
        std::copy(z.begin(), z.end(), out.mutable_data());
        return out;
    }
};

template <typename T>
void define(py::module_& m, const char* name)
{
    using G = BoundSGPR<T>;
    py::class_<G>(m, name)
        .def(py::init<const KernelHandle&, CArray<T>, CArray<T>, const CArray<double>&, double, std::optional<Index>>(),
             py::arg("kernel"), py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("Z").noconvert(),
             py::arg("noise_variance"), py::arg("tile_size") = py::none(),
             "X (n, d) and y (n,) in the engine's precision (borrowed), Z (m, d) float64 inducing points.")
        .def_property_readonly("n", [](const G& g) { return g.engine.n(); })
        .def_property_readonly("d", [](const G& g) { return g.engine.d(); })
        .def_property_readonly("m", [](const G& g) { return g.engine.m(); })
        .def_property_readonly("tile_size", [](const G& g) { return g.engine.tile_size(); })
        .def_property_readonly("n_params", [](const G& g) { return g.engine.n_params(); })
        .def_property_readonly("kernel", [](const G& g) { return KernelHandle{g.engine.kernel()}; })
        .def_property_readonly("noise_variance", [](const G& g) { return g.engine.noise_variance(); })
        .def_property("jitter", [](const G& g) { return g.engine.jitter(); },
                      [](G& g, double j) { g.engine.set_jitter(j); })
        .def_property("theta", [](const G& g) { return g.engine.theta(); },
                      [](G& g, const std::vector<double>& t) { g.engine.set_theta(t); })
        .def_property(
            "inducing_points", [](const G& g) { return g.inducing_points(); },
            [](G& g, const CArray<double>& Z) { g.engine.set_inducing_points(G::points(Z, g.engine.d())); })
        .def("fit", [](G& g) { return without_gil([&] { return g.engine.fit(); }); })
        .def(
            "bound",
            [](G& g, const std::vector<double>& theta, std::optional<CArray<double>> Z, bool eval_gradient) -> py::object {
                std::vector<double> z;
                if (Z) z = G::points(*Z, g.engine.d());
                const Index M = Z ? static_cast<Index>(z.size()) / g.engine.d() : g.engine.m();
                std::vector<double> gt(eval_gradient ? theta.size() : 0), gz(eval_gradient ? static_cast<std::size_t>(M * g.engine.d()) : 0);
                const double F = without_gil([&] {
                    return g.engine.bound(theta, z, eval_gradient ? gt.data() : nullptr, eval_gradient ? gz.data() : nullptr);
                });
                if (!eval_gradient) return py::float_(F);
                py::array_t<double> gza({M, g.engine.d()});
                std::copy(gz.begin(), gz.end(), gza.mutable_data());
                return py::make_tuple(F, py::array_t<double>(static_cast<py::ssize_t>(gt.size()), gt.data()), gza);
            },
            py::arg("theta"), py::arg("Z").noconvert() = py::none(), py::arg("eval_gradient") = false,
            "The collapsed bound at theta and Z (None: the model's) and, with eval_gradient, (bound, "
            "d/dtheta, d/dZ). The model is not changed.")
        .def(
            "predict",
            [](G& g, const CArray<T>& Xs, bool want_var, bool want_cov, bool include_noise) {
                GPRAT_EXPECTS(Xs.ndim() == 2 && Xs.shape(1) == g.engine.d(),
                              "X must be 2-D with " << g.engine.d() << " features (as at fit)");
                const Index ms = Xs.shape(0);
                py::array_t<T> mean(ms);
                py::object var = py::none(), cov = py::none();
                T* vp = nullptr;
                T* cp = nullptr;
                if (want_var) {
                    py::array_t<T> v(ms);
                    vp = v.mutable_data();
                    var = v;
                }
                if (want_cov) {
                    py::array_t<T> c({ms, ms});
                    cp = c.mutable_data();
                    cov = c;
                }
                T* mp = mean.mutable_data();
                const T* xs = Xs.data();
                without_gil([&] { g.engine.predict(xs, ms, mp, vp, cp, include_noise); });
                return py::make_tuple(mean, var, cov);
            },
            py::arg("Xs").noconvert(), py::arg("return_var"), py::arg("return_cov"), py::arg("include_noise"))
        .def("optimal_q",
             [](G& g) {
                 const Index M = g.engine.m();
                 py::array_t<double> mu(M), S({M, M});
                 double* mp = mu.mutable_data();
                 double* sp = S.mutable_data();
                 without_gil([&] { g.engine.optimal_q(mp, sp); });
                 return py::make_tuple(mu, S);
             },
             "Titsias' optimal q(u) at the fitted theta and Z: (mean (m,), covariance (m, m)).")
        .def_static(
            "evaluation_bytes",
            [](Index n, Index M, Index nb, Index d, Index n_params, std::optional<Index> n_threads) {
                const Index workers = n_threads ? *n_threads : runtime::Executor::instance().num_threads();
                return gp::SGPR<T>::evaluation_bytes(n, M, nb, d, n_params, workers);
            },
            py::arg("n"), py::arg("m"), py::arg("tile_size"), py::arg("d"), py::arg("n_params"),
            py::arg("n_threads") = py::none(), "Bytes one bound-and-gradient evaluation allocates.");
}

}  // namespace

void register_sgpr(py::module_& m)
{
    define<double>(m, "SGPR64");
    define<float>(m, "SGPR32");
}

}  // namespace gprat::bindings
