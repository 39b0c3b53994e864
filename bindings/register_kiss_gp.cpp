/// gprat._core.KissGP64: the KISS-GP engine (approx/kiss_gp/kiss_gp.hpp). The wrapper keeps the
/// training arrays alive (the engine borrows them). Computation is in float64.
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "gprat/approx/kiss_gp/kiss_gp.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

using approx::kiss_gp::KissGP;
using approx::kiss_gp::KissGPOptions;

struct BoundKissGP
{
    CArray<double> X, y;
    KissGP engine;

    BoundKissGP(const KernelHandle& k, CArray<double> X_, CArray<double> y_, double noise, KissGPOptions o)
        : X(checked_X(std::move(X_))), y(checked_y(std::move(y_), X)),
          engine(k.value, noise, X.data(), y.data(), X.shape(0), X.shape(1), std::move(o))
    {}

    static CArray<double> checked_X(CArray<double> X)
    {
        GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D; got " << X.ndim() << " dimensions");
        return X;
    }
    static CArray<double> checked_y(CArray<double> y, const CArray<double>& X)
    {
        GPRAT_EXPECTS(y.ndim() == 1 && y.shape(0) == X.shape(0),
                      "y must be 1-D with one entry per row of X (" << X.shape(0) << ")");
        return y;
    }
    /// (n, c) row-major block from a 1-D or 2-D array with n rows.
    Index columns(const CArray<double>& B) const
    {
        GPRAT_EXPECTS((B.ndim() == 1 || B.ndim() == 2) && B.shape(0) == engine.n(),
                      "the block must be 1-D or 2-D with " << engine.n() << " rows (one per training row)");
        return B.ndim() == 2 ? B.shape(1) : 1;
    }
};

}  // namespace

