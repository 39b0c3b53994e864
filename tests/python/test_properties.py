"""Property-based tests (hypothesis) over shapes, dtypes, memory layouts, tile sizes and thread
counts: results agree with the dense reference (tests/reference.py) whatever the tiling, layout
or thread count; bad input is refused with ValueError/TypeError; no call returns NaN.
"""

import collections
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gprat  # noqa: E402
import reference as ref  # noqa: E402
import scipy.linalg  # noqa: E402
from gprat import kernels  # noqa: E402
from gprat.models.exact import DEFAULT_MAX_JITTER  # noqa: E402

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
LAYOUTS = ("C", "fortran", "strided", "readonly", "big-endian", "list", "int-like")


def layout(a, name):
    """`a` (float64) in another memory layout holding the same values."""
    if name == "fortran":
        return np.asfortranarray(a)
    if name == "strided":
        wide = np.zeros((a.shape[0], 2) + a.shape[1:])
        wide[:, 0] = a
        return wide[:, 0]
    if name == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if name == "big-endian":
        return a.astype(">f8")
    if name == "list":
        return a.tolist()
    return a


@st.composite
def problems(draw, dtype=None):
    n = draw(st.integers(1, 48))
    d = draw(st.integers(1, 4))
    m = draw(st.integers(1, 20))
    name = draw(st.sampled_from(ref.KERNELS))
    ard = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float64, np.float32])) if dtype is None else dtype
    ls = draw(st.lists(st.floats(0.3, 3.0), min_size=d, max_size=d)) if ard else draw(st.floats(0.3, 3.0))
    signal_variance = draw(st.floats(0.2, 5.0))
    noise = draw(st.floats(0.05 if dtype == np.float32 else 1e-3, 1.0))
    tile_size = draw(st.one_of(st.none(), st.integers(1, n + 8)))
    threads = draw(st.integers(1, 3))
    lay = draw(st.sampled_from(LAYOUTS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = rng.uniform(-2, 2, size=(n, d))
    if lay == "int-like":  # integer data, converted exactly
        X = np.round(X * 3)
    y = np.sin(X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    Xs = rng.uniform(-2.5, 2.5, size=(m, d))
    return dict(name=name, ard=ard, dtype=dtype, ls=ls, s2=signal_variance, noise=noise, tile_size=tile_size,
                threads=threads, layout=lay, X=X, y=y, Xs=Xs)


def build(p, tile_size="same"):
    kernel = getattr(kernels, p["name"])(lengthscale=p["ls"], signal_variance=p["s2"])
    return gprat.ExactGP(kernel, noise_variance=p["noise"], dtype=p["dtype"],
                         tile_size=p["tile_size"] if tile_size == "same" else tile_size)


def fit_data(p):
    X, y = p["X"], p["y"]
    if p["layout"] == "int-like":
        return X.astype(np.int64), layout(y, "C")
    return layout(X, p["layout"]), layout(y, p["layout"])


@pytest.fixture(autouse=True, scope="module")
def _restore_threads():
    yield
    gprat.start(None)


@settings(max_examples=120, **SETTINGS)
@given(problems())
def test_matches_dense_reference_for_any_shape_layout_tile_size_and_threads(p):
    gprat.start(p["threads"])
    gp = build(p).fit(*fit_data(p))
    Xs = layout(p["Xs"], p["layout"] if p["layout"] != "int-like" else "C")
    mean, std = gp.predict(Xs, return_std=True)
    _, cov = gp.predict(Xs, return_cov=True)
    assert mean.dtype == p["dtype"] and mean.shape == (p["Xs"].shape[0],)
    theta = ref.theta_of(p["ls"], p["s2"], p["noise"])
    mean_ref, var_ref, cov_ref = ref.predict(p["name"], p["X"], p["y"], p["Xs"], theta, p["ard"])
    rtol = 1e-8 if p["dtype"] == np.float64 else 2e-3
    scale = max(np.abs(p["y"]).max(), 1e-3)
    assert np.abs(mean - mean_ref).max() <= rtol * scale
    assert np.abs(std.astype(np.float64) ** 2 - var_ref).max() <= rtol * p["s2"]
    assert np.abs(cov - cov_ref).max() <= rtol * p["s2"]
    lml_ref = ref.lml(p["name"], p["X"], p["y"], theta, p["ard"])
    assert abs(gp.log_marginal_likelihood() - lml_ref) <= rtol * max(abs(lml_ref), p["X"].shape[0])
    if p["dtype"] == np.float64:
        lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
        grad_ref = ref.lml_gradient(p["name"], p["X"], p["y"], theta, p["ard"])
        assert np.abs(grad - grad_ref).max() <= 1e-7 * max(np.abs(grad_ref).max(), 1.0)


@settings(max_examples=50, **SETTINGS)
@given(problems(dtype=np.float64), st.integers(1, 60))
def test_results_do_not_depend_on_tile_size(p, other_tile):
    a = build(p).fit(p["X"], p["y"])
    b = build(p, tile_size=other_tile).fit(p["X"], p["y"])
    assert b.tile_size_ == min(other_tile, p["X"].shape[0])
    np.testing.assert_allclose(a.predict(p["Xs"]), b.predict(p["Xs"]), rtol=1e-9, atol=1e-10)
    assert abs(a.log_marginal_likelihood() - b.log_marginal_likelihood()) <= 1e-9 * max(1.0, abs(a.log_marginal_likelihood()))


#: How often each path of the extreme-hyperparameter property ran (reset by its test).
_EXTREME_PATHS = collections.Counter()


def _numerically_singular(A, scale):
    """Whether the symmetric A has lambda_min(A) <= 2 k^2 eps scale (k = order of A).

    A Cholesky that fails at step k has factored A_k + dA with |dA| <= gamma_k |L| |L^T|, whose
    entries are <= k eps max(diag A_k) (Higham, Thm 10.3), so ||dA||_2 <= k^2 eps max diag:
    a factorization that stopped at order k leaves lambda_min(A_k) below that, up to the rounding
    of K itself (a few eps max diag per entry, i.e. k eps in the 2-norm); 2 k^2 covers both.
    """
    k = A.shape[0]
    return np.linalg.eigvalsh(A)[0] <= 2.0 * k * k * np.finfo(np.float64).eps * scale


# 240 examples: about half run with the default jitter policy, as many as the 120 before the
# max_jitter=0 half (the refusal path) was added.
@settings(max_examples=240, database=None, **SETTINGS)  # no replayed examples: the path counts below are reproducible
@given(
    n=st.integers(1, 30), d=st.integers(1, 3),
    ls=st.floats(1e-2, 1e3), s2=st.floats(1e-3, 1e8), noise=st.one_of(st.floats(1e-14, 1e2), st.just(1e-14)),
    duplicates=st.integers(0, 10), scale=st.sampled_from([1e-6, 1e-3, 1.0, 1e3]),
    name=st.sampled_from(ref.KERNELS), seed=st.integers(0, 2**16), allow_jitter=st.booleans(),
)
def _no_nan_or_a_justified_refusal(n, d, ls, s2, noise, duplicates, scale, name, seed, allow_jitter):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d)) * scale
    X = np.vstack([X, X[rng.integers(0, n, size=duplicates)]])
    y = rng.standard_normal(X.shape[0])
    # Without jitter (max_jitter=0) these matrices are often singular: the refusal path runs too.
    max_jitter = DEFAULT_MAX_JITTER if allow_jitter else 0.0
    gp = gprat.ExactGP(getattr(kernels, name)(ls, s2), noise_variance=noise, max_jitter=max_jitter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gprat.NumericalWarning)
        try:
            gp.fit(X, y)
        except gprat.NotPositiveDefiniteError as error:  # beyond the jitter bound: said, not hidden
            hypothesis.event("fit refused (NotPositiveDefiniteError)")
            _EXTREME_PATHS["refused"] += 1
            N = X.shape[0]
            assert isinstance(error.order, int) and 1 <= error.order <= N, error.order
            # The refusal must be right, by the dense reference: the leading minor of the order
            # reported is numerically singular, and so is K with the largest jitter the policy
            # may add (max_jitter * mean(diag K)); with jitter allowed, that never holds here.
            K = ref.kernel_matrix(name, X, X, ls, s2) + noise * np.eye(N)
            k = error.order
            assert _numerically_singular(K[:k, :k], K.diagonal().max()), (
                f"order {k} reported, but lambda_min of that leading minor is {np.linalg.eigvalsh(K[:k, :k])[0]:.3g}")
            K_jittered = K + max_jitter * K.diagonal().mean() * np.eye(N)
            assert _numerically_singular(K_jittered, K_jittered.diagonal().max()), (
                f"refused although K + max jitter has lambda_min {np.linalg.eigvalsh(K_jittered)[0]:.3g} > 0")
            hypothesis.note(f"LAPACK dpotrf order {scipy.linalg.lapack.dpotrf(K, lower=True)[1]}, gprat's {k}")
            return
        hypothesis.event("fitted " + ("with jitter" if gp.jitter_ > 0 else "without jitter"))
        _EXTREME_PATHS["fitted with jitter allowed" if allow_jitter else "fitted with max_jitter=0"] += 1
        Xs = rng.uniform(-1.5, 1.5, size=(7, d)) * scale
        mean, std = gp.predict(Xs, return_std=True)
        _, cov = gp.predict(Xs, return_cov=True)
        lml, grad = gp.log_marginal_likelihood(gp.theta, eval_gradient=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std >= 0)
    assert np.all(np.isfinite(cov)) and np.isfinite(lml) and np.all(np.isfinite(grad))
    assert gp.jitter_ >= 0 and gp.noise_variance == noise
    if not allow_jitter:
        assert gp.jitter_ == 0.0


def test_no_call_returns_nan_even_for_extreme_hyperparameters():
    _EXTREME_PATHS.clear()
    _no_nan_or_a_justified_refusal()
    refused = _EXTREME_PATHS["refused"]
    total = sum(_EXTREME_PATHS.values())
    # Both paths must run (about 1 example in 6 is refused, all with max_jitter=0: the noise of
    # 1e-14 drawn half of the time makes singular matrices common), and the early return of the
    # refusal path must not crowd out the finiteness checks of the fitted one; the default
    # jitter policy (drawn about half of the time) keeps at least 30% of the examples. The counts
    # depend on the draws (132/68/40 when run alone, 91/112/37 inside the whole suite), hence
    # shares and not fixed numbers.
    assert refused >= 5, _EXTREME_PATHS
    assert refused <= 0.4 * total, _EXTREME_PATHS
    assert _EXTREME_PATHS["fitted with jitter allowed"] >= 0.3 * total, _EXTREME_PATHS


bad_shapes = st.one_of(
    st.tuples(st.integers(1, 5)),                                     # 1-D
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),  # 3-D
    st.tuples(st.just(0), st.integers(0, 4)),                        # no rows
    st.tuples(st.integers(1, 4), st.just(0)),                        # no columns
    st.just(()),                                                      # a scalar
)


