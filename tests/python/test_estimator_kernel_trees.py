"""gprat.GaussianProcessRegressor with composed scikit-learn kernel trees, against scikit-learn.

Every expected value comes from scikit-learn's own GaussianProcessRegressor run on the same
kernel object and data (the oracle); nothing here is computed by gprat and then compared
with itself. Trees are drawn at random (seeded) from every accepted node, scikit-learn's
classes and gprat.kernels.sklearn's, isotropic and anisotropic, with some bounds "fixed".
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor as SkGPR  # noqa: E402
from sklearn.gaussian_process import kernels as skk  # noqa: E402

from gprat.estimator import GaussianProcessRegressor  # noqa: E402
from gprat.kernels import sklearn as gsk  # noqa: E402

RTOL = 1e-10
ACCEPTED_MESSAGE = "accepted are RBF, Matern\\(nu=0.5, 1.5 or 2.5\\), RationalQuadratic, ExpSineSquared"


def close(actual, expected, rtol=RTOL):
    """assert_allclose with an absolute floor of rtol times the expected values' scale."""
    expected = np.asarray(expected)
    scale = np.max(np.abs(expected)) if expected.size else 1.0
    assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def _bounds(rng):
    return "fixed" if rng.uniform() < 0.2 else (1e-3, 1e3)


def random_leaf(rng, mod, n_features, periodic_ok):
    """One accepted leaf of module `mod` (skk or gsk) with random values and bounds."""
    choices = ["rbf", "matern", "rq", "dot", "constant", "white"] + (["periodic"] if periodic_ok else [])
    kind = choices[rng.integers(len(choices))]
    if kind in ("rbf", "matern"):
        ls = rng.uniform(0.5, 3.0, size=n_features) if rng.uniform() < 0.4 and n_features > 1 else rng.uniform(0.5, 3.0)
        if kind == "rbf":
            return mod.RBF(ls, length_scale_bounds=_bounds(rng))
        return mod.Matern(ls, length_scale_bounds=_bounds(rng), nu=[0.5, 1.5, 2.5][rng.integers(3)])
    if kind == "rq":
        return mod.RationalQuadratic(rng.uniform(0.5, 3.0), rng.uniform(0.3, 3.0),
                                     length_scale_bounds=_bounds(rng), alpha_bounds=_bounds(rng))
    if kind == "periodic":
        return mod.ExpSineSquared(rng.uniform(0.5, 2.0), rng.uniform(0.5, 3.0),
                                  length_scale_bounds=_bounds(rng), periodicity_bounds=_bounds(rng))
    if kind == "dot":
        return mod.DotProduct(rng.uniform(0.3, 2.0), sigma_0_bounds=_bounds(rng))
    if kind == "constant":
        return mod.ConstantKernel(rng.uniform(0.3, 3.0), constant_value_bounds=_bounds(rng))
    return mod.WhiteKernel(rng.uniform(0.01, 0.5), noise_level_bounds=_bounds(rng))


def random_tree(rng, n_features, depth=3, periodic_ok=True, root=True):
    """A random Sum/Product tree (the root a node) of accepted leaves, scikit-learn's and gprat's classes."""
    mod = skk if rng.uniform() < 0.5 else gsk
    if depth == 0 or (not root and rng.uniform() < 0.3):
        return random_leaf(rng, mod, n_features, periodic_ok)
    k1 = random_tree(rng, n_features, depth - 1, periodic_ok, root=False)
    k2 = random_tree(rng, n_features, depth - 1, periodic_ok, root=False)
    op = skk.Sum if rng.uniform() < 0.5 else skk.Product
    return op(k1, k2)


def make_data(rng, n, n_features, n_targets=None):
    X = rng.uniform(0.0, 3.0, size=(n, n_features))
    f = np.sin(2.0 * X).sum(axis=1) + 0.3 * X[:, 0]
    if n_targets is None:
        y = f + 0.1 * rng.standard_normal(n)
    else:
        y = np.stack([(t + 1) * f - t + 0.1 * rng.standard_normal(n) for t in range(n_targets)], axis=1)
    return X, y, rng.uniform(0.0, 3.0, size=(9, n_features))


