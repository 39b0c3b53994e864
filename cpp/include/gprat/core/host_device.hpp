#pragma once
/// GPRAT_HOST_DEVICE marks the per-pair kernel code (exp_nonpositive, the kernel shapes, the
/// KernelTree leaves and tree_evaluate) that a CUDA build compiles for the device too; in a host
/// build it expands to nothing. Device builds need nvcc's --expt-relaxed-constexpr (the code
/// calls std::bit_cast and reads std::numbers::pi); with it, nvcc 13 compiles tree_evaluate in the
/// __global__ functions of cuda/device_kernels.cuh (tests/python/test_cuda_build.py checks it
/// wherever nvcc is).
#if defined(__CUDACC__)
#define GPRAT_HOST_DEVICE __host__ __device__
#else
#define GPRAT_HOST_DEVICE
#endif
