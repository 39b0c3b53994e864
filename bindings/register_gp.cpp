/// gprat._core.ExactGP64 / ExactGP32: the exact GP engine for each precision. The wrapper keeps
/// the training arrays alive (the engine borrows them: no copy of C-contiguous input).
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>

#include "gprat/gp/exact_gp.hpp"
#include "gprat/runtime/executor.hpp"
#include "box_lbfgs.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

template <typename T>
struct BoundExactGP
{
    CArray<T> X, y;
    gp::ExactGP<T> engine;

    BoundExactGP(const KernelHandle& k, CArray<T> X_, CArray<T> y_, std::optional<double> noise, std::optional<Index> nb,
                 std::optional<std::vector<double>> fixed_noise, std::optional<std::vector<double>> mean)
        : X(std::move(X_)), y(std::move(y_)),
          engine(k.value, options(X, y, noise, std::move(fixed_noise), std::move(mean)), X.data(), y.data(), X.shape(0),
                 X.shape(1), nb)
    {}

    /// A copy of `other` (factor included) with k rows added: X_all, y_all hold other's data then
    /// the new rows (condition_on).
    BoundExactGP(const BoundExactGP& other, CArray<T> X_all, CArray<T> y_all, const std::vector<double>& fixed_new)
        : X(std::move(X_all)), y(std::move(y_all)), engine(other.engine)
    {
        const Index k = checked_new_rows(other, X, y);
        const T* xp = X.data();
        const T* yp = y.data();
        without_gil([&] { engine.add_observations(xp, yp, k, fixed_new); });
    }

    /// k = rows added, after checking X_all and y_all against the fitted data's shape.
    static Index checked_new_rows(const BoundExactGP& g, const CArray<T>& X_all, const CArray<T>& y_all)
    {
        const Index n = g.engine.n();
        GPRAT_EXPECTS(X_all.ndim() == 2 && X_all.shape(1) == g.engine.d() && X_all.shape(0) > n,
                      "X must be 2-D with " << g.engine.d() << " features and more than " << n << " rows");
        GPRAT_EXPECTS(y_all.ndim() == g.y.ndim() && y_all.shape(0) == X_all.shape(0) &&
                          (y_all.ndim() == 1 || y_all.shape(1) == g.engine.outputs()),
                      "y must have one row per row of X and " << g.engine.outputs() << " output(s) as at fit");
        return X_all.shape(0) - n;
    }

    /// Add the rows of X_all, y_all past the current n (add_observations); the wrapper then keeps
    /// the new arrays alive.
    void add_observations(CArray<T> X_all, CArray<T> y_all, const std::vector<double>& fixed_new)
    {
        const Index k = checked_new_rows(*this, X_all, y_all);
        const T* xp = X_all.data();
        const T* yp = y_all.data();
        without_gil([&] { engine.add_observations(xp, yp, k, fixed_new); });
        X = std::move(X_all);
        y = std::move(y_all);
    }

    /// noise: the learned noise variance (None: none); fixed_noise: per-sample noise (None: none);
    /// mean: initial constant mean, one per output (None: zero mean, not learned).
    static gp::ExactGPOptions options(const CArray<T>& X, const CArray<T>& y, std::optional<double> noise,
                                      std::optional<std::vector<double>> fixed_noise, std::optional<std::vector<double>> mean)
    {
        GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D; got " << X.ndim() << " dimensions");
        GPRAT_EXPECTS((y.ndim() == 1 || y.ndim() == 2) && y.shape(0) == X.shape(0),
                      "y must be 1-D or 2-D with one row per row of X; got y.ndim=" << y.ndim() << ", len(y)="
                                                                                    << (y.ndim() >= 1 ? y.shape(0) : -1)
                                                                                    << ", X.shape[0]=" << X.shape(0));
        gp::ExactGPOptions o;
        o.learned_noise = noise;
        if (fixed_noise) o.fixed_noise = std::move(*fixed_noise);
        o.outputs = y.ndim() == 2 ? y.shape(1) : 1;
        if (mean) {
            o.constant_mean = true;
            o.mean = std::move(*mean);
        }
        return o;
    }
};

