#pragma once
/// Status checks of the CUDA backend: every CUDA runtime, cuBLAS and cuSOLVER call goes through
/// GPRAT_CHECK_CUDA / GPRAT_CHECK_CUBLAS / GPRAT_CHECK_CUSOLVER, which throw gprat::cuda::CudaError
/// naming the call, the status and [file:line]. An out-of-memory status throws DeviceMemoryError
/// (Python: MemoryError) instead, so that a failed allocation is never a crash.
/// Only .cu files include this header (it needs the CUDA headers).
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <sstream>
#include <string>

#include "gprat/cuda/errors.hpp"

namespace gprat::cuda::detail {

inline const char* status_name(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
    }
}

inline const char* status_name(cusolverStatus_t s)
{
    switch (s) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED: return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "unknown cuSOLVER status";
    }
}

inline bool out_of_memory(cudaError_t s) { return s == cudaErrorMemoryAllocation; }
inline bool out_of_memory(cublasStatus_t s) { return s == CUBLAS_STATUS_ALLOC_FAILED; }
inline bool out_of_memory(cusolverStatus_t s) { return s == CUSOLVER_STATUS_ALLOC_FAILED; }
inline const char* status_name(cudaError_t s) { return cudaGetErrorName(s); }
inline bool ok(cudaError_t s) { return s == cudaSuccess; }
inline bool ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
inline bool ok(cusolverStatus_t s) { return s == CUSOLVER_STATUS_SUCCESS; }

/// Throws for a failed status: DeviceMemoryError when the device ran out of memory, else CudaError.
template <typename Status>
void check(Status status, const char* call, const char* file, int line)
{
    if (ok(status)) return;
    std::ostringstream os;
    os << call << " failed with " << status_name(status) << " (" << static_cast<int>(status) << ") [" << file << ":"
       << line << "]";
    if (out_of_memory(status)) {
        (void)cudaGetLastError();  // clear the sticky-free allocation error so the next call starts clean
        throw DeviceMemoryError(os.str());
    }
    throw CudaError(os.str());
}

}  // namespace gprat::cuda::detail

#define GPRAT_CHECK_CUDA(expr) ::gprat::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
#define GPRAT_CHECK_CUBLAS(expr) ::gprat::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
#define GPRAT_CHECK_CUSOLVER(expr) ::gprat::cuda::detail::check((expr), #expr, __FILE__, __LINE__)
/// After a kernel launch: the launch configuration error, if any (execution errors surface at
/// the next synchronization, which is checked too).
#define GPRAT_CHECK_LAUNCH() GPRAT_CHECK_CUDA(cudaGetLastError())
