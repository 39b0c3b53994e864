"""The ``gprat`` command (also ``python -m gprat``).

Subcommands:

``gprat demo``
    Simulate a non-linear mass-spring-damper chain, learn a NARX GP model of it, predict
    held-out data with uncertainty, print accuracy and calibration metrics and timings, and
    plot the prediction (PNG; needs the optional matplotlib extra).
``gprat fit DATA --target COLUMN -o MODEL``
    Fit an exact GP to a CSV file (with a header) or a ``.npy`` array and save the model
    (format: :mod:`gprat.io.model_file`).
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
import math
import os
import sys

from .._version import __version__
from ..io import ModelFileError
from ..kernels import registry
from . import demo as _demo
from . import fit as _fit
from . import predict as _predict
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, DataError, UsageError

__all__ = ["build_parser", "main"]


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
    version = __version__
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
    fit.add_argument("--kernel", choices=sorted(registry.short_names()), default="se", help="covariance function (default: se)")
    fit.add_argument(
        "--isotropic", action="store_true", help="one lengthscale for all features (default: one per feature)"
    )
    fit.add_argument(
        "--max-iter", type=_non_negative_int, default=100, metavar="N", help="optimizer iterations (default: 100)"
    )
    fit.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="precision (default: float64)")
    fit.add_argument("--model", choices=["exact", "sgpr", "svgp", "kiss"], default="exact",
                     help="exact GP, SGPR (collapsed bound, L-BFGS-B), SVGP (minibatches) or KISS-GP (low-dimensional "
                          "data at large n; se/matern kernels) (default: exact)")
    fit.add_argument("--inducing-points", type=_positive_int, default=256, metavar="M",
                     help="inducing points of sgpr/svgp (default: 256, at most the number of rows)")
    fit.add_argument("--epochs", type=_positive_int, default=20, metavar="N", help="svgp epochs (default: 20)")
    fit.add_argument("--batch-size", type=_positive_int, default=1024, metavar="B",
                     help="svgp minibatch size (default: 1024)")
    fit.add_argument(
        "--grid-size", type=_non_negative_int, default=None, metavar="M",
        help="KISS-GP grid points per feature (default: about n^(1/d), at least 32)",
    )
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


_COMMANDS = {"demo": _demo, "fit": _fit, "predict": _predict}


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
        return _COMMANDS[args.command].run(args)
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
