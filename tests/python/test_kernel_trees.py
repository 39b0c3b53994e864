"""Composed kernels: every family and random trees of them (seeded) against the dense NumPy
reference of tests/kernel_reference.py and scikit-learn's kernel objects; ExactGP with a
composed kernel against a dense LML; parameter handling and bad input."""

import numpy as np
import pytest

import gprat
import kernel_reference as kref
from gprat import _core, kernels

FAMILY_PARAMS = {
    "SquaredExponential": 2, "Matern12": 2, "Matern32": 2, "Matern52": 2,
    "RationalQuadratic": 2, "Periodic": 2, "Linear": 1, "Constant": 1, "White": 1,
}


def random_leaf(rng, d, name=None, with_dims=True):
    name = name or rng.choice(list(FAMILY_PARAMS))
    dims = None
    if with_dims and rng.random() < 0.4:
        dims = sorted(rng.choice(d, size=rng.integers(1, d + 1), replace=False).tolist())
    n = FAMILY_PARAMS[name]
    if name in kref.STATIONARY and rng.random() < 0.5:  # ARD: one lengthscale per active feature
        n = (len(dims) if dims else d) + 1
    return (str(name), rng.uniform(0.5, 2.0, size=n).tolist(), dims)


def random_tree(rng, leaves, d, with_dims=True):
    if leaves == 1:
        return random_leaf(rng, d, with_dims=with_dims)
    left = int(rng.integers(1, leaves))
    op = "Sum" if rng.random() < 0.5 else "Product"
    return (op, random_tree(rng, left, d, with_dims), random_tree(rng, leaves - left, d, with_dims))


def to_gprat(desc):
    """The gprat kernel of a description, through the public classes and operators."""
    if desc[0] == "Sum":
        return to_gprat(desc[1]) + to_gprat(desc[2])
    if desc[0] == "Product":
        return to_gprat(desc[1]) * to_gprat(desc[2])
    name, p, dims = desc
    cls = getattr(kernels, name)
    if name in kref.STATIONARY:
        ls = p[0] if len(p) == 2 else np.array(p[:-1])
        return cls(lengthscale=ls, signal_variance=p[-1], active_dims=dims)
    return cls(*p, active_dims=dims)


def to_sklearn(desc):
    """scikit-learn's kernel of a description (no active dims) and, for each gprat theta entry,
    its index in sklearn's theta (stationary leaves are C * K; sklearn orders C first, then K, and
    RationalQuadratic as [alpha, length_scale])."""
    sk = pytest.importorskip("sklearn.gaussian_process.kernels")
    if desc[0] in ("Sum", "Product"):
        a, pa = to_sklearn(desc[1])
        b, pb = to_sklearn(desc[2])
        na = a.n_dims
        return (a + b if desc[0] == "Sum" else a * b), pa + [na + q for q in pb]
    name, p, dims = desc
    assert dims is None
    if name in kref.STATIONARY:
        ls = p[0] if len(p) == 2 else np.array(p[:-1])
        base = sk.RBF(ls) if name == "SquaredExponential" else sk.Matern(ls, nu={"Matern12": 0.5, "Matern32": 1.5,
                                                                                "Matern52": 2.5}[name])
        n_l = len(p) - 1
        return sk.ConstantKernel(p[-1]) * base, [1 + q for q in range(n_l)] + [0]
    if name == "RationalQuadratic":
        return sk.RationalQuadratic(length_scale=p[0], alpha=p[1]), [1, 0]
    if name == "Periodic":
        return sk.ExpSineSquared(length_scale=p[0], periodicity=p[1]), [0, 1]
    if name == "Linear":
        return sk.DotProduct(sigma_0=p[0]), [0]
    if name == "Constant":
        return sk.ConstantKernel(p[0]), [0]
    return sk.WhiteKernel(noise_level=p[0]), [0]


def descriptions(seed, count, d, with_dims=True):
    rng = np.random.default_rng(seed)
    out = [random_leaf(rng, d, name, with_dims) for name in FAMILY_PARAMS for _ in range(2)]  # every family
    out += [random_tree(rng, int(rng.integers(2, 7)), d, with_dims) for _ in range(count)]
    return out


