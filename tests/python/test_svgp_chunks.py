"""The SVGP engine on minibatches of several column chunks (gp/svgp.hpp runs each chunk of 256
columns as a runtime task, and the M x M passes in blocks): the ELBO, every gradient and the
natural-gradient step against dense NumPy references (independent of gprat) and finite
differences, bitwise the same at 1 and 2 threads, and the NGD training step's q_gradient=False."""

import numpy as np
import pytest

import gprat
import kernel_reference as kref
from test_svgp import DESCS, SE_ARD, dense_elbo, engine, fd
from test_svgp import problem as svgp_problem

# 600 columns: chunks of 256, 256 and a ragged 88; M = 40 gives 4 blocks of the M x M passes
N, D, M = 600, 2, 40


def problem(seed=0):
    return svgp_problem(seed, n=N, d=D, M=M, c_scale=0.05)


@pytest.mark.parametrize("desc", DESCS, ids=lambda d: d[0])
def test_multi_chunk_elbo_and_gradients(desc):
    X, y, Z, m, C = problem()
    s2, scale = 0.05, 7.0
    theta = np.concatenate([kref.theta(desc), [np.log(s2)]])
    E, gt, gz, gm, gc = engine(desc, D, M).elbo(list(theta), Z, m, C, X, y, scale, True, True)
    np.testing.assert_allclose(E, dense_elbo(desc, s2, Z, m, C, X, y, scale), rtol=1e-10)

    def f(t=theta, Zt=Z, mt=m, Ct=C):
        return dense_elbo(kref.with_theta(desc, t[:-1]), np.exp(t[-1]), Zt, mt, Ct, X, y, scale)

    fd_t = fd(lambda t: f(t=t), theta)
    fd_z = fd(lambda z: f(Zt=z), Z)
    fd_m = fd(lambda v: f(mt=v), m)
    for got, want in ((gt, fd_t), (gz, fd_z), (gm, fd_m)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))
    # dE/dC in closed form from the dense formula: d/dC [-s/(2 s2) sum_i A_i^T C C^T A_i] - dKL/dC
    L = np.linalg.cholesky(kref.matrix(desc, Z))
    A = np.linalg.solve(L, kref.matrix(desc, Z, X))
    Ct = np.tril(C)
    want_c = np.tril(-scale / s2 * (A @ A.T) @ Ct - Ct + np.diag(1.0 / np.diag(Ct)))
    np.testing.assert_allclose(gc, want_c, rtol=1e-9, atol=1e-9 * np.abs(want_c).max())
    # a few entries of dE/dC by finite differences too (the closed form above is the engine's formula)
    for (i, j) in ((0, 0), (5, 2), (M - 1, 0), (M - 1, M - 1)):
        def fc(v, i=i, j=j):
            Cp = C.copy()
            Cp[i, j] = v
            return f(Ct=Cp)
        want = (fc(C[i, j] + 1e-6) - fc(C[i, j] - 1e-6)) / 2e-6
        np.testing.assert_allclose(gc[i, j], want, rtol=1e-5, atol=1e-6 * np.abs(want_c).max())


def test_multi_chunk_natural_step_against_dense_formula():
    """Lambda = (1 - g) S^{-1} + g (I + s A A^T / s2), eta = (1 - g) S^{-1} m + g s A y / s2,
    m' = Lambda^{-1} eta, C' = chol(Lambda^{-1}), dense NumPy."""
    X, y, Z, m, C = problem(1)
    s2, scale, gamma = 0.05, 3.0, 0.3
    desc = SE_ARD
    theta = list(np.concatenate([kref.theta(desc), [np.log(s2)]]))
    qm, qs = engine(desc, D, M).natural_step(theta, Z, m, C, X, y, scale, gamma)
    L = np.linalg.cholesky(kref.matrix(desc, Z))
    A = np.linalg.solve(L, kref.matrix(desc, Z, X))
    Sinv = np.linalg.inv(np.tril(C) @ np.tril(C).T)
    Lam = (1 - gamma) * Sinv + gamma * (np.eye(M) + scale * A @ A.T / s2)
    eta = (1 - gamma) * Sinv @ m + gamma * scale * A @ y / s2
    np.testing.assert_allclose(qm, np.linalg.solve(Lam, eta), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(qs, np.linalg.cholesky(np.linalg.inv(Lam)), rtol=1e-9, atol=1e-11)
    assert np.all(np.triu(qs, 1) == 0) and np.all(np.diag(qs) > 0)


def test_q_gradient_false_skips_only_the_q_gradient():
    X, y, Z, m, C = problem(2)
    desc = DESCS[1]
    theta = list(np.concatenate([kref.theta(desc), [np.log(0.1)]]))
    core = engine(desc, D, M)
    full = core.natural_step_and_elbo(theta, Z, m, C, X, y, 2.0, 0.5)
    part = core.natural_step_and_elbo(theta, Z, m, C, X, y, 2.0, 0.5, q_gradient=False)
    assert part[3] is None and part[4] is None
    for i in (0, 1, 2, 5, 6):
        np.testing.assert_array_equal(part[i], full[i])


def test_same_bits_at_one_and_two_threads():
    """Fixed chunks and fixed summation order: the thread count changes nothing, bitwise."""
    X, y, Z, m, C = problem(3)
    desc = SE_ARD
    theta = list(np.concatenate([kref.theta(desc), [np.log(0.1)]]))
    out = {}
    try:
        for threads in (1, 2):
            gprat.start(threads)
            core = engine(desc, D, M)
            out[threads] = (core.natural_step_and_elbo(theta, Z, m, C, X, y, 2.0, 0.5)
                            + core.elbo(theta, Z, m, C, X, y, 2.0, True, True))
    finally:
        gprat.start()
    for a, b in zip(out[1], out[2]):
        np.testing.assert_array_equal(a, b)
