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

/// GPRAT_INLINE forces inlining of the small per-element functions (exp_nonpositive, the kernel
/// shapes, the family formulas) that the tile loops call inside `#pragma omp simd` loops. A call
/// left out of line keeps the loop scalar: GCC's inliner gives up on them in the large,
/// multiversioned KernelTree loops (measured: the Mauna Loa tree ran 14x the cost of one SE per
/// entry with exp as an out-of-line call). It also compiles them into every instruction-set
/// clone of a GPRAT_HOT_LOOP (dispatch.hpp) instead of the baseline only.
#if defined(__CUDACC__)
#define GPRAT_INLINE __forceinline__
#elif defined(__GNUC__)
#define GPRAT_INLINE [[gnu::always_inline]] inline
#else
#define GPRAT_INLINE inline
#endif
