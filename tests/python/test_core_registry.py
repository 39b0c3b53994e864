"""What the C++ core owns and Python asks for: the kernel registry (_core.kernel_names) and the
engine's memory estimates (ExactGP64/32 static methods)."""

import numpy as np
import pytest

from gprat import _core

#: The stationary families, which _core.Kernel(name, lengthscale, signal_variance) builds (the
#: vectorized single-family path); every family is a leaf of _core.Kernel.tree.
CORE_KERNELS = ("SquaredExponential", "Matern12", "Matern32", "Matern52")
CORE_FAMILIES = CORE_KERNELS + ("RationalQuadratic", "Periodic", "Linear", "Constant", "White")


def test_kernel_names_in_registry_order():
    assert _core.kernel_names() == CORE_FAMILIES
    assert _core.kernel_operators() == ("Sum", "Product")


@pytest.mark.parametrize("name", CORE_FAMILIES[len(CORE_KERNELS):])
def test_other_families_build_as_trees_only(name):
    with pytest.raises(ValueError, match=f"unknown kernel '{name}'; expected SquaredExponential"):
        _core.Kernel(name, [1.0], 1.0)
    params = {"RationalQuadratic": [1.0, 2.0], "Periodic": [1.0, 2.0]}.get(name, [1.5])
    k = _core.Kernel.tree([(name, params, [])])
    assert k.name == "KernelTree" and k.n_params == len(params)


@pytest.mark.parametrize("name", CORE_KERNELS)
def test_every_registered_name_constructs(name):
    k = _core.Kernel(name, [0.5, 2.0], 1.5)
    assert k.name == name
    assert k.lengthscale == [0.5, 2.0] and k.signal_variance == 1.5 and k.n_params == 3


def test_unknown_kernel_message_lists_the_registry():
    with pytest.raises(ValueError) as err:
        _core.Kernel("RBF", [1.0], 1.0)
    assert str(err.value) == "unknown kernel 'RBF'; expected " + ", ".join(CORE_KERNELS[:-1]) + " or " + CORE_KERNELS[-1]


def test_python_kernel_classes_agree_with_the_core():
    # Every Python kernel class that maps to a core kernel names one the core has, and every core
    # kernel has a Python class (gprat.kernels.<name>).
    import gprat

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    python_names = {c._core_name for c in subclasses(gprat.kernels.Kernel) if getattr(c, "_core_name", None)}
    assert python_names == set(_core.kernel_names())
    for name in _core.kernel_names():
        assert getattr(gprat.kernels, name)._core_name == name


@pytest.mark.parametrize("core, itemsize", [(_core.ExactGP64, 8), (_core.ExactGP32, 4)])
def test_memory_estimates_are_bound(core, itemsize):
    n, m, nb = 100, 37, 32  # ragged: 4 tile rows of 32, 32, 32, 4
    # lower tiles of K: 10 blocks; elements summed by hand, plus alpha (n) and z = L \ y (n)
    lower = sum(min(nb, n - i * nb) * min(nb, n - j * nb) for j in range(4) for i in range(j, 4))
    assert core.fit_bytes(n, nb) == (lower + 2 * n) * itemsize
    # one row of n_params partial sums (8-byte doubles) per lower tile
    assert core.training_step_bytes(n, nb, 3) == 10 * 3 * 8
    # no chunking at this size: K*^T (n x m), mean and variance tiles, then the returned arrays
    with_var = core.predict_bytes(n, m, nb, True, False, n_threads=2)
    assert with_var == (n * m + 2 * m) * itemsize + 2 * m * itemsize
    with_cov = core.predict_bytes(n, m, nb, True, True, n_threads=2)
    assert with_cov > with_var + m * m * itemsize  # K** lower tiles plus the (m, m) output
    assert core.predict_bytes(n, m, nb, False, False) > 0  # n_threads defaults to the runtime's
    with pytest.raises(ValueError, match="tile_size must be a positive integer"):
        core.predict_bytes(n, m, 0, True, False)
    with pytest.raises(ValueError, match="n and m must be positive"):
        core.fit_bytes(0, nb)


def test_predict_estimate_follows_the_engine_chunking():
    # Few test points, large n: the engine tiles the test points by nbc < tile_size columns and
    # chunks K*^T to the 256 MiB budget in multiples of nbc (here 250 columns); a rule written
    # with the tile size instead (1024 columns) would claim 4x more.
    n, m, nb = 100_000, 1000, 1024
    workspace = _core.ExactGP64.predict_bytes(n, m, nb, False, False, n_threads=2) - m * 8
    assert workspace == (n * 250 + 250) * 8
    assert np.isclose(workspace / 2**20, 190.7, atol=0.1)
