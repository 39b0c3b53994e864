"""Model files and ``gprat fit --model sgpr|svgp``: the sparse models round-trip through a model
file (format version 5) with their inducing points and variational parameters, and predict the
same as before saving; malformed sparse entries are refused."""

import json

import numpy as np
import pytest

import gprat
from gprat import cli
from gprat.io.model_file import GPModel, ModelFileError, load_model


@pytest.fixture(autouse=True)
def restore_runtime():
    threads = gprat.num_threads()
    yield
    gprat.start(threads)


def table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 4, size=(n, 2))
    return X, 3.0 * np.sin(X[:, 0]) + X[:, 1] + 0.1 * rng.normal(size=n) + 10.0


@pytest.mark.parametrize("model_type", ["SGPR", "SVGP"])
def test_round_trip(tmp_path, model_type):
    X, y = table()
    model = GPModel.train(X, y, model_type=model_type, inducing_points=15, max_iter=20, epochs=3, batch_size=64)
    Xs = X[:7] + 0.05
    mean, std = model.predict(Xs, return_std=True)
    path = model.save(tmp_path / "m.npz")
    with np.load(path) as archive:
        assert int(archive["format_version"]) == 5 and str(archive["model_type"]) == model_type
        assert archive["inducing_points"].shape == (15, 2)
    loaded = load_model(path)
    assert loaded.model_type == model_type
    mean2, std2 = loaded.predict(Xs, return_std=True)
    np.testing.assert_allclose(mean2, mean, rtol=1e-10)
    np.testing.assert_allclose(std2, std, rtol=1e-10)
    assert np.sqrt(np.mean((model.predict(X) - y) ** 2)) < 0.5  # fits the data


def test_malformed_sparse_entries(tmp_path):
    X, y = table(60)
    model = GPModel.train(X, y, model_type="SVGP", inducing_points=5, epochs=1, batch_size=30)
    path = model.save(tmp_path / "m.npz")
    arrays = dict(np.load(path))
    bad = dict(arrays, q_sqrt=np.ones((5, 5)))
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(ModelFileError, match="lower triangular"):
        load_model(tmp_path / "bad.npz")
    bad = dict(arrays)
    del bad["inducing_points"]
    np.savez(tmp_path / "bad2.npz", **bad)
    with pytest.raises(ModelFileError, match="inducing_points"):
        load_model(tmp_path / "bad2.npz")
    bad = dict(arrays, format_version=np.array(4, dtype=np.int64))
    np.savez(tmp_path / "bad3.npz", **bad)
    with pytest.raises(ModelFileError, match="format_version 5"):
        load_model(tmp_path / "bad3.npz")


@pytest.mark.parametrize("name", ["sgpr", "svgp"])
def test_cli_fit_and_predict(tmp_path, capsys, name):
    X, y = table(200)
    data = tmp_path / "train.npy"
    np.save(data, np.column_stack([X, y]))
    model = tmp_path / "model.npz"
    code = cli.main(["fit", str(data), "--target", "2", "--model", name, "--inducing-points", "12", "--epochs", "2",
                     "--batch-size", "50", "--max-iter", "10", "-o", str(model), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["model_type"] == {"sgpr": "SGPR", "svgp": "SVGP"}[name]
    assert load_model(model).inducing_points.shape == (12, 2)
    np.save(tmp_path / "test.npy", X[:5])
    code = cli.main(["predict", str(model), str(tmp_path / "test.npy"), "-o", str(tmp_path / "p.csv")])
    _, err = capsys.readouterr()
    assert code == 0, err
