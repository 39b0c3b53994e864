#pragma once
/// Errors of the CUDA backend that host code (the _cuda bindings, compiled without the CUDA
/// headers) must catch by type.
#include <new>
#include <stdexcept>
#include <string>

namespace gprat::cuda {

/// A CUDA, cuBLAS or cuSOLVER call failed (Python: RuntimeError); the message names the call,
/// the status and [file:line].
class CudaError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

/// Not enough free device memory for what a call needs (Python: MemoryError). Thrown before the
/// allocation when the free memory is checked, or when an allocation still fails.
class DeviceMemoryError : public std::bad_alloc
{
  public:
    explicit DeviceMemoryError(std::string message) : message_(std::move(message)) {}
    const char* what() const noexcept override { return message_.c_str(); }

  private:
    std::string message_;
};

}  // namespace gprat::cuda
