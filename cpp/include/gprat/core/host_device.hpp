#pragma once
/// GPRAT_HOST_DEVICE marks the per-pair kernel code (exp_nonpositive, the kernel shapes, the
/// KernelTree leaves and tree_evaluate) that a CUDA build compiles for the device too; in a host
/// build it expands to nothing. Device builds need nvcc's --expt-relaxed-constexpr (the code
/// calls std::bit_cast and reads std::numbers::pi); with it, nvcc 13 compiles tree_evaluate in a
/// __global__ function (checked by hand; no device build in CMake yet).
#if defined(__CUDACC__)
#define GPRAT_HOST_DEVICE __host__ __device__
#else
#define GPRAT_HOST_DEVICE
#endif
