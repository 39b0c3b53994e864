#pragma once
/// Python-facing box around kernels::AnyKernel: pybind11's stl.h would otherwise convert the
/// std::variant itself instead of binding it as the class gprat._core.Kernel.
#include "gprat/kernels/any_kernel.hpp"

namespace gprat::bindings {

struct KernelHandle
{
    kernels::AnyKernel value;
};

}  // namespace gprat::bindings
