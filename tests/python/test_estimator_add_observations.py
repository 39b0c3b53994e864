"""GaussianProcessRegressor.add_observations / condition_on (issue #13) against scikit-learn's
GaussianProcessRegressor fitted on the combined data at the same kernel (optimizer=None)."""

import numpy as np
import pytest
from sklearn.gaussian_process import GaussianProcessRegressor as SkGPR
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

import gprat
from checks import close


def data(rng, n, targets=1):
    X = rng.uniform(-2, 2, size=(n, 2))
    Y = np.stack([np.sin(X[:, 0] + j) * np.cos(X[:, 1]) for j in range(targets)], axis=1) + 3.0
    Y += 0.05 * rng.standard_normal(Y.shape)
    return X, (Y[:, 0] if targets == 1 else Y)


KERNELS = [
    ConstantKernel(1.5) * RBF([0.7, 1.1]) + WhiteKernel(0.01),
    ConstantKernel(0.8) * Matern(0.9, nu=2.5) + ConstantKernel(0.3) * RBF(2.0),
]


@pytest.mark.parametrize("kernel", KERNELS, ids=["se+white", "sum"])
@pytest.mark.parametrize("targets", [1, 2])
def test_equals_sklearn_on_the_combined_data(kernel, targets, rng):
    X, y = data(rng, 60, targets)
    ours = gprat.GaussianProcessRegressor(kernel, alpha=1e-3, tile_size=16, random_state=0).fit(X[:45], y[:45])
    assert ours.add_observations(X[45:], y[45:]) is ours
    theirs = SkGPR(ours.kernel_, alpha=1e-3, optimizer=None).fit(X, y)
    Xs = rng.uniform(-2, 2, size=(7, 2))
    close(ours.log_marginal_likelihood_value_, theirs.log_marginal_likelihood_value_, 1e-9, "lml")
    for want, got in zip(theirs.predict(Xs, return_std=True), ours.predict(Xs, return_std=True)):
        close(got, want, 1e-8, "predict")
    close(ours.predict(Xs, return_cov=True)[1], theirs.predict(Xs, return_cov=True)[1], 1e-8, "cov")
    close(ours.L_, theirs.L_, 1e-9, "L_")
    assert ours.X_train_.shape == (60, 2) and ours.y_train_.shape == np.shape(y)


def test_array_alpha_and_normalize_y(rng):
    X, y = data(rng, 50)
    alpha = rng.uniform(1e-3, 1e-2, size=50)
    kernel = ConstantKernel(1.0) * RBF([0.8, 0.8])
    ours = gprat.GaussianProcessRegressor(kernel, alpha=alpha[:40], normalize_y=True).fit(X[:40], y[:40])
    mean, std = y[:40].mean(), y[:40].std()
    ours.add_observations(X[40:], y[40:], alpha=alpha[40:])
    # the first fit's normalization applies to the new targets (the hyperparameters refer to it)
    theirs = SkGPR(ours.kernel_, alpha=alpha, optimizer=None).fit(X, (y - mean) / std)
    Xs = rng.uniform(-2, 2, size=(5, 2))
    m, s = theirs.predict(Xs, return_std=True)
    got_m, got_s = ours.predict(Xs, return_std=True)
    close(got_m, m * std + mean, 1e-8, "mean")
    close(got_s, s * std, 1e-8, "std")
    with pytest.raises(ValueError, match="alpha was an array at fit"):
        ours.add_observations(X[:2] + 0.1, y[:2])


def test_condition_on_leaves_the_estimator_unchanged(rng):
    X, y = data(rng, 40)
    ours = gprat.GaussianProcessRegressor(KERNELS[0], optimizer=None).fit(X[:30], y[:30])
    Xs = X[:5] + 0.05
    before = ours.predict(Xs, return_std=True), ours.log_marginal_likelihood_value_, ours.L_.copy()
    fantasy = ours.condition_on(X[30:], y[30:])
    theirs = SkGPR(KERNELS[0], optimizer=None).fit(X, y)
    close(fantasy.predict(Xs), theirs.predict(Xs), 1e-8, "fantasy mean")
    np.testing.assert_array_equal(ours.predict(Xs, return_std=True)[1], before[0][1])
    np.testing.assert_array_equal(ours.L_, before[2])
    assert ours.log_marginal_likelihood_value_ == before[1] and ours.X_train_.shape == (30, 2)


@pytest.mark.parametrize("bad,match", [
    (lambda X, y: (X[:, :1], y), "features"),
    (lambda X, y: (X, y[:-1]), "inconsistent numbers of samples|samples"),
    (lambda X, y: (X, np.stack([y, y], 1)), "target"),
    (lambda X, y: (np.full_like(X, np.nan), y), "NaN"),
])
def test_bad_input_leaves_the_estimator_unchanged(bad, match, rng):
    X, y = data(rng, 30)
    ours = gprat.GaussianProcessRegressor(KERNELS[0], optimizer=None).fit(X[:25], y[:25])
    before = ours.predict(X[:3], return_std=True)[1]
    with pytest.raises(ValueError, match=match):
        ours.add_observations(*bad(X[25:], y[25:]))
    np.testing.assert_array_equal(ours.predict(X[:3], return_std=True)[1], before)
    assert ours.X_train_.shape == (25, 2)
    with pytest.raises(ValueError, match="applies to the new points"):
        ours.add_observations(X[25:], y[25:], alpha=np.ones(5))


def test_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        gprat.GaussianProcessRegressor().add_observations(np.zeros((1, 2)), [0.0])
