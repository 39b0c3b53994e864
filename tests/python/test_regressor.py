"""gprat.GaussianProcessRegressor against scikit-learn's GaussianProcessRegressor (the oracle).

Every expected value comes from scikit-learn run on the same kernel and data.
"""

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

import scipy.optimize  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.gaussian_process import GaussianProcessRegressor as SkGPR  # noqa: E402
from sklearn.gaussian_process import kernels as skk  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import gprat  # noqa: E402
from subprocess_env import gprat_env  # noqa: E402
from gprat.kernels import sklearn as _sklearn_kernels  # noqa: E402
from gprat.kernels import RBF, ConstantKernel, Matern, WhiteKernel  # noqa: E402
from gprat.estimator import GaussianProcessRegressor  # noqa: E402

RTOL = 1e-8


def make_data(n=40, d=2, n_targets=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 4.0, size=(n, d))
    f = np.sin(X).sum(axis=1) + 0.5 * X[:, 0]
    if n_targets is None:
        y = f + 0.1 * rng.standard_normal(n)
    else:
        y = np.stack(
            [(t + 1) * f + t + 0.1 * rng.standard_normal(n) for t in range(n_targets)], axis=1
        )
    X_test = rng.uniform(0.0, 4.0, size=(7, d))
    return X, y, X_test


def close(actual, expected, rtol=RTOL):
    """assert_allclose with an absolute floor of rtol times the expected values' scale."""
    expected = np.asarray(expected)
    scale = np.max(np.abs(expected)) if expected.size else 1.0
    assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


BASES = {
    "rbf": lambda mod, ls: mod.RBF(ls),
    "matern0.5": lambda mod, ls: mod.Matern(ls, nu=0.5),
    "matern1.5": lambda mod, ls: mod.Matern(ls, nu=1.5),
    "matern2.5": lambda mod, ls: mod.Matern(ls, nu=2.5),
}


class _GpratModule:
    RBF, Matern, ConstantKernel, WhiteKernel = RBF, Matern, ConstantKernel, WhiteKernel


def build_kernel(mod, base, ard, white):
    """1.7 * base(length scales) [+ White(0.05)] from kernel module ``mod``."""
    ls = [0.9, 1.4] if ard else 1.1
    kernel = mod.ConstantKernel(1.7) * BASES[base](mod, ls)
    if white:
        kernel = kernel + mod.WhiteKernel(0.05)
    return kernel


def fit_pair(gp_kernel, sk_kernel, X, y, **params):
    ours = GaussianProcessRegressor(gp_kernel, **params).fit(X, y)
    theirs = SkGPR(sk_kernel, **params).fit(X, y)
    return ours, theirs


def assert_same_model(ours, theirs, X_test, rtol=RTOL):
    """Fitted attributes, LML (+ gradient) and predictions agree with scikit-learn."""
    close(ours.log_marginal_likelihood_value_, theirs.log_marginal_likelihood_value_, rtol)
    close(ours.kernel_.theta, theirs.kernel_.theta, rtol)
    theta = theirs.kernel_.theta + 0.3 * np.cos(np.arange(theirs.kernel_.n_dims))
    lml, grad = ours.log_marginal_likelihood(theta, eval_gradient=True)
    sk_lml, sk_grad = theirs.log_marginal_likelihood(theta, eval_gradient=True)
    close(lml, sk_lml, rtol)
    close(grad, sk_grad, rtol)
    close(ours.log_marginal_likelihood(theta), sk_lml, rtol)
    close(ours.predict(X_test), theirs.predict(X_test), rtol)
    mean, std = ours.predict(X_test, return_std=True)
    sk_mean, sk_std = theirs.predict(X_test, return_std=True)
    close(mean, sk_mean, rtol)
    close(std, sk_std, rtol)
    mean, cov = ours.predict(X_test, return_cov=True)
    sk_mean, sk_cov = theirs.predict(X_test, return_cov=True)
    close(mean, sk_mean, rtol)
    close(cov, sk_cov, rtol)
    close(ours.L_, theirs.L_, rtol)
    close(ours.alpha_, theirs.alpha_, rtol)
    assert ours.X_train_.shape == theirs.X_train_.shape
    close(ours.y_train_, theirs.y_train_, rtol)
    assert ours.n_features_in_ == theirs.n_features_in_
    close(ours._y_train_mean, theirs._y_train_mean, rtol)
    close(ours._y_train_std, theirs._y_train_std, rtol)


