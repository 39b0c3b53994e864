"""
KISS-GP in 1-D and 2-D
======================

:class:`gprat.KissGP` interpolates the kernel from a regular grid,
:math:`K \\approx W K_{UU} W^T` (cubic interpolation weights :math:`W`, a Kronecker product of
Toeplitz matrices :math:`K_{UU}`), and solves with preconditioned conjugate gradients: time
and memory grow about linearly in n, so low-dimensional problems far beyond the exact GP fit
on a laptop. Accuracy and speed measurements: :doc:`/kiss_gp`.

Scale: 1-D n = 20,000 and 2-D n = 4,000 on a 40 x 40 grid here; ``GPRAT_EXAMPLE_SCALE=full``
uses n = 1,000,000 (1-D) and n = 100,000 on a 100 x 100 grid (2-D), several minutes on two cores.
"""

# %%
# 1-D: a noisy signal with two length scales
# ------------------------------------------
import os
import sys
import time

import matplotlib.pyplot as plt
import numpy as np

import gprat

try:  # the helpers next to this script (sphinx-gallery runs it from examples/, without __file__)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
except NameError:
    sys.path.insert(0, os.getcwd())
from _scale import pick  # noqa: E402


def f1(x):
    return np.sin(8 * x) + 0.3 * np.sin(40 * x)


rng = np.random.default_rng(0)
n1 = pick(20_000, 1_000_000)
X1 = rng.uniform(0, 1, (n1, 1))
y1 = f1(X1[:, 0]) + 0.1 * rng.standard_normal(n1)
start = time.perf_counter()
kiss1 = gprat.KissGP(gprat.kernels.SquaredExponential(0.05), noise_variance=0.01, random_state=0).fit(X1, y1)
kiss1.optimize(max_iter=20, lr=0.05)
print(f"1-D: n = {n1}, grid {kiss1.grid_points_} points, "
      f"fit + 20 Adam steps {time.perf_counter() - start:.1f} s")
X1_test = np.linspace(0, 1, 500)[:, None]
mean1, std1 = kiss1.predict(X1_test, return_std=True)
print(f"     max |mean - f| = {np.max(np.abs(mean1 - f1(X1_test[:, 0]))):.3f}, "
      f"learned noise std {np.sqrt(kiss1.noise_variance):.3f} (true 0.1)")

fig, ax = plt.subplots(figsize=(9, 3.5))
shown = rng.choice(n1, 2000, replace=False)
ax.plot(X1[shown, 0], y1[shown], ".", color="0.6", ms=1.5, label="data (2000 shown)")
ax.plot(X1_test[:, 0], f1(X1_test[:, 0]), color="tab:red", lw=1, label="truth")
ax.plot(X1_test[:, 0], mean1, color="tab:blue", lw=1.2, label="KISS-GP mean")
ax.fill_between(X1_test[:, 0], mean1 - 2 * std1, mean1 + 2 * std1, color="tab:blue", alpha=0.3, lw=0,
                label="2 sigma (latent)")
ax.set(xlabel="x", ylabel="y", title=f"1-D KISS-GP, n = {n1:,}")
ax.legend(fontsize="small", ncols=2, loc="lower left")
fig.tight_layout()
plt.show()

# %%
# 2-D: a smooth surface
# ---------------------


def f2(X):
    return np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1])


n2 = pick(4_000, 100_000)
X2 = rng.uniform(-1, 1, (n2, 2))
y2 = f2(X2) + 0.05 * rng.standard_normal(n2)
start = time.perf_counter()
kiss2 = gprat.KissGP(gprat.kernels.SquaredExponential([0.3, 0.3]), noise_variance=0.01, grid_size=pick(40, 100),
                     random_state=0).fit(X2, y2)
kiss2.optimize(max_iter=pick(10, 30), lr=0.05)
print(f"2-D: n = {n2}, {kiss2.grid_points_} grid points, fit + {pick(10, 30)} Adam steps {time.perf_counter() - start:.1f} s")
g = np.linspace(-0.95, 0.95, 80)
G = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
mean2 = kiss2.predict(G)
error = np.abs(mean2 - f2(G))
print(f"     max |mean - f| on the test grid = {error.max():.3f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
im = left.pcolormesh(g, g, mean2.reshape(80, 80), shading="auto", cmap="viridis")
left.set(title="KISS-GP mean", xlabel="x0", ylabel="x1")
fig.colorbar(im, ax=left)
im = right.pcolormesh(g, g, error.reshape(80, 80), shading="auto", cmap="magma")
right.set(title="|mean - truth|", xlabel="x0")
fig.colorbar(im, ax=right)
fig.tight_layout()
plt.show()
