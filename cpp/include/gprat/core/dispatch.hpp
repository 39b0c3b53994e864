#pragma once
/// GPRAT_HOT_LOOP: runtime CPU dispatch for the tile-filling loops (function multiversioning).
///
/// The default build targets the x86-64 baseline, so a wheel runs on any x86-64 CPU. The few
/// loops that dominate covariance assembly and the fused gradient (kernels/assemble.hpp) are
/// compiled several times instead, and the dynamic loader picks the best clone for the CPU
/// it runs on (an ifunc resolved once, at load time):
///   x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA), default (the build's baseline).
/// Everything they call inline (the kernel profile, exp_nonpositive, the distance loop) is
/// compiled into each clone. BLAS speed is the BLAS library's own dispatch and not affected.
///
/// It expands to nothing where it is not needed or not supported:
///   - GPRAT_NATIVE builds (-march=native: the whole build already targets the building CPU);
///   - GPRAT_NO_MULTIVERSIONING (set for sanitizer builds, whose runtimes need no ifuncs);
///   - device code (nvcc), compilers other than GCC >= 12 (Clang does not multiversion
///     templates), and targets other than x86-64.
#if !defined(GPRAT_NATIVE) && !defined(GPRAT_NO_MULTIVERSIONING) && !defined(__CUDACC__) && !defined(__clang__) && \
    defined(__GNUC__) && __GNUC__ >= 12 && defined(__x86_64__)
#define GPRAT_HOT_LOOP __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define GPRAT_HOT_LOOP_CLONES 1
#else
#define GPRAT_HOT_LOOP
#define GPRAT_HOT_LOOP_CLONES 0
#endif