# --------------------------------------------------------------------------------------
# Fixed hyperparameters: identical to scikit-learn to 1e-8 relative
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize_y", [False, True])
@pytest.mark.parametrize("white", [False, True])
@pytest.mark.parametrize(
    "base, ard",
    [
        ("rbf", False),
        ("rbf", True),
        ("matern0.5", False),
        ("matern1.5", False),
        ("matern2.5", False),
        ("matern2.5", True),
    ],
)
def test_fixed_hyperparameters_match_sklearn(base, ard, white, normalize_y):
    X, y, X_test = make_data()
    # Without a WhiteKernel, alpha=1e-10 gives cond(K) ~ 1e8 for the RBF here, and two
    # correct implementations then differ by ~1e-9 from rounding alone; alpha=1e-4 keeps
    # the comparison about the mathematics.
    alpha = 1e-8 if white else 1e-4
    ours, theirs = fit_pair(
        build_kernel(_GpratModule, base, ard, white),
        build_kernel(skk, base, ard, white),
        X,
        y,
        optimizer=None,
        alpha=alpha,
        normalize_y=normalize_y,
    )
    assert_same_model(ours, theirs, X_test)


@pytest.mark.parametrize(
    "make_kernel",
    [
        lambda m: m.RBF(1.2),
        lambda m: m.Matern([0.8, 1.5], nu=1.5) * m.ConstantKernel(0.6),
        lambda m: m.RBF(0.9) + m.WhiteKernel(0.03),
        lambda m: m.WhiteKernel(0.03) + m.ConstantKernel(2.0) * m.RBF([0.9, 1.3]),
        lambda m: m.WhiteKernel(0.03) + m.Matern(1.0, nu=0.5) * m.ConstantKernel(0.5),
        lambda m: m.ConstantKernel(2.0, "fixed") * m.RBF(1.0) + m.WhiteKernel(0.1),
        lambda m: m.ConstantKernel(2.0) * m.RBF([1.0, 2.0], "fixed") + m.WhiteKernel(0.1),
        lambda m: m.ConstantKernel(2.0) * m.Matern(1.0, nu=2.5) + m.WhiteKernel(0.1, "fixed"),
    ],
    ids=["K", "K*C-ard", "K+W", "W+C*K-ard", "W+K*C", "C-fixed", "l-fixed", "W-fixed"],
)
@pytest.mark.parametrize("source", ["gprat", "sklearn"])
def test_every_form_matches_sklearn(make_kernel, source):
    X, y, X_test = make_data(seed=1)
    kernel = make_kernel(_GpratModule if source == "gprat" else skk)
    ours, theirs = fit_pair(kernel, make_kernel(skk), X, y, optimizer=None, alpha=1e-4)
    assert_same_model(ours, theirs, X_test)


def test_multi_target_matches_sklearn():
    X, y, X_test = make_data(n_targets=3)
    ours, theirs = fit_pair(
        ConstantKernel(1.5) * Matern(1.0, nu=1.5) + WhiteKernel(0.05),
        skk.ConstantKernel(1.5) * skk.Matern(1.0, nu=1.5) + skk.WhiteKernel(0.05),
        X,
        y,
        optimizer=None,
        normalize_y=True,
    )
    assert ours.predict(X_test).shape == (7, 3)
    assert ours.predict(X_test, return_std=True)[1].shape == (7, 3)
    assert ours.predict(X_test, return_cov=True)[1].shape == (7, 7, 3)
    assert ours.alpha_.shape == (40, 3)
    assert_same_model(ours, theirs, X_test)


def test_multi_target_optimized_lml_at_least_sklearns():
    X, y, _ = make_data(n=30, n_targets=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = fit_pair(
            ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1),
            skk.ConstantKernel(1.0) * skk.RBF(1.0) + skk.WhiteKernel(0.1),
            X,
            y,
            normalize_y=True,
        )
    assert ours.log_marginal_likelihood_value_ >= theirs.log_marginal_likelihood_value_ - 1e-6


