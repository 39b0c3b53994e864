"""SVGP on a million points: minibatch training with a progress bar and the ELBO over epochs.

The data (documented synthetic): X ~ U[-1, 1]^d (seed 0), y = sin(3 x_0) + cos(2 x_1) x_2 +
0.1 eps, d = 4 by default; the last 10% of the rows are held out. The model is gprat.SVGP with a
SquaredExponential ARD kernel and M inducing points chosen by k-means++ from a 100,000-row
sample of the training inputs, trained by natural gradients for q and Adam for the kernel and
the inducing points (the default). The script prints the test RMSE and the mean negative log
predictive density, and plots the full-data ELBO estimate (the running mean of the minibatch
estimates of each epoch) against the epoch.

Run ``python examples/svgp_million.py`` (``--n 100000`` for a quick run, ``--help`` for the options).
The gallery version, at a size the documentation build can run, is ``examples/plot_svgp_million.py``.
"""

import argparse
import time

import numpy as np


def make_data(n, d, seed=0):
    """The synthetic data of the module docstring: ``(X, y)`` with X of shape (n, d)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=n)
    return X, y


def train(n=1_000_000, d=4, m=256, batch_size=1024, epochs=3, lr=0.01, progress=True):
    """Make the data, train the SVGP, score it on the held-out 10%.

    Returns
    -------
    dict
        ``model``, ``seconds`` (training time), ``rmse``, ``nlpd``, ``history`` (minibatch ELBO
        per step), ``per_epoch`` (its mean per epoch), ``steps_per_epoch`` and ``n_train``.
    """
    import gprat

    X, y = make_data(n, d)
    n_train = int(0.9 * n)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    Z = gprat.models.sgpr.initial_inducing_points(Xtr[:100_000], m, random_state=0)
    model = gprat.SVGP(gprat.kernels.SquaredExponential(np.full(d, 0.5)), noise_variance=0.1, inducing_points=Z)
    steps_per_epoch = -(-n_train // batch_size)
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, batch_size=batch_size, epochs=epochs, lr=lr, random_state=1, progress=progress)
    seconds = time.perf_counter() - t0
    mean, std = model.predict(Xte, return_std=True, include_noise=True)
    history = np.array(model.elbo_history_)
    return {
        "model": model,
        "seconds": seconds,
        "rmse": float(np.sqrt(np.mean((mean - yte) ** 2))),
        "nlpd": float(np.mean(0.5 * np.log(2 * np.pi * std**2) + 0.5 * ((yte - mean) / std) ** 2)),
        "history": history,
        "per_epoch": [history[e * steps_per_epoch:(e + 1) * steps_per_epoch].mean() for e in range(epochs)],
        "steps_per_epoch": steps_per_epoch,
        "n_train": n_train,
    }


def plot_elbo(ax, run):
    """The minibatch ELBO estimates and their epoch means of `run` (from :func:`train`) on `ax`."""
    history, per_epoch, steps_per_epoch = run["history"], run["per_epoch"], run["steps_per_epoch"]
    steps = np.arange(1, history.size + 1) / steps_per_epoch
    ax.plot(steps, history, lw=0.5, alpha=0.5, label="minibatch estimate")
    ax.plot(np.arange(1, len(per_epoch) + 1), per_epoch, "o-", label="epoch mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO")
    ax.set_ylim(np.percentile(history, 5), history.max() + 0.05 * abs(history.max()))
    ax.legend()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=4)
    p.add_argument("--m", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--output", default="svgp_elbo.png", help="plot file (PNG)")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args()

    run = train(args.n, args.d, args.m, args.batch_size, args.epochs, args.lr)
    model, seconds, steps_per_epoch = run["model"], run["seconds"], run["steps_per_epoch"]
    print(f"SVGP n_train={run['n_train']} d={args.d} M={args.m} b={args.batch_size}: {args.epochs} epochs in "
          f"{seconds:.1f} s ({1e3 * seconds / (args.epochs * steps_per_epoch):.1f} ms per step)")
    print(f"  test RMSE {run['rmse']:.4f}, NLPD {run['nlpd']:.4f}; noise variance {model.noise_variance:.4g}")
    print("  mean minibatch ELBO per epoch: " + ", ".join(f"{v:.6g}" for v in run["per_epoch"]))
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        plot_elbo(ax, run)
        fig.tight_layout()
        fig.savefig(args.output, dpi=120)
        print(f"  plot written to {args.output}")


if __name__ == "__main__":
    main()
