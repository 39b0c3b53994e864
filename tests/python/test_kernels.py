"""Kernel battery, parametrized over every kernel: values against closed-form NumPy formulas,
analytic derivatives against central finite differences, symmetry, positive semi-definiteness,
K(X) against K(X, X), stationarity, float32."""

import numpy as np
import pytest

import gprat
from gprat import kernels
from reference import KERNELS, kernel_matrix

KERNEL_CLASSES = {name: getattr(kernels, name) for name in KERNELS}


def make(name, ard, d=3):
    ls = np.array([0.7, 1.3, 2.1])[:d] if ard else 0.9
    return KERNEL_CLASSES[name](lengthscale=ls, signal_variance=1.7)


@pytest.fixture
def points(rng):
    return rng.uniform(-2, 2, size=(23, 3)), rng.uniform(-2, 2, size=(17, 3))


@pytest.mark.parametrize("ard", [False, True], ids=["iso", "ard"])
@pytest.mark.parametrize("name", KERNELS)
def test_values_match_closed_form(name, ard, points):
    X, Y = points
    k = make(name, ard)
    np.testing.assert_allclose(k(X, Y), kernel_matrix(name, X, Y, k.lengthscale, k.signal_variance), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("ard", [False, True], ids=["iso", "ard"])
@pytest.mark.parametrize("name", KERNELS)
def test_gradient_matches_finite_differences(name, ard, points):
    X, Y = points
    k = make(name, ard)
    grad = k.gradient(X, Y)
    assert grad.shape == (k.n_params, len(X), len(Y))
    h = 1e-6
    for j in range(k.n_params):
        e = np.zeros(k.n_params)
        e[j] = h
        fd = (k.with_theta(k.theta + e)(X, Y) - k.with_theta(k.theta - e)(X, Y)) / (2 * h)
        np.testing.assert_allclose(grad[j], fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", KERNELS)
def test_gradient_at_coincident_points_is_finite(name):
    X = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    g = make(name, True).gradient(X)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g[:-1], 0.0, atol=0)  # lengthscale derivative vanishes at r = 0


@pytest.mark.parametrize("ard", [False, True], ids=["iso", "ard"])
@pytest.mark.parametrize("name", KERNELS)
def test_symmetry_psd_and_self_covariance(name, ard, points):
    X, _ = points
    k = make(name, ard)
    K = k(X)
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_allclose(K, k(X, X), rtol=1e-15, atol=0)
    assert np.linalg.eigvalsh(K).min() > -1e-10 * np.abs(K).max()
    np.testing.assert_allclose(np.diag(K), k.signal_variance, rtol=1e-15)
    np.testing.assert_allclose(k.diag(X), np.diag(K))


@pytest.mark.parametrize("name", KERNELS)
def test_stationary(name, points):
    X, Y = points
    k = make(name, True)
    shift = np.array([3.0, -1.0, 0.5])
    np.testing.assert_allclose(k(X + shift, Y + shift), k(X, Y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", KERNELS)
def test_float32(name, points):
    X, Y = points
    k = make(name, True)
    K32 = k(X, Y, dtype=np.float32)
    assert K32.dtype == np.float32
    np.testing.assert_allclose(K32, k(X, Y), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("name", KERNELS)
def test_theta_round_trip(name):
    k = make(name, True)
    np.testing.assert_allclose(k.theta, np.log([0.7, 1.3, 2.1, 1.7]))
    k2 = k.with_theta(k.theta)
    assert k2 == k
    assert k.n_params == 4 and make(name, False).n_params == 2


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_hyperparameters(bad):
    with pytest.raises(ValueError):
        kernels.SquaredExponential(lengthscale=bad)
    with pytest.raises(ValueError):
        kernels.Matern32(signal_variance=bad)
    with pytest.raises(ValueError):
        kernels.Matern52(lengthscale=[1.0, bad])


def test_ard_feature_mismatch():
    k = kernels.SquaredExponential(lengthscale=[1.0, 2.0])
    with pytest.raises(ValueError, match="features"):
        k(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="features"):
        gprat.ExactGP(k).fit(np.zeros((3, 3)), np.zeros(3))


def test_the_python_registry_is_the_cores_list():
    # One list of kernel families: gprat.kernels.registry.FAMILIES, in the order of the core's
    # AnyKernel variant, each with a unique short name (model files, the command line).
    from gprat import _core
    from gprat.kernels import registry

    assert tuple(cls._core_name for cls in registry.FAMILIES) == _core.kernel_names()
    assert tuple(registry.OPERATORS) == _core.kernel_operators()
    assert len({cls.short_name for cls in registry.FAMILIES}) == len(registry.FAMILIES)
    # model files and the command line take the stationary families (composed kernels: later)
    assert registry.short_names() == ("se", "matern12", "matern32", "matern52")
    for cls in registry.FAMILIES:
        if cls.in_model_files:
            assert registry.by_short_name(cls.short_name) is cls
        else:
            with pytest.raises(ValueError, match="kernel must be one of se, matern12"):
                registry.by_short_name(cls.short_name)
    with pytest.raises(ValueError, match="kernel must be one of se, matern12"):
        registry.by_short_name("rbf")
