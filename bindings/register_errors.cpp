#include "registration.hpp"

namespace gprat::bindings {

void register_errors(py::module_& m)
{
    // The Python classes live in gprat/exceptions.py (NotPositiveDefiniteError derives from
    // numpy.linalg.LinAlgError and carries .order); they are looked up when first needed.
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const NotPositiveDefinite& e) {
            py::object cls = py::module_::import("gprat.exceptions").attr("NotPositiveDefiniteError");
            py::object err = cls(py::str(e.what()), py::int_(e.order()));
            PyErr_SetObject(cls.ptr(), err.ptr());
        } catch (const BackendUnavailable& e) {
            py::object cls = py::module_::import("gprat.exceptions").attr("BackendUnavailableError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const RuntimeStateError& e) {
            py::object cls = py::module_::import("gprat.exceptions").attr("RuntimeStateError");
            PyErr_SetString(cls.ptr(), e.what());
        } catch (const Cancelled& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        }
    });
    (void)m;
}

}  // namespace gprat::bindings
