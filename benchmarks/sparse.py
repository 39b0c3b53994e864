"""Sparse GPs (issue #10): SGPR's bound-plus-gradient against a NumPy implementation of the same
tiled algorithm, and SVGP's per-minibatch training step against GPyTorch's SVGP, side by side
in one run, same threads, float64.

Usage:
    python benchmarks/sparse.py sgpr --n 1000000 --m 1024         # the issue's size
    python benchmarks/sparse.py svgp --n 1000000 --d 8 --m 512 --batch 1024 --steps 20
    python benchmarks/sparse.py all --small                       # both, at a size this machine runs quickly
    add --threads T (default: GPRAT_NUM_THREADS or all cores), --json out.json

Data (documented synthetic): X ~ U[-1, 1]^d (seed 0), y = sin(3 x_0) + cos(2 x_1) x_2 + 0.1 eps,
kernel SquaredExponential with ARD lengthscales 0.5 and signal variance 1, noise variance 0.01;
Z: M rows of X (the first M, the same for every library, so that all do the same work).

SGPR: one evaluation of Titsias' bound and its gradient with respect to theta and Z. gprat:
``SGPR.log_marginal_likelihood(theta, eval_gradient=True, return_inducing_gradient=True)``.
GPflow (``--gpflow-python`` names an interpreter that has it): ``SGPR.maximum_log_likelihood_
objective`` and its tf.GradientTape gradient, in a tf.function, second call timed; it forms
K_uf (M x n) whole, so it is skipped where 3 n M doubles exceed ``--gpflow-max-gb``.
NumPy: the same formulas (cpp/include/gprat/gp/sgpr.hpp), accumulating Psi2 = K_ZX K_XZ over
row chunks of 8192 rows and then the weights W = 2 G_Psi2 K_ZX + g y^T chunk by chunk (no
N x M matrix), BLAS through NumPy. Both report the bound (they must agree) and the peak
resident memory of their own subprocess.

SVGP: the mean time of one training step on a minibatch of b rows (after 2 warm-up steps).
gprat: ``SVGP.partial_fit`` (natural-gradient step for q + Adam on theta and Z, the default;
and ``method="adam"``). GPyTorch: ApproximateGP with CholeskyVariationalDistribution,
VariationalStrategy(learn_inducing_locations=True), ScaleKernel(RBFKernel(ard_num_dims=d)),
GaussianLikelihood, VariationalELBO(num_data=N), torch.optim.Adam over all parameters:
zero_grad, forward, -elbo, backward, step. Epoch time = step time * N / b.
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

import common

LENGTHSCALE, SIGNAL, NOISE = 0.5, 1.0, 0.01


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, d))
    y = np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]) * X[:, 2] + 0.1 * rng.normal(size=n)
    return X, y


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- SGPR
def se_ard(A, B, ls):
    A, B = A / ls, B / ls
    d2 = np.sum(A * A, 1)[:, None] + np.sum(B * B, 1)[None, :] - 2 * A @ B.T
    return SIGNAL * np.exp(-0.5 * np.maximum(d2, 0.0))


def numpy_sgpr(X, y, Z, ls, s2, chunk=8192):
    """Titsias' bound and its gradient (theta = log [ls..., signal, noise], and Z), tiled over rows."""
    n, d = X.shape
    M = Z.shape[0]
    Kzz = se_ard(Z, Z, ls)
    L = np.linalg.cholesky(Kzz)
    Psi2, psi1, yy = np.zeros((M, M)), np.zeros(M), float(y @ y)
    for s in range(0, n, chunk):
        K = se_ard(Z, X[s:s + chunk], ls)
        Psi2 += K @ K.T
        psi1 += K @ y[s:s + chunk]
    t = n * SIGNAL
    import scipy.linalg as sl
    P = sl.solve_triangular(L, sl.solve_triangular(L, Psi2, lower=True).T, lower=True)
    P = 0.5 * (P + P.T)
    b = sl.solve_triangular(L, psi1, lower=True)
    B = np.eye(M) + P / s2
    LB = np.linalg.cholesky(B)
    c = sl.solve_triangular(LB, b, lower=True) / s2
    F = (-0.5 * n * np.log(2 * np.pi) - 0.5 * n * np.log(s2) - np.sum(np.log(np.diag(LB))) - 0.5 * yy / s2
         + 0.5 * c @ c - 0.5 * t / s2 + 0.5 * np.trace(P) / s2)
    e = sl.solve_triangular(LB, c, lower=True, trans="T")
    at = sl.solve_triangular(L, e, lower=True, trans="T")
    Binv = np.linalg.inv(B)
    Linv = sl.solve_triangular(L, np.eye(M), lower=True)
    Gp = Linv.T @ (np.eye(M) - Binv - np.outer(e, e)) @ Linv / (2 * s2)
    Gz = Linv.T @ (np.eye(M) - 0.5 * B - 0.5 * Binv - 0.5 * np.outer(e, e)) @ Linv
    g_ls, g_s, gZ = np.zeros(d), 0.0, np.zeros((M, d))
    for s in range(0, n, chunk):
        Xc = X[s:s + chunk]
        K = se_ard(Z, Xc, ls)
        W = (2 * Gp @ K + np.outer(at / s2, y[s:s + chunk])) * K  # weight times k
        g_s += W.sum()
        for q in range(d):
            D = Z[:, q:q + 1] - Xc[None, :, q]
            g_ls[q] += np.sum(W * D * D) / ls[q] ** 2
            gZ[:, q] -= np.sum(W * D, axis=1) / ls[q] ** 2
    Wz = Gz * Kzz
    g_s += Wz.sum()
    for q in range(d):
        D = Z[:, q:q + 1] - Z[None, :, q]
        g_ls[q] += np.sum(Wz * D * D) / ls[q] ** 2
        gZ[:, q] -= 2 * np.sum(Wz * D, axis=1) / ls[q] ** 2
    g_s -= n * SIGNAL / (2 * s2)
    return F, np.concatenate([g_ls, [g_s]]), gZ