def mauna_loa_kernel():
    """scikit-learn's gallery kernel for the Mauna Loa CO2 data."""
    return (
        50.0**2 * skk.RBF(length_scale=50.0)
        + 2.0**2 * skk.RBF(length_scale=100.0) * skk.ExpSineSquared(length_scale=1.0, periodicity=1.0,
                                                                    periodicity_bounds="fixed")
        + 0.5**2 * skk.RationalQuadratic(length_scale=1.0, alpha=1.0)
        + 0.1**2 * skk.RBF(length_scale=0.1)
        + skk.WhiteKernel(noise_level=0.1**2, noise_level_bounds=(1e-5, 1e5))
    )


def compare_at_theta(kernel, X, y, X_test, rng, **params):
    """Fit both without optimizer; LML + gradient at random theta and predictions must agree."""
    theirs = SkGPR(clone(kernel), optimizer=None, **params).fit(X, y)
    ours = GaussianProcessRegressor(clone(kernel), optimizer=None, **params).fit(X, y)
    close(ours.log_marginal_likelihood(), theirs.log_marginal_likelihood_value_)
    for _ in range(3):
        theta = kernel.theta + rng.uniform(-0.5, 0.5, size=kernel.n_dims)
        expected, expected_grad = theirs.log_marginal_likelihood(theta, eval_gradient=True)
        value, grad = ours.log_marginal_likelihood(theta, eval_gradient=True)
        # Two correct implementations differ by rounding amplified by cond(K) (the Mauna Loa kernel
        # reaches cond ~ 1e7): the tolerance is 1e-10, or 10 eps cond(K) where that is larger.
        K = kernel.clone_with_theta(theta)(X) + np.diag(np.broadcast_to(params.get("alpha", 1e-10), len(X)))
        rtol = max(RTOL, 10 * np.finfo(float).eps * np.linalg.cond(K))
        close(value, expected, rtol)
        # the gradient is a sum of n^2 products (tr((a a^T - K^-1) dK)): its rounding grows with n too
        close(grad, expected_grad, max(rtol, len(X) * np.finfo(float).eps * np.linalg.cond(K)))
        close(ours.log_marginal_likelihood(theta), expected, rtol)
    K = kernel(X) + np.diag(np.broadcast_to(params.get("alpha", 1e-10), len(X)))
    rtol = max(RTOL, 10 * np.finfo(float).eps * np.linalg.cond(K))
    # a predictive (co)variance is a difference of prior terms: its error scales with the prior variance
    prior = np.max(kernel.diag(np.vstack([X_test, X[:5]])))
    for kwargs in ({}, {"return_std": True}, {"return_cov": True}):
        expected = theirs.predict(X_test, **kwargs)
        actual = ours.predict(X_test, **kwargs)
        if not kwargs:
            close(actual, expected, rtol)
            continue
        close(actual[0], expected[0], rtol)
        spread = (lambda s: s) if "return_cov" in kwargs else np.square
        assert_allclose(spread(actual[1]), spread(expected[1]), rtol=rtol, atol=rtol * prior)
    # at the training points too: WhiteKernel is on K(X) only, never in K(X_test, X_train)
    assert_allclose(ours.predict(X[:5], return_cov=True)[1], theirs.predict(X[:5], return_cov=True)[1],
                    rtol=rtol, atol=rtol * prior)


def _has_periodic(kernel):
    return any(isinstance(node, skk.ExpSineSquared) for _, node in gsk.walk(kernel))


@pytest.mark.parametrize("seed", range(40))
def test_random_trees_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_features = 1 if seed % 2 else 2
    # ExpSineSquared on a Euclidean distance in d > 1 need not be PSD: periodic trees on d = 1
    kernel = random_tree(rng, n_features, periodic_ok=(n_features == 1))
    X, y, X_test = make_data(rng, 25, n_features)
    compare_at_theta(kernel, X, y, X_test, rng, alpha=1e-2)


def test_mauna_loa_kernel_matches_sklearn():
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0.0, 20.0, size=60))[:, None]
    y = 0.5 * t[:, 0] + np.sin(2 * np.pi * t[:, 0]) + 0.2 * rng.standard_normal(60)
    compare_at_theta(mauna_loa_kernel(), t, y - y.mean(), rng.uniform(0, 22, size=(9, 1)), rng)


@pytest.mark.parametrize("seed", range(6))
def test_trees_with_alpha_array_normalize_y_and_multi_output(seed):
    rng = np.random.default_rng(100 + seed)
    kernel = random_tree(rng, 1, depth=2) + skk.WhiteKernel(0.05)
    n_targets = [None, 2, 3][seed % 3]
    X, y, X_test = make_data(rng, 30, 1, n_targets=n_targets)
    alpha = rng.uniform(1e-3, 1e-1, size=30) if seed % 2 == 0 else 1e-3
    compare_at_theta(kernel, X, y, X_test, rng, alpha=alpha, normalize_y=bool(seed % 2 == 0 or seed == 3))


