/// Compile check of the CUDA backend's device code where nvcc exists but cuBLAS/cuSOLVER may
/// not (tests/python/test_cuda_build.py): every device kernel, for float and double, and so the
/// per-pair kernel code of kernels/ (tree_evaluate and every family) compiled for the device.
/// A __host__-only call added to that code fails here.
#include "gprat/cuda/device_kernels.cuh"

namespace gprat::cuda::device {

#define GPRAT_INSTANTIATE(T)                                                                                        \
    template __global__ void assemble_kernel<T>(T*, Index, Index, Index, const T*, Index, const T*, Index, Index,   \
                                                DeviceTree, bool, double);                                          \
    template __global__ void gradient_kernel<T>(const T*, Index, Index, Index, const T*, const T*, Index, Index,     \
                                                Index, DeviceTree, int, int, double, double*);                      \
    template __global__ void log_diagonal_kernel<T>(const T*, Index, Index, double*);                               \
    template __global__ void zero_upper_kernel<T>(T*, Index, Index);                                                \
    template __global__ void copy_from_dense_kernel<T>(T*, Index, Index, Index, const T*, Index, Index, Index);      \
    template __global__ void variance_kernel<T>(const T*, Index, const T*, Index, Index, DeviceTree, double, bool, T*);

GPRAT_INSTANTIATE(float)
GPRAT_INSTANTIATE(double)
#undef GPRAT_INSTANTIATE

}  // namespace gprat::cuda::device
