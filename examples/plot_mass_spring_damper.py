"""
Mass-spring-damper chain: a NARX model with an exact GP
=======================================================

What ``gprat demo`` does, step by step, with the demo's own library code
(:mod:`gprat.simulate`): simulate a chain of 4 carts with cubic springs, driven by a force on
the first cart; observe the noisy position of the last one; build lagged-regressor (NARX)
features ``[u[k-1..k-6], y[k-1..k-6]]``; train an ARD squared-exponential
:class:`gprat.ExactGP` with L-BFGS-B; predict held-out data one step ahead with a 95% band.

Scale: 500 training samples here; ``GPRAT_EXAMPLE_SCALE=full`` uses the demo's 2000 (as
``gprat demo`` does, about 10 s on two cores).
"""

# %%
# Simulate and build the features
# -------------------------------
import os
import sys
import time

import matplotlib.pyplot as plt
import numpy as np

import gprat
from gprat import simulate

try:  # the helpers next to this script (sphinx-gallery runs it from examples/, without __file__)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
except NameError:
    sys.path.insert(0, os.getcwd())
from _scale import pick  # noqa: E402

n_train, n_test, lags, burn_in = pick(500, 2000), 500, 6, 100
data = simulate.generate_dataset(burn_in + lags + n_train + n_test, dt=0.1, noise_std=0.05, seed=0)
X, y, names = simulate.lagged_features(data.u, data.y, input_lags=lags, output_lags=lags)
truth = data.y_true[lags:]
t = data.t[lags:]
train = slice(burn_in, burn_in + n_train)
test = slice(train.stop, train.stop + n_test)
print(f"{X.shape[1]} features: {', '.join(names)}")

# %%
# Standardize, train, predict
# ---------------------------
# One lengthscale per feature (ARD); the noise variance is learned with the rest.
x_mean, x_std = X[train].mean(axis=0), X[train].std(axis=0)
y_mean, y_std = y[train].mean(), y[train].std()
Xs = (X - x_mean) / x_std
ys = (y - y_mean) / y_std

start = time.perf_counter()
gp = gprat.ExactGP(gprat.kernels.SquaredExponential(np.full(X.shape[1], 3.0)), noise_variance=0.01)
gp.fit(Xs[train], ys[train])
result = gp.optimize(method="L-BFGS-B", max_iter=30)
train_s = time.perf_counter() - start

mean_s, std_s = gp.predict(Xs[test], return_std=True, include_noise=True)
mean, std = y_mean + y_std * mean_s, y_std * std_s
rmse = np.sqrt(np.mean((mean - y[test]) ** 2))
coverage = np.mean(np.abs(mean - y[test]) <= 1.96 * std)
print(f"trained on {n_train} samples in {train_s:.2f} s ({result.n_iter} L-BFGS-B iterations, "
      f"{gprat.num_threads()} threads)")
print(f"learned noise std {y_std * np.sqrt(gp.noise_variance):.4f} (true 0.05); test RMSE {rmse:.4f}; "
      f"{100 * coverage:.1f}% of observations inside the 95% band")

# %%
# The held-out prediction
# -----------------------
fig, ax = plt.subplots(figsize=(9, 4))
ax.fill_between(t[test], mean - 1.96 * std, mean + 1.96 * std, color="tab:blue", alpha=0.25, lw=0,
                label="95% interval")
ax.plot(t[test], y[test], ".", color="k", ms=2.5, alpha=0.6, label="observations")
ax.plot(t[test], truth[test], color="tab:red", lw=1.2, label="truth (noise-free)")
ax.plot(t[test], mean, color="tab:blue", lw=1.5, label="prediction (mean)")
ax.set(xlabel="time [s]", ylabel="position of the last cart",
       title=f"one-step-ahead prediction, test RMSE {rmse:.3g}")
ax.legend(loc="upper right", fontsize="small", ncols=2)
fig.tight_layout()
plt.show()