def test_single_column_target_is_squeezed_like_sklearn():
    X, y, X_test = make_data()
    ours, theirs = fit_pair(RBF(1.0), skk.RBF(1.0), X, y[:, None], optimizer=None, alpha=1e-4)
    assert ours.predict(X_test).shape == theirs.predict(X_test).shape == (7,)
    for kwargs in ({"return_std": True}, {"return_cov": True}):
        got, expected = ours.predict(X_test, **kwargs), theirs.predict(X_test, **kwargs)
        for a, b in zip(got, expected, strict=True):
            assert a.shape == b.shape
            close(a, b)
    assert ours.alpha_.shape == theirs.alpha_.shape == (40, 1)


def test_per_sample_alpha_matches_sklearn():
    X, y, X_test = make_data()
    alpha = np.random.default_rng(3).uniform(1e-3, 1e-2, size=len(y))
    kernel = ConstantKernel(1.3) * RBF([1.0, 1.2]) + WhiteKernel(0.01)
    ours, theirs = fit_pair(kernel, clone(kernel), X, y, optimizer=None, alpha=alpha)
    assert_same_model(ours, theirs, X_test)


def test_per_sample_alpha_with_several_targets_runs_one_engine_like_sklearn():
    # Issue #13: array alpha and several targets go through ONE tiled engine with p outputs
    # (no dense path, no engine per target); values and gradients equal scikit-learn's.
    X, y, X_test = make_data(n=37, n_targets=3)
    alpha = np.random.default_rng(4).uniform(1e-3, 5e-2, size=len(y))
    kernel = ConstantKernel(1.3) * Matern([1.0, 1.2], nu=2.5) + WhiteKernel(0.01)
    ours, theirs = fit_pair(kernel, clone(kernel), X, y, optimizer=None, alpha=alpha, normalize_y=True)
    assert ours._model.gp._core.outputs == 3
    assert_same_model(ours, theirs, X_test)
    theta = theirs.kernel_.theta + 0.2
    lml, grad = ours.log_marginal_likelihood(theta, eval_gradient=True)
    sk_lml, sk_grad = theirs.log_marginal_likelihood(theta, eval_gradient=True)
    close(lml, sk_lml, 1e-8)
    close(grad, sk_grad, 1e-7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt, sk_opt = fit_pair(kernel, clone(kernel), X, y, alpha=alpha, normalize_y=True)
    assert opt.log_marginal_likelihood_value_ >= sk_opt.log_marginal_likelihood_value_ - 1e-6


def test_zero_alpha_without_white_kernel_matches_sklearn():
    X, y, X_test = make_data(n=12, seed=5)
    ours, theirs = fit_pair(
        ConstantKernel(1.3) * RBF(0.5),
        clone(ConstantKernel(1.3) * RBF(0.5)),
        X,
        y,
        optimizer=None,
        alpha=0.0,
    )
    assert_same_model(ours, theirs, X_test, rtol=1e-7)


def test_constant_alpha_array_equals_scalar_alpha():
    X, y, X_test = make_data()
    kernel = ConstantKernel(1.3) * RBF(1.0)
    scalar = GaussianProcessRegressor(kernel, alpha=1e-3, optimizer=None).fit(X, y)
    array = GaussianProcessRegressor(kernel, alpha=np.full(len(y), 1e-3), optimizer=None)
    array.fit(X, y)
    assert type(array._model).__name__ == "_EngineModel"  # documented: equal entries -> engine
    close(array.predict(X_test), scalar.predict(X_test), 1e-12)
    close(array.log_marginal_likelihood_value_, scalar.log_marginal_likelihood_value_, 1e-12)


def test_results_do_not_depend_on_tile_size():
    X, y, X_test = make_data(n=41)
    kernel = ConstantKernel(1.3) * Matern([1.0, 1.5], nu=2.5) + WhiteKernel(0.02)
    reference = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    theta = reference.kernel_.theta + 0.1
    for tile_size in (7, 16, 41, 64):
        model = GaussianProcessRegressor(kernel, optimizer=None, tile_size=tile_size).fit(X, y)
        for a, b in zip(
            model.predict(X_test, return_cov=True),
            reference.predict(X_test, return_cov=True),
            strict=True,
        ):
            close(a, b, 1e-10)
        for a, b in zip(
            model.log_marginal_likelihood(theta, eval_gradient=True),
            reference.log_marginal_likelihood(theta, eval_gradient=True),
            strict=True,
        ):
            close(a, b, 1e-10)


# --------------------------------------------------------------------------------------
# Optimization
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_kernel, normalize_y",
    [
        (lambda m: m.ConstantKernel(1.0) * m.RBF(1.0) + m.WhiteKernel(0.1), False),
        (lambda m: m.ConstantKernel(1.0) * m.RBF([1.0, 1.0]) + m.WhiteKernel(0.1), True),
        (lambda m: m.ConstantKernel(1.0) * m.Matern(1.0, nu=1.5) + m.WhiteKernel(0.1), True),
        (lambda m: m.ConstantKernel(1.0) * m.Matern(1.0, nu=0.5) + m.WhiteKernel(0.1), False),
        (lambda m: m.RBF(1.0) + m.WhiteKernel(0.1), True),
    ],
)
def test_optimized_lml_at_least_sklearns(make_kernel, normalize_y):
    X, y, X_test = make_data(n=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning near bounds, in both libraries
        ours, theirs = fit_pair(
            make_kernel(_GpratModule), make_kernel(skk), X, y, normalize_y=normalize_y
        )
    assert ours.log_marginal_likelihood_value_ >= theirs.log_marginal_likelihood_value_ - 1e-6
    close(
        ours.log_marginal_likelihood_value_,
        ours.log_marginal_likelihood(ours.kernel_.theta),
        1e-10,
    )
    assert not np.allclose(ours.kernel_.theta, make_kernel(skk).theta)


def test_restarts_draw_log_uniform_initial_theta_from_random_state():
    X, y, _ = make_data(n=30)
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(1.0, (1e-2, 1e2)) + WhiteKernel(
        0.1, (1e-4, 1e0)
    )
    starts = []

    def recording_optimizer(obj_func, initial_theta, bounds):
        starts.append(np.array(initial_theta))
        result = scipy.optimize.minimize(
            obj_func, initial_theta, method="L-BFGS-B", jac=True, bounds=bounds
        )
        return result.x, result.fun

    GaussianProcessRegressor(
        kernel, optimizer=recording_optimizer, n_restarts_optimizer=3, random_state=7
    ).fit(X, y)
    bounds = kernel.bounds
    expected = [kernel.theta] + [
        draw
        for rng in [np.random.RandomState(7)]
        for draw in (rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(3))
    ]
    assert len(starts) == 4
    for got, want in zip(starts, expected, strict=True):
        assert_allclose(got, want)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = fit_pair(kernel, clone(kernel), X, y, n_restarts_optimizer=3, random_state=7)
    assert ours.log_marginal_likelihood_value_ >= theirs.log_marginal_likelihood_value_ - 1e-6


def test_restarts_need_finite_bounds():
    X, y, _ = make_data(n=10)
    model = GaussianProcessRegressor(RBF(1.0, (0.0, 10.0)), n_restarts_optimizer=1)
    with pytest.raises(ValueError, match="bounds are finite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # log(0) in bounds
            model.fit(X, y)


def test_callable_optimizer_gets_sklearns_protocol():
    X, y, _ = make_data(n=20)
    calls = []

    def optimizer(obj_func, initial_theta, bounds):
        value, gradient = obj_func(initial_theta, eval_gradient=True)
        assert np.shape(gradient) == np.shape(initial_theta)
        assert obj_func(initial_theta, eval_gradient=False) == pytest.approx(value)
        calls.append((np.array(initial_theta), np.array(bounds)))
        return initial_theta - 0.1, value

    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1)
    model = GaussianProcessRegressor(kernel, optimizer=optimizer).fit(X, y)
    assert len(calls) == 1
    assert_allclose(calls[0][0], kernel.theta)
    assert_allclose(calls[0][1], kernel.bounds)
    assert_allclose(model.kernel_.theta, kernel.theta - 0.1)


def test_no_free_hyperparameters_skips_optimizer():
    X, y, _ = make_data(n=20)

    def optimizer(*args, **kwargs):
        raise AssertionError("optimizer called with no free hyperparameters")

    kernel = ConstantKernel(1.0, "fixed") * RBF(1.0, "fixed")
    model = GaussianProcessRegressor(kernel, optimizer=optimizer, alpha=1e-3).fit(X, y)
    assert model.kernel_.n_dims == 0


# --------------------------------------------------------------------------------------
# Prior, sampling, scoring
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_targets", [None, 1, 3])
@pytest.mark.parametrize("kernel", [None, ConstantKernel(2.0) * RBF(0.7) + WhiteKernel(0.1)])
def test_predict_before_fit_is_sklearns_prior(kernel, n_targets):
    _, _, X_test = make_data()
    ours = GaussianProcessRegressor(kernel, n_targets=n_targets)
    theirs = SkGPR(None if kernel is None else clone(kernel), n_targets=n_targets)
    close(ours.predict(X_test), theirs.predict(X_test))
    for kwargs in ({"return_std": True}, {"return_cov": True}):
        for a, b in zip(
            ours.predict(X_test, **kwargs), theirs.predict(X_test, **kwargs), strict=True
        ):
            assert a.shape == b.shape
            close(a, b)
    assert ours.sample_y(X_test, 4).shape == theirs.sample_y(X_test, 4).shape


def test_sample_y_shape_and_moments():
    X, y, _ = make_data(n=30)
    model = GaussianProcessRegressor(ConstantKernel(1.0) * RBF(1.0), alpha=1e-2).fit(X, y)
    X_test = np.array([[0.5, 0.5], [1.5, 2.5], [3.5, 1.0]])
    n_draws = 20000
    samples = model.sample_y(X_test, n_samples=n_draws, random_state=0)
    assert samples.shape == (3, n_draws)
    mean, cov = model.predict(X_test, return_cov=True)
    std = np.sqrt(np.diag(cov))
    assert np.all(np.abs(samples.mean(axis=1) - mean) < 5 * std / np.sqrt(n_draws))
    assert_allclose(np.cov(samples), cov, atol=6 * np.max(cov) * np.sqrt(2 / n_draws))
    assert_array_equal(samples, model.sample_y(X_test, n_samples=n_draws, random_state=0))

    X, Y, _ = make_data(n=30, n_targets=2)
    model = GaussianProcessRegressor(RBF(1.0), alpha=1e-2).fit(X, Y)
    assert model.sample_y(X_test, n_samples=5).shape == (3, 2, 5)


def test_score_is_r2():
    X, y, X_test = make_data()
    ours, theirs = fit_pair(
        ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1),
        skk.ConstantKernel(1.0) * skk.RBF(1.0) + skk.WhiteKernel(0.1),
        X,
        y,
        optimizer=None,
    )
    close(ours.score(X, y), theirs.score(X, y))