@settings(max_examples=40, **SETTINGS)
@given(shape=bad_shapes)
def test_bad_shapes_are_refused_by_every_entry_point(shape):
    X = np.ones(shape)
    with pytest.raises(ValueError, match="X must"):
        gprat.ExactGP(kernels.SquaredExponential()).fit(X, np.ones(shape[0] if shape else 1))
    fitted = gprat.ExactGP(kernels.SquaredExponential()).fit(np.ones((3, 2)) * [[0], [1], [2]], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError):
        fitted.predict(X)
    with pytest.raises(ValueError):
        kernels.Matern32()(X)


poison = st.sampled_from([np.nan, np.inf, -np.inf])
bad_dtypes = st.sampled_from([bool, complex, object, str, "S8"])


@settings(max_examples=60, **SETTINGS)
@given(n=st.integers(2, 20), d=st.integers(1, 3), where=st.integers(0, 10_000), value=poison,
       target=st.sampled_from(["X", "y", "Xs"]), dtype=st.one_of(st.none(), bad_dtypes))
def test_non_finite_values_and_bad_dtypes_are_refused_and_the_model_survives(n, d, where, value, target, dtype):
    rng = np.random.default_rng(where)
    X, y = rng.uniform(size=(n, d)), rng.uniform(size=n)
    gp = gprat.ExactGP(kernels.Matern12(0.5), noise_variance=0.1).fit(X, y)
    Xs = rng.uniform(size=(4, d))
    mean = gp.predict(Xs)
    bad = {"X": X.copy(), "y": y.copy(), "Xs": Xs.copy()}
    arr = bad[target]
    if dtype is None:
        arr.flat[where % arr.size] = value
        expected = ValueError
    else:
        arr = (arr > 0.5) if dtype is bool else arr.astype(dtype)
        expected = TypeError
        bad[target] = arr
    with pytest.raises(expected):
        if target == "Xs":
            gp.predict(bad["Xs"])
        else:
            gp.fit(bad["X"], bad["y"])
    np.testing.assert_array_equal(gp.predict(Xs), mean)


