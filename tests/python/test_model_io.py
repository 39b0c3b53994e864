"""Model files: round trip, lazy refit, and every refusal."""

import gprat
import numpy as np
import pytest
import reference as ref
from checks import rewrite_archive
import scipy.optimize
from gprat.io import FORMAT_VERSION, GPModel, ModelFileError, load_model


def _data():
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(60, 2)) * [1.0, 10.0] + [0.0, 50.0]
    y = 100.0 + 5.0 * np.sin(X[:, 0]) + 0.1 * rng.standard_normal(60)
    return X, y


@pytest.fixture(scope="module")
def model():
    return GPModel.train(*_data(), kernel="matern52", max_iter=15, feature_names=["a", "b"], target_name="t")


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


def test_saved_model_matches_a_dense_reference_gp(tmp_path, model):
    # The file's arrays, read with NumPy alone, define a GP that tests/reference.py evaluates
    # densely; neither the engine that trained the model nor GPModel is used for the expected values.
    path = model.save(tmp_path / "model.gp")
    with np.load(path, allow_pickle=False) as archive:
        f = {key: archive[key] for key in archive.files}
    X, y = _data()
    assert str(f["kernel"]) == "matern52"
    np.testing.assert_array_equal(f["X_train"], X)
    np.testing.assert_array_equal(f["y_train"], y)
    # Standardization (module docstring): the GP sees (X - mean) / std and (y - mean) / std.
    np.testing.assert_allclose(f["x_mean"], X.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(f["x_scale"], X.std(axis=0), rtol=1e-14)
    np.testing.assert_allclose([f["y_mean"], f["y_scale"]], [y.mean(), y.std()], rtol=1e-14)
    Z, t = (X - X.mean(axis=0)) / X.std(axis=0), (y - y.mean()) / y.std()
    theta = ref.theta_of(f["lengthscale"], f["signal_variance"], f["noise_variance"])
    assert theta.shape == (4,)  # ARD: one lengthscale per feature

    # The hyperparameters are trained ones: from GPModel.train's documented start (lengthscale
    # sqrt(2) per feature, signal variance 1, noise 0.1), SciPy's L-BFGS-B on the dense LML
    # reaches LML* ~ 94.655 (lengthscale 2 runs to its bound: feature b is irrelevant). 15
    # iterations of gprat get within 0.004 of it, and leave a gradient below 1/1000 of the
    # starting one: 0.05 and 1/100 leave a margin.
    theta0 = ref.theta_of(np.full(2, np.sqrt(2.0)), 1.0, 0.1)
    dense = scipy.optimize.minimize(
        lambda th: (-ref.lml("Matern52", Z, t, th, True), -ref.lml_gradient("Matern52", Z, t, th, True)),
        theta0, jac=True, method="L-BFGS-B", bounds=[(-20.0, 20.0)] * 4)
    assert ref.lml("Matern52", Z, t, theta, True) >= -dense.fun - 0.05
    grad0 = np.abs(ref.lml_gradient("Matern52", Z, t, theta0, True)).max()
    assert np.abs(ref.lml_gradient("Matern52", Z, t, theta, True)).max() <= 1e-2 * grad0

    # Predictions in data units, by the trained model and by the reloaded one.
    X_new = np.array([[0.5, 45.0], [-1.0, 60.0], [2.9, 50.0]])
    mean_ref, var_ref, _ = ref.predict("Matern52", Z, t, (X_new - X.mean(axis=0)) / X.std(axis=0), theta, True)
    for which in (model, load_model(path)):
        mean, std = which.predict(X_new, return_std=True)
        np.testing.assert_allclose(mean, y.mean() + y.std() * mean_ref, rtol=1e-9)
        np.testing.assert_allclose(std, y.std() * np.sqrt(var_ref), rtol=1e-9)
        _, std_noisy = which.predict(X_new, return_std=True, include_noise=True)
        np.testing.assert_allclose(std_noisy, y.std() * np.sqrt(var_ref + f["noise_variance"]), rtol=1e-9)


def test_isotropic_training_keeps_one_lengthscale():
    X = np.linspace(0, 1, 20)[:, None] * [1.0, 2.0]
    y = X[:, 0] + 0.01 * np.random.default_rng(1).standard_normal(20)
    model = GPModel.train(X, y, ard=False, max_iter=5)
    assert model.lengthscale.shape == ()


def test_predict_checks_columns(model):
    with pytest.raises(ValueError, match=r"X must have 2 columns \(a, b\); got shape \(1, 3\)"):
        model.predict([[1.0, 2.0, 3.0]])


def _rewrite(tmp_path, model, **changes):
    return rewrite_archive(model.save(tmp_path / "m.npz"), **changes)


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


def test_files_carry_format_version_and_model_type(tmp_path, model):
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        # a default model is still written as version 2 (versions 3 to 5 only add optional entries
        # or model types: 5 is SGPR/SVGP)
        assert int(archive["format_version"]) == 2 and FORMAT_VERSION == 5
        assert str(archive["model_type"]) == "ExactGP"
    assert load_model(path).model_type == "ExactGP"


def test_version_1_files_still_load(tmp_path, model):
    # Format 1 had no model_type: it is read as an ExactGP with the same predictions.
    path = _rewrite(tmp_path, model, format_version=np.array(1, dtype=np.int64), model_type=None)
    loaded = load_model(path)
    assert loaded.model_type == "ExactGP"
    X_new = np.array([[0.5, 45.0]])
    np.testing.assert_allclose(loaded.predict(X_new), model.predict(X_new), rtol=1e-12)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"x_scale": np.array([1.0, 0.0])}, "x_scale must be positive"),
        ({"x_scale": np.array([1.0, np.nan])}, "x_scale must contain only finite values"),
        ({"x_mean": np.zeros(3)}, "x_mean must be shape"),
        ({"y_scale": np.array(-1.0)}, "y_scale must be positive"),
        ({"y_mean": np.array([1.0, 2.0])}, "y_mean must be a scalar"),
        ({"lengthscale": np.array([1.0, -2.0])}, "lengthscale must be positive"),
        ({"lengthscale": np.array([1.0, np.inf])}, "lengthscale must contain only finite values"),
        ({"signal_variance": np.array(0.0)}, "signal_variance must be positive"),
        ({"noise_variance": np.array(1e-320)}, "noise_variance must be positive"),
        ({"noise_variance": np.array("big")}, "noise_variance must hold real numbers"),
        ({"X_train": np.full((60, 2), np.nan)}, "X_train must contain only finite values"),
        ({"X_train": np.zeros(60)}, "X_train must be 2-D"),
        ({"y_train": np.zeros(59)}, "y_train must be shape"),
        ({"dtype": np.array("float16")}, "dtype must be one of float64, float32"),
        ({"model_type": np.array("NoSuchModel")}, "model_type must be one of ExactGP"),
        ({"format_version": np.array("two")}, "format_version must be an integer"),
        ({"format_version": np.array(0)}, "format_version must be an integer >= 1"),
        ({"feature_names": np.array(["a"])}, "feature_names must have 2 entries"),
        ({"target_name": np.array(["t", "u"])}, "target_name must be a string"),
        ({"model_type": None}, "missing: model_type"),
    ],
)
def test_corrupt_fields_fail_at_load_naming_the_field(tmp_path, model, changes, field):
    # The defect: values were not range-checked at load, so a hand-edited file failed later
    # (inside a fit, or with NaN predictions). Each one must fail in load_model, naming the field.
    path = _rewrite(tmp_path, model, **changes)
    with pytest.raises(ModelFileError, match=field):
        load_model(path)