def sgpr_worker(args):
    X, y = data(args.n, args.d)
    Z = X[:args.m].copy()
    ls = np.full(args.d, LENGTHSCALE)
    base = peak_rss_mb()
    if args.library == "gprat":
        import gprat
        gprat.start(args.threads)
        model = gprat.SGPR(gprat.kernels.SquaredExponential(ls, SIGNAL), noise_variance=NOISE, inducing_points=Z)
        t0 = time.perf_counter()
        model.fit(X, y)
        t_fit = time.perf_counter() - t0
        t0 = time.perf_counter()
        F, g, gz = model.log_marginal_likelihood(model.theta, eval_gradient=True, return_inducing_gradient=True)
        t = time.perf_counter() - t0
        out = dict(library="gprat", seconds=t, bound_only_seconds=t_fit, bound=F,
                   grad_theta_norm=float(np.linalg.norm(g[:args.d + 1])), grad_Z_norm=float(np.linalg.norm(gz)))
    elif args.library == "gpflow":
        out = gpflow_sgpr(X, y, Z, ls, args)
    else:
        t0 = time.perf_counter()
        F, g, gz = numpy_sgpr(X, y, Z, ls, NOISE)
        t = time.perf_counter() - t0
        out = dict(library="numpy", seconds=t, bound=F, grad_theta_norm=float(np.linalg.norm(g)),
                   grad_Z_norm=float(np.linalg.norm(gz)))
    out["peak_rss_mb_above_data"] = peak_rss_mb() - base
    print(json.dumps(out))


def gpflow_sgpr(X, y, Z, ls, args):
    """GPflow's SGPR: its training objective (the collapsed bound) and the gradient with respect
    to every trainable variable (kernel, likelihood and Z) by one tf.GradientTape, compiled with
    tf.function; the first call (tracing) and a second one are timed. GPflow forms K_uf
    (M x n) whole, so its memory grows as n M."""
    import gpflow
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    gpflow.config.set_default_float(np.float64)
    kernel = gpflow.kernels.SquaredExponential(variance=SIGNAL, lengthscales=ls.copy())
    model = gpflow.models.SGPR((X, y[:, None]), kernel=kernel, inducing_variable=Z.copy(), noise_variance=NOISE)

    @tf.function
    def bound_and_gradient():
        with tf.GradientTape() as tape:
            F = model.maximum_log_likelihood_objective()
        return F, tape.gradient(F, model.trainable_variables)

    t0 = time.perf_counter()
    bound_and_gradient()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    F, grads = bound_and_gradient()
    t = time.perf_counter() - t0
    zgrad = [g for v, g in zip(model.trainable_variables, grads) if tuple(v.shape) == Z.shape]
    return dict(library="gpflow", version=gpflow.__version__, seconds=t, first_call_seconds=first,
                bound=float(F.numpy()), grad_Z_norm=float(np.linalg.norm(zgrad[0].numpy())) if zgrad else None)