@settings(max_examples=80, **SETTINGS)
@given(value=st.one_of(st.floats(max_value=0.0), st.just(np.nan), st.just(np.inf), st.floats(1e301, 1e308),
                       st.booleans(), st.text(max_size=3), st.none()),
       what=st.sampled_from(["noise_variance", "lengthscale", "signal_variance", "ard", "tile_size", "threads"]))
def test_bad_hyperparameters_tile_sizes_and_thread_counts_are_refused(value, what):
    # noise_variance=0.0 is a valid model (no noise, issue #13); any other value drawn is refused
    hypothesis.assume(not (what == "noise_variance" and type(value) is float and value == 0.0))
    with pytest.raises((ValueError, TypeError)):
        if what == "noise_variance":
            gprat.ExactGP(kernels.SquaredExponential(), noise_variance=value)
        elif what == "lengthscale":
            kernels.SquaredExponential(lengthscale=value if value is not None else "x")
        elif what == "signal_variance":
            kernels.Matern52(signal_variance=value)
        elif what == "ard":
            kernels.Matern32(lengthscale=[1.0, value])
        elif what == "tile_size":
            gprat.ExactGP(kernels.SquaredExponential(), tile_size=value if value is not None else -1)
        else:
            gprat.start(value if value is not None else 0)


@settings(max_examples=40, **SETTINGS)
@given(problems(dtype=np.float64))
def test_estimator_agrees_with_the_engine_for_any_layout_and_tile_size(p):
    pytest.importorskip("sklearn")
    from gprat.kernels import RBF, ConstantKernel, Matern

    nu = {"SquaredExponential": None, "Matern12": 0.5, "Matern32": 1.5, "Matern52": 2.5}[p["name"]]
    base = RBF(p["ls"]) if nu is None else Matern(p["ls"], nu=nu)
    reg = gprat.GaussianProcessRegressor(ConstantKernel(p["s2"]) * base, alpha=p["noise"], optimizer=None,
                                         tile_size=p["tile_size"])
    X, y = fit_data(p)
    reg.fit(X, y)
    mean, std = reg.predict(p["Xs"], return_std=True)
    mean_ref, var_ref, _ = ref.predict(p["name"], p["X"], p["y"], p["Xs"],
                                       ref.theta_of(p["ls"], p["s2"], p["noise"]), p["ard"])
    assert np.abs(mean - mean_ref).max() <= 1e-8 * max(np.abs(p["y"]).max(), 1e-3)
    assert np.abs(std**2 - var_ref).max() <= 1e-8 * p["s2"]
