"""The CUDA backend compiles wherever nvcc is, GPU or not (CI has none): the device kernels alone
(nvcc -c, no cuBLAS needed), and the whole gprat._cuda module when cuBLAS/cuSOLVER are found (a
CUDA toolkit with them, or the nvidia-cublas / nvidia-cusolver wheels of this Python). Both are
skipped, with the reason, without nvcc, and when the installed gprat already has gprat._cuda (the
main build compiled the same code: not twice). GPRAT_CUDA_TEST_BUILD_DIR keeps the build folder.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from gprat import backends

ROOT = Path(__file__).resolve().parents[2]
NVCC = shutil.which("nvcc")

pytestmark = [
    pytest.mark.skipif(NVCC is None, reason="no nvcc on PATH: the CUDA backend cannot be compiled here"),
    pytest.mark.skipif(backends.cuda_built(), reason="the installed gprat has gprat._cuda: its build compiled this code"),
]


def _run(cmd, cwd=None, timeout=1800):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _build_dir(name):
    base = os.environ.get("GPRAT_CUDA_TEST_BUILD_DIR")
    if base:
        path = Path(base) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix=f"gprat-{name}-"))


def test_device_kernels_compile_with_nvcc():
    out = _build_dir("cuda-kernels")
    result = _run([NVCC, "-std=c++20", "--expt-relaxed-constexpr", "-arch=sm_90", f"-I{ROOT / 'cpp' / 'include'}",
                   "-c", str(ROOT / "tests" / "cuda" / "compile_device_kernels.cu"), "-o", str(out / "kernels.o")])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    assert (out / "kernels.o").stat().st_size > 0


def test_cuda_module_builds():
    pybind11 = pytest.importorskip("pybind11")
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("cmake and ninja are needed to build gprat._cuda")
    build = _build_dir("cuda-module")
    configure = _run(["cmake", "-S", str(ROOT), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                      "-DGPRAT_CUDA=ON", f"-DPython_EXECUTABLE={sys.executable}", f"-Dpybind11_DIR={pybind11.get_cmake_dir()}"])
    text = configure.stdout + configure.stderr
    if configure.returncode != 0 and ("_INCLUDE_DIR not found" in text or "_LIBRARY not found" in text):
        pytest.skip("cuBLAS/cuSOLVER not found (pip install nvidia-cublas nvidia-cusolver, or a CUDA toolkit "
                    "with them): only the device kernels were compiled")
    assert configure.returncode == 0, text[-8000:]
    built = _run(["cmake", "--build", str(build), "--target", "_cuda", "-j2"])
    assert built.returncode == 0, (built.stdout + built.stderr)[-8000:]
    assert list(build.glob("_cuda*.so")), "the build left no _cuda module"