# --------------------------------------------------------------------------------------
# scikit-learn estimator protocol
# --------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        GaussianProcessRegressor(),
        GaussianProcessRegressor(Matern(nu=2.5) + WhiteKernel(), normalize_y=True),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_get_params_set_params_clone():
    kernel = ConstantKernel(2.0) * RBF([1.0, 2.0]) + WhiteKernel(0.1)
    model = GaussianProcessRegressor(kernel, alpha=1e-3, tile_size=16, random_state=3)
    params = model.get_params()
    assert params["tile_size"] == 16 and params["alpha"] == 1e-3 and params["kernel"] is kernel
    assert params["kernel__k1__k2__length_scale"] == [1.0, 2.0]
    assert set(SkGPR().get_params()) <= set(GaussianProcessRegressor().get_params(deep=False))
    model.set_params(kernel__k1__k2__length_scale=[0.5, 0.7], normalize_y=True)
    assert model.kernel.k1.k2.length_scale == [0.5, 0.7] and model.normalize_y
    copy = clone(model)
    assert copy is not model and copy.kernel is not model.kernel
    assert copy.kernel == model.kernel
    assert type(copy.kernel.k1.k2) is RBF
    assert copy.get_params(deep=False).keys() == model.get_params(deep=False).keys()


def test_gprat_kernels_have_sklearn_theta_and_bounds():
    ours = ConstantKernel(2.0) * Matern([1.0, 2.0], (1e-3, 1e3), nu=0.5) + WhiteKernel(0.1)
    theirs = skk.ConstantKernel(2.0) * skk.Matern([1.0, 2.0], (1e-3, 1e3), nu=0.5) + (
        skk.WhiteKernel(0.1)
    )
    assert_allclose(ours.theta, theirs.theta)
    assert_allclose(ours.bounds, theirs.bounds)
    assert [h.name for h in ours.hyperparameters] == [h.name for h in theirs.hyperparameters]
    X, _, X_test = make_data()
    assert_allclose(ours(X, X_test), theirs(X, X_test))
    assert isinstance(ours.k1.k2, skk.Matern)
    assert isinstance(2.0 * RBF(), skk.Product)
    assert isinstance(RBF() * 2.0 + WhiteKernel(), skk.Sum)
    assert clone(ours).get_params().keys() == ours.get_params().keys()


