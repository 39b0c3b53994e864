/// gprat._core.SVGP64 / SVGP32: the SVGP engine (gp/svgp.hpp). Parameters are passed on every
/// call (the Python model owns them); q_sqrt C is an (M, M) row-major lower-triangular array
/// here and column-major in the engine.
#include <pybind11/stl.h>

#include <vector>

#include "gprat/gp/svgp.hpp"
#include "kernel_handle.hpp"
#include "registration.hpp"

namespace gprat::bindings {

namespace {

/// The engine's inputs, converted once per call (C transposed to column-major).
struct Params
{
    std::vector<double> theta, Z, m, C;
    gp::SVGPParams view() const { return {theta, Z, m, C}; }
};

Params params(Index d, Index M, const std::vector<double>& theta, const CArray<double>& Z, const CArray<double>& m,
              const CArray<double>& C)
{
    GPRAT_EXPECTS(Z.ndim() == 2 && Z.shape(0) == M && Z.shape(1) == d,
                  "inducing points must have shape (" << M << ", " << d << ")");
    GPRAT_EXPECTS(m.ndim() == 1 && m.shape(0) == M, "q_mean must have shape (" << M << ",)");
    GPRAT_EXPECTS(C.ndim() == 2 && C.shape(0) == M && C.shape(1) == M, "q_sqrt must have shape (" << M << ", " << M << ")");
    Params p{theta, std::vector<double>(Z.data(), Z.data() + Z.size()), std::vector<double>(m.data(), m.data() + M),
             std::vector<double>(static_cast<std::size_t>(M * M))};
    const double* c = C.data();
    for (Index i = 0; i < M; ++i)
        for (Index j = 0; j < M; ++j) p.C[static_cast<std::size_t>(i + j * M)] = c[i * M + j];
    return p;
}

template <typename T>
Index batch_rows(const CArray<T>& X, const CArray<T>* y, Index d)
{
    GPRAT_EXPECTS(X.ndim() == 2 && X.shape(1) == d, "X must be 2-D with " << d << " features");
    if (y) GPRAT_EXPECTS(y->ndim() == 1 && y->shape(0) == X.shape(0), "y must be 1-D with one entry per row of X");
    return X.shape(0);
}

template <typename T>
void define(py::module_& mod, const char* name)
{
    using G = gp::SVGP<T>;
    py::class_<G>(mod, name)
        .def(py::init([](const KernelHandle& k, Index d, Index M) { return G(k.value, d, M); }), py::arg("kernel"),
             py::arg("d"), py::arg("m"))
        .def_property_readonly("d", &G::d)
        .def_property_readonly("m", &G::m)
        .def_property_readonly("n_params", &G::n_params)
        .def_property("jitter", &G::jitter, &G::set_jitter)
        .def(
            "elbo",
            [](const G& g, const std::vector<double>& theta, const CArray<double>& Z, const CArray<double>& m,
               const CArray<double>& C, const CArray<T>& X, const CArray<T>& y, double scale, bool include_kl,
               bool eval_gradient) -> py::object {
                const Index M = g.m(), d = g.d();
                const Params p = params(d, M, theta, Z, m, C);
                const Index b = batch_rows(X, &y, d);
                std::vector<double> gt, gz, gm, gc;
                gp::SVGPGradient grad;
                if (eval_gradient) {
                    gt.resize(theta.size());
                    gz.resize(static_cast<std::size_t>(M * d));
                    gm.resize(static_cast<std::size_t>(M));
                    gc.resize(static_cast<std::size_t>(M * M));
                    grad = {gt.data(), gz.data(), gm.data(), gc.data()};
                }
                const T* xp = X.data();
                const T* yp = y.data();
                const double E = without_gil([&] { return g.elbo(p.view(), xp, yp, b, scale, include_kl, grad); });
                if (!eval_gradient) return py::float_(E);
                py::array_t<double> gza({M, d}), gca({M, M});
                std::copy(gz.begin(), gz.end(), gza.mutable_data());
                double* c = gca.mutable_data();
                for (Index i = 0; i < M; ++i)
                    for (Index j = 0; j < M; ++j) c[i * M + j] = gc[static_cast<std::size_t>(i + j * M)];
                return py::make_tuple(E, py::array_t<double>(static_cast<py::ssize_t>(gt.size()), gt.data()), gza,
                                      py::array_t<double>(M, gm.data()), gca);
            },
            py::arg("theta"), py::arg("Z").noconvert(), py::arg("q_mean").noconvert(), py::arg("q_sqrt").noconvert(),
            py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("scale"), py::arg("include_kl"),
            py::arg("eval_gradient"),
            "scale * sum of the expected log likelihoods of the rows of (X, y) - KL (if include_kl); with "
            "eval_gradient (value, d/dtheta, d/dZ, d/dq_mean, d/dq_sqrt (lower)).")
        .def(
            "natural_step_and_elbo",
            [](const G& g, const std::vector<double>& theta, const CArray<double>& Z, const CArray<double>& m,
               const CArray<double>& C, const CArray<T>& X, const CArray<T>& y, double scale, double gamma,
               bool q_gradient) {
                const Index M = g.m(), d = g.d();
                const Params p = params(d, M, theta, Z, m, C);
                const Index b = batch_rows(X, &y, d);
                std::vector<double> gt(theta.size()), gz(static_cast<std::size_t>(M * d)), mo(static_cast<std::size_t>(M)),
                    co(static_cast<std::size_t>(M * M)), gm, gc;
                if (q_gradient) {
                    gm.resize(static_cast<std::size_t>(M));
                    gc.resize(static_cast<std::size_t>(M * M));
                }
                // without q_gradient the dE/dC pass (an M x M trmm's worth) is skipped: NGD moves q itself
                const gp::SVGPGradient grad{gt.data(), gz.data(), q_gradient ? gm.data() : nullptr,
                                            q_gradient ? gc.data() : nullptr};
                const T* xp = X.data();
                const T* yp = y.data();
                const double E = without_gil(
                    [&] { return g.natural_step_and_elbo(p.view(), xp, yp, b, scale, gamma, mo.data(), co.data(), grad); });
                const auto square = [M](const std::vector<double>& v) {
                    py::array_t<double> a({M, M});
                    double* c = a.mutable_data();
                    for (Index i = 0; i < M; ++i)
                        for (Index j = 0; j < M; ++j) c[i * M + j] = v[static_cast<std::size_t>(i + j * M)];
                    return a;
                };
                py::array_t<double> gza({M, d});
                std::copy(gz.begin(), gz.end(), gza.mutable_data());
                const py::object gma = q_gradient ? py::object(py::array_t<double>(M, gm.data())) : py::none();
                const py::object gca = q_gradient ? py::object(square(gc)) : py::none();
                return py::make_tuple(E, py::array_t<double>(static_cast<py::ssize_t>(gt.size()), gt.data()), gza, gma,
                                      gca, py::array_t<double>(M, mo.data()), square(co));
            },
            py::arg("theta"), py::arg("Z").noconvert(), py::arg("q_mean").noconvert(), py::arg("q_sqrt").noconvert(),
            py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("scale"), py::arg("gamma"),
            py::arg("q_gradient") = true,
            "natural_step then elbo (with KL and gradient) at the new q, sharing the factorization: "
            "(value, d/dtheta, d/dZ, d/dq_mean, d/dq_sqrt, new q_mean, new q_sqrt); with q_gradient=False "
            "d/dq_mean and d/dq_sqrt are None (not computed; an NGD training step does not use them).")
        .def(
            "natural_step",
            [](const G& g, const std::vector<double>& theta, const CArray<double>& Z, const CArray<double>& m,
               const CArray<double>& C, const CArray<T>& X, const CArray<T>& y, double scale, double gamma) {
                const Index M = g.m(), d = g.d();
                const Params p = params(d, M, theta, Z, m, C);
                const Index b = batch_rows(X, &y, d);
                std::vector<double> mo(static_cast<std::size_t>(M)), co(static_cast<std::size_t>(M * M));
                const T* xp = X.data();
                const T* yp = y.data();
                without_gil([&] { g.natural_step(p.view(), xp, yp, b, scale, gamma, mo.data(), co.data()); });
                py::array_t<double> ca({M, M});
                double* c = ca.mutable_data();
                for (Index i = 0; i < M; ++i)
                    for (Index j = 0; j < M; ++j) c[i * M + j] = co[static_cast<std::size_t>(i + j * M)];
                return py::make_tuple(py::array_t<double>(M, mo.data()), ca);
            },
            py::arg("theta"), py::arg("Z").noconvert(), py::arg("q_mean").noconvert(), py::arg("q_sqrt").noconvert(),
            py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("scale"), py::arg("gamma"),
            "One natural-gradient step for q on (X, y); returns the new (q_mean, q_sqrt).")
        .def(
            "predict",
            [](const G& g, const std::vector<double>& theta, const CArray<double>& Z, const CArray<double>& m,
               const CArray<double>& C, const CArray<T>& Xs, bool want_var, bool want_cov, bool include_noise) {
                const Index M = g.m(), d = g.d();
                const Params p = params(d, M, theta, Z, m, C);
                const Index ms = batch_rows<T>(Xs, nullptr, d);
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
                without_gil([&] { g.predict(p.view(), xs, ms, mp, vp, cp, include_noise); });
                return py::make_tuple(mean, var, cov);
            },
            py::arg("theta"), py::arg("Z").noconvert(), py::arg("q_mean").noconvert(), py::arg("q_sqrt").noconvert(),
            py::arg("Xs").noconvert(), py::arg("return_var"), py::arg("return_cov"), py::arg("include_noise"));
}

}  // namespace

void register_svgp(py::module_& m)
{
    define<double>(m, "SVGP64");
    define<float>(m, "SVGP32");
}

}  // namespace gprat::bindings
