#pragma once
/// Declarations of the per-concept registration functions, and the helpers every binding uses.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <utility>

#include "gprat/core/errors.hpp"
#include "gprat/runtime/interrupt.hpp"

namespace gprat::bindings {

namespace py = pybind11;

void register_errors(py::module_& m);
void register_runtime(py::module_& m);
void register_linalg(py::module_& m);
void register_kernels(py::module_& m);
void register_box_lbfgs(py::module_& m);
void register_gp(py::module_& m);
void register_sgpr(py::module_& m);
void register_svgp(py::module_& m);
void register_kiss_gp(py::module_& m);

/// Polled by TaskGraph::wait() while the GIL is released: runs Python's signal handlers (in the
/// main thread), so Ctrl-C cancels the graph and surfaces as KeyboardInterrupt.
inline bool python_signal_pending()
{
    py::gil_scoped_acquire gil;
    return PyErr_CheckSignals() != 0;
}

/// Run f() with the GIL released and Ctrl-C polling installed. A graph cancelled by a signal
/// rethrows the pending Python exception (KeyboardInterrupt) once the GIL is back.
template <typename F>
decltype(auto) without_gil(F&& f)
{
    try {
        py::gil_scoped_release release;
        runtime::ScopedInterruptCheck check(&python_signal_pending);
        return std::forward<F>(f)();
    } catch (const Cancelled&) {
        if (PyErr_Occurred() != nullptr) { throw py::error_already_set(); }
        throw;
    }
}

/// Contiguous row-major array argument of exactly dtype T (the Python layer converts; no copy here).
template <typename T>
using CArray = py::array_t<T, py::array::c_style>;

}  // namespace gprat::bindings
