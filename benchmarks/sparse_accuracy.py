"""Accuracy of the sparse GPs (issue #10): test RMSE and NLPD of SGPR and SVGP next to the
exact GP, on the same data, each model learning its own hyperparameters from the same start.

Usage:
    python benchmarks/sparse_accuracy.py                       # n = 10000, d = 8, M = 128, 512
    python benchmarks/sparse_accuracy.py --n 4000 --m 64 256 --json out.json
    add --threads T, --exact-iter, --sgpr-iter, --svgp-epochs, --svgp-lr, --models exact sgpr svgp

Data (documented synthetic; no data set a package ships offline has n ~ 1e4 on this machine:
scikit-learn's California housing needs a download): benchmarks/common.py's ``make_problem``,
X ~ N(0, I_d), y = sum_j sin(x_j) / sqrt(d) + 0.1 eps (noise variance 0.01), n training and
``--n-test`` (default 2000) test points drawn the same way (test y with its noise).

Models, all from SquaredExponential(ARD lengthscale 1, signal variance 1), noise variance 0.1:
* exact: ``gprat.ExactGP``, ``optimize(max_iter=--exact-iter)`` (L-BFGS-B);
* SGPR: ``gprat.SGPR`` with M k-means++ inducing points, ``optimize(max_iter=--sgpr-iter)``
  over theta and Z;
* SVGP: ``gprat.SVGP`` (NGD for q + Adam), M k-means++ points, ``--svgp-epochs`` epochs of
  minibatches of 512, Adam's lr ``--svgp-lr`` (default 0.01).

Metrics on the test points: RMSE of the predictive mean and the mean negative log predictive
density of y, NLPD = mean(0.5 log(2 pi s2) + (y - mu)^2 / (2 s2)), s2 = predictive variance of
y (latent variance + noise variance). Each model runs in its own subprocess (fit time and
peak RSS are its own).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import make_problem  # noqa: E402


def metrics(mu, var, y):
    err = y - mu
    return dict(rmse=float(np.sqrt(np.mean(err ** 2))),
                nlpd=float(np.mean(0.5 * np.log(2 * np.pi * var) + err ** 2 / (2 * var))))


def worker(args):
    import gprat

    gprat.start(args.threads)
    p = make_problem(args.n, args.n_test, args.d, seed=args.seed)
    rng = np.random.default_rng([args.seed, 99])
    ys = np.sin(p.Xs).sum(axis=1) / np.sqrt(args.d) + 0.1 * rng.standard_normal(args.n_test)
    kernel = gprat.kernels.SquaredExponential(np.ones(args.d), 1.0)
    t0 = time.perf_counter()
    if args.model == "exact":
        model = gprat.ExactGP(kernel, noise_variance=0.1).fit(p.X, p.y)
        model.optimize(max_iter=args.exact_iter)
    elif args.model == "sgpr":
        model = gprat.SGPR(kernel, noise_variance=0.1, inducing_points=args.m, random_state=0).fit(p.X, p.y)
        model.optimize(max_iter=args.sgpr_iter)
    else:
        model = gprat.SVGP(kernel, noise_variance=0.1, inducing_points=args.m)
        model.fit(p.X, p.y, batch_size=512, epochs=args.svgp_epochs, lr=args.svgp_lr, random_state=0)
    fit_s = time.perf_counter() - t0
    mu, std = model.predict(p.Xs, return_std=True, include_noise=True)
    out = dict(model=args.model, m=args.m if args.model != "exact" else None, n=args.n, fit_seconds=fit_s,
               noise_variance=float(model.noise_variance), peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out.update(metrics(np.asarray(mu), np.asarray(std) ** 2, ys))
    print(json.dumps(out))


def run(model, m, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", model, "--m", str(m), "--n", str(args.n),
           "--n-test", str(args.n_test), "--d", str(args.d), "--seed", str(args.seed), "--threads", str(args.threads),
           "--exact-iter", str(args.exact_iter), "--sgpr-iter", str(args.sgpr_iter),
           "--svgp-epochs", str(args.svgp_epochs), "--svgp-lr", str(args.svgp_lr)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return dict(model=model, m=m, error=(out.stderr.strip().splitlines() or ["failed"])[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=["exact", "sgpr", "svgp"])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--m", type=int, nargs="+", default=[128, 512])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=int(os.environ.get("GPRAT_NUM_THREADS", os.cpu_count())))
    p.add_argument("--exact-iter", type=int, default=30)
    p.add_argument("--sgpr-iter", type=int, default=100)
    p.add_argument("--svgp-epochs", type=int, default=20)
    p.add_argument("--svgp-lr", type=float, default=0.01)
    p.add_argument("--models", nargs="+", default=["exact", "sgpr", "svgp"])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.worker:
        args.model, args.m = args.worker, args.m[0]
        worker(args)
        return
    rows = []
    print(f"n={args.n}, test {args.n_test}, d={args.d}, {args.threads} threads")
    print("| model | M | test RMSE | test NLPD | learned noise variance | fit seconds |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        for m in ([None] if model == "exact" else args.m):
            r = run(model, m or 0, args)
            rows.append(r)
            if "error" in r:
                print(f"| {model} | {m or '-'} | error: {r['error']} | | | |", flush=True)
                continue
            print(f"| {model} | {m or '-'} | {r['rmse']:.4f} | {r['nlpd']:.4f} | {r['noise_variance']:.4g} | "
                  f"{r['fit_seconds']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(n=args.n, n_test=args.n_test, d=args.d, threads=args.threads, rows=rows), f, indent=2)


if __name__ == "__main__":
    main()
