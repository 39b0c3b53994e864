"""
SVGP at a million points
========================

:class:`gprat.SVGP` trains on minibatches: natural-gradient steps for the variational
distribution q and Adam for the kernel and the inducing points, so a step costs
O(b M² + M³) whatever n is. The data and the model are those of ``examples/svgp_million.py``
(``X ~ U[-1, 1]^4``, ``y = sin(3 x0) + cos(2 x1) x2 + 0.1 eps``, M = 256 inducing points by
k-means++, the last 10% held out).

Scale: n = 50,000 and M = 64 here (about 15 s on two cores); ``GPRAT_EXAMPLE_SCALE=full``
trains on n = 1,000,000 with M = 256 for 3 epochs, as ``python examples/svgp_million.py``
does (about 2,600 steps, a few minutes on two cores; per-step times in ``benchmarks/README.md``).
"""

# %%
import os
import sys

import matplotlib.pyplot as plt

try:  # the helpers next to this script (sphinx-gallery runs it from examples/, without __file__)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
except NameError:
    sys.path.insert(0, os.getcwd())
from _scale import pick  # noqa: E402
from svgp_million import plot_elbo, train  # noqa: E402

run = train(n=pick(50_000, 1_000_000), m=pick(64, 256), epochs=3, lr=0.01, progress=False)
steps = len(run["history"])
print(f"SVGP n_train = {run['n_train']:,}: {steps} steps in {run['seconds']:.1f} s "
      f"({1e3 * run['seconds'] / steps:.1f} ms per step)")
print(f"test RMSE {run['rmse']:.4f} (noise std 0.1), NLPD {run['nlpd']:.4f}; "
      f"learned noise variance {run['model'].noise_variance:.4g}")

# %%
# The ELBO over the epochs
fig, ax = plt.subplots(figsize=(7, 3.5))
plot_elbo(ax, run)
ax.set_title(f"SVGP minibatch ELBO, n = {run['n_train']:,}")
fig.tight_layout()
plt.show()
