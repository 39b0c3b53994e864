"""
Mauna Loa CO2: a composed kernel
================================

scikit-learn's best-known GP example on gprat's engine: the monthly mean CO2 at Mauna Loa
(1958-2001, 521 months), fitted with scikit-learn's gallery kernel (a long-term trend, a
slowly changing seasonal cycle, medium-term irregularities and noise) through
:class:`gprat.GaussianProcessRegressor`, then a 15-year forecast.

Scale: the data set is small (521 points), so the docs run the whole fit; the docs skip the
side-by-side scikit-learn fit. ``GPRAT_EXAMPLE_SCALE=full`` adds it (as
``python examples/mauna_loa.py`` does, which also times both; about 30 s more on two cores).
"""

# %%
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
from _scale import example_scale  # noqa: E402
from mauna_loa import initial_kernel, load_co2  # noqa: E402  (the command-line example's data and kernel)

X, co2 = load_co2()
y_mean = co2.mean()
y = co2 - y_mean
print("initial kernel:", initial_kernel())

# %%
# Fit: the kernel's 11 free hyperparameters by L-BFGS-B on the log marginal likelihood.
start = time.perf_counter()
model = gprat.GaussianProcessRegressor(kernel=initial_kernel(), normalize_y=False).fit(X, y)
print(f"gprat fit: {time.perf_counter() - start:.2f} s, log marginal likelihood "
      f"{model.log_marginal_likelihood_value_:.3f}")
print("learned kernel:", model.kernel_)

if example_scale() == "full":
    from sklearn.gaussian_process import GaussianProcessRegressor as SklearnGPR

    start = time.perf_counter()
    theirs = SklearnGPR(kernel=initial_kernel(), normalize_y=False).fit(X, y)
    print(f"scikit-learn fit: {time.perf_counter() - start:.2f} s, log marginal likelihood "
          f"{theirs.log_marginal_likelihood_value_:.3f}")

# %%
# Forecast with its 1-sigma band
X_test = np.linspace(X[0, 0], X[-1, 0] + 15.0, 1000)[:, None]
mean, std = model.predict(X_test, return_std=True)
mean += y_mean
fig, ax = plt.subplots(figsize=(9, 4.5))
ax.plot(X[:, 0], co2, "o", color="black", markersize=1.5, label="monthly means")
ax.plot(X_test[:, 0], mean, color="tab:blue", alpha=0.8, label="GP mean")
ax.fill_between(X_test[:, 0], mean - std, mean + std, color="tab:blue", alpha=0.25, label="1 sigma")
ax.set(xlabel="year", ylabel="CO2 concentration (ppm)", title="Monthly mean CO2 at Mauna Loa and gprat's forecast")
ax.legend(loc="upper left")
fig.tight_layout()
plt.show()