# ----------------------------------------------------------------------------- SVGP
def svgp_worker(args):
    X, y = data(args.n, args.d)
    Z = X[:args.m].copy()
    b = args.batch
    rng = np.random.default_rng(1)
    batches = [np.sort(rng.choice(args.n, b, replace=False)) for _ in range(args.steps + 2)]
    if args.library.startswith("gprat"):
        import gprat
        gprat.start(args.threads)
        method = "adam" if args.library == "gprat-adam" else "ngd"
        model = gprat.SVGP(gprat.kernels.SquaredExponential(np.full(args.d, LENGTHSCALE), SIGNAL),
                           noise_variance=NOISE, inducing_points=Z, method=method)
        times = []
        for i, idx in enumerate(batches):
            t0 = time.perf_counter()
            model.partial_fit(X[idx], y[idx], n_samples=args.n, lr=0.01)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    else:
        import torch
        import gpytorch
        torch.set_num_threads(args.threads or os.cpu_count())
        torch.set_default_dtype(torch.float64)

        model = common.gpytorch_svgp_model(torch.tensor(Z))
        lik = gpytorch.likelihoods.GaussianLikelihood()
        model.covar_module.base_kernel.lengthscale = LENGTHSCALE
        lik.noise = NOISE
        mll = gpytorch.mlls.VariationalELBO(lik, model, num_data=args.n)
        opt = torch.optim.Adam(list(model.parameters()) + list(lik.parameters()), lr=0.01)
        Xt, yt = torch.tensor(X), torch.tensor(y)
        model.train()
        lik.train()
        times = []
        for i, idx in enumerate(batches):
            t0 = time.perf_counter()
            opt.zero_grad()
            loss = -mll(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
    step = float(np.mean(times))
    print(json.dumps(dict(library=args.library, step_ms=1e3 * step, step_ms_min=1e3 * min(times),
                          epoch_s=step * args.n / b)))


# ----------------------------------------------------------------------------- driver
def run_worker(kind, library, args):
    python = args.gpflow_python if library == "gpflow" else sys.executable
    cmd = [python, os.path.abspath(__file__), "--worker", kind, "--library", library, "--n", str(args.n), "--d", str(args.d),
           "--m", str(args.m), "--batch", str(args.batch), "--steps", str(args.steps), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return dict(library=library, error=out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
                    returncode=out.returncode)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=["sgpr", "svgp", "all"], default="all")
    p.add_argument("--worker", choices=["sgpr", "svgp"])
    p.add_argument("--library", default="gprat")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--d", type=int, default=8)
    p.add_argument("--m", type=int, default=None)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=int(os.environ.get("GPRAT_NUM_THREADS", os.cpu_count())))
    p.add_argument("--small", action="store_true", help="n = 100000, M = 256 (sgpr) / 512 (svgp)")
    p.add_argument("--json", default=None)
    p.add_argument("--sgpr-libraries", nargs="+", default=["gprat", "gpflow", "numpy"],
                   help="SGPR rows to run (gprat, gpflow, numpy)")
    p.add_argument("--gpflow-python", default=sys.executable,
                   help="interpreter that has gpflow and tensorflow (e.g. a separate venv)")
    p.add_argument("--gpflow-max-gb", type=float, default=6.0,
                   help="skip GPflow when 3 n M doubles exceed this many GiB")
    args = p.parse_args()
    if args.worker:
        (sgpr_worker if args.worker == "sgpr" else svgp_worker)(args)
        return
    results = {}
    if args.what in ("sgpr", "all"):
        a = argparse.Namespace(**vars(args))
        a.n = args.n or (100_000 if args.small else 1_000_000)
        a.m = args.m or (256 if args.small else 1024)
        rows = []
        for lib in args.sgpr_libraries:
            need = 3 * a.n * a.m * 8 / 2 ** 30  # GPflow: K_uf and its tape copies, n x M each
            if lib == "gpflow" and need > args.gpflow_max_gb:
                rows.append(dict(library="gpflow", skipped=f"needs ~{need:.0f} GB for its n x M matrices "
                                                           f"(> --gpflow-max-gb {args.gpflow_max_gb})"))
                continue
            rows.append(run_worker("sgpr", lib, a))
        results["sgpr"] = dict(n=a.n, m=a.m, d=a.d, threads=a.threads, rows=rows)
        print(f"SGPR bound + gradient, n={a.n}, M={a.m}, d={a.d}, {a.threads} threads")
        for r in rows:
            print("  ", r)
    if args.what in ("svgp", "all"):
        a = argparse.Namespace(**vars(args))
        a.n = args.n or (100_000 if args.small else 1_000_000)
        a.m = args.m or 512
        rows = [run_worker("svgp", lib, a) for lib in ("gprat", "gprat-adam", "gpytorch")]
        results["svgp"] = dict(n=a.n, m=a.m, d=a.d, batch=a.batch, threads=a.threads, rows=rows)
        print(f"SVGP training step, n={a.n}, M={a.m}, d={a.d}, b={a.batch}, {a.threads} threads")
        for r in rows:
            print("  ", r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
