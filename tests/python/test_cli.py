"""The gprat command: demo, fit, predict, exit codes, progress and the optional plot."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import gprat
from subprocess_env import gprat_env
import numpy as np
import pytest
from gprat import cli

SMALL_DEMO = ["demo", "--n-train", "300", "--n-test", "200", "--max-iter", "15"]
MATPLOTLIB_MODULES = ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg")


@pytest.fixture(autouse=True)
def restore_runtime():
    """main() starts the runtime with the requested thread count; restore it afterwards."""
    threads = gprat.num_threads()
    yield
    gprat.start(threads)


def run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gprat"), err
    assert "Traceback" not in err
    return lines[0]


class _TTY(io.StringIO):
    def isatty(self):
        return True


# --- demo ---------------------------------------------------------------------------------------


def test_demo_metrics_are_sane(tmp_path, capsys):
    plot = tmp_path / "demo.png"
    code, out, err = run(SMALL_DEMO + ["--json", "--plot", str(plot), "--quiet"], capsys)
    assert code == 0, err
    result = json.loads(out)
    metrics = result["metrics"]
    assert metrics["rmse"] < metrics["signal_std"]
    assert metrics["rmse_noise_free"] < metrics["signal_std"]
    assert 0.8 <= metrics["coverage_95"] <= 1.0
    assert np.isfinite(metrics["mnlpd"])
    assert result["n_train"] == 300 and result["n_test"] == 200
    assert 0 < result["iterations"] <= 15
    assert set(result["timings_s"]) == {"simulate", "train", "predict", "total"}
    assert result["threads"] == gprat.num_threads() >= 1
    if result["plot"] is not None:
        assert Path(result["plot"]) == plot and plot.stat().st_size > 0
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_human_readable_output(capsys):
    code, out, err = run(SMALL_DEMO + ["--no-plot", "--quiet", "--threads", "1"], capsys)
    assert code == 0
    assert err == ""
    for word in ("RMSE", "MNLPD", "coverage", "timings", "1 thread"):
        assert word in out


def test_demo_is_deterministic_for_a_seed(capsys):
    args = ["demo", "--n-train", "120", "--n-test", "60", "--max-iter", "3", "--no-plot", "--json", "--seed", "7"]
    first = json.loads(run(args, capsys)[1])["metrics"]
    second = json.loads(run(args, capsys)[1])["metrics"]
    assert first == second


def test_demo_without_matplotlib_still_reports(tmp_path, capsys, monkeypatch):
    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # makes "import matplotlib..." fail
    plot = tmp_path / "demo.png"
    code, out, err = run(SMALL_DEMO + ["--json", "--plot", str(plot)], capsys)
    assert code == 0
    assert json.loads(out)["plot"] is None
    assert not plot.exists()
    assert 'pip install "gprat[plot]"' in err


def test_plot_needs_matplotlib_error_message(monkeypatch, tmp_path):
    from gprat import plotting

    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(plotting.PlottingUnavailableError, match=r'pip install "gprat\[plot\]"'):
        plotting.plot_prediction(tmp_path / "p.png", [0, 1], [0, 1], [1, 1])


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    code = cli.main(SMALL_DEMO + ["--no-plot", "--json"])
    capsys.readouterr()
    assert code == 0
    text = tty.getvalue()
    assert "iteration" in text and "loss" in text and "elapsed" in text


def test_quiet_silences_progress_on_a_terminal(monkeypatch, capsys):
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert cli.main(SMALL_DEMO + ["--no-plot", "--json", "--quiet"]) == 0
    capsys.readouterr()
    assert tty.getvalue() == ""


def test_threads_from_environment(monkeypatch, capsys):
    monkeypatch.setenv("GPRAT_NUM_THREADS", "1")
    code, out, _ = run(["demo", "--n-train", "100", "--n-test", "50", "--max-iter", "2", "--no-plot", "--json"], capsys)
    assert code == 0
    assert json.loads(out)["threads"] == 1


def test_keyboard_interrupt_exits_130(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.GPModel, "train", interrupted)
    code, _, err = run(SMALL_DEMO + ["--no-plot"], capsys)
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err


# --- fit and predict ----------------------------------------------------------------------------


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _read_predictions(text):
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["mean", "std"]
    values = np.array(rows[1:], dtype=float)
    return values[:, 0], values[:, 1]


def _direct_predictions(model_path, X, include_noise=False):
    """Predictions from gprat.ExactGP built by hand from the model file's arrays."""
    with np.load(model_path, allow_pickle=False) as f:
        stored = {key: f[key] for key in f.files}
    kernel_class = {"se": gprat.kernels.SquaredExponential, "matern32": gprat.kernels.Matern32}[str(stored["kernel"])]
    lengthscale = stored["lengthscale"]
    kernel = kernel_class(
        lengthscale=lengthscale if lengthscale.ndim else float(lengthscale),
        signal_variance=float(stored["signal_variance"]),
    )
    gp = gprat.ExactGP(kernel, noise_variance=float(stored["noise_variance"]))
    x_mean, x_scale = stored["x_mean"], stored["x_scale"]
    y_mean, y_scale = float(stored["y_mean"]), float(stored["y_scale"])
    gp.fit((stored["X_train"] - x_mean) / x_scale, (stored["y_train"] - y_mean) / y_scale)
    mean, std = gp.predict((X - x_mean) / x_scale, return_std=True, include_noise=include_noise)
    return y_mean + y_scale * mean, y_scale * std


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(80, 3))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2 + 0.05 * rng.standard_normal(80)
    return X, y


