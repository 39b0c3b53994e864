"""``gprat demo``: simulate a non-linear mass-spring-damper chain, learn a NARX GP model of it,
predict held-out data with uncertainty, report accuracy, calibration and timings, and plot."""

from __future__ import annotations

import time

import numpy as np

from .. import simulate
from ..plotting import PlottingUnavailableError, plot_prediction
from .common import EXIT_OK, UsageError, check_writable, emit, note, reporter_for, start_runtime, train_model

#: Demo set-up: sampling interval, NARX lags and samples dropped while the chain settles.
DEMO_DT = 0.1
DEMO_INPUT_LAGS = 6
DEMO_OUTPUT_LAGS = 6
DEMO_BURN_IN = 100
Z95 = 1.959963984540054


def run(args):
    """``gprat demo``: simulate, train, predict, report and plot; returns the exit status."""
    if args.n_test < 2:
        raise UsageError("--n-test must be at least 2")
    plot_path = None if args.no_plot else args.plot
    if plot_path is not None:
        check_writable(plot_path, "plot")
    progress = reporter_for(args)
    threads = start_runtime(args)
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
    model, iterations = train_model(
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
            note(args, f"no plot written: {error}")
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
    emit(args, result, lines)
    return EXIT_OK