void register_kiss_gp(py::module_& m)
{
    using G = BoundKissGP;
    py::class_<KissGPOptions>(m, "KissGPOptions")
        .def(py::init<>())
        .def_readwrite("grid_size", &KissGPOptions::grid_size)
        .def_readwrite("grid_bounds", &KissGPOptions::grid_bounds)
        .def_readwrite("n_probes", &KissGPOptions::n_probes)
        .def_readwrite("cg_tol", &KissGPOptions::cg_tol)
        .def_readwrite("predict_cg_tol", &KissGPOptions::predict_cg_tol)
        .def_readwrite("max_cg_iter", &KissGPOptions::max_cg_iter)
        .def_readwrite("preconditioner_rank", &KissGPOptions::preconditioner_rank)
        .def_readwrite("lengthscales", &KissGPOptions::lengthscales,
                       "per-feature length scale of the automatic grid rule, or [] (the kernel's own)");
    py::class_<G>(m, "KissGP64")
        .def(py::init<const KernelHandle&, CArray<double>, CArray<double>, double, KissGPOptions>(), py::arg("kernel"),
             py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("noise_variance"), py::arg("options"))
        .def_property_readonly("n", [](const G& g) { return g.engine.n(); })
        .def_property_readonly("d", [](const G& g) { return g.engine.d(); })
        .def_property_readonly("m", [](const G& g) { return g.engine.m(); })
        .def_property_readonly("n_params", [](const G& g) { return g.engine.n_params(); })
        .def_property_readonly("kernel", [](const G& g) { return KernelHandle{g.engine.kernel()}; })
        .def_property_readonly("noise_variance", [](const G& g) { return g.engine.noise_variance(); })
        .def_property_readonly("fitted", [](const G& g) { return g.engine.fitted(); })
        .def_property_readonly("grid",
                               [](const G& g) {
                                   py::list out;
                                   for (const auto& ax : g.engine.axes()) out.append(py::make_tuple(ax.lo, ax.h, ax.m));
                                   return out;
                               },
                               "[(lo, h, m) per dimension]: grid points lo + i h, i < m")
        .def_property_readonly("last_iterations", [](const G& g) { return g.engine.last_iterations(); })
        .def_property("theta", [](const G& g) { return g.engine.theta(); },
                      [](G& g, const std::vector<double>& t) { g.engine.set_theta(t); })
        .def("fit", [](G& g, std::uint64_t seed) { return without_gil([&] { return g.engine.fit(seed); }); },
             py::arg("seed"))
        .def(
            "training_step",
            [](G& g, const std::vector<double>& theta, bool eval_gradient, std::uint64_t seed) -> py::object {
                std::vector<double> grad(eval_gradient ? theta.size() : 0);
                const double lml = without_gil(
                    [&] { return g.engine.training_step(theta, eval_gradient ? grad.data() : nullptr, seed); });
                if (!eval_gradient) return py::float_(lml);
                return py::make_tuple(lml, py::array_t<double>(static_cast<py::ssize_t>(grad.size()), grad.data()));
            },
            py::arg("theta"), py::arg("eval_gradient"), py::arg("seed"))
        .def(
            "mvm",
            [](G& g, const CArray<double>& V) {
                const Index c = g.columns(V);
                py::array_t<double> out = V.ndim() == 2 ? py::array_t<double>({g.engine.n(), c}) : py::array_t<double>(g.engine.n());
                const double* v = V.data();
                double* o = out.mutable_data();
                without_gil([&] { g.engine.mvm(v, c, o); });
                return out;
            },
            py::arg("V").noconvert(), "K~ V = W K_UU W^T V + sigma2 V at the current theta.")
        .def(
            "solve",
            [](G& g, const CArray<double>& B) {
                const Index c = g.columns(B);
                py::array_t<double> out = B.ndim() == 2 ? py::array_t<double>({g.engine.n(), c}) : py::array_t<double>(g.engine.n());
                const double* b = B.data();
                double* o = out.mutable_data();
                const Index it = without_gil([&] { return g.engine.solve(b, c, o); });
                return py::make_tuple(out, it);
            },
            py::arg("B").noconvert(), "(K~^{-1} B by preconditioned CG, iterations of the slowest column).")
        .def(
            "predict",
            [](G& g, const CArray<double>& Xs, bool want_var, bool include_noise) {
                GPRAT_EXPECTS(Xs.ndim() == 2 && Xs.shape(1) == g.engine.d(),
                              "X must be 2-D with " << g.engine.d() << " features (as at fit)");
                const Index m = Xs.shape(0);
                py::array_t<double> mean(m);
                py::object var = py::none();
                double* vp = nullptr;
                if (want_var) {
                    py::array_t<double> v(m);
                    vp = v.mutable_data();
                    var = v;
                }
                double* mp = mean.mutable_data();
                const double* xs = Xs.data();
                without_gil([&] { g.engine.predict(xs, m, mp, vp, include_noise); });
                return py::make_tuple(mean, var);
            },
            py::arg("Xs").noconvert(), py::arg("return_var"), py::arg("include_noise"))
        .def(
            "predict_variance_love",
            [](G& g, const CArray<double>& Xs, bool include_noise, Index rank, std::uint64_t seed) {
                GPRAT_EXPECTS(Xs.ndim() == 2 && Xs.shape(1) == g.engine.d(),
                              "X must be 2-D with " << g.engine.d() << " features (as at fit)");
                const Index m = Xs.shape(0);
                py::array_t<double> var(m);
                double* vp = var.mutable_data();
                const double* xs = Xs.data();
                const Index used =
                    without_gil([&] { return g.engine.predict_variance_love(xs, m, vp, include_noise, rank, seed); });
                return py::make_tuple(var, used);
            },
            py::arg("Xs").noconvert(), py::arg("include_noise"), py::arg("rank"), py::arg("seed"),
            "(latent variances by the LOVE cache of `rank` Lanczos steps, built on first use; the rank used).")
        .def("mean_cache", [](const G& g) { return g.engine.mean_cache(); })
        .def("timings",
             [](const G& g) {
                 const auto t = g.engine.timings();
                 py::dict d;
                 d["interpolation"] = t.interpolation;
                 d["kronecker"] = t.kronecker;
                 d["cg_other"] = t.cg_other;
                 d["preconditioner"] = t.preconditioner;
                 d["slq"] = t.slq;
                 d["cg_update"] = t.cg_update;
                 d["cg_direction"] = t.cg_direction;
                 d["rz_woodbury_error"] = t.rz_woodbury_error;
                 d["probes"] = t.probes;
                 d["gradient"] = t.gradient;
                 d["mvms"] = t.mvms;
                 d["cg_iterations"] = t.cg_iterations;
                 return d;
             })
        .def("reset_timings", [](G& g) { g.engine.reset_timings(); })
        .def_static("training_step_bytes", &KissGP::training_step_bytes, py::arg("n"), py::arg("d"), py::arg("m"),
                    py::arg("n_probes"), py::arg("rank"));
    m.attr("kiss_gp_with_fft") = approx::kiss_gp::with_fft;
}

}  // namespace gprat::bindings
