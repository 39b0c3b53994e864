# The CUDA backend's build (included by the top-level CMakeLists.txt): decides GPRAT_WITH_CUDA from
# GPRAT_CUDA (AUTO / ON / OFF) and, when ON, defines the static library gprat_cuda_engine (the
# nvcc-compiled engine, cpp/src/cuda/) that the module gprat._cuda links.
# Compile time: one .cu translation unit, both precisions, one real architecture (sm_90, the
# H200/H100) plus its PTX for newer GPUs; GPRAT_CUDA_ARCHITECTURES overrides it.
set(GPRAT_WITH_CUDA OFF)
set(GPRAT_CUDA_ARCHITECTURES "90" CACHE STRING "CUDA architectures of the backend (CMAKE_CUDA_ARCHITECTURES syntax)")
string(TOUPPER "${GPRAT_CUDA}" _gprat_cuda_mode)
if(NOT _gprat_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "GPRAT_CUDA must be AUTO, ON or OFF; got '${GPRAT_CUDA}'")
endif()

function(_gprat_cuda_unavailable reason)
  if(_gprat_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "GPRAT_CUDA=ON but the CUDA backend cannot be built: ${reason}")
  endif()
  message(STATUS "gprat: CUDA backend not built (${reason}); -DGPRAT_CUDA=ON makes this an error")
endfunction()

if(_gprat_cuda_mode STREQUAL "OFF")
  message(STATUS "gprat: CUDA backend off (GPRAT_CUDA=OFF)")
  return()
endif()
if(GPRAT_SANITIZE)
  _gprat_cuda_unavailable("sanitizer builds are host-only")
  return()
endif()
if(NOT GPRAT_BUILD_PYTHON AND NOT GPRAT_BUILD_CUDA_ENGINE_ONLY)
  return()  # the backend is the Python module gprat._cuda; C++ test builds do not need it
endif()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _gprat_cuda_unavailable("no CUDA compiler (nvcc) found")
  return()
endif()

# cuBLAS and cuSOLVER: the toolkit's, or those of the nvidia-* wheels of this Python (PyTorch's).
find_package(CUDAToolkit QUIET)
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import importlib.util as u, os, sys; s = u.find_spec('nvidia'); sys.stdout.write(';'.join(os.path.join(p, v) for p in (s.submodule_search_locations if s else []) for v in ('cu13', 'cu12', 'cublas', 'cusolver')))"
  OUTPUT_VARIABLE _gprat_nvidia_dirs RESULT_VARIABLE _gprat_nvidia_status ERROR_QUIET)
set(_gprat_inc_hints ${CUDAToolkit_INCLUDE_DIRS})
set(_gprat_lib_hints ${CUDAToolkit_LIBRARY_DIR})
foreach(_dir IN LISTS _gprat_nvidia_dirs)
  list(APPEND _gprat_inc_hints "${_dir}/include")
  list(APPEND _gprat_lib_hints "${_dir}/lib")
endforeach()
find_path(GPRAT_CUBLAS_INCLUDE_DIR cublas_v2.h HINTS ${_gprat_inc_hints})
find_path(GPRAT_CUSOLVER_INCLUDE_DIR cusolverDn.h HINTS ${_gprat_inc_hints})
find_library(GPRAT_CUBLAS_LIBRARY NAMES cublas libcublas.so.13 libcublas.so.12 HINTS ${_gprat_lib_hints})
find_library(GPRAT_CUSOLVER_LIBRARY NAMES cusolver libcusolver.so.12 libcusolver.so.11 HINTS ${_gprat_lib_hints})
foreach(_what GPRAT_CUBLAS_INCLUDE_DIR GPRAT_CUSOLVER_INCLUDE_DIR GPRAT_CUBLAS_LIBRARY GPRAT_CUSOLVER_LIBRARY)
  if(NOT ${_what})
    _gprat_cuda_unavailable("${_what} not found (install the CUDA toolkit's cuBLAS/cuSOLVER, or pip install nvidia-cublas nvidia-cusolver)")
    return()
  endif()
endforeach()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "${GPRAT_CUDA_ARCHITECTURES}")
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)

add_library(gprat_cuda_engine STATIC cpp/src/cuda/exact_gp.cu)
target_include_directories(gprat_cuda_engine PUBLIC cpp/include)
target_include_directories(gprat_cuda_engine PRIVATE ${GPRAT_CUBLAS_INCLUDE_DIR} ${GPRAT_CUSOLVER_INCLUDE_DIR})
# --expt-relaxed-constexpr: the per-pair code calls std::bit_cast and reads std::numbers::pi
# (core/host_device.hpp). No host-only flag of gprat_core reaches nvcc (they are CXX-only).
target_compile_options(gprat_cuda_engine PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -O3>)
set_target_properties(gprat_cuda_engine PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Static)
if(TARGET CUDA::cudart_static)
  target_link_libraries(gprat_cuda_engine PUBLIC CUDA::cudart_static)
endif()
target_link_libraries(gprat_cuda_engine PUBLIC ${GPRAT_CUBLAS_LIBRARY} ${GPRAT_CUSOLVER_LIBRARY} Threads::Threads)
# Only the runtime's interrupt hook and the kernels' headers of gprat_core are used.
target_link_libraries(gprat_cuda_engine PRIVATE gprat_core)
get_filename_component(_gprat_cublas_dir "${GPRAT_CUBLAS_LIBRARY}" DIRECTORY)
get_filename_component(_gprat_cusolver_dir "${GPRAT_CUSOLVER_LIBRARY}" DIRECTORY)
set(GPRAT_CUDA_LIBRARY_DIRS "${_gprat_cublas_dir};${_gprat_cusolver_dir}")
set(GPRAT_WITH_CUDA ON)
message(STATUS "gprat: CUDA backend ON (architectures ${CMAKE_CUDA_ARCHITECTURES}; ${GPRAT_CUBLAS_LIBRARY})")
