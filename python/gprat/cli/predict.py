"""``gprat predict``: predictive mean and standard deviation of a saved model, as CSV."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

from ..io import load_model
from .common import EXIT_OK, DataError, check_finite, check_writable, note, read_table, reporter_for, start_runtime


def run(args):
    """``gprat predict MODEL DATA``: predictive mean and std as CSV; returns the exit status."""
    if args.output is not None:
        check_writable(args.output, "predictions")
    try:
        model = load_model(args.model)
    except FileNotFoundError:
        raise DataError(f"model file not found: {args.model}") from None
    values, names = read_table(args.data)
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
    check_finite(X, "an input column", args.data)
    threads = start_runtime(args)
    progress = reporter_for(args)
    progress.status(f"predicting {X.shape[0]} points on {threads} threads ...")
    with warnings.catch_warnings(record=True) as caught:  # e.g. jitter while refactoring the model
        warnings.simplefilter("always")
        mean, std = model.predict(X, return_std=True, include_noise=args.include_noise)
    progress.done()
    for message in dict.fromkeys(str(warning.message) for warning in caught):
        note(args, message)

    buffer = io.StringIO()
    buffer.write("mean,std\n")
    for m, s in zip(mean.tolist(), std.tolist()):
        buffer.write(f"{m!r},{s!r}\n")
    if args.output is None:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
    else:
        Path(args.output).write_text(buffer.getvalue())
        note(args, f"wrote {X.shape[0]} predictions to {args.output}")
    return EXIT_OK
