"""Plots of GP predictions. Needs matplotlib, an optional extra: ``pip install "gprat[plot]"``.

matplotlib is imported when a plot is drawn, never when gprat is imported, and only its
object-oriented API is used (no pyplot, no global state, no display needed).
"""

from __future__ import annotations

import numpy as np

__all__ = ["INSTALL_HINT", "PlottingUnavailableError", "plot_prediction", "require_matplotlib"]

#: How to get the optional plotting dependency.
INSTALL_HINT = 'pip install "gprat[plot]"'


class PlottingUnavailableError(ImportError):
    """matplotlib, needed for plotting, is not installed."""


def require_matplotlib():
    """Import matplotlib's Agg canvas and Figure, or explain how to install matplotlib.

    Returns
    -------
    Figure : type
        ``matplotlib.figure.Figure``.
    FigureCanvasAgg : type
        ``matplotlib.backends.backend_agg.FigureCanvasAgg``.

    Raises
    ------
    PlottingUnavailableError
        If matplotlib cannot be imported.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise PlottingUnavailableError(
            f"plotting needs matplotlib, which is not installed; install it with: {INSTALL_HINT}"
        ) from error
    return Figure, FigureCanvasAgg


def plot_prediction(
    path,
    t,
    mean,
    std,
    *,
    truth=None,
    observed=None,
    train_t=None,
    train_y=None,
    title="Gaussian-process prediction",
    xlabel="time [s]",
    ylabel="position of the last cart",
    z=1.959963984540054,
    dpi=120,
):
    """Save a PNG of a predictive mean with its central interval, and the truth.

    Parameters
    ----------
    path : str or path-like
        Output file; the format follows its suffix (PNG for ``.png``).
    t : array-like of shape (n_points,)
        Abscissa of the predictions.
    mean : array-like of shape (n_points,)
        Predictive mean.
    std : array-like of shape (n_points,)
        Predictive standard deviation; the band is ``mean +- z * std``.
    truth : array-like of shape (n_points,), optional
        Noise-free values, drawn as a line.
    observed : array-like of shape (n_points,), optional
        Noisy observations, drawn as dots.
    train_t, train_y : array-like, optional
        Tail of the training data, drawn in grey for context.
    title, xlabel, ylabel : str
    z : float, default=1.96
        Half-width of the band in standard deviations (1.96: the 95% interval).
    dpi : int, default=120

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    PlottingUnavailableError
        If matplotlib is not installed.
    """
    from pathlib import Path

    Figure, FigureCanvasAgg = require_matplotlib()
    t = np.asarray(t, dtype=np.float64)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    if not t.shape == mean.shape == std.shape or t.ndim != 1:
        raise ValueError(
            f"t, mean and std must be 1-D of equal length; got shapes {t.shape}, {mean.shape}, {std.shape}."
        )
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if train_t is not None and train_y is not None:
        axes.plot(train_t, train_y, color="0.6", lw=1.0, label="training data")
    axes.fill_between(
        t,
        mean - z * std,
        mean + z * std,
        color="tab:blue",
        alpha=0.25,
        lw=0,
        label=f"{100 * _coverage_of(z):.0f}% interval",
    )
    if observed is not None:
        axes.plot(t, observed, ".", color="k", ms=2.5, alpha=0.6, label="observations")
    if truth is not None:
        axes.plot(t, truth, color="tab:red", lw=1.2, label="truth (noise-free)")
    axes.plot(t, mean, color="tab:blue", lw=1.5, label="prediction (mean)")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.legend(loc="upper right", fontsize="small", ncols=2)
    axes.grid(alpha=0.3)
    path = Path(path)
    figure.savefig(path, dpi=dpi)
    return path


def _coverage_of(z):
    """Probability mass of a standard normal within +-z."""
    from math import erf, sqrt

    return erf(z / sqrt(2.0))
