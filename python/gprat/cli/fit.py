"""``gprat fit``: fit a GP (exact, SGPR, SVGP or KISS-GP) to a table and save the model file
(:mod:`gprat.io.model_file`)."""

from __future__ import annotations

import time

import numpy as np

from ..io.model_file import MODEL_NAMES
from .common import (
    EXIT_OK,
    DataError,
    check_finite,
    check_writable,
    column_index,
    emit,
    read_table,
    reporter_for,
    start_runtime,
    train_model,
)


_DESCRIPTION = {"exact": "an exact GP", "sgpr": "an SGPR (collapsed bound)", "svgp": "an SVGP (minibatch ELBO)",
                "kiss": "a KISS-GP"}


def run(args):
    """``gprat fit DATA --target COLUMN -o MODEL``: fit, optimize and save; returns the exit status."""
    check_writable(args.output, "model")
    values, names = read_table(args.data)
    n_columns = values.shape[1]
    target = column_index(args.target, names, n_columns, args.data)
    if args.features:
        features = [column_index(spec, names, n_columns, args.data) for spec in args.features]
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
    check_finite(X, "an input column", args.data)
    check_finite(y, "the target column", args.data)
    if X.shape[0] < 2:
        raise DataError(f"{args.data}: need at least 2 data rows to fit; got {X.shape[0]}")

    model_type = MODEL_NAMES[getattr(args, "model", "exact")]
    model_options = None
    sparse = {}
    if model_type in ("SGPR", "SVGP"):
        sparse = {"inducing_points": min(args.inducing_points, X.shape[0])}
        if model_type == "SVGP":
            sparse.update(epochs=args.epochs, batch_size=args.batch_size)
    if model_type == "KissGP":
        if args.grid_size is not None and args.grid_size < 8:
            raise DataError(f"--grid-size must be at least 8; got {args.grid_size}")
        model_options = {"grid_size": args.grid_size}
    elif getattr(args, "grid_size", None) is not None:
        raise DataError("--grid-size is for --model kiss")
    progress = reporter_for(args)
    threads = start_runtime(args)
    t0 = time.perf_counter()
    model, iterations = train_model(
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
        model_type=model_type,
        model_options=model_options,
        **sparse,
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
        "model_type": model_type,
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
            f"fitted {_DESCRIPTION[args.model]} ({args.kernel}) on {X.shape[0]} samples: {', '.join(model.feature_names)} "
            f"-> {model.target_name}"
        ),
        f"  lengthscale      {', '.join(f'{v:.4g}' for v in lengthscale)} (standardized inputs)",
        (
            f"  signal variance  {model.signal_variance:.4g}, noise variance {model.noise_variance:.4g} "
            f"(standardized target)"
        ),
        f"  log marginal likelihood {lml:.6g}{' (stochastic estimate)' if model_type == 'KissGP' else ''}, "
        f"{len(iterations)} iterations, {fit_s:.2f} s on {threads} threads",
        f"  model written to {args.output}",
    ]
    emit(args, result, lines)
    return EXIT_OK