def multi_dim_periodic(desc, d):
    """A Periodic leaf on more than one feature: exp(-2 sin^2(pi |x - y| / p) / l^2) of the
    Euclidean distance is not positive semi-definite in general there (scikit-learn's neither)."""
    if desc[0] in ("Sum", "Product"):
        return multi_dim_periodic(desc[1], d) or multi_dim_periodic(desc[2], d)
    return desc[0] == "Periodic" and (len(desc[2]) if desc[2] else d) > 1


def has_white(desc):
    if desc[0] in ("Sum", "Product"):
        return has_white(desc[1]) or has_white(desc[2])
    return desc[0] == "White"


@pytest.fixture(scope="module")
def points():
    rng = np.random.default_rng(2026)
    return rng.normal(size=(17, 3)), rng.normal(size=(6, 3))


# --------------------------------------------------------------------------- the battery
@pytest.mark.parametrize("desc", descriptions(1, 40, 3), ids=lambda d: repr(d)[:60])
def test_values_gradient_symmetry_psd(desc, points):
    X, Y = points
    k = to_gprat(desc)
    assert np.allclose(k.theta, kref.theta(desc), rtol=0, atol=1e-15)
    assert k.n_params == len(k.theta) == len(k.param_names) == k.bounds.shape[0]
    K, Kxy = k(X), k(X, Y)
    np.testing.assert_allclose(K, kref.matrix(desc, X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Kxy, kref.matrix(desc, X, Y), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k.diag(X), np.diag(kref.matrix(desc, X)), rtol=1e-12, atol=1e-12)
    # symmetric and positive semi-definite
    assert np.array_equal(K, K.T)
    if not multi_dim_periodic(desc, X.shape[1]):
        assert np.linalg.eigvalsh(K).min() >= -1e-10 * max(1.0, np.abs(K).max())
    # gradient against central differences of the reference, for K(X) and K(X, Y)
    np.testing.assert_allclose(k.gradient(X), kref.gradient_fd(desc, X), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(k.gradient(X, Y), kref.gradient_fd(desc, X, Y), rtol=1e-6, atol=1e-7)
    # K(X) against K(X, X): equal off the diagonal always, on it too unless White is in the tree
    KXX = k(X, X)
    off = ~np.eye(len(X), dtype=bool)
    np.testing.assert_allclose(K[off], KXX[off], rtol=1e-14, atol=1e-15)
    if not has_white(desc):
        np.testing.assert_allclose(np.diag(K), np.diag(KXX), rtol=1e-14, atol=1e-15)
    # float32 evaluation agrees to single precision
    np.testing.assert_allclose(k(X, dtype=np.float32), K, rtol=1e-4, atol=1e-5)


def test_white_differs_between_k_of_x_and_k_of_x_x(points):
    X, _ = points
    k = kernels.SquaredExponential(0.8) + kernels.White(0.3)
    np.testing.assert_allclose(k(X) - k(X, X), 0.3 * np.eye(len(X)), atol=1e-15)
    np.testing.assert_allclose(k.diag(X), 1.0 + 0.3)


@pytest.mark.parametrize("desc", descriptions(2, 30, 3, with_dims=False), ids=lambda d: repr(d)[:60])
def test_values_equal_sklearn(desc, points):
    X, Y = points
    k = to_gprat(desc)
    s, perm = to_sklearn(desc)
    np.testing.assert_allclose(k.theta, s.theta[perm], rtol=0, atol=1e-15)
    Ks, dKs = s(X, eval_gradient=True)
    np.testing.assert_allclose(k(X), Ks, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k(X, Y), s(X, Y), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k(X, X), s(X, X), rtol=1e-12, atol=1e-12)  # White: 0 in K(X, X) for both
    np.testing.assert_allclose(k.diag(X), s.diag(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(k.gradient(X), np.moveaxis(dKs, 2, 0)[perm], rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- the engine
@pytest.mark.parametrize("seed", range(6))
def test_exact_gp_lml_and_gradient_with_a_composed_kernel(seed):
    rng = np.random.default_rng(100 + seed)
    n, d = 40, 3
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
    desc = random_tree(rng, 4, d)
    noise = 0.05
    gp = gprat.ExactGP(to_gprat(desc), noise_variance=noise, tile_size=7).fit(X, y)
    lml, grad = gp.log_marginal_likelihood(eval_gradient=True)
    assert gp.jitter_ == 0.0
    assert lml == pytest.approx(kref.lml(desc, X, y, noise), rel=1e-10, abs=1e-10)
    np.testing.assert_allclose(grad, kref.lml_gradient(desc, X, y, noise), rtol=1e-5, atol=1e-6)


def test_exact_gp_predictions_with_white_match_sklearn_semantics():
    # predictive variance includes White (k(x*, x*) does), the cross-covariance does not
    rng = np.random.default_rng(5)
    X, Xs = rng.normal(size=(30, 1)), rng.normal(size=(4, 1))
    y = np.cos(X[:, 0])
    desc = ("Sum", ("Product", ("Constant", [1.5], None), ("Periodic", [1.1, 2.0], None)), ("White", [0.2], None))
    gp = gprat.ExactGP(to_gprat(desc), noise_variance=1e-3).fit(X, y)
    mean, cov = gp.predict(Xs, return_cov=True)
    K = kref.matrix(desc, X) + 1e-3 * np.eye(30)
    Ks = kref.matrix(desc, Xs, X)
    want_mean = Ks @ np.linalg.solve(K, y)
    want_cov = kref.matrix(desc, Xs) - Ks @ np.linalg.solve(K, Ks.T)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cov, want_cov, rtol=1e-8, atol=1e-10)


def test_fixed_parameters_stay_put_in_optimize():
    rng = np.random.default_rng(8)
    X = rng.uniform(0, 5, size=(40, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.05 * rng.normal(size=40)
    k = (kernels.SquaredExponential(1.0, fixed=("signal_variance",), active_dims=[0])
         + kernels.Linear(1.0, active_dims=[1], fixed=True))
    assert k.trainable.tolist() == [True, False, False]
    gp = gprat.ExactGP(k, noise_variance=0.1).fit(X, y)
    theta0 = gp.theta.copy()
    gp.optimize(max_iter=30)
    assert gp.theta[1] == theta0[1] and gp.theta[2] == theta0[2]
    assert gp.theta[0] != theta0[0] and gp.theta[3] != theta0[3]
    assert gp.default_bounds().shape == (4, 2)


def test_composition_api():
    se = kernels.SquaredExponential(2.0)
    k = 2.0 * se
    assert isinstance(k, kernels.Product) and k.k1 == kernels.Constant(2.0) and k.k2 == se
    assert np.float64(3.0) * se == kernels.Constant(3.0) * se
    assert se + 1.0 == kernels.Sum(se, kernels.Constant(1.0))
    k = (se + kernels.White(0.1)) * kernels.Periodic(1.0, 3.0)
    assert repr(k) == ("(SquaredExponential(lengthscale=2, signal_variance=1) + White(noise_level=0.1)) * "
                       "Periodic(lengthscale=1, period=3)")
    assert k.param_names == ["k1.k1.lengthscale", "k1.k1.signal_variance", "k1.k2.noise_level",
                             "k2.lengthscale", "k2.period"]
    k2 = k.with_theta(np.zeros(5))
    assert np.array_equal(k2.theta, np.zeros(5)) and type(k2) is type(k)
    assert k2 != k and k == k and np.allclose(k.with_theta(k.theta).theta, k.theta, rtol=0, atol=1e-15)
    np.testing.assert_allclose(k.bounds, np.log([[1e-5, 1e5]] * 5))
    lin = kernels.Linear(0.5, active_dims=[1])
    assert repr(lin) == "Linear(sigma_0=0.5, active_dims=[1])"
    X = np.arange(6.0).reshape(3, 2)
    np.testing.assert_allclose(lin(X), 0.25 + np.outer(X[:, 1], X[:, 1]))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, error, match", [
    (lambda: kernels.Periodic(1.0, -2.0), ValueError, "Periodic: period must be positive"),
    (lambda: kernels.RationalQuadratic(1.0, 0.0), ValueError, "RationalQuadratic: alpha must be positive"),
    (lambda: kernels.Linear(0.0), ValueError, "Linear: sigma_0 must be positive"),
    (lambda: kernels.White(np.nan), ValueError, "White: noise_level must be positive"),
    (lambda: kernels.SquaredExponential(active_dims=[0, 0]), ValueError, "active_dims entry 0 is duplicated"),
    (lambda: kernels.SquaredExponential(active_dims=[-1]), ValueError, "active_dims entries must be non-negative"),
    (lambda: kernels.SquaredExponential(active_dims=[0.5]), TypeError, "active_dims entries must be integers"),
    (lambda: kernels.SquaredExponential(active_dims=[]), ValueError, "at least one feature"),
    (lambda: kernels.SquaredExponential([1.0, 2.0], active_dims=[0]), ValueError, "ARD lengthscale has 2 entries"),
    (lambda: kernels.Periodic(fixed=("alpha",)), ValueError, "fixed names unknown parameter 'alpha'"),
    (lambda: kernels.SquaredExponential() + "rbf", TypeError, "kernels combine with '\\+'"),
    (lambda: -1.0 * kernels.SquaredExponential(), ValueError, "Constant: constant_value must be positive"),
])
def test_bad_kernels_name_the_parameter(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_active_dims_out_of_range_at_fit_and_call():
    X = np.zeros((4, 2))
    k = kernels.Matern32(active_dims=[0, 2])
    with pytest.raises(ValueError, match="Matern32: active_dims entry 2 is out of range for X with 2 features"):
        k(X)
    with pytest.raises(ValueError, match="active_dims entry 2 is out of range"):
        gprat.ExactGP(kernels.White() + k).fit(X, np.zeros(4))


def test_core_tree_refuses_bad_descriptions():
    with pytest.raises(ValueError, match="KernelTree: unknown kernel 'Cosine'; expected Sum, Product or "
                                         "SquaredExponential, .* or White"):
        _core.Kernel.tree([("Cosine", [1.0], [])])
    with pytest.raises(ValueError, match="Periodic: period must be positive and finite; got -1"):
        _core.Kernel.tree([("Periodic", [1.0, -1.0], [])])
    with pytest.raises(ValueError, match="RationalQuadratic: alpha must be positive and finite; got 0"):
        _core.Kernel.tree([("RationalQuadratic", [1.0, 0.0], [])])
    with pytest.raises(ValueError, match="ends inside a Sum or Product"):
        _core.Kernel.tree([("Sum", [], []), ("White", [1.0], [])])
    with pytest.raises(ValueError, match="Linear: active_dims entry 3 is out of range for data with 2 features"):
        _core.Kernel.tree([("Linear", [1.0], [3])]).matrix(np.zeros((2, 2)))
    t = _core.Kernel.tree([("Product", [], []), ("Constant", [2.0], []), ("Linear", [1.0], [])])
    assert t.name == "KernelTree" and t.n_params == 2
    with pytest.raises(ValueError, match="kernel KernelTree has no lengthscale"):
        t.lengthscale


def test_lengthscale_spans_name_the_distance_each_lengthscale_divides(rng):
    X = rng.uniform(-1, 1, size=(30, 4)) * [1.0, 3.0, 0.5, 2.0]
    spans = np.ptp(X, axis=0)
    k = (kernels.SquaredExponential([1.0, 1.0], active_dims=[0, 2]) + kernels.Matern32(1.0, active_dims=[1, 3])) \
        * kernels.RationalQuadratic() + 2.0 * kernels.Periodic()
    expected = [spans[0], spans[2], np.nan, np.hypot(spans[1], spans[3]), np.nan,  # SE (ARD), Matern32 (isotropic)
                np.linalg.norm(spans), np.nan,                                       # RationalQuadratic
                np.nan, np.nan, np.nan]                                              # Constant(2), Periodic
    assert len(k.param_names) == len(expected)
    np.testing.assert_allclose(k.lengthscale_spans(spans), expected, rtol=1e-15)
    np.testing.assert_array_equal(kernels.Linear().lengthscale_spans(spans), [np.nan])


@pytest.mark.parametrize("family", [kernels.SquaredExponential, kernels.Matern52, kernels.RationalQuadratic])
def test_a_lengthscale_1e3_times_its_span_leaves_the_kernel_flat_to_1e6(family, rng):
    """What ExactGP.optimize's switched-off recheck relies on (SWITCHED_OFF_SPAN_RATIO)."""
    X = rng.uniform(-2, 5, size=(40, 3))
    span = family().lengthscale_spans(np.ptp(X, axis=0))[0]
    K = family(lengthscale=1e3 * span)(X)
    assert np.max(np.abs(K - 1.0)) < 1e-6
    assert np.max(np.abs(family(lengthscale=1e2 * span)(X) - 1.0)) > 1e-6  # and not already at 1e2