def test_pickle_round_trip_in_process():
    X, y, X_test = make_data()
    model = GaussianProcessRegressor(ConstantKernel() * RBF() + WhiteKernel(), random_state=0)
    model.fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    assert_array_equal(
        restored.predict(X_test, return_cov=True)[1], model.predict(X_test, return_cov=True)[1]
    )
    assert restored.log_marginal_likelihood_value_ == model.log_marginal_likelihood_value_
    assert_array_equal(restored.L_, model.L_)


def test_pickled_model_predicts_identically_in_a_fresh_process(tmp_path):
    X, y, X_test = make_data(n_targets=2)
    model = GaussianProcessRegressor(
        ConstantKernel() * Matern(nu=1.5) + WhiteKernel(), normalize_y=True, random_state=0
    ).fit(X, y)
    mean, std = model.predict(X_test, return_std=True)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "X_test.npy", X_test)
    script = (
        "import pickle, sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "model = pickle.load(open(d + '/model.pkl', 'rb'))\n"
        "mean, std = model.predict(np.load(d + '/X_test.npy'), return_std=True)\n"
        "np.save(d + '/mean.npy', mean)\n"
        "np.save(d + '/std.npy', std)\n"
    )
    env = gprat_env()
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env, timeout=120)
    assert_array_equal(np.load(tmp_path / "mean.npy"), mean)
    assert_array_equal(np.load(tmp_path / "std.npy"), std)


