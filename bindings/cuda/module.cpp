/// gprat._cuda: the CUDA backend's extension module (built only with a CUDA toolkit, imported only
/// when a device is asked for: python/gprat/backends.py). Its engines have the class names and
/// the methods of gprat._core's (ExactGP64, ExactGP32) plus device/streams, so models/exact.py
/// drives both alike. Kernels come in as gprat._core.Kernel objects (the type registered by
/// _core, which is imported first); errors map to the same Python classes as _core's.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../box_lbfgs.hpp"
#include "../kernel_handle.hpp"
#include "gprat/core/errors.hpp"
#include "gprat/cuda/errors.hpp"
#include "gprat/cuda/exact_gp.hpp"
#include "gprat/runtime/interrupt.hpp"

namespace py = pybind11;

namespace gprat::bindings::cuda_module {

namespace {

template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

bool python_signal_pending()
{
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

/// f() without the GIL, with Ctrl-C polling (cuda::ExactGP polls while it waits for the device).
template <typename F>
decltype(auto) without_gil(F&& f)
{
    try {
        py::gil_scoped_release release;
        runtime::ScopedInterruptCheck check(&python_signal_pending);
        return std::forward<F>(f)();
    } catch (const Cancelled&) {
        if (PyErr_Occurred() != nullptr) throw py::error_already_set();
        throw;
    }
}

[[noreturn]] void cpu_only(const char* what)
{
    throw BackendUnavailable(std::string(what) + " is not available on the CUDA backend yet; use device='cpu'");
}

template <typename T>
struct BoundExactGP
{
    gprat::cuda::ExactGP<T> engine;
    Index y_ndim;

    BoundExactGP(const KernelHandle& k, const CArray<T>& X, const CArray<T>& y, std::optional<double> noise,
                 std::optional<Index> nb, std::optional<std::vector<double>> fixed_noise,
                 std::optional<std::vector<double>> mean, int device, int streams)
        : engine(checked(k, X, y, fixed_noise, mean), noise, X.data(), y.data(), X.shape(0), X.shape(1), nb, device, streams),
          y_ndim(y.ndim())
    {}

    static kernels::AnyKernel checked(const KernelHandle& k, const CArray<T>& X, const CArray<T>& y,
                                      const std::optional<std::vector<double>>& fixed_noise,
                                      const std::optional<std::vector<double>>& mean)
    {
        GPRAT_EXPECTS(X.ndim() == 2, "X must be 2-D; got " << X.ndim() << " dimensions");
        GPRAT_EXPECTS((y.ndim() == 1 || y.ndim() == 2) && y.shape(0) == X.shape(0),
                      "y must be 1-D or 2-D with one row per row of X; got y.ndim=" << y.ndim() << ", X.shape[0]="
                                                                                    << X.shape(0));
        if (y.ndim() == 2 && y.shape(1) != 1) cpu_only("several outputs (2-D y)");
        if (fixed_noise) cpu_only("a per-sample (fixed) noise_variance");
        if (mean) cpu_only("a constant mean");
        return k.value;
    }
};

template <typename T>
void define(py::module_& m, const char* name)
{
    using G = BoundExactGP<T>;
    using E = gprat::cuda::ExactGP<T>;
    py::class_<G> cls(m, name);
    def_maximize_lbfgs<G>(cls);
    cls
        .def(py::init<const KernelHandle&, const CArray<T>&, const CArray<T>&, std::optional<double>, std::optional<Index>,
                      std::optional<std::vector<double>>, std::optional<std::vector<double>>, int, int>(),
             py::arg("kernel"), py::arg("X").noconvert(), py::arg("y").noconvert(), py::arg("noise_variance"),
             py::arg("tile_size") = py::none(), py::arg("fixed_noise") = py::none(), py::arg("mean") = py::none(),
             py::kw_only(), py::arg("device") = 0, py::arg("streams") = 8,
             "The exact GP on CUDA device `device`, tiles spread over `streams` streams. X and y are copied "
             "to the device. fixed_noise, mean and a 2-D y are CPU-only (BackendUnavailableError).")
        .def_property_readonly("n", [](const G& g) { return g.engine.n(); })
        .def_property_readonly("d", [](const G& g) { return g.engine.d(); })
        .def_property_readonly("tile_size", [](const G& g) { return g.engine.tile_size(); })
        .def_property_readonly("n_params", [](const G& g) { return g.engine.n_params(); })
        .def_property_readonly("device", [](const G& g) { return g.engine.device(); })
        .def_property_readonly("streams", [](const G& g) { return g.engine.streams(); })
        .def_property_readonly("kernel", [](const G& g) { return KernelHandle{g.engine.kernel()}; })
        .def_property_readonly("noise_variance", [](const G& g) { return g.engine.noise_variance(); })
        .def_property_readonly("outputs", [](const G&) { return Index(1); })
        .def_property_readonly("mean", [](const G&) { return std::vector<double>{0.0}; })
        .def_property("jitter", [](const G& g) { return g.engine.jitter(); },
                      [](G& g, double j) { g.engine.set_jitter(j); })
        .def_property("theta", [](const G& g) { return g.engine.theta(); },
                      [](G& g, const std::vector<double>& t) { g.engine.set_theta(t); })
        .def_property(
            "cholesky_algorithm",
            [](const G& g) { return g.engine.cholesky_algorithm() == gprat::cuda::CholeskyAlgorithm::Tiled ? "tiled" : "whole"; },
            [](G& g, const std::string& a) {
                GPRAT_EXPECTS(a == "tiled" || a == "whole", "cholesky_algorithm must be 'tiled' or 'whole'; got '" << a << "'");
                g.engine.set_cholesky_algorithm(a == "tiled" ? gprat::cuda::CholeskyAlgorithm::Tiled
                                                             : gprat::cuda::CholeskyAlgorithm::Whole);
            },
            "'tiled' (potrf/trsm/syrk/gemm per tile on the streams) or 'whole' (one cusolverDnXpotrf on a dense "
            "n x n copy: twice the memory).")
        .def_property("profiling", [](const G& g) { return g.engine.profiling(); },
                      [](G& g, bool on) { g.engine.set_profiling(on); })
        .def("last_times",
             [](const G& g) {
                 const gprat::cuda::PhaseTimes t = g.engine.last_times();
                 py::dict d;
                 d["assemble"] = t.assemble;
                 d["cholesky"] = t.cholesky;
                 d["solve"] = t.solve;
                 d["inverse"] = t.inverse;
                 d["gradient"] = t.gradient;
                 d["total"] = t.total;
                 return d;
             },
             "Device seconds per phase of the last fit or training step (profiling must be on).")
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
                py::array_t<T> mean = g.y_ndim == 2 ? py::array_t<T>({m, Index(1)}) : py::array_t<T>(m);
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
        .def("solve", [](G&, py::object) -> py::object { cpu_only("solve (K^{-1} B)"); }, py::arg("B"))
        .def("add_observations", [](G&, py::object, py::object, py::object) { cpu_only("add_observations"); },
             py::arg("X"), py::arg("y"), py::arg("fixed_noise"))
        .def("conditioned_on", [](const G&, py::object, py::object, py::object) -> py::object { cpu_only("condition_on"); },
             py::arg("X"), py::arg("y"), py::arg("fixed_noise"))
        // Host bytes (what gprat._memory checks against the machine): the device memory is checked
        // by the engine itself before it allocates (MemoryError); device_fit_bytes gives that number.
        .def_static(
            "fit_bytes", [](Index n, Index nb, Index outputs) { (void)nb; return static_cast<std::size_t>(n * outputs) * sizeof(T); },
            py::arg("n"), py::arg("tile_size"), py::arg("outputs") = 1,
            "Host bytes a fit needs (the device holds the tiles: device_fit_bytes).")
        .def_static("device_fit_bytes", &E::fit_bytes, py::arg("n"), py::arg("d"), py::arg("tile_size"),
                    "Device bytes the model holds once fitted (lower tiles, X, y, alpha).")
        .def_static("training_step_bytes", &E::training_step_bytes, py::arg("n"), py::arg("tile_size"), py::arg("n_params"),
                    "Bytes of the gradient's partial sums (on the device, and copied to the host once).")
        .def_static(
            "predict_bytes",
            [](Index n, Index m, Index nb, bool return_var, bool return_cov, std::optional<Index>, Index outputs) {
                (void)n, (void)nb;
                return static_cast<std::size_t>(m) *
                       (static_cast<std::size_t>(outputs) + (return_var ? 1 : 0) + (return_cov ? static_cast<std::size_t>(m) * 2 : 0)) *
                       sizeof(T);
            },
            py::arg("n"), py::arg("m"), py::arg("tile_size"), py::arg("return_var"), py::arg("return_cov"),
            py::arg("n_threads") = py::none(), py::arg("outputs") = 1,
            "Host bytes predict needs (the returned arrays and the covariance's staging copy).");
}

}  // namespace

}  // namespace gprat::bindings::cuda_module

PYBIND11_MODULE(_cuda, m)
{
    using namespace gprat::bindings::cuda_module;
    m.doc() = "gprat CUDA backend: the exact GP engine on a GPU (imported only when a device is asked for)";
    // The Kernel type and the Python exception classes come from _core / gprat.exceptions.
    py::module_::import("gprat._core");
    py::register_local_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const gprat::NotPositiveDefinite& e) {
            py::object cls = py::module_::import("gprat.exceptions").attr("NotPositiveDefiniteError");
            py::object err = cls(py::str(e.what()), py::int_(e.order()));
            PyErr_SetObject(cls.ptr(), err.ptr());
        } catch (const gprat::BackendUnavailable& e) {
            py::object cls = py::module_::import("gprat.exceptions").attr("BackendUnavailableError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const gprat::cuda::DeviceMemoryError& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        } catch (const gprat::InvalidArgument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const gprat::cuda::CudaError& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        } catch (const gprat::Cancelled& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        }
    });
    m.def("device_count", &gprat::cuda::device_count, "Number of CUDA devices (0 without a driver or a GPU).");
    m.def("device_status", &gprat::cuda::device_status,
          "Why device_count() is 0 (the CUDA runtime's error), or '' when a device is there.");
    m.def("device_description", &gprat::cuda::device_description, py::arg("device") = 0,
          "Name, compute capability, memory, driver and runtime versions of a CUDA device.");
    m.def("choose_tile_size", &gprat::cuda::choose_device_tile_size, py::arg("n"));
    define<double>(m, "ExactGP64");
    define<float>(m, "ExactGP32");
}
