"""gprat.SparseGaussianProcessRegressor: scikit-learn's estimator checks, predictions equal to
those of the sparse model it wraps (built here directly from the same kernel and data),
the kernel-theta map against scikit-learn's own kernel, pickling and bad input."""

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from numpy.testing import assert_allclose  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.gaussian_process import kernels as skk  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import gprat  # noqa: E402
from gprat import kernels  # noqa: E402
from gprat.kernels import RBF, ConstantKernel, Matern, WhiteKernel  # noqa: E402
from gprat.sparse_estimator import SparseGaussianProcessRegressor  # noqa: E402


def make_data(n=120, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 4.0, size=(n, d))
    y = np.sin(X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y, rng.uniform(0.0, 4.0, size=(15, d))


@pytest.mark.filterwarnings("ignore::gprat.NumericalWarning")
@parametrize_with_checks(
    [
        SparseGaussianProcessRegressor(n_inducing=8, max_iter=5),
        SparseGaussianProcessRegressor(Matern(nu=2.5) + WhiteKernel(), n_inducing=8, max_iter=5, normalize_y=True),
        SparseGaussianProcessRegressor(n_inducing=8, method="svgp", epochs=15, batch_size=32),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_sgpr_predictions_equal_the_underlying_sgpr():
    X, y, Xs = make_data()
    est = SparseGaussianProcessRegressor(ConstantKernel(2.0) * RBF([1.0, 1.5]) + WhiteKernel(0.05), n_inducing=10,
                                         random_state=3, max_iter=20).fit(X, y)
    # the same model, built by hand: the same k-means++ Z, the same start, the same optimizer
    sg = gprat.SGPR(kernels.SquaredExponential([1.0, 1.5], 2.0), noise_variance=0.05, inducing_points=10,
                    random_state=3).fit(X, y)
    sg.optimize(max_iter=20)
    mean, std = est.predict(Xs, return_std=True)
    m2, s2 = sg.predict(Xs, return_std=True, include_noise=True)
    assert_allclose(mean, m2, rtol=1e-10, atol=1e-12)
    assert_allclose(std, s2, rtol=1e-10)
    assert_allclose(est.log_marginal_likelihood_value_, sg.log_marginal_likelihood(), rtol=1e-12)
    assert_allclose(est.inducing_points_, sg.inducing_points_)
    # kernel_ carries the fitted values: scikit-learn's own kernel object at kernel_'s theta
    ls = sg.kernel.lengthscale
    assert_allclose(est.kernel_.k1.k2.length_scale, ls, rtol=1e-12)
    assert_allclose(est.kernel_.k1.k1.constant_value, sg.kernel.signal_variance, rtol=1e-12)
    assert_allclose(est.kernel_.k2.noise_level, sg.noise_variance, rtol=1e-12)
    # the bound's gradient in kernel_.theta's order: scikit-learn's [log C, log l1, log l2, log
    # noise] is SGPR's [log l1, log l2, log s, log noise] permuted by hand; and finite differences
    # (h = 1e-4: K_ZZ is ill-conditioned at the optimum, smaller steps are rounding noise)
    theta = est.kernel_.theta
    value, grad = est.log_marginal_likelihood(theta, eval_gradient=True)
    assert_allclose(value, est.log_marginal_likelihood_value_, rtol=1e-10)
    assert_allclose(grad, sg.log_marginal_likelihood(sg.theta, eval_gradient=True)[1][[2, 0, 1, 3]], rtol=1e-10,
                    atol=1e-12)
    h = 1e-4
    fd = [(est.log_marginal_likelihood(theta + h * e) - est.log_marginal_likelihood(theta - h * e)) / (2 * h)
          for e in np.eye(theta.size)]
    assert_allclose(grad, fd, rtol=1e-3, atol=1e-3)


def test_predictive_spread_is_sklearns_convention():
    """std is that of y (the fixed WhiteKernel's noise included); a dense Titsias posterior is the oracle."""
    X, y, Xs = make_data(60)
    Z = X[:7].copy()
    ls, s2 = 0.9, 0.04
    est = SparseGaussianProcessRegressor(RBF(ls, "fixed") + WhiteKernel(s2, "fixed"), n_inducing=Z,
                                         optimizer=None).fit(X, y)
    k = skk.RBF(ls)
    Kzz, Kzx, Kzs = k(Z), k(Z, X), k(Z, Xs)
    Sigma = Kzz + Kzx @ Kzx.T / s2
    mean = Kzs.T @ np.linalg.solve(Sigma, Kzx @ y) / s2
    var = 1.0 - np.sum(Kzs * np.linalg.solve(Kzz, Kzs), 0) + np.sum(Kzs * np.linalg.solve(Sigma, Kzs), 0)
    m, s = est.predict(Xs, return_std=True)
    assert_allclose(m, mean, rtol=1e-8, atol=1e-10)
    assert_allclose(s, np.sqrt(var + s2), rtol=1e-7)
    _, cov = est.predict(Xs, return_cov=True)
    assert_allclose(np.diag(cov), var + s2, rtol=1e-7, atol=1e-12)
    assert est.n_iter_ == 0


def test_svgp_predictions_equal_the_underlying_svgp():
    X, y, Xs = make_data(200)
    est = SparseGaussianProcessRegressor(RBF([1.0, 1.0]) + WhiteKernel(0.05), n_inducing=8, method="svgp",
                                         epochs=3, batch_size=50, random_state=1).fit(X, y)
    sv = gprat.SVGP(kernels.SquaredExponential([1.0, 1.0], 1.0), noise_variance=0.05, inducing_points=8)
    trainable = np.array([True, True, False, True])  # RBF alone: signal variance fixed at 1
    sv.fit(X, y, batch_size=50, epochs=3, random_state=1, trainable=trainable)
    assert_allclose(est.predict(Xs), sv.predict(Xs), rtol=1e-10, atol=1e-12)
    assert_allclose(est.kernel_.k2.noise_level, sv.noise_variance, rtol=1e-12)


def test_pickle_and_clone_keep_the_predictions():
    X, y, Xs = make_data()
    for method in ("sgpr", "svgp"):
        est = SparseGaussianProcessRegressor(n_inducing=6, method=method, max_iter=5, epochs=2, batch_size=40,
                                             random_state=0).fit(X, y)
        back = pickle.loads(pickle.dumps(est))
        assert_allclose(back.predict(Xs, return_std=True), est.predict(Xs, return_std=True), rtol=1e-9, atol=1e-12)
        assert clone(est).get_params() == est.get_params()


def test_get_params_set_params():
    est = SparseGaussianProcessRegressor(ConstantKernel(2.0) * RBF([1.0, 2.0]) + WhiteKernel(0.1), n_inducing=12)
    params = est.get_params()
    assert params["n_inducing"] == 12 and params["method"] == "sgpr"
    assert params["kernel__k1__k2__length_scale"] == [1.0, 2.0]
    est.set_params(method="svgp", kernel__k1__k2__length_scale=[0.5, 0.7])
    assert est.method == "svgp" and est.kernel.k1.k2.length_scale == [0.5, 0.7]


def test_a_failed_fit_leaves_the_estimator_as_it_was():
    X, y, Xs = make_data()
    est = SparseGaussianProcessRegressor(n_inducing=6, max_iter=5).fit(X, y)
    before = est.predict(Xs)
    with pytest.raises(ValueError, match="features"):
        est.set_params(n_inducing=np.zeros((4, 3))).fit(X, y)
    assert_allclose(est.predict(Xs), before)


def test_bad_input():
    X, y, _ = make_data(40)
    S = SparseGaussianProcessRegressor
    with pytest.raises(NotFittedError):
        S().predict(X)
    with pytest.raises(ValueError, match="method must be 'sgpr' or 'svgp'; got 'exact'"):
        S(method="exact").fit(X, y)
    with pytest.raises(ValueError, match="needs a noise variance: add a WhiteKernel"):
        S(RBF(1.0)).fit(X, y)
    with pytest.raises(ValueError, match="fixed and with free bounds"):
        S(RBF(1.0) + WhiteKernel(0.1) + WhiteKernel(0.1, "fixed")).fit(X, y)
    with pytest.raises(ValueError, match="lr must be a positive"):
        S(method="svgp", lr=0.0).fit(X, y)
    with pytest.raises(ValueError, match="n_inducing must be"):
        S(n_inducing=0).fit(X, y)
    with pytest.raises(ValueError, match="n_inducing must be a positive int or an array"):
        S(n_inducing="many").fit(X, y)
    with pytest.raises(ValueError, match="2 columns.*got shape \\(4, 3\\)"):
        S(n_inducing=np.zeros((4, 3))).fit(X, y)
    with pytest.raises(ValueError, match="batch_size"):
        S(method="svgp", batch_size=0).fit(X, y)
    with pytest.raises(ValueError, match="optimizer"):
        S(optimizer="adam").fit(X, y)
    with pytest.raises(ValueError, match="NaN|finite|infinity"):
        S().fit(np.where(X == X[0, 0], np.nan, X), y)
    with pytest.raises(ValueError, match="not supported|Matern|accepted|kernel"):
        S(skk.Exponentiation(skk.RBF(), 2.0) + WhiteKernel()).fit(X, y)
    est = S(n_inducing=5, max_iter=3).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(np.zeros((3, 3)))
    with pytest.raises(RuntimeError, match="At most one"):
        est.predict(X, return_std=True, return_cov=True)
    with pytest.raises(ValueError, match="theta must have shape"):
        est.log_marginal_likelihood(np.zeros(7))


def test_few_distinct_rows_lower_the_inducing_count():
    X, y, _ = make_data(30)
    X = np.repeat(X[:5], 6, axis=0)
    est = SparseGaussianProcessRegressor(n_inducing=20, max_iter=3).fit(X, y)
    assert est.n_inducing_ == 5