# --------------------------------------------------------------------------------------
# Refused kernels and invalid arguments
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "compose",
    [
        lambda: RBF() ** 2,
        lambda: (RBF() + WhiteKernel()) ** 2,
        lambda: RBF() + skk.Exponentiation(skk.RBF(), 2),
        lambda: 2.0 * RBF() * skk.PairwiseKernel(),
        lambda: Matern() + skk.Matern(nu=0.7),
        lambda: ConstantKernel() * (RBF() + skk.Matern(nu=np.inf)),
    ],
)
def test_gprat_operators_refuse_other_compositions(compose):
    with pytest.raises(ValueError, match="accepted are RBF, Matern\\(nu=0.5, 1.5 or 2.5\\)|nu must be"):
        compose()


@pytest.mark.parametrize("nu", [1.0, np.inf, 3.5, "1.5x"])
def test_matern_refuses_other_nu(nu):
    with pytest.raises(ValueError, match="nu must be 0.5, 1.5 or 2.5"):
        Matern(nu=nu)


def _matern_with_nu_changed_after_construction():
    kernel = ConstantKernel() * Matern(nu=1.5) + WhiteKernel()
    return kernel.set_params(k1__k2__nu=0.7)


class _UserRBF(skk.RBF):
    """A user subclass: its values may differ from RBF's, so the engine must not run it."""


