"""The ``gprat`` command (also ``python -m gprat``).

Subcommands:

``gprat demo``
    Simulate a non-linear mass-spring-damper chain, learn a NARX GP model of it, predict
    held-out data with uncertainty, print accuracy and calibration metrics and timings, and
    plot the prediction (PNG; needs the optional matplotlib extra).
``gprat fit DATA --target COLUMN -o MODEL``
    Fit an exact GP to a CSV file (with a header) or a ``.npy`` array and save the model
    (format: :mod:`gprat.model_io`).
``gprat predict MODEL DATA``
    Predictive mean and standard deviation for new inputs, written as CSV.

Conventions for batch use: results go to stdout (``--json`` for machines), progress to stderr
only when it is a terminal and ``--quiet`` is not given, and the worker-thread count comes from
``--threads``, else ``GPRAT_NUM_THREADS``, else the cores available. Exit status: 0 success,
1 runtime or data error (missing file, bad values, numerical failure), 2 usage error (bad
option or option value), 130 interrupted; errors are one line on stderr, without traceback.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import math
import os
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np

from . import simulate
from .model_io import KERNELS, GPModel, ModelFileError, load_model
from .plotting import PlottingUnavailableError, plot_prediction

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "gprat"

#: Demo set-up: sampling interval, NARX lags and samples dropped while the chain settles.
DEMO_DT = 0.1
DEMO_INPUT_LAGS = 6
DEMO_OUTPUT_LAGS = 6
DEMO_BURN_IN = 100
Z95 = 1.959963984540054


class UsageError(Exception):
    """Bad command line: reported with exit status 2."""


class DataError(Exception):
    """Unusable input data or file: reported with exit status 1."""


def _package():
    return importlib.import_module(__package__ or "gprat")


# ---------------------------------------------------------------------------------------------
# Argument parsing
# ---------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """ArgumentParser that raises UsageError instead of printing usage and exiting."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _number_parser(convert, accept, expected):
    """An argparse ``type=`` that converts with `convert` and accepts values passing `accept`."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _number_parser(int, lambda v: v > 0, "a positive integer")
_non_negative_int = _number_parser(int, lambda v: v >= 0, "a non-negative integer")
_non_negative_float = _number_parser(float, lambda v: v >= 0 and math.isfinite(v), "a non-negative number")


def build_parser():
    """Build the argument parser of the ``gprat`` command.

    Returns
    -------
    argparse.ArgumentParser
    """
    version = getattr(_package(), "__version__", "unknown")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="worker threads (default: $GPRAT_NUM_THREADS, else all available cores)",
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on stderr")
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument("--json", action="store_true", help="print results as one JSON object")

    parser = _Parser(
        prog=PROG,
        description="Exact Gaussian-process regression on a tiled, task-parallel Cholesky core.",
        epilog="Exit status: 0 ok, 1 runtime or data error, 2 usage error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        parents=[common, json_option],
        help="simulate a non-linear system, learn it, predict with uncertainty, plot",
        description=(
            "Simulate a chain of 4 carts with hardening springs driven by a random force, learn a "
            "NARX Gaussian-process model of the last cart's position, predict held-out data with "
            "uncertainty, and report accuracy, calibration and timings."
        ),
    )
    demo.add_argument(
        "--n-train", type=_positive_int, default=2000, metavar="N", help="training samples (default: 2000)"
    )
    demo.add_argument("--n-test", type=_positive_int, default=500, metavar="N", help="test samples (default: 500)")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="random seed of input and noise (default: 0)")
    demo.add_argument(
        "--noise",
        type=_non_negative_float,
        default=0.05,
        metavar="STD",
        help="observation noise standard deviation (default: 0.05)",
    )
    demo.add_argument(
        "--max-iter", type=_non_negative_int, default=30, metavar="N", help="optimizer iterations (default: 30)"
    )
    plot = demo.add_mutually_exclusive_group()
    plot.add_argument("--plot", default="gprat_demo.png", metavar="PATH", help="PNG to write (default: gprat_demo.png)")
    plot.add_argument("--no-plot", action="store_true", help="do not plot")

    fit = commands.add_parser(
        "fit",
        parents=[common, json_option],
        help="fit a GP to tabular data and save the model",
        description=(
            "Fit an exact GP to DATA and save it. DATA is a CSV file with a header row, or a .npy "
            "2-D array whose columns are referred to by index. Inputs and target are standardized; "
            "hyperparameters are found by maximizing the log marginal likelihood (L-BFGS-B)."
        ),
    )
    fit.add_argument("data", metavar="DATA", help="CSV file with a header, or .npy array")
    fit.add_argument("--target", required=True, metavar="COLUMN", help="target column (name; index for .npy)")
    fit.add_argument("--features", nargs="+", metavar="COLUMN", help="input columns (default: all but the target)")
    fit.add_argument("--kernel", choices=sorted(KERNELS), default="se", help="covariance function (default: se)")
    fit.add_argument(
        "--isotropic", action="store_true", help="one lengthscale for all features (default: one per feature)"
    )
    fit.add_argument(
        "--max-iter", type=_non_negative_int, default=100, metavar="N", help="optimizer iterations (default: 100)"
    )
    fit.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision (default: float64)")
    fit.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (.npz)")

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="predict with a saved model, write CSV",
        description=(
            "Predict with a model written by 'gprat fit'. DATA must hold the model's feature columns "
            "(by name for CSV; for .npy, exactly the features or the columns of the training array). "
            "Writes a CSV with columns mean and std."
        ),
    )
    predict.add_argument("model", metavar="MODEL", help="model file written by 'gprat fit'")
    predict.add_argument("data", metavar="DATA", help="CSV file with a header, or .npy array")
    predict.add_argument("-o", "--output", metavar="OUT.csv", help="CSV to write (default: stdout)")
    predict.add_argument(
        "--include-noise",
        action="store_true",
        help="std of new observations (adds the noise variance) instead of the latent function",
    )
    return parser


# ---------------------------------------------------------------------------------------------
# Progress on stderr
# ---------------------------------------------------------------------------------------------


class _Progress:
    """Status line and progress bar on stderr; silent when disabled (quiet or not a TTY)."""

    def __init__(self, enabled, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._width = 0

    def _write(self, text):
        if self.enabled:
            padding = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + padding)
            self.stream.flush()
            self._width = len(text)

    def status(self, text):
        self._write(text)

    def bar(self, label, total):
        """Return a callback(iteration, loss) that draws ``label [####    ] it/total loss t``."""
        start = time.perf_counter()

        def update(iteration, loss=None):
            elapsed = time.perf_counter() - start
            filled = int(20 * min(iteration, total) / total) if total else 20
            shown = "-" if loss is None else f"{loss:.6g}"
            self._write(
                f"{label} [{'#' * filled}{'.' * (20 - filled)}] iteration {iteration}/{total}  "
                f"loss {shown}  elapsed {elapsed:.1f} s"
            )

        return update

    def done(self):
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _progress_for(args):
    stream = sys.stderr
    enabled = not args.quiet and hasattr(stream, "isatty") and stream.isatty()
    return _Progress(enabled, stream)


def _note(args, message):
    if not args.quiet:
        print(f"{PROG}: note: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


def _start_runtime(args):
    """Start the runtime with --threads, else $GPRAT_NUM_THREADS, else the default."""
    threads = args.threads
    if threads is None:
        text = os.environ.get("GPRAT_NUM_THREADS", "").strip()
        if text:
            try:
                threads = _positive_int(text)
            except argparse.ArgumentTypeError:
                raise UsageError(f"GPRAT_NUM_THREADS must be a positive integer; got {text!r}") from None
    package = _package()
    package.start(threads)
    return int(package.num_threads())


# ---------------------------------------------------------------------------------------------
# Tabular data
# ---------------------------------------------------------------------------------------------


def _read_table(path):
    """Read a CSV file with a header row, or a 2-D .npy array.

    Returns
    -------
    values : ndarray of shape (n_rows, n_columns)
    names : list of str, or None for .npy
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: not a readable .npy array: {error}") from None
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.dtype.kind not in "biuf":
            raise DataError(f"{path}: expected a 2-D numeric array; got shape {values.shape}, dtype {values.dtype}")
        return values.astype(np.float64), None
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: empty file; expected a CSV header row") from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable CSV file: {error}") from None
        names = [name.strip() for name in header]
        if not names or any(not name for name in names):
            raise DataError(f"{path}: the header row has an empty column name")
        if len(set(names)) != len(names):
            raise DataError(f"{path}: duplicate column names in the header row")
        rows = []
        try:
            for line, row in enumerate(reader, start=2):
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    raise DataError(f"{path}, line {line}: {len(row)} values; the header has {len(names)} columns")
                try:
                    rows.append([float(cell) for cell in row])
                except ValueError:
                    bad = next(c for c in range(len(row)) if not _is_number(row[c]))
                    raise DataError(
                        f"{path}, line {line}, column {names[bad]!r}: expected a number, got {row[bad]!r}"
                    ) from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not a readable CSV file: {error}") from None
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return np.array(rows, dtype=np.float64), names


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _column_index(spec, names, n_columns, path):
    """Index of a column given by name (CSV) or integer index (.npy)."""
    if names is not None:
        if spec not in names:
            raise DataError(f"column {spec!r} not found in {path}; columns are: {', '.join(names)}")
        return names.index(spec)
    try:
        index = int(spec)
    except ValueError:
        raise DataError(
            f"{path} is a .npy array: refer to columns by index (0 to {n_columns - 1}); got {spec!r}"
        ) from None
    if not -n_columns <= index < n_columns:
        raise DataError(f"column index {index} is out of range for {path}, which has {n_columns} columns")
    return index % n_columns


def _finite(values, what, path):
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{path}: {what} has a NaN or infinite value (data row {row + 1})")


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def _check_memory(n_samples, dtype):
    """Refuse a training set whose GP would not fit in memory, before any work is done."""
    from ._memory import check_fits

    package = _package()
    check_fits(package.ExactGP.fit_bytes(n_samples, dtype=np.dtype(dtype)), f"an exact GP on {n_samples} samples")


def _check_writable(path, what):
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise DataError(f"cannot write {what} {path}: directory {parent} does not exist")


def _train(args, progress, label, X, y, **options):
    """GPModel.train with a progress bar; the engine's warnings become notes on stderr."""
    update = progress.bar(label, args.max_iter)
    update(0)
    iterations = []

    def callback(iteration, loss):
        iterations.append(iteration)
        update(iteration, loss)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = GPModel.train(X, y, max_iter=args.max_iter, callback=callback, **options)
    progress.done()
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        _note(args, message)
    return model, iterations


def _emit(args, result, lines):
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(lines))


def _cmd_demo(args):
    if args.n_test < 2:
        raise UsageError("--n-test must be at least 2")
    plot_path = None if args.no_plot else args.plot
    if plot_path is not None:
        _check_writable(plot_path, "plot")
    progress = _progress_for(args)
    threads = _start_runtime(args)
    _check_memory(args.n_train, "float64")
    t_total = time.perf_counter()

    progress.status("simulating the mass-spring-damper chain ...")
    t0 = time.perf_counter()
    max_lag = max(DEMO_INPUT_LAGS, DEMO_OUTPUT_LAGS)
    n_samples = DEMO_BURN_IN + max_lag + args.n_train + args.n_test
    data = simulate.generate_dataset(n_samples, dt=DEMO_DT, noise_std=args.noise, seed=args.seed)
    X, y, names = simulate.lagged_features(data.u, data.y, DEMO_INPUT_LAGS, DEMO_OUTPUT_LAGS)
    times, truth = data.t[max_lag:], data.y_true[max_lag:]
    train = slice(DEMO_BURN_IN, DEMO_BURN_IN + args.n_train)
    test = slice(train.stop, train.stop + args.n_test)
    simulate_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    model, iterations = _train(
        args, progress, "training", X[train], y[train], kernel="se", feature_names=names, target_name="y[k]"
    )
    _ = model.gp  # factor at the final hyperparameters before timing prediction separately
    train_s = time.perf_counter() - t0

    progress.status("predicting held-out data ...")
    t0 = time.perf_counter()
    mean, std_latent = model.predict(X[test], return_std=True)
    predict_s = time.perf_counter() - t0
    progress.done()

    noise_variance = model.noise_variance * model.y_scale**2
    std = np.sqrt(std_latent**2 + noise_variance)  # predictive std of a new observation
    observed = y[test]
    residual = observed - mean
    rmse = float(np.sqrt(np.mean(residual**2)))
    rmse_truth = float(np.sqrt(np.mean((truth[test] - mean) ** 2)))
    mnlpd = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + residual**2 / (2 * std**2)))
    coverage = float(np.mean(np.abs(residual) <= Z95 * std))
    signal_std = float(np.std(observed))

    plot_written = None
    if plot_path is not None:
        progress.status("plotting ...")
        try:
            context = slice(max(0, train.stop - args.n_test // 5), train.stop)
            plot_written = str(
                plot_prediction(
                    plot_path,
                    times[test],
                    mean,
                    std,
                    truth=truth[test],
                    observed=observed,
                    train_t=times[context],
                    train_y=y[context],
                    title=(
                        f"gprat demo: one-step-ahead prediction of a non-linear mass-spring-damper chain\n"
                        f"test RMSE {rmse:.3g}, {100 * coverage:.1f}% of observations in the 95% interval"
                    ),
                )
            )
        except PlottingUnavailableError as error:
            _note(args, f"no plot written: {error}")
        finally:
            progress.done()
    total_s = time.perf_counter() - t_total

    kernel_name = type(model.gp.kernel).__name__
    result = {
        "command": "demo",
        "system": {
            "n_carts": simulate.MassSpringDamperChain().n_carts,
            "dt": DEMO_DT,
            "input_lags": DEMO_INPUT_LAGS,
            "output_lags": DEMO_OUTPUT_LAGS,
        },
        "n_train": args.n_train,
        "n_test": args.n_test,
        "seed": args.seed,
        "noise_std": args.noise,
        "kernel": kernel_name,
        "iterations": len(iterations),
        "learned_noise_std": float(np.sqrt(noise_variance)),
        "metrics": {
            "rmse": rmse,
            "rmse_noise_free": rmse_truth,
            "mnlpd": mnlpd,
            "coverage_95": coverage,
            "signal_std": signal_std,
        },
        "timings_s": {"simulate": simulate_s, "train": train_s, "predict": predict_s, "total": total_s},
        "threads": threads,
        "plot": plot_written,
    }
    lines = [
        (
            f"gprat demo: {result['system']['n_carts']}-cart non-linear mass-spring-damper chain, NARX model "
            f"({DEMO_INPUT_LAGS} input + {DEMO_OUTPUT_LAGS} output lags, dt {DEMO_DT} s)"
        ),
        (
            f"  data        {args.n_train} training / {args.n_test} test samples, "
            f"noise std {args.noise:g}, seed {args.seed}"
        ),
        (
            f"  model       exact GP, {kernel_name} kernel with {len(names)} lengthscales (ARD), "
            f"{len(iterations)} L-BFGS-B iterations"
        ),
        f"  noise std   learned {np.sqrt(noise_variance):.4g} (true {args.noise:g})",
        (
            f"  RMSE        {rmse:.4g} against observations, {rmse_truth:.4g} against the noise-free truth "
            f"(signal std {signal_std:.3g})"
        ),
        f"  MNLPD       {mnlpd:.4g} (mean negative log predictive density)",
        f"  coverage    {100 * coverage:.1f}% of test observations inside the 95% interval",
        (
            f"  timings     simulate {simulate_s:.2f} s, train {train_s:.2f} s, predict {predict_s:.2f} s, "
            f"total {total_s:.2f} s on {threads} thread{'s' if threads != 1 else ''}"
        ),
        f"  plot        {plot_written if plot_written else 'none'}",
    ]
    _emit(args, result, lines)
    return EXIT_OK


def _cmd_fit(args):
    _check_writable(args.output, "model")
    values, names = _read_table(args.data)
    n_columns = values.shape[1]
    target = _column_index(args.target, names, n_columns, args.data)
    if args.features:
        features = [_column_index(spec, names, n_columns, args.data) for spec in args.features]
        if target in features:
            raise DataError(f"the target column {args.target!r} is also listed in --features")
        if len(set(features)) != len(features):
            raise DataError("--features lists a column twice")
    else:
        features = [j for j in range(n_columns) if j != target]
        if not features:
            raise DataError(f"{args.data} has no column besides the target to use as input")
    label = (lambda j: names[j]) if names is not None else str
    X, y = values[:, features], values[:, target]
    _finite(X, "an input column", args.data)
    _finite(y, "the target column", args.data)
    if X.shape[0] < 2:
        raise DataError(f"{args.data}: need at least 2 data rows to fit; got {X.shape[0]}")

    progress = _progress_for(args)
    threads = _start_runtime(args)
    _check_memory(X.shape[0], args.dtype)
    t0 = time.perf_counter()
    model, iterations = _train(
        args,
        progress,
        "fitting",
        X,
        y,
        kernel=args.kernel,
        ard=not args.isotropic,
        feature_names=[label(j) for j in features],
        target_name=label(target),
        dtype=args.dtype,
    )
    lml = float(model.gp.log_marginal_likelihood())
    fit_s = time.perf_counter() - t0
    progress.done()
    model.save(args.output)

    lengthscale = np.atleast_1d(model.lengthscale).tolist()
    result = {
        "command": "fit",
        "model": str(args.output),
        "data": str(args.data),
        "n_samples": int(X.shape[0]),
        "features": model.feature_names,
        "target": model.target_name,
        "kernel": args.kernel,
        "hyperparameters": {
            "lengthscale": lengthscale,
            "signal_variance": model.signal_variance,
            "noise_variance": model.noise_variance,
        },
        "log_marginal_likelihood": lml,
        "iterations": len(iterations),
        "fit_seconds": fit_s,
        "threads": threads,
    }
    lines = [
        (
            f"fitted an exact GP ({args.kernel}) on {X.shape[0]} samples: {', '.join(model.feature_names)} "
            f"-> {model.target_name}"
        ),
        f"  lengthscale      {', '.join(f'{v:.4g}' for v in lengthscale)} (standardized inputs)",
        (
            f"  signal variance  {model.signal_variance:.4g}, noise variance {model.noise_variance:.4g} "
            f"(standardized target)"
        ),
        f"  log marginal likelihood {lml:.6g}, {len(iterations)} iterations, {fit_s:.2f} s on {threads} threads",
        f"  model written to {args.output}",
    ]
    _emit(args, result, lines)
    return EXIT_OK


def _cmd_predict(args):
    if args.output is not None:
        _check_writable(args.output, "predictions")
    try:
        model = load_model(args.model)
    except FileNotFoundError:
        raise DataError(f"model file not found: {args.model}") from None
    values, names = _read_table(args.data)
    if names is not None:
        missing = [name for name in model.feature_names if name not in names]
        if missing:
            raise DataError(
                f"{args.data} lacks the model's feature column(s) {', '.join(missing)}; it has: {', '.join(names)}"
            )
        X = values[:, [names.index(name) for name in model.feature_names]]
    elif values.shape[1] == model.n_features:
        X = values
    else:
        try:
            indices = [int(name) for name in model.feature_names]
        except ValueError:
            indices = None
        if indices is None or max(indices) >= values.shape[1]:
            raise DataError(
                f"{args.data} has {values.shape[1]} columns; the model needs {model.n_features} "
                f"({', '.join(model.feature_names)})"
            )
        X = values[:, indices]
    _finite(X, "an input column", args.data)
    threads = _start_runtime(args)
    progress = _progress_for(args)
    progress.status(f"predicting {X.shape[0]} points on {threads} threads ...")
    with warnings.catch_warnings(record=True) as caught:  # e.g. jitter while refactoring the model
        warnings.simplefilter("always")
        mean, std = model.predict(X, return_std=True, include_noise=args.include_noise)
    progress.done()
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        _note(args, message)

    buffer = io.StringIO()
    buffer.write("mean,std\n")
    for m, s in zip(mean.tolist(), std.tolist()):
        buffer.write(f"{m!r},{s!r}\n")
    if args.output is None:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        Path(args.output).write_text(buffer.getvalue())
        _note(args, f"wrote {X.shape[0]} predictions to {args.output}")
    return EXIT_OK


_COMMANDS = {"demo": _cmd_demo, "fit": _cmd_fit, "predict": _cmd_predict}


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def _error(message):
    print(f"{PROG}: error: {message}", file=sys.stderr)


def main(argv=None):
    """Run the ``gprat`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        Exit status: 0 success, 1 runtime or data error, 2 usage error, 130 interrupted.
    """
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else EXIT_OK
    try:
        return _COMMANDS[args.command](args)
    except UsageError as error:
        _error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        newline = "\n" if getattr(sys.stderr, "isatty", lambda: False)() else ""
        print(f"{newline}{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except FileNotFoundError as error:
        _error(f"file not found: {error.filename}" if error.filename else str(error))
        return EXIT_ERROR
    except (DataError, ModelFileError, OSError, ValueError, ArithmeticError, RuntimeError) as error:
        _error(str(error) or type(error).__name__)
        return EXIT_ERROR
    except MemoryError as error:
        _error(str(error) or "out of memory; try fewer samples")
        return EXIT_ERROR
