"""Optimizers shared by every model: one objective type, L-BFGS-B, Adam and a progress bar.

:mod:`~gprat.optim.objective` defines what is minimized (trainable masks, failed points, exact
versus stochastic objectives and which point is returned), :mod:`~gprat.optim.lbfgsb` and
:mod:`~gprat.optim.adam` the two methods, :mod:`~gprat.optim.progress` the progress bar, and
:mod:`~gprat.optim.switched_off` the recheck of a lengthscale walked off to the box edge.
"""

from .adam import AdamState, minimize_adam
from .lbfgsb import minimize_lbfgsb
from .objective import Objective, OptimizationResult
from .progress import Progress

__all__ = ["Objective", "OptimizationResult", "minimize_lbfgsb", "minimize_adam", "AdamState", "Progress"]