@pytest.mark.parametrize(
    "make_kernel",
    [
        lambda: skk.RBF() ** 2,
        lambda: skk.ConstantKernel() * skk.Exponentiation(skk.RBF() + skk.WhiteKernel(), 2),
        lambda: skk.RBF() + skk.PairwiseKernel(metric="laplacian"),
        lambda: skk.CompoundKernel([skk.RBF(), skk.RBF()]),
        lambda: skk.ConstantKernel() * _UserRBF(),
        lambda: skk.Matern(nu=1.0),
        lambda: skk.RBF() + skk.Matern(nu=np.inf),
        _matern_with_nu_changed_after_construction,
    ],
)
def test_fit_and_prior_refuse_other_kernels(make_kernel):
    kernel = make_kernel()
    X, y, X_test = make_data(n=10)
    model = GaussianProcessRegressor(kernel)
    with pytest.raises(ValueError, match="nu must be|accepted are RBF, Matern"):
        model.fit(X, y)
    with pytest.raises(ValueError, match="nu must be|accepted are RBF, Matern"):
        model.predict(X_test)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"alpha": np.ones(3)}, "same number of entries as y"),
        ({"alpha": -1.0}, "alpha must be finite and >= 0"),
        ({"optimizer": "adam"}, "optimizer must be"),
        ({"n_restarts_optimizer": -1}, "n_restarts_optimizer must be"),
        ({"n_targets": 2}, "different from the parameter `n_targets`"),
        ({"tile_size": 0}, "tile_size must be"),
        ({"kernel": RBF([1.0, 2.0, 3.0])}, "one entry per feature"),
    ],
)
def test_invalid_arguments_raise_value_error(params, match):
    X, y, _ = make_data(n=10)
    with pytest.raises(ValueError, match=match):
        GaussianProcessRegressor(**params).fit(X, y)


def test_method_argument_errors():
    X, y, X_test = make_data(n=10)
    model = GaussianProcessRegressor(RBF(), alpha=1e-3)
    with pytest.raises(NotFittedError):
        _ = model.L_
    with pytest.raises(NotFittedError):
        model.log_marginal_likelihood()
    model.fit(X, y)
    with pytest.raises(RuntimeError, match="At most one"):
        model.predict(X_test, return_std=True, return_cov=True)
    with pytest.raises(ValueError, match="theta!=None"):
        model.log_marginal_likelihood(eval_gradient=True)
    with pytest.raises(ValueError, match="theta must have shape \\(1,\\)"):
        model.log_marginal_likelihood(np.zeros(3))
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((2, 5)))


def test_not_positive_definite_fit_raises_linalg_error():
    X, y, _ = make_data(n=10)
    X = np.vstack([X, X[:1]])
    y = np.append(y, y[0])
    model = GaussianProcessRegressor(RBF(1.0), alpha=0.0, optimizer=None)
    with pytest.raises(np.linalg.LinAlgError, match="alpha"):
        model.fit(X, y)


def test_public_names():
    assert gprat.GaussianProcessRegressor is GaussianProcessRegressor
    for name in ("RBF", "Matern", "ConstantKernel", "WhiteKernel"):
        assert getattr(gprat.kernels, name) is getattr(_sklearn_kernels, name)


def test_gprat_imports_without_sklearn():
    script = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"
        "import gprat, gprat.kernels\n"
        "gprat.ExactGP, gprat.kernels.SquaredExponential\n"
        "try:\n"
        "    gprat.GaussianProcessRegressor\n"
        "except ImportError:\n"
        "    print('refused')\n"
    )
    env = gprat_env()
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"


def test_programming_errors_in_the_engine_are_not_turned_into_minus_inf(monkeypatch):
    # The defect: log_marginal_likelihood mapped every ValueError (a programming error too) to
    # -inf, so a bug looked like a non-positive-definite matrix and the optimizer stepped around it.
    # Only NotPositiveDefinite, theta out of range and overflowing inputs mean -inf.
    from gprat.models.exact import ExactGP

    X = np.linspace(0, 1, 12)[:, None]
    reg = GaussianProcessRegressor(optimizer=None).fit(X, np.sin(4 * X[:, 0]))
    theta = reg.kernel_.theta

    def broken(self, theta=None, eval_gradient=False):
        raise ValueError("a bug in the engine")

    monkeypatch.setattr(ExactGP, "log_marginal_likelihood", broken)
    with pytest.raises(ValueError, match="a bug in the engine"):
        reg.log_marginal_likelihood(theta)

    def not_spd(self, theta=None, eval_gradient=False):
        raise gprat.NotPositiveDefiniteError("not SPD", 3)

    monkeypatch.setattr(ExactGP, "log_marginal_likelihood", not_spd)
    assert reg.log_marginal_likelihood(theta) == -np.inf
