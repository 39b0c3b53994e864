"""Mauna Loa CO2: scikit-learn's best-known GP example, on gprat's engine and on scikit-learn.

The kernel is the one of scikit-learn's gallery example "Forecasting of CO2 level on Mona Loa
dataset using Gaussian process regression (GPR)":

    50**2 * RBF(50)                                          long-term rise
    + 2**2 * RBF(100) * ExpSineSquared(1, 1, fixed period)   seasonal cycle, slowly changing
    + 0.5**2 * RationalQuadratic(1, 1)                       medium-term irregularities
    + 0.1**2 * RBF(0.1) + WhiteKernel(0.1**2)                noise

fitted to the monthly means of ``examples/data/co2_monthly.csv`` (made from
``statsmodels.datasets.co2``; see the file's header) with the mean subtracted and
``normalize_y=False``. Both estimators start from the same kernel object and optimize with
L-BFGS-B; the script prints their log marginal likelihoods and fit times side by side (min and
median over ``--repeats`` fits) and plots gprat's forecast with its 1-sigma band.

Run ``python examples/mauna_loa.py`` (``--help`` for the options).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "co2_monthly.csv"


def load_co2(path=DATA):
    """Decimal year (ndarray of shape (n_months, 1)) and monthly mean CO2 in ppm (shape (n_months,))."""
    with open(path) as handle:
        lines = [line for line in handle if line.strip() and not line.startswith("#")]
    header = lines[0].strip().split(",")
    if header[2:4] != ["decimal_year", "co2_ppm"]:
        raise ValueError(f"{path}: expected the columns decimal_year, co2_ppm; got header {lines[0].strip()!r}")
    table = np.array([[float(v) for v in line.split(",")[2:4]] for line in lines[1:]])
    return table[:, :1], table[:, 1]


def initial_kernel():
    """scikit-learn's gallery kernel (scikit-learn's own classes; gprat runs them as they are)."""
    from sklearn.gaussian_process.kernels import RBF, ExpSineSquared, RationalQuadratic, WhiteKernel

    long_term = 50.0**2 * RBF(length_scale=50.0)
    seasonal = 2.0**2 * RBF(length_scale=100.0) * ExpSineSquared(
        length_scale=1.0, periodicity=1.0, periodicity_bounds="fixed"
    )
    irregularities = 0.5**2 * RationalQuadratic(length_scale=1.0, alpha=1.0)
    noise = 0.1**2 * RBF(length_scale=0.1) + WhiteKernel(noise_level=0.1**2, noise_level_bounds=(1e-5, 1e5))
    return long_term + seasonal + irregularities + noise


def timed_fits(estimator_class, X, y, repeats):
    """Fit ``repeats`` fresh estimators; return the last one and the wall times (seconds)."""
    times, model = [], None
    for _ in range(repeats):
        model = estimator_class(kernel=initial_kernel(), normalize_y=False)
        start = time.perf_counter()
        model.fit(X, y)
        times.append(time.perf_counter() - start)
    return model, times


def machine():
    """CPU model, cores and library versions, for the record."""
    import scipy
    import sklearn

    import gprat

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu, "cores": cores, "gprat_threads": gprat.runtime.num_threads(), "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__, "sklearn": sklearn.__version__,
        "gprat": gprat.__version__,
    }


def plot(path, X, y, y_mean, model):
    """Data and gprat's forecast (mean, 1-sigma band) to ``path`` (any matplotlib format)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X_test = np.linspace(X[0, 0], X[-1, 0] + 15.0, 1000)[:, None]
    mean, std = model.predict(X_test, return_std=True)
    mean += y_mean
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(X[:, 0], y + y_mean, "o", color="black", markersize=1.5, label="monthly means")
    ax.plot(X_test[:, 0], mean, color="tab:blue", alpha=0.8, label="gprat GP mean")
    ax.fill_between(X_test[:, 0], mean - std, mean + std, color="tab:blue", alpha=0.25, label="1 sigma")
    ax.set_xlabel("year")
    ax.set_ylabel("CO2 concentration (ppm)")
    ax.set_title("Monthly mean CO2 at Mauna Loa (Scripps/NOAA via statsmodels) and gprat's forecast")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="mauna_loa.png", help="plot file (default: %(default)s)")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the plot")
    parser.add_argument("--repeats", type=int, default=1, help="fits per library, for min/median (default: 1)")
    parser.add_argument("--data", default=str(DATA), help="CSV of monthly means (default: the committed copy)")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    try:
        from sklearn.gaussian_process import GaussianProcessRegressor as SklearnGPR
    except ImportError:
        print("this example compares with scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 2
    import gprat

    X, co2 = load_co2(args.data)
    y_mean = float(co2.mean())
    y = co2 - y_mean
    ours, our_times = timed_fits(gprat.GaussianProcessRegressor, X, y, args.repeats)
    theirs, their_times = timed_fits(SklearnGPR, X, y, args.repeats)

    info = machine()
    results = {
        "n_samples": int(X.shape[0]),
        "gprat": {"lml": ours.log_marginal_likelihood_value_, "fit_s": our_times, "kernel": str(ours.kernel_)},
        "sklearn": {"lml": theirs.log_marginal_likelihood_value_, "fit_s": their_times, "kernel": str(theirs.kernel_)},
        "speedup_min": min(their_times) / min(our_times),
        "speedup_median": statistics.median(their_times) / statistics.median(our_times),
        "machine": info,
    }
    print(f"Mauna Loa CO2, {X.shape[0]} monthly means {X[0, 0]:.2f}-{X[-1, 0]:.2f}; "
          f"{info['cpu']}, {info['cores']} cores (gprat threads: {info['gprat_threads']})")
    print(f"versions: gprat {info['gprat']}, scikit-learn {info['sklearn']}, numpy {info['numpy']}, "
          f"scipy {info['scipy']}, python {info['python']}")
    print(f"{'':14}{'log marginal likelihood':>26}{'fit min (s)':>14}{'fit median (s)':>16}")
    for name, model, times in (("gprat", ours, our_times), ("scikit-learn", theirs, their_times)):
        print(f"{name:14}{model.log_marginal_likelihood_value_:26.10f}{min(times):14.3f}"
              f"{statistics.median(times):16.3f}")
    print(f"gprat's fit is {results['speedup_min']:.2f}x faster than scikit-learn's (min over {args.repeats} "
          f"fit(s); median: {results['speedup_median']:.2f}x)")
    print(f"gprat kernel_:        {ours.kernel_}")
    print(f"scikit-learn kernel_: {theirs.kernel_}")
    if not args.no_plot:
        plot(args.output, X, y, y_mean, ours)
        print(f"plot written to {args.output}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
