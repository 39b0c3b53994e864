"""The mass-spring-damper simulator against independent references, and NARX features."""

import numpy as np
import pytest
from gprat import simulate
from gprat.simulate import MassSpringDamperChain
from scipy.integrate import solve_ivp


def reference_rhs(system):
    """The equations of motion written out independently of gprat.simulate."""
    n, m, k1, k3, c = system.n_carts, system.mass, system.k_linear, system.k_cubic, system.damping

    def rhs(t, z, force):
        x, v = z[:n], z[n:]
        a = np.zeros(n)
        for i in range(n):
            left_x = x[i - 1] if i > 0 else 0.0  # cart i-1, or the wall
            left_v = v[i - 1] if i > 0 else 0.0
            e = x[i] - left_x
            a[i] -= k1 * e + k3 * e**3 + c * (v[i] - left_v)  # link to the left pulls back
            if i + 1 < n:
                e = x[i + 1] - x[i]
                a[i] += k1 * e + k3 * e**3 + c * (v[i + 1] - v[i])  # link to the right
        a[0] += force
        return np.concatenate([v, a / m])

    return rhs


def reference_trajectory(system, u, dt):
    """solve_ivp (DOP853, tight tolerances) interval by interval, input held constant."""
    rhs = reference_rhs(system)
    z = np.zeros(2 * system.n_carts)
    states = [z]
    for force in u[:-1]:
        z = solve_ivp(rhs, (0.0, dt), z, args=(force,), method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
        states.append(z)
    return np.array(states)


@pytest.mark.parametrize("signal", ["multisine", "multilevel"])
def test_rk4_matches_solve_ivp(signal):
    system = MassSpringDamperChain(n_carts=3, mass=1.3, k_linear=0.8, k_cubic=1.5, damping=0.4)
    dt = 0.1
    if signal == "multisine":
        u = simulate.multisine(200, dt, amplitude=1.5, seed=1)
    else:
        u = simulate.random_multilevel(200, hold=5, amplitude=1.5, seed=1)
    states = simulate.simulate(system, u, dt, substeps=10)
    reference = reference_trajectory(system, u, dt)
    assert np.max(np.abs(reference)) > 0.5  # the springs are in their non-linear range
    np.testing.assert_allclose(states, reference, rtol=0, atol=1e-7)


def test_rk4_error_shrinks_at_fourth_order():
    system = MassSpringDamperChain()
    u = simulate.multisine(100, 0.1, seed=2)
    reference = reference_trajectory(system, u, 0.1)
    coarse = np.max(np.abs(simulate.simulate(system, u, 0.1, substeps=2) - reference))
    fine = np.max(np.abs(simulate.simulate(system, u, 0.1, substeps=4) - reference))
    assert 10 < coarse / fine < 25  # 2^4 = 16


def test_linear_single_cart_matches_closed_form():
    # One cart, linear spring, no damper, constant force F from rest: x(t) = F/k (1 - cos(w t)).
    system = MassSpringDamperChain(n_carts=1, mass=2.0, k_linear=3.0, k_cubic=0.0, damping=0.0)
    dt, force = 0.05, 0.7
    states = simulate.simulate(system, np.full(400, force), dt, substeps=5)
    t = np.arange(400) * dt
    omega = np.sqrt(3.0 / 2.0)
    np.testing.assert_allclose(states[:, 0], force / 3.0 * (1 - np.cos(omega * t)), atol=1e-8)
    np.testing.assert_allclose(states[:, 1], force / 3.0 * omega * np.sin(omega * t), atol=1e-8)


def test_undamped_free_chain_conserves_energy():
    system = MassSpringDamperChain(n_carts=3, k_cubic=2.0, damping=0.0)
    start = np.array([0.5, -0.3, 0.8, 0.0, 0.2, 0.0])

    def energy(z):
        x, v = z[:3], z[3:]
        e = np.diff(x, prepend=0.0)
        return 0.5 * system.mass * np.sum(v**2) + np.sum(0.5 * system.k_linear * e**2 + 0.25 * system.k_cubic * e**4)

    states = simulate.simulate(system, np.zeros(500), 0.1, substeps=10, initial_state=start)
    energies = np.array([energy(z) for z in states])
    np.testing.assert_allclose(energies, energies[0], rtol=1e-6)


def test_dataset_is_seeded_and_noisy_as_asked():
    a = simulate.generate_dataset(1500, seed=5, noise_std=0.1)
    b = simulate.generate_dataset(1500, seed=5, noise_std=0.1)
    c = simulate.generate_dataset(1500, seed=6, noise_std=0.1)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.u, c.u)
    assert a.positions.shape == (1500, 4)
    np.testing.assert_array_equal(a.y_true, a.positions[:, -1])
    assert np.std(a.y - a.y_true) == pytest.approx(0.1, rel=0.05)
    np.testing.assert_allclose(a.t[:3], [0.0, 0.1, 0.2])


def test_multisine_amplitude_is_its_standard_deviation():
    u = simulate.multisine(20000, 0.1, amplitude=2.0, seed=0)
    assert np.std(u) == pytest.approx(2.0, rel=0.2)


def test_multilevel_uses_its_levels():
    u = simulate.random_multilevel(500, n_levels=3, amplitude=2.0, seed=0)
    assert set(np.unique(u)) <= {-2.0, 0.0, 2.0}


def test_lagged_features_follow_their_definition():
    u = np.array([10.0, 11, 12, 13, 14])
    y = np.array([0.0, 1, 2, 3, 4])
    X, target, names = simulate.lagged_features(u, y, input_lags=2, output_lags=1)
    # k = 2, 3, 4: [u[k-1], u[k-2], y[k-1]] -> y[k]
    np.testing.assert_array_equal(X, [[11, 10, 1], [12, 11, 2], [13, 12, 3]])
    np.testing.assert_array_equal(target, [2, 3, 4])
    assert names == ["u[k-1]", "u[k-2]", "y[k-1]"]
    X, target, names = simulate.lagged_features(u, y, input_lags=1, output_lags=0)
    np.testing.assert_array_equal(X[:, 0], u[:-1])
    assert names == ["u[k-1]"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_lags": -1}, "input_lags must be a non-negative integer"),
        ({"input_lags": 0, "output_lags": 0}, "no regressors"),
        ({"input_lags": 5, "output_lags": 2}, "need more than the largest lag 5"),
    ],
)
def test_lagged_features_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate.lagged_features(np.zeros(5), np.zeros(5), **kwargs)


def test_invalid_system_and_inputs():
    with pytest.raises(ValueError, match="n_carts must be a positive integer"):
        MassSpringDamperChain(n_carts=0)
    with pytest.raises(ValueError, match="mass must be positive"):
        MassSpringDamperChain(mass=0.0)
    with pytest.raises(ValueError, match="u must be one-dimensional"):
        simulate.simulate(MassSpringDamperChain(), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="signal must be 'multisine' or 'multilevel'"):
        simulate.generate_dataset(10, signal="chirp")
    with pytest.raises(FloatingPointError, match="diverged"):
        simulate.simulate(MassSpringDamperChain(k_cubic=1e6), np.full(50, 1e3), dt=1.0, substeps=1)
