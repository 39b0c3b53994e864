"""KissGP model files and ``gprat fit --model kiss``: a saved KISS-GP reloads to the same predictions
(same grid, hyperparameters and seed), and a corrupt KissGP entry is refused at load."""

import json

import numpy as np
import pytest

import gprat
from gprat import cli
from gprat.io import GPModel, ModelFileError, load_model


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 3, (n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.05 * rng.standard_normal(n)


def test_kiss_model_round_trip(tmp_path):
    X, y = _data()
    model = GPModel.train(X, y, kernel="se", max_iter=10, model_type="KissGP", model_options={"grid_size": 64})
    assert isinstance(model.gp, gprat.KissGP) and model.gp.grid_points_ == 64
    path = model.save(tmp_path / "kiss.npz")
    loaded = load_model(path)
    assert loaded.model_type == "KissGP" and loaded.model_options["grid_size"] == [64]
    Xs = np.linspace(0.2, 2.8, 9)[:, None]
    m1, s1 = model.predict(Xs, return_std=True)
    m2, s2 = loaded.predict(Xs, return_std=True)
    np.testing.assert_allclose(m2, m1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s2, s1, rtol=1e-8, atol=1e-10)
    assert np.abs(m1 - np.sin(2 * Xs[:, 0])).max() < 0.1


def test_kiss_model_file_refuses_bad_entries(tmp_path):
    X, y = _data(100)
    model = GPModel.train(X, y, max_iter=0, model_type="KissGP")
    path = model.save(tmp_path / "kiss.npz")
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["kiss_grid_size"] = np.array([3])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="grid_size"):
        load_model(tmp_path / "bad.npz")
    del arrays["kiss_n_probes"]
    np.savez(tmp_path / "incomplete.npz", **arrays)
    with pytest.raises(ModelFileError, match="kiss_n_probes"):
        load_model(tmp_path / "incomplete.npz")


def test_cli_fit_model_kiss(tmp_path, capsys):
    X, y = _data(300)
    data = tmp_path / "d.csv"
    np.savetxt(data, np.column_stack([X[:, 0], y]), delimiter=",", header="x,y", comments="")
    out = tmp_path / "m.npz"
    assert cli.main(["fit", str(data), "--target", "y", "--model", "kiss", "--grid-size", "48", "--max-iter", "5",
                     "-o", str(out), "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model_type"] == "KissGP"
    model = load_model(out)
    assert model.model_type == "KissGP" and model.model_options["grid_size"] == [48]
    assert cli.main(["predict", str(out), str(data), "--quiet"]) == 0


def test_kiss_model_with_a_kernel_tree_round_trips(tmp_path):
    # One kernel per feature (a separable product through active_dims): saved as a kernel_tree
    # (format version 4) with the KISS settings, reloaded to the same kernel and predictions.
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 3, (300, 2))
    y = np.sin(2 * X[:, 0]) * np.cos(X[:, 1]) + 0.05 * rng.standard_normal(300)
    k = gprat.kernels
    kernel = 1.5 * k.SquaredExponential(lengthscale=0.7, active_dims=[0]) * k.Matern52(lengthscale=0.9,
                                                                                       active_dims=[1])
    model = GPModel.train(X, y, kernel=kernel, max_iter=0, model_type="KissGP",
                          model_options={"grid_size": [40, 40]})
    path = model.save(tmp_path / "kiss_tree.npz")
    with np.load(path) as archive:
        assert "kernel_tree" in archive.files and int(archive["format_version"]) == 4
    loaded = load_model(path)
    assert loaded.model_type == "KissGP" and loaded.model_options["grid_size"] == [40, 40]
    assert repr(loaded.kernel) == repr(model.kernel)
    Xs = rng.uniform(0.3, 2.7, (7, 2))
    m1, s1 = model.predict(Xs, return_std=True)
    m2, s2 = loaded.predict(Xs, return_std=True)
    np.testing.assert_allclose(m2, m1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(s2, s1, rtol=1e-8, atol=1e-10)
