"""What the C++ core owns and Python asks for: the kernel registry (_core.kernel_names) and the
engine's memory estimates (ExactGP64/32 static methods)."""

import numpy as np
import pytest

from gprat import _core

CORE_KERNELS = ("SquaredExponential", "Matern12", "Matern32", "Matern52")


def test_kernel_names_in_registry_order():
    assert _core.kernel_names() == CORE_KERNELS


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
