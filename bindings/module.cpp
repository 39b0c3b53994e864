/// gprat._core: wiring only. Each concept registers itself in its own register_*.cpp.
#include "registration.hpp"

#include "gprat/linalg/tile_kernels.hpp"
#include "gprat/runtime/executor.hpp"

PYBIND11_MODULE(_core, m)
{
    m.doc() = "gprat compiled core: task runtime, tiled linear algebra, kernels and the exact GP engine";
    // Worker threads run BLAS single-threaded; nothing changes for other threads at import
    // (a process-wide call here made NumPy and SciPy single-threaded where they share our BLAS).
    gprat::runtime::Executor::instance().set_worker_start(&gprat::linalg::use_single_threaded_blas_in_this_thread);
    gprat::bindings::register_errors(m);
    gprat::bindings::register_runtime(m);
    gprat::bindings::register_linalg(m);
    gprat::bindings::register_kernels(m);
    gprat::bindings::register_box_lbfgs(m);
    gprat::bindings::register_gp(m);
    gprat::bindings::register_sgpr(m);
    gprat::bindings::register_svgp(m);
    gprat::bindings::register_kiss_gp(m);
#if GPRAT_WITH_CUDA
    m.attr("compiled_with_cuda") = true;
#else
    m.attr("compiled_with_cuda") = false;
#endif
}
