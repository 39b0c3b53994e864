/// gprat._core: wiring only. Each concept registers itself in its own register_*.cpp.
#include "registration.hpp"

#include "gprat/linalg/tile_kernels.hpp"

PYBIND11_MODULE(_core, m)
{
    m.doc() = "gprat compiled core: task runtime, tiled linear algebra, kernels and the exact GP engine";
    gprat::linalg::use_single_threaded_blas();
    gprat::bindings::register_errors(m);
    gprat::bindings::register_runtime(m);
    gprat::bindings::register_linalg(m);
    gprat::bindings::register_kernels(m);
    gprat::bindings::register_gp(m);
#if GPRAT_WITH_CUDA
    m.attr("compiled_with_cuda") = true;
#else
    m.attr("compiled_with_cuda") = false;
#endif
}
