"""Input derivatives dk(x, z)/dz (the inducing-point gradients of SGPR/SVGP) for every family,
isotropic and ARD, on the single-family (vectorized) and tree paths, and random trees, against
central finite differences of the dense NumPy reference tests/kernel_reference.py."""

import numpy as np
import pytest

import kernel_reference as kref
from gprat import kernels
from test_kernel_trees import FAMILY_PARAMS, descriptions, to_gprat


def fd_input_gradient(desc, X, Z, h=1e-6):
    """(d, n, m): central differences of kref.matrix(desc, X, Z) in each feature of Z (entry
    (i, j) depends on z_j only, so one shift of the whole column c gives every z_j at once)."""
    out = np.empty((Z.shape[1], X.shape[0], Z.shape[0]))
    for c in range(Z.shape[1]):
        zp, zm = Z.copy(), Z.copy()
        zp[:, c] += h
        zm[:, c] -= h
        out[c] = (kref.matrix(desc, X, zp) - kref.matrix(desc, X, zm)) / (2 * h)
    return out


def points(seed, n, m, d):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.5, 1.5, size=(n, d)), rng.uniform(-1.5, 1.5, size=(m, d))


@pytest.mark.parametrize("seed", range(4))
def test_trees_and_every_family_match_finite_differences(seed):
    X, Z = points(seed, 7, 5, 3)
    for desc in descriptions(300 + seed, 10, 3):
        got = to_gprat(desc).input_gradient(X, Z)
        want = fd_input_gradient(desc, X, Z)
        assert got.shape == (3, 7, 5)
        scale = max(1.0, np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * scale, err_msg=str(desc))


@pytest.mark.parametrize("name", kref.STATIONARY)
@pytest.mark.parametrize("ard", [False, True])
def test_single_stationary_family(name, ard):
    """The single-family kernels run the vectorized path's Stationary class (stationary.hpp)."""
    X, Z = points(11, 9, 6, 4)
    ls = [0.7, 1.3, 0.9, 2.0] if ard else 1.1
    k = getattr(kernels, name)(lengthscale=ls, signal_variance=1.7)
    desc = (name, (ls if ard else [ls]) + [1.7], None)
    np.testing.assert_allclose(k.input_gradient(X, Z), fd_input_gradient(desc, X, Z), rtol=1e-6, atol=1e-8)


def test_value_of_the_derivative_by_hand():
    """SE: dk/dz = k (x - z) / l^2; Linear: dk/dz = x (closed forms, no reference code)."""
    x, z = np.array([[0.3, -0.2]]), np.array([[1.0, 0.5]])
    k = kernels.SquaredExponential(lengthscale=[0.5, 2.0], signal_variance=2.0)
    kv = 2.0 * np.exp(-0.5 * (((0.3 - 1.0) / 0.5) ** 2 + ((-0.2 - 0.5) / 2.0) ** 2))
    np.testing.assert_allclose(k.input_gradient(x, z)[:, 0, 0], kv * (x[0] - z[0]) / np.array([0.25, 4.0]), rtol=1e-13)
    np.testing.assert_allclose(kernels.Linear(0.7).input_gradient(x, z)[:, 0, 0], x[0], rtol=1e-15)


@pytest.mark.parametrize("name", list(FAMILY_PARAMS))
def test_coincident_points_are_finite(name):
    """At x = z (Matern12's kink, Periodic's d = 0) the derivative is finite: 0 for the
    stationary families, x for Linear."""
    desc = (name, [1.0] * FAMILY_PARAMS[name], None)
    X = np.array([[0.4, -0.1]])
    g = to_gprat(desc).input_gradient(X, X)[:, 0, 0]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, X[0] if name == "Linear" else 0.0, atol=1e-15)


def test_float32_agrees_with_float64():
    X, Z = points(3, 8, 5, 2)
    k = kernels.Matern52(lengthscale=[0.8, 1.2]) * kernels.RationalQuadratic(1.1, 0.6) + kernels.Linear(0.3)
    g64 = k.input_gradient(X, Z)
    g32 = k.input_gradient(X.astype(np.float32), Z.astype(np.float32), dtype=np.float32)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=2e-5, atol=2e-6)


def test_bad_input():
    k = kernels.SquaredExponential()
    with pytest.raises(ValueError, match="feature"):
        k.input_gradient(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ARD"):
        kernels.SquaredExponential(lengthscale=[1.0, 2.0]).input_gradient(np.zeros((3, 3)), np.zeros((2, 3)))