def test_rational_quadratic_theta_is_sklearns_order():
    """RQ's theta is [alpha, length_scale] in scikit-learn ([lengthscale, alpha] in gprat)."""
    rng = np.random.default_rng(5)
    X, y, X_test = make_data(rng, 20, 1)
    kernel = skk.RationalQuadratic(length_scale=0.7, alpha=3.0) * skk.ConstantKernel(2.0)
    theirs = SkGPR(kernel, optimizer=None, alpha=1e-3).fit(X, y)
    ours = GaussianProcessRegressor(kernel, optimizer=None, alpha=1e-3).fit(X, y)
    theta = np.log([0.2, 2.0, 0.5])  # alpha, length_scale, constant: very different gradients
    value, grad = ours.log_marginal_likelihood(theta, eval_gradient=True)
    expected, expected_grad = theirs.log_marginal_likelihood(theta, eval_gradient=True)
    close(value, expected)
    close(grad, expected_grad)
    assert_array_equal(ours.kernel_.theta, theirs.kernel_.theta)


@pytest.mark.parametrize("seed", range(4))
def test_optimized_tree_matches_sklearn(seed):
    """The L-BFGS-B fit (and restarts) of a composite kernel ends where scikit-learn's does."""
    rng = np.random.default_rng(200 + seed)
    t = np.sort(rng.uniform(0.0, 6.0, size=40))[:, None]
    y = np.sin(2 * np.pi * t[:, 0] / 1.5) + 0.3 * t[:, 0] + 0.1 * rng.standard_normal(40)
    kernels = [
        skk.ConstantKernel(1.0) * skk.RBF(2.0) * gsk.ExpSineSquared(1.0, 1.5, periodicity_bounds="fixed")
        + skk.WhiteKernel(0.05),
        gsk.RationalQuadratic(1.0, 1.0) + skk.DotProduct(1.0, sigma_0_bounds="fixed") + skk.WhiteKernel(0.1),
        skk.ConstantKernel(1.0) * (skk.Matern(1.0, nu=2.5) + skk.WhiteKernel(0.1)),
        gsk.ConstantKernel(1.0, (1e-2, 1e2)) * gsk.RBF(1.0, (1e-2, 1e2)) + gsk.WhiteKernel(0.1, (1e-3, 1.0)),
    ]
    kernel = kernels[seed]
    restarts = 2 if seed == 3 else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = SkGPR(kernel, n_restarts_optimizer=restarts, random_state=3).fit(t, y)
        ours = GaussianProcessRegressor(kernel, n_restarts_optimizer=restarts, random_state=3).fit(t, y)
    assert type(ours.kernel_) is type(theirs.kernel_)
    assert ours.kernel_.n_dims == theirs.kernel_.n_dims == kernel.n_dims  # fixed bounds stay out of theta
    assert ours.log_marginal_likelihood_value_ >= theirs.log_marginal_likelihood_value_ - 1e-7 * abs(
        theirs.log_marginal_likelihood_value_
    )
    assert_allclose(ours.kernel_.theta, theirs.kernel_.theta, rtol=1e-4, atol=1e-4)
    # fitted kernel_ is a scikit-learn kernel at the optimum: its values reproduce sklearn's LML there
    close(theirs.log_marginal_likelihood(ours.kernel_.theta), ours.log_marginal_likelihood_value_, rtol=1e-9)
    close(ours.predict(t[:4]), SkGPR(ours.kernel_, optimizer=None).fit(t, y).predict(t[:4]), rtol=1e-8)


def test_fixed_hyperparameters_keep_their_values_through_fit():
    rng = np.random.default_rng(9)
    X, y, _ = make_data(rng, 30, 1)
    kernel = (skk.ConstantKernel(0.7, "fixed") * skk.RBF(1.0) * skk.ExpSineSquared(1.0, 2.5, periodicity_bounds="fixed")
              + skk.WhiteKernel(0.3, "fixed"))
    ours = GaussianProcessRegressor(kernel).fit(X, y)
    params = ours.kernel_.get_params()
    assert params["k1__k1__k1__constant_value"] == 0.7
    assert params["k1__k2__periodicity"] == 2.5
    assert params["k2__noise_level"] == 0.3
    assert ours.kernel_.n_dims == 2


