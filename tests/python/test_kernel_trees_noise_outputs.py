"""Composed kernels (issue #9) together with the noise model, several outputs and the constant
mean (issue #13): the KernelTree column path with per-row diagonals (fixed noise + learned noise
+ White on the same global diagonal) and the multi-output gradient weights, against a dense
reference built from tests/kernel_reference.py (kernel matrix, dK/dtheta by central differences
of that matrix) and scipy.stats densities, independent of gprat."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import gprat
import kernel_reference as kref
from gprat import kernels

N, D = 45, 2  # 45 = 6 tiles of 7 + a ragged tile of 3
# White is a leaf of the tree: its noise_level lands on the same global diagonal as the fixed
# and learned noise; the Product and the active dims make it a KernelTree (column path).
DESC = ("Sum",
        ("Product", ("SquaredExponential", [0.9, 1.2], [0]), ("RationalQuadratic", [1.3, 0.8], [1])),
        ("Sum", ("Linear", [0.7], [1]), ("White", [0.05], None)))


def to_gprat(desc):
    if desc[0] in ("Sum", "Product"):
        a, b = to_gprat(desc[1]), to_gprat(desc[2])
        return a + b if desc[0] == "Sum" else a * b
    name, p, dims = desc
    cls = getattr(kernels, name)
    if name in kref.STATIONARY:
        return cls(lengthscale=p[0], signal_variance=p[1], active_dims=dims)
    return cls(*p, active_dims=dims)


def problem(seed, outputs):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.5, 1.5, size=(N, D))
    Y = np.stack([np.sin(2 * X[:, 0] + c) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(N) for c in range(outputs)],
                 axis=1)
    fixed = rng.uniform(0.01, 0.2, size=N)
    fixed[::5] = 0.0  # some exact rows: their diagonal is the kernel's (White) and the learned noise
    return X, (Y[:, 0] if outputs == 1 else Y), fixed


def dense_lml(desc, X, Y, fixed, learned, mean):
    """sum_j log N(y_j; c_j 1, k(X) + diag(fixed) + learned I), one output at a time."""
    K = kref.matrix(desc, X) + np.diag(fixed + learned)
    Y = Y.reshape(N, -1)
    return float(sum(multivariate_normal(mean=np.full(N, mean[j]), cov=K).logpdf(Y[:, j]) for j in range(Y.shape[1])))


def dense_gradient(desc, X, Y, fixed, learned, mean):
    """[kernel theta..., log learned, c_1..c_p]: 1/2 a_j^T dK a_j - 1/2 tr(K^{-1} dK) summed over
    outputs (dK of the kernel by central differences of the reference matrix, learned I for the
    noise), and 1^T a_j for mean entry j."""
    K = kref.matrix(desc, X) + np.diag(fixed + learned)
    Kinv = np.linalg.inv(K)
    dKs = list(kref.gradient_fd(desc, X)) + [learned * np.eye(N)]
    Y = Y.reshape(N, -1)
    grad, mean_grad = np.zeros(len(dKs)), np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        a = Kinv @ (Y[:, j] - mean[j])
        for q, dK in enumerate(dKs):
            grad[q] += 0.5 * a @ dK @ a - 0.5 * np.trace(Kinv @ dK)
        mean_grad[j] = a.sum()
    return np.concatenate([grad, mean_grad])


@pytest.mark.parametrize("tile_size", [7, N])
@pytest.mark.parametrize("outputs", [1, 3])
def test_tree_with_white_fixed_and_learned_noise_outputs_and_mean(outputs, tile_size):
    X, Y, fixed = problem(11 + outputs, outputs)
    learned, mean = 0.03, np.linspace(-0.2, 0.3, outputs)
    gp = gprat.ExactGP(to_gprat(DESC), noise_variance=fixed, learned_noise=learned, mean_constant=mean,
                       tile_size=tile_size).fit(X, Y)
    n_kernel = kref.theta(DESC).size
    assert gp.n_params == n_kernel + 1 + outputs  # kernel, learned noise, one constant per output
    np.testing.assert_allclose(gp.theta[:n_kernel], kref.theta(DESC), rtol=1e-15)
    assert gp.jitter_ == 0.0
    want = dense_lml(DESC, X, Y, fixed, learned, mean)
    assert gp.log_marginal_likelihood() == pytest.approx(want, rel=1e-10)
    lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    assert lml == pytest.approx(want, rel=1e-10)
    np.testing.assert_allclose(grad, dense_gradient(DESC, X, Y, fixed, learned, mean), rtol=1e-5, atol=1e-6)
    # trainable by default: every kernel entry (none fixed), the noise and the means; bounds: the
    # kernel's own box, then the noise box, the means unbounded
    b = gp.default_bounds()
    np.testing.assert_array_equal(b[:n_kernel], gp.kernel.bounds)
    assert np.all(np.isinf(b[n_kernel + 1:]))


def test_zero_noise_with_white_needs_no_jitter_and_uses_the_tree_prior_variance():
    # noise_variance=0: no noise entry in theta; White(0.05) alone makes K positive definite, so
    # the jitter policy finds no jitter; duplicated rows without White need jitter, sized by the
    # mean prior variance mean(kernel.diag(X)) (not a signal_variance the tree does not have)
    X, y, _ = problem(3, 1)
    gp = gprat.ExactGP(to_gprat(DESC), noise_variance=0.0, tile_size=7).fit(X, y)
    assert gp.n_params == kref.theta(DESC).size and gp.jitter_ == 0.0
    assert gp.log_marginal_likelihood() == pytest.approx(dense_lml(DESC, X, y, np.zeros(N), 0.0, [0.0]), rel=1e-10)
    no_white = DESC[1]
    Xd = np.vstack([X, X[:5]])
    yd = np.concatenate([y, y[:5]])
    with pytest.warns(gprat.NumericalWarning):
        gp = gprat.ExactGP(to_gprat(no_white), noise_variance=0.0).fit(Xd, yd)
    prior = float(np.mean(np.diag(kref.matrix(no_white, Xd))))
    rel = gp.jitter_ / prior
    assert gp.jitter_ > 0 and np.isclose(rel, 10.0 ** np.round(np.log10(rel)), rtol=1e-9)


def test_optimize_default_mask_is_the_kernel_mask_then_noise_and_means():
    # the default trainable mask must cover the noise and every mean entry after the kernel's
    # own mask (a fixed kernel parameter stays put, the others and the means move)
    X, Y, fixed = problem(7, 2)
    k = (kernels.SquaredExponential(0.9, signal_variance=1.2, fixed=("signal_variance",), active_dims=[0])
         + kernels.Linear(0.7, active_dims=[1]))
    gp = gprat.ExactGP(k, noise_variance=fixed, learned_noise=0.03, mean_constant=[0.0, 0.0]).fit(X, Y)
    theta0 = gp.theta.copy()
    assert theta0.shape == (3 + 1 + 2,)
    before = gp.log_marginal_likelihood()
    gp.optimize(max_iter=20)
    assert gp.theta[1] == theta0[1]  # the fixed signal variance
    assert gp.theta[0] != theta0[0] and gp.theta[2] != theta0[2] and gp.theta[3] != theta0[3]
    assert np.all(gp.theta[4:] != theta0[4:])  # the means were trained
    assert gp.log_marginal_likelihood() >= before
