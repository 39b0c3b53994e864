"""Model files: round trip, lazy refit, and every refusal."""

import gprat
import numpy as np
import pytest
from gprat.io import FORMAT_VERSION, GPModel, ModelFileError, load_model


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(60, 2)) * [1.0, 10.0] + [0.0, 50.0]
    y = 100.0 + 5.0 * np.sin(X[:, 0]) + 0.1 * rng.standard_normal(60)
    return GPModel.train(X, y, kernel="matern52", max_iter=15, feature_names=["a", "b"], target_name="t")


def test_round_trip_keeps_everything(tmp_path, model):
    path = model.save(tmp_path / "model.gp")  # any name: no suffix is added
    assert path == tmp_path / "model.gp" and path.is_file()
    loaded = load_model(path)
    assert loaded._gp is None  # the factorization waits for the first prediction
    for name in (
        "kernel",
        "feature_names",
        "target_name",
        "dtype",
        "signal_variance",
        "noise_variance",
        "y_mean",
        "y_scale",
    ):
        assert getattr(loaded, name) == getattr(model, name)
    for name in ("lengthscale", "X_train", "y_train", "x_mean", "x_scale"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    X_new = np.array([[0.5, 45.0], [-1.0, 60.0]])
    mean, std = loaded.predict(X_new, return_std=True)
    expected_mean, expected_std = model.predict(X_new, return_std=True)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-12)


def test_predictions_are_in_data_units(model):
    mean = model.predict([[1.0, 50.0]])
    assert mean[0] == pytest.approx(100.0 + 5.0 * np.sin(1.0), abs=0.5)


def test_trained_hyperparameters_are_the_engines(model):
    np.testing.assert_allclose(np.log(model.lengthscale), model.gp.theta[:2])
    assert isinstance(model.gp.kernel, gprat.kernels.Matern52)


def test_isotropic_training_keeps_one_lengthscale():
    X = np.linspace(0, 1, 20)[:, None] * [1.0, 2.0]
    y = X[:, 0] + 0.01 * np.random.default_rng(1).standard_normal(20)
    model = GPModel.train(X, y, ard=False, max_iter=5)
    assert model.lengthscale.shape == ()


def test_predict_checks_columns(model):
    with pytest.raises(ValueError, match=r"X must have 2 columns \(a, b\); got shape \(1, 3\)"):
        model.predict([[1.0, 2.0, 3.0]])


def _rewrite(tmp_path, model, **changes):
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    for key, value in list(arrays.items()):
        if value is None:
            del arrays[key]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def test_refuses_newer_format(tmp_path, model):
    path = _rewrite(tmp_path, model, format_version=np.array(FORMAT_VERSION + 1))
    with pytest.raises(ModelFileError, match=f"format version {FORMAT_VERSION + 1}; this gprat reads versions up to {FORMAT_VERSION}"):
        load_model(path)


def test_refuses_incomplete_and_foreign_files(tmp_path, model):
    with pytest.raises(ModelFileError, match="missing: y_train"):
        load_model(_rewrite(tmp_path, model, y_train=None))
    with pytest.raises(ModelFileError, match="not a gprat model file"):
        load_model(_rewrite(tmp_path, model, format=np.array("something-else")))
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a gprat model file"):
        load_model(text)
    array = tmp_path / "array.npy"
    np.save(array, np.zeros(3))
    with pytest.raises(ModelFileError, match="single NumPy array"):
        load_model(array)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_model(tmp_path / "missing.npz")


def test_refuses_inconsistent_contents(tmp_path, model):
    path = _rewrite(tmp_path, model, lengthscale=np.ones(5))
    with pytest.raises(ModelFileError, match="lengthscale must be a scalar or have one entry per feature"):
        load_model(path)
    path = _rewrite(tmp_path, model, kernel=np.array("rbf"))
    with pytest.raises(ModelFileError, match="kernel must be one of"):
        load_model(path)