def test_fit_predict_round_trip_csv(tmp_path, capsys, table):
    X, y = table
    data = tmp_path / "train.csv"
    _write_csv(data, ["a", "b", "unused", "target"], np.column_stack([X, y]).tolist())
    model = tmp_path / "model.npz"
    code, out, err = run(
        [
            "fit",
            str(data),
            "--target",
            "target",
            "--features",
            "a",
            "b",
            "--max-iter",
            "20",
            "-o",
            str(model),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["features"] == ["a", "b"] and summary["target"] == "target"
    assert len(summary["hyperparameters"]["lengthscale"]) == 2
    assert model.is_file()

    new = tmp_path / "new.csv"
    X_new = np.random.default_rng(4).uniform(-2, 2, size=(25, 2))
    _write_csv(new, ["b", "a"], X_new[:, ::-1].tolist())  # column order does not matter
    out_csv = tmp_path / "pred.csv"
    code, _, err = run(["predict", str(model), str(new), "-o", str(out_csv), "--quiet"], capsys)
    assert code == 0, err
    mean, std = _read_predictions(out_csv.read_text())
    expected_mean, expected_std = _direct_predictions(model, X_new)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std, expected_std, rtol=1e-9, atol=1e-12)
    # The fit is useful: it predicts the training function well.
    truth = np.sin(X_new[:, 0]) + 0.5 * X_new[:, 1] ** 2
    assert np.sqrt(np.mean((mean - truth) ** 2)) < 0.3 * np.std(truth)

    # Without -o, the CSV goes to stdout; --include-noise widens the std.
    code, out, _ = run(["predict", str(model), str(new), "--include-noise"], capsys)
    assert code == 0
    mean2, std2 = _read_predictions(out)
    np.testing.assert_allclose(mean2, mean, rtol=1e-12)
    np.testing.assert_allclose(std2, _direct_predictions(model, X_new, include_noise=True)[1], rtol=1e-9)
    assert np.all(std2 > std)


def test_fit_predict_npy_with_column_indices(tmp_path, capsys, table):
    X, y = table
    data = tmp_path / "train.npy"
    np.save(data, np.column_stack([y, X]))  # target is column 0
    model = tmp_path / "model.npz"
    code, out, err = run(
        [
            "fit",
            str(data),
            "--target",
            "0",
            "--kernel",
            "matern32",
            "--isotropic",
            "--max-iter",
            "10",
            "-o",
            str(model),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "model written to" in out
    # Predict from an array shaped like the training array (target column ignored) ...
    full = tmp_path / "full.npy"
    np.save(full, np.column_stack([np.zeros(10), X[:10]]))
    code, out, _ = run(["predict", str(model), str(full)], capsys)
    assert code == 0
    mean_full, _ = _read_predictions(out)
    # ... or from exactly the feature columns.
    features = tmp_path / "features.npy"
    np.save(features, X[:10])
    code, out, _ = run(["predict", str(model), str(features)], capsys)
    assert code == 0
    mean_features, std_features = _read_predictions(out)
    np.testing.assert_allclose(mean_full, mean_features, rtol=1e-12)
    expected_mean, expected_std = _direct_predictions(model, X[:10])
    np.testing.assert_allclose(mean_features, expected_mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(std_features, expected_std, rtol=1e-9, atol=1e-12)


# --- errors and exit codes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["demo", "--n-train", "abc"],
        ["demo", "--n-train", "0"],
        ["demo", "--max-iter", "-1"],
        ["demo", "--plot", "x.png", "--no-plot"],
        ["demo", "--unknown-option"],
        ["fit", "data.csv", "-o", "m.npz"],  # no --target
        ["fit", "data.csv", "--target", "y"],  # no -o
        ["fit", "data.csv", "--target", "y", "-o", "m.npz", "--kernel", "rbf"],
        ["predict", "model.npz"],  # no DATA
        ["demo", "--threads", "0"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    one_line_error(err)


def test_bad_thread_environment_is_a_usage_error(monkeypatch, capsys):
    monkeypatch.setenv("GPRAT_NUM_THREADS", "many")
    code, _, err = run(SMALL_DEMO + ["--no-plot"], capsys)
    assert code == 2
    assert "GPRAT_NUM_THREADS must be a positive integer; got 'many'" in one_line_error(err)


def test_help_exits_0(capsys):
    code, out, _ = run(["fit", "--help"], capsys)
    assert code == 0
    assert "--target" in out


def test_missing_files_exit_1(tmp_path, capsys):
    code, out, err = run(["fit", str(tmp_path / "missing.csv"), "--target", "y", "-o", str(tmp_path / "m.npz")], capsys)
    assert code == 1 and out == ""
    assert one_line_error(err) == f"gprat: error: data file not found: {tmp_path / 'missing.csv'}"

    data = tmp_path / "x.csv"
    _write_csv(data, ["x"], [[1.0]])
    code, _, err = run(["predict", str(tmp_path / "missing.npz"), str(data)], capsys)
    assert code == 1
    assert one_line_error(err) == f"gprat: error: model file not found: {tmp_path / 'missing.npz'}"

    code, _, err = run(SMALL_DEMO + ["--plot", str(tmp_path / "no" / "such" / "dir" / "p.png")], capsys)
    assert code == 1
    assert "does not exist" in one_line_error(err)


@pytest.mark.parametrize(
    "content, args, message",
    [
        ("a,y\n1,2\n3,x\n", ["--target", "y"], "line 3, column 'y': expected a number, got 'x'"),
        ("a,y\n1,2\n3,4\n", ["--target", "z"], "column 'z' not found"),
        ("a,y\n1,2\n3\n", ["--target", "y"], "line 3: 1 values; the header has 2 columns"),
        ("a,y\n1,2\n3,nan\n", ["--target", "y"], "NaN or infinite"),
        ("", ["--target", "y"], "empty file"),
        ("a,y\n1,2\n3,4\n", ["--target", "y", "--features", "a", "y"], "also listed in --features"),
    ],
)
def test_bad_data_exits_1(tmp_path, capsys, content, args, message):
    data = tmp_path / "data.csv"
    data.write_text(content)
    code, _, err = run(["fit", str(data), *args, "-o", str(tmp_path / "m.npz")], capsys)
    assert code == 1
    assert message in one_line_error(err)


def test_not_a_model_file_exits_1(tmp_path, capsys):
    fake = tmp_path / "fake.npz"
    fake.write_text("not a model")
    data = tmp_path / "x.csv"
    _write_csv(data, ["x"], [[1.0]])
    code, _, err = run(["predict", str(fake), str(data)], capsys)
    assert code == 1
    assert "is not a gprat model file" in one_line_error(err)


def test_predict_with_missing_feature_column_exits_1(tmp_path, capsys, table):
    X, y = table
    data = tmp_path / "train.csv"
    _write_csv(data, ["a", "b", "c", "y"], np.column_stack([X, y]).tolist())
    model = tmp_path / "m.npz"
    assert cli.main(["fit", str(data), "--target", "y", "--max-iter", "2", "-o", str(model), "--quiet"]) == 0
    other = tmp_path / "other.csv"
    _write_csv(other, ["a", "b"], X[:3, :2].tolist())
    code, _, err = run(["predict", str(model), str(other)], capsys)
    assert code == 1
    assert "lacks the model's feature column(s) c" in one_line_error(err)


# --- python -m gprat ----------------------------------------------------------------------------


def _subprocess(args, cwd):
    env = gprat_env()
    env.pop("GPRAT_NUM_THREADS", None)
    return subprocess.run(
        [sys.executable, "-m", "gprat", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_python_m_gprat_demo_json(tmp_path):
    result = _subprocess(
        ["demo", "--n-train", "150", "--n-test", "80", "--max-iter", "5", "--no-plot", "--json", "--threads", "2"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed["threads"] == 2
    assert set(parsed["metrics"]) == {"rmse", "rmse_noise_free", "mnlpd", "coverage_95", "signal_std"}
    assert result.stderr == ""  # stderr is not a terminal: no progress
    assert not (tmp_path / "gprat_demo.png").exists()


def test_python_m_gprat_exit_codes(tmp_path):
    result = _subprocess(["fit", "missing.csv", "--target", "y", "-o", "m.npz"], tmp_path)
    assert result.returncode == 1
    assert one_line_error(result.stderr) == "gprat: error: data file not found: missing.csv"
    result = _subprocess(["demo", "--n-train", "many"], tmp_path)
    assert result.returncode == 2
    assert "--n-train" in one_line_error(result.stderr)