template <typename T>
void define(py::module_& m, const char* name)
{
    using G = BoundExactGP<T>;
    py::class_<G> cls(m, name);
    def_maximize_lbfgs<G>(cls);
    cls
        .def(py::init<const KernelHandle&, CArray<T>, CArray<T>, std::optional<double>, std::optional<Index>,
                      std::optional<std::vector<double>>, std::optional<std::vector<double>>>(),
             py::arg("kernel"), py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("noise_variance"),
             py::arg("tile_size") = py::none(), py::arg("fixed_noise") = py::none(), py::arg("mean") = py::none(),
             "noise_variance: the learned noise variance, or None for none (no theta entry); fixed_noise: n "
             "per-sample noise variances added to diag(K) (not learned); mean: initial constant mean, one per "
             "output (theta entries), or None for a zero mean. y is (n,) or (n, p).")
        .def_property_readonly("n", [](const G& g) { return g.engine.n(); })
        .def_property_readonly("d", [](const G& g) { return g.engine.d(); })
        .def_property_readonly("tile_size", [](const G& g) { return g.engine.tile_size(); })
        .def_property_readonly("n_params", [](const G& g) { return g.engine.n_params(); })
        .def_property_readonly("kernel", [](const G& g) { return KernelHandle{g.engine.kernel()}; })
        .def_property_readonly("noise_variance", [](const G& g) { return g.engine.noise_variance(); })
        .def_property_readonly("outputs", [](const G& g) { return g.engine.outputs(); })
        .def_property_readonly("mean", [](const G& g) { return g.engine.mean(); })
        .def_property("jitter", [](const G& g) { return g.engine.jitter(); },
                      [](G& g, double j) { g.engine.set_jitter(j); })
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
                const Index p = g.engine.outputs();
                py::array_t<T> mean = g.y.ndim() == 2 ? py::array_t<T>({m, p}) : py::array_t<T>(m);
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
        .def("add_observations", &G::add_observations, py::arg("X").noconvert(), py::arg("y").noconvert(),
             py::arg("fixed_noise"),
             "Extend the fitted factor by the rows of X, y past n (the first n rows must be the training "
             "data): a block update, hyperparameters unchanged. fixed_noise: the new rows' per-sample noise "
             "(empty without one).")
        .def(
            "conditioned_on",
            [](const G& g, CArray<T> X_all, CArray<T> y_all, const std::vector<double>& fixed_new) {
                return std::make_unique<G>(g, std::move(X_all), std::move(y_all), fixed_new);
            },
            py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("fixed_noise"),
            "A new engine: this one's factor extended by the rows past n (as add_observations); this one is "
            "unchanged.")
        .def(
            "solve",
            [](G& g, const CArray<T>& B) {
                GPRAT_EXPECTS((B.ndim() == 1 || B.ndim() == 2) && B.shape(0) == g.engine.n(),
                              "B must be 1-D or 2-D with " << g.engine.n() << " rows (one per training row)");
                const Index k = B.ndim() == 2 ? B.shape(1) : 1;
                py::array_t<T> out = B.ndim() == 2 ? py::array_t<T>({g.engine.n(), k}) : py::array_t<T>(g.engine.n());
                const T* b = B.data();
                T* o = out.mutable_data();
                without_gil([&] { g.engine.solve(b, k, o); });
                return out;
            },
            py::arg("B").noconvert(), "K^{-1} B with the current factor (K includes the noise and jitter).")
        .def("cholesky_factor",
             [](G& g) {
                 py::array_t<T> out({g.engine.n(), g.engine.n()});
                 T* dst = out.mutable_data();
                 without_gil([&] { g.engine.cholesky_factor(dst); });
                 return out;
             })
        .def_static("fit_bytes", &gp::ExactGP<T>::fit_bytes, py::arg("n"), py::arg("tile_size"), py::arg("outputs") = 1,
                    "Bytes the model holds once fitted (K and alpha tiles; alpha has `outputs` columns).")
        .def_static("training_step_bytes", &gp::ExactGP<T>::training_step_bytes, py::arg("n"), py::arg("tile_size"),
                    py::arg("n_params"),
                    "Bytes a training step with the gradient allocates beyond fit_bytes (n_params: the "
                    "engine's; an upper bound with a constant mean, whose entries need no partial sums).")
        .def_static(
            "predict_bytes",
            [](Index n, Index m, Index nb, bool return_var, bool return_cov, std::optional<Index> n_threads, Index outputs) {
                const Index workers = n_threads ? *n_threads : runtime::Executor::instance().num_threads();
                return gp::ExactGP<T>::predict_bytes(n, m, nb, return_var, return_cov, workers, outputs);
            },
            py::arg("n"), py::arg("m"), py::arg("tile_size"), py::arg("return_var"), py::arg("return_cov"),
            py::arg("n_threads") = py::none(), py::arg("outputs") = 1,
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
