"""What the ``gprat`` subcommands share: exit codes, errors, notes and progress on stderr, the
runtime's thread count, and reading tabular data (CSV with a header, or ``.npy``)."""

from __future__ import annotations

import csv
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .. import runtime
from .._validation import check_int
from ..io import GPModel
from ..optim import Progress

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "gprat"


class UsageError(Exception):
    """Bad command line: reported with exit status 2."""


class DataError(Exception):
    """Unusable input data or file: reported with exit status 1."""


class Reporter:
    """Status lines and progress bars on stderr; silent when disabled (``--quiet`` or not a terminal)."""

    def __init__(self, enabled, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self._width = 0

    def status(self, text):
        """Show one status line (replacing the previous one)."""
        if self.enabled:
            padding = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + padding)
            self.stream.flush()
            self._width = len(text)

    def bar(self, label, total):
        """A :class:`gprat.optim.Progress` bar of `total` iterations on this stream."""
        self.done()
        return Progress(self.enabled, total, desc=label, stream=self.stream)

    def done(self):
        """Clear the status line."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def reporter_for(args):
    """The stderr reporter for these arguments: enabled on a terminal unless ``--quiet``."""
    stream = sys.stderr
    enabled = not args.quiet and hasattr(stream, "isatty") and stream.isatty()
    return Reporter(enabled, stream)


def note(args, message):
    """One ``gprat: note: ...`` line on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(f"{PROG}: note: {message}", file=sys.stderr)


def start_runtime(args):
    """Start the runtime with --threads, else $GPRAT_NUM_THREADS, else the default; return the thread count."""
    threads = args.threads
    if threads is None:
        text = os.environ.get("GPRAT_NUM_THREADS", "").strip()
        if text:
            try:
                threads = check_int(int(text), "GPRAT_NUM_THREADS")
            except ValueError:
                raise UsageError(f"GPRAT_NUM_THREADS must be a positive integer; got {text!r}") from None
    runtime.start(threads)
    return int(runtime.num_threads())


def read_table(path):
    """Read a CSV file with a header row (NumPy's reader), or a 2-D .npy array.

    Returns
    -------
    values : ndarray of shape (n_rows, n_columns)
    names : list of str, or None for .npy

    Raises
    ------
    DataError
        For a missing or unreadable file, a bad header, a row of the wrong length or a cell
        that is not a number (with its line and column).
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
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            header = handle.readline()
            if not header.strip():
                raise DataError(f"{path}: empty file; expected a CSV header row")
            names = [name.strip() for name in next(csv.reader([header]))]
            if not names or any(not name for name in names):
                raise DataError(f"{path}: the header row has an empty column name")
            if len(set(names)) != len(names):
                raise DataError(f"{path}: duplicate column names in the header row")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data": reported below
                values = np.loadtxt(handle, delimiter=",", comments=None, ndmin=2, dtype=np.float64)
    except ValueError as error:  # NumPy's reader refused a row: say which line and column
        raise DataError(_locate_bad_cell(path) or f"{path}: not a readable CSV file: {error}") from None
    except (csv.Error, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable CSV file: {error}") from None
    if values.shape[0] == 0:
        raise DataError(f"{path}: no data rows after the header")
    if values.shape[1] != len(names):
        raise DataError(f"{path}: {values.shape[1]} values per row; the header has {len(names)} columns")
    return values, names


def _locate_bad_cell(path):
    """The message for the first row NumPy's reader refused: a wrong length or a non-number."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        names = [name.strip() for name in next(rows)]
        for line, row in enumerate(rows, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(names):
                return f"{path}, line {line}: {len(row)} values; the header has {len(names)} columns"
            for name, cell in zip(names, row):
                try:
                    float(cell)
                except ValueError:
                    return f"{path}, line {line}, column {name!r}: expected a number, got {cell!r}"
    return None


def column_index(spec, names, n_columns, path):
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


def check_finite(values, what, path):
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DataError(f"{path}: {what} has a NaN or infinite value (data row {row + 1})")


def check_writable(path, what):
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise DataError(f"cannot write {what} {path}: directory {parent} does not exist")


def train_model(args, reporter, label, X, y, **options):
    """GPModel.train with a progress bar; the engine's warnings become notes on stderr."""
    iterations = []
    with reporter.bar(label, args.max_iter) as bar:

        def callback(iteration, loss):
            iterations.append(iteration)
            bar.update(iteration, loss)

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = GPModel.train(X, y, max_iter=args.max_iter, callback=callback, **options)
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        note(args, message)
    return model, iterations


def emit(args, result, lines):
    """Print the result: JSON with ``--json``, else the human-readable lines."""
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(lines))
