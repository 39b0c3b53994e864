#include "gprat/linalg/tile_kernels.hpp"

namespace gprat::linalg {

void use_single_threaded_blas()
{
#if defined(GPRAT_BLAS_SCIPY_OPENBLAS)
    scipy_openblas_set_num_threads(1);
#elif defined(GPRAT_BLAS_MKL)
    mkl_set_num_threads(1);
#elif defined(OPENBLAS_VERSION)
    openblas_set_num_threads(1);
#endif
}

}  // namespace gprat::linalg
