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

void use_single_threaded_blas_in_this_thread()
{
#if defined(GPRAT_BLAS_SCIPY_OPENBLAS)
    // gprat's private OpenBLAS: the scipy-openblas32 wheel's libscipy_openblas.so, a library of
    // its own (NumPy's wheels carry libscipy_openblas64_, SciPy's their own renamed copy in
    // scipy.libs; the scipy_ symbol prefix keeps them apart), so the process-wide setting below
    // reaches gprat's BLAS calls only, never NumPy's or SciPy's. There is no thread-local call
    // to use instead: scipy_openblas_set_num_threads_local is declared in its cblas.h but not
    // exported by the 0.3.34 wheel, and OpenBLAS's pthreads builds implement it with the
    // process-wide setter anyway.
    scipy_openblas_set_num_threads(1);
#elif defined(GPRAT_BLAS_MKL)
    mkl_set_num_threads_local(1);  // this thread only; NumPy/SciPy on MKL keep their setting
#else
    // A system BLAS may be the very library NumPy and SciPy use, and it has no reliable
    // thread-local setting (OpenBLAS's *_local is process-wide in its pthreads builds), so
    // nothing is changed: set OPENBLAS_NUM_THREADS=1 (or the provider's equivalent) for
    // single-threaded tiles.
#endif
}

int blas_threads_in_this_thread()
{
#if defined(GPRAT_BLAS_SCIPY_OPENBLAS)
    return scipy_openblas_get_num_threads();
#elif defined(GPRAT_BLAS_MKL)
    return mkl_get_max_threads();
#elif defined(OPENBLAS_VERSION)
    return openblas_get_num_threads();
#else
    return -1;
#endif
}

}  // namespace gprat::linalg