def test_gprat_operators_build_any_accepted_tree():
    kernel = gsk.RBF(2.0) * gsk.ExpSineSquared(1.0, 1.0) + 0.5 * gsk.RationalQuadratic(1.0, 2.0) + gsk.DotProduct(1.0)
    assert isinstance(kernel, gsk.Sum)
    kernel = 1.0 + kernel * gsk.WhiteKernel(0.1)
    assert isinstance(kernel, gsk.Sum) and isinstance(kernel.k1, gsk.ConstantKernel)
    X = np.linspace(0, 1, 4)[:, None]
    reference = clone(kernel)
    assert_array_equal(kernel(X), reference(X))


@pytest.mark.parametrize(
    "compose, node",
    [
        (lambda: gsk.RBF() ** 2, "RBF"),
        (lambda: gsk.RBF() + skk.Exponentiation(skk.RBF(), 2), "Exponentiation"),
        (lambda: gsk.RationalQuadratic() * skk.PairwiseKernel(), "PairwiseKernel"),
        (lambda: gsk.DotProduct() + skk.Matern(nu=0.7), "nu=0.7"),
    ],
)
def test_gprat_operators_refuse_other_nodes(compose, node):
    with pytest.raises(ValueError, match=node) as info:
        compose()
    assert "nu must be 0.5, 1.5 or 2.5" in str(info.value) or "accepted are RBF" in str(info.value)


class _UserKernel(skk.RBF):
    pass


@pytest.mark.parametrize(
    "kernel, given",
    [
        (skk.RBF() + skk.Exponentiation(skk.RBF(), 2), "kernel.k2 = RBF(length_scale=1) ** 2 (Exponentiation)"),
        (skk.ConstantKernel() * skk.PairwiseKernel(metric="rbf"), "(PairwiseKernel)"),
        (skk.CompoundKernel([skk.RBF()]), "(CompoundKernel)"),
        (skk.RBF() * _UserKernel(), "kernel.k2 = _UserKernel(length_scale=1) (_UserKernel)"),
        (skk.WhiteKernel() + skk.ConstantKernel() * skk.Matern(nu=np.inf), "nu must be 0.5, 1.5 or 2.5"),
        (skk.Matern(nu=0.7) * skk.RBF(), "got nu=0.7"),
    ],
)
def test_fit_refuses_other_nodes_naming_accepted_and_given(kernel, given):
    rng = np.random.default_rng(0)
    X, y, X_test = make_data(rng, 10, 1)
    for call in (lambda: GaussianProcessRegressor(kernel).fit(X, y), lambda: GaussianProcessRegressor(kernel).predict(X_test)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert given in message
        if "nu must be" not in message:
            assert "accepted are RBF, Matern(nu=0.5, 1.5 or 2.5), RationalQuadratic, ExpSineSquared, DotProduct" in message


@pytest.mark.parametrize(
    "kernel, name",
    [
        (skk.RBF() + skk.ExpSineSquared(1.0, -2.0), "kernel.k2: ExpSineSquared.periodicity"),
        (skk.RBF() * skk.RationalQuadratic(1.0, 0.0), "kernel.k2: RationalQuadratic.alpha"),
        (skk.DotProduct(0.0, "fixed") + skk.WhiteKernel(), "kernel.k1: DotProduct.sigma_0"),
        (skk.ConstantKernel(-1.0) * skk.RBF(), "ConstantKernel.constant_value"),
        (skk.RBF() + skk.WhiteKernel(np.nan), "WhiteKernel.noise_level"),
        (skk.RBF() * skk.ExpSineSquared(1.0, 1.0, periodicity_bounds=(5.0, 1.0)), "ExpSineSquared.periodicity"),
    ],
)
def test_bad_values_are_refused_naming_the_parameter(kernel, name):
    rng = np.random.default_rng(0)
    X, y, _ = make_data(rng, 10, 1)
    with pytest.raises(ValueError, match=name.replace(".", "\\.")):
        GaussianProcessRegressor(kernel).fit(X, y)


def test_rational_quadratic_refuses_array_length_scale():
    rng = np.random.default_rng(0)
    X, y, _ = make_data(rng, 10, 2)
    with pytest.raises(ValueError, match="RationalQuadratic takes a scalar length_scale"):
        GaussianProcessRegressor(skk.RationalQuadratic(length_scale=[1.0, 2.0])).fit(X, y)
