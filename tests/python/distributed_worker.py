"""Run under mpirun by test_distributed.py: ``python distributed_worker.py SCENARIO [ARG]``.

Each scenario checks gprat.distributed on every rank and exits non-zero on a failed check
(the abort hook ends the job). References are independent of the code under test: the
single-process engine gprat.ExactGP, and the dense NumPy oracle tests/reference.py. Rank 0
prints one line "OK <scenario> ..." at the end.
"""

import itertools
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import reference  # noqa: E402  (tests/reference.py, the dense oracle)

import gprat  # noqa: E402
import gprat.distributed as gd  # noqa: E402
from mpi4py import MPI  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
RTOL = 1e-10


def data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, d))
    y = np.sin(2 * X).sum(axis=1) + 0.1 * rng.standard_normal(n)
    return X, y


def close(a, b, what, rtol=RTOL):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(b))))
    err = float(np.max(np.abs(a - b))) / scale
    if not err <= rtol:
        raise AssertionError(f"rank {rank}: {what}: relative error {err:.3e} > {rtol:g}\n  got  {a}\n  want {b}")


def grids():
    out = [gd.default_grid(size)]
    for g in ((1, size), (size, 1), (2, size // 2)):
        if g[0] * g[1] == size and g not in out:
            out.append(g)
    return out


def equivalence():
    """LML, gradient and predictions equal the single-process engine (and the dense oracle)."""
    cases = 0
    for n, d, nb in ((37, 2, 8), (100, 3, 16), (203, 2, 64), (64, 1, 64), (150, 2, None)):
        X, y = data(n, d, seed=n)
        Xs = data(23, d, seed=n + 1)[0]
        ls = np.linspace(0.6, 1.2, d)
        for kernel in (gprat.kernels.SquaredExponential(ls, signal_variance=1.3), gprat.kernels.Matern32(0.8),
                       gprat.kernels.SquaredExponential(ls) + gprat.kernels.Matern52(1.5, signal_variance=0.5)):
            single = gprat.ExactGP(kernel, noise_variance=0.05).fit(X, y)
            theta = single.theta + 0.1  # a point other than the fitted one
            lml_s, grad_s = single.log_marginal_likelihood(theta, eval_gradient=True)
            mean_s, std_s = single.predict(Xs, return_std=True)
            _, std_sn = single.predict(Xs, return_std=True, include_noise=True)
            for grid in grids():
                gp = gd.ExactGP(kernel, noise_variance=0.05, block_size=nb, grid=grid).fit(X, y)
                tag = f"n={n} nb={nb} grid={grid} kernel={kernel!r}"
                close(gp.log_marginal_likelihood(), single.log_marginal_likelihood(), f"fit LML {tag}")
                lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
                close(lml, lml_s, f"LML {tag}")
                close(grad, grad_s, f"gradient {tag}")
                saved = gd.RECURSION_BASE, gd.TRTRI_RECURSION_BASE, gd.TRTRI_RECURSION_MIN_N
                # K^{-1} by both recursions (L^{-1}, then lower(M^T M)) down to single blocks: every
                # (ragged) split
                gd.RECURSION_BASE = gd.TRTRI_RECURSION_BASE = gd.TRTRI_RECURSION_MIN_N = 1
                try:
                    lml_r, grad_r = gp.log_marginal_likelihood(theta, eval_gradient=True)
                finally:
                    gd.RECURSION_BASE, gd.TRTRI_RECURSION_BASE, gd.TRTRI_RECURSION_MIN_N = saved
                close(lml_r, lml_s, f"LML, recursion to blocks, {tag}")
                close(grad_r, grad_s, f"gradient, recursion to blocks, {tag}")
                mean, std = gp.predict(Xs, return_std=True)  # refactors at gp.theta after the gradient step
                close(mean, mean_s, f"mean {tag}")
                close(std, std_s, f"std {tag}")
                close(gp.predict(Xs, return_std=True, include_noise=True)[1], std_sn, f"std+noise {tag}")
                close(gp.predict(Xs), mean_s, f"mean only {tag}")
                cases += 1
            if isinstance(kernel, gprat.kernels.SquaredExponential):  # the dense oracle, independent of gprat
                close(lml_s, reference.lml("SquaredExponential", X, y, theta, True), f"oracle LML n={n}", 1e-9)
                close(grad_s, reference.lml_gradient("SquaredExponential", X, y, theta, True),
                      f"oracle gradient n={n}", 1e-8)
    return f"{cases} cases on grids {grids()}"


def inverse():
    """L^{-1} by the recursion onto pdgemm (trtri_recursive) equals NumPy's inverse of the same
    L and pdtrtri's, and lower(L^{-T} L^{-1}) by lauum_recursive equals NumPy's, for ragged
    blocks on every grid, with the recursion down to single blocks and with a larger base."""
    cases = 0
    for n, nb in ((37, 8), (100, 16), (203, 64), (130, 32)):
        X, y = data(n, 2, seed=n)
        for grid in grids():
            gp = gd.ExactGP(gprat.kernels.Matern52(0.9), noise_variance=0.1, block_size=nb, grid=grid).fit(X, y)
            lib, KL, ctx = gp._lib, gp._KL, gp._context
            rows, cols = KL.global_rows(), KL.global_cols()
            lower = rows[:, None] >= cols[None, :]  # this rank's entries of the lower triangle
            dense = np.zeros((n, n))                # L, gathered from every rank's blocks
            dense[np.ix_(rows, cols)] = np.where(lower, gp._K[:len(rows), :len(cols)], 0.0)
            dense = comm.allreduce(dense)
            linv = np.linalg.inv(dense)             # NumPy's LAPACK, independent of ScaLAPACK
            kinv = np.linalg.inv(dense @ dense.T)
            mine = np.where(lower, linv[np.ix_(rows, cols)], 0.0)
            mine_k = np.where(lower, kinv[np.ix_(rows, cols)], 0.0)
            ref = np.array(gp._K, order="F")
            assert lib.trtri(KL, ctx, ref) == 0
            # block products by pdgemm (None) and by gprat's panel exchange (the communicator), its
            # panels one block, three blocks (ragged last round) and the default 1024 columns wide
            for base, (products, width) in itertools.product(
                    (1, 2 * nb + 1), ((None, 1), (gp.comm.py2f(), nb), (gp.comm.py2f(), 3 * nb), (gp.comm.py2f(), 1024))):
                a = np.array(gp._K, order="F")
                info = lib.trtri_recursive(KL, ctx, a, base, products, width)
                assert info == 0, f"rank {rank}: trtri_recursive info {info}"
                got = np.where(lower, a[:len(rows), :len(cols)], 0.0)
                tag = f"n={n} nb={nb} grid={grid} base={base} products={'pdgemm' if products is None else width}"
                close(got, mine, f"L^-1 against NumPy {tag}", 1e-12)
                close(got, np.where(lower, ref[:len(rows), :len(cols)], 0.0), f"L^-1 against pdtrtri {tag}", 1e-13)
                lib.lauum_recursive(KL, ctx, a, base, products, width)
                close(np.where(lower, a[:len(rows), :len(cols)], 0.0), mine_k, f"K^-1 against NumPy {tag}", 1e-11)
                cases += 1
    return f"{cases} cases on grids {grids()}"


def optimize():
    """L-BFGS-B and Adam: every rank takes the same steps; the result matches one process."""
    X, y = data(120, 2, seed=7)
    out = []
    for method, kw in (("L-BFGS-B", {}), ("adam", {"lr": 0.1})):
        k = gprat.kernels.SquaredExponential([1.0, 1.0])
        single = gprat.ExactGP(k, noise_variance=0.1).fit(X, y)
        rs = single.optimize(method=method, max_iter=15, **kw)
        gp = gd.ExactGP(k, noise_variance=0.1, block_size=16).fit(X, y)
        r = gp.optimize(method=method, max_iter=15, **kw)
        thetas = comm.allgather(gp.theta.tobytes())
        assert all(t == thetas[0] for t in thetas), f"rank {rank}: ranks disagree on theta after {method}"
        hist = comm.allgather(np.asarray(r.history).tobytes())
        assert all(h == hist[0] for h in hist), f"rank {rank}: ranks disagree on the {method} history"
        close(r.log_marginal_likelihood, rs.log_marginal_likelihood, f"{method} LML", 1e-7)
        close(gp.theta, single.theta, f"{method} theta", 1e-5)
        close(gp.log_marginal_likelihood(), single.log_marginal_likelihood(), f"{method} refit LML", 1e-7)
        out.append(f"{method} {r.n_iter} it")
    # x1 irrelevant: L-BFGS-B switches it off and the switched-off recheck reruns, on every rank alike
    rng = np.random.default_rng(0)
    X = rng.uniform(size=(80, 2))
    y = np.sin(6 * X[:, 0]) + 0.05 * rng.standard_normal(80)
    k = gprat.kernels.Matern52([1.0, 1.0])
    single = gprat.ExactGP(k, noise_variance=0.01).fit(X, y)
    rs = single.optimize()
    gp = gd.ExactGP(k, noise_variance=0.01, block_size=16).fit(X, y)
    r = gp.optimize()
    assert "lengthscale[1] had switched off" in r.message and "lengthscale[1] had switched off" in rs.message, \
        (r.message, rs.message)
    # SciPy's L-BFGS-B here, the engine's C++ loop there: the same optimum to 1e-3 nats (test_box_lbfgs)
    close(r.log_marginal_likelihood, rs.log_marginal_likelihood, "rechecked LML", 1e-5)
    out.append(f"recheck {r.n_iter} it")
    return ", ".join(out)


def nonspd():
    """A K that is not positive definite raises NotPositiveDefiniteError on every rank."""
    X, y = data(60, 2)  # lengthscale 100 on [-2, 2]^2: K is numerically of rank ~3, and the noise ~0
    caught, message = 0, ""
    try:
        gd.ExactGP(gprat.kernels.SquaredExponential(100.0), noise_variance=1e-300, block_size=8).fit(X, y)
    except gprat.NotPositiveDefiniteError as error:
        caught, message = 1, str(error)
    counts = comm.allreduce(caught)
    assert counts == size, f"NotPositiveDefiniteError on {counts} of {size} ranks"
    assert "positive definite" in message
    return message


def bad_input():
    """Bad input on ONE rank raises the same clear exception on every rank."""
    X, y = data(30, 2)
    gp = gd.ExactGP(gprat.kernels.SquaredExponential(1.0), block_size=8)
    y_bad = y[:-1] if rank == size - 1 else y
    try:
        gp.fit(X, y_bad)
    except ValueError as error:
        message = str(error)
    else:
        raise AssertionError(f"rank {rank}: no exception for a short y on rank {size - 1}")
    messages = comm.allgather(message)
    assert all(m == messages[0] for m in messages), messages
    assert "one entry per row of X" in message and f"rank {size - 1}" in message, message
    X_other = X + (rank == size - 1)  # valid everywhere, but different on one rank
    try:
        gp.fit(X_other, y)
    except ValueError as error:
        assert "identical X and y" in str(error), str(error)
    else:
        raise AssertionError("no exception for X differing between ranks")
    return messages[0]


def _same_error_everywhere(kind, call, needle):
    """call() must raise `kind` on every rank, with one message naming `needle`; returns it."""
    try:
        call()
    except kind as error:
        message = str(error)
    else:
        raise AssertionError(f"rank {rank}: no {kind.__name__} (expected one naming {needle!r})")
    messages = comm.allgather(message)
    assert all(m == messages[0] for m in messages), f"ranks raised different messages: {messages}"
    assert needle in message, message
    return message


def bad_input_every_verb():
    """Bad input on the LAST rank only, for every verb: the same exception on every rank, and the
    model stays usable (no rank is left behind in a collective)."""
    X, y = data(40, 2)
    Xs = data(5, 2, seed=1)[0]
    last = rank == size - 1
    k = gprat.kernels.SquaredExponential([1.0, 1.0])
    _same_error_everywhere(ValueError, lambda: gd.ExactGP(k, noise_variance=-1.0 if last else 0.1),
                           "noise_variance must be a positive")
    _same_error_everywhere(ValueError, lambda: gd.ExactGP(k, block_size=0 if last else 8), "block_size must be")
    gp = gd.ExactGP(k, noise_variance=0.1, block_size=8).fit(X, y)
    lml = gp.log_marginal_likelihood()
    _same_error_everywhere(ValueError, lambda: gd.ExactGP(k, block_size=8).fit(np.where(last, np.nan, X), y),
                           "must be finite")
    theta = gp.theta + 0.1
    _same_error_everywhere(ValueError, lambda: gp.log_marginal_likelihood(theta[:-1] if last else theta),
                           "theta must hold")
    _same_error_everywhere(RuntimeError, lambda: gp.log_marginal_likelihood(theta + (0.5 if last else 0.0)),
                           "theta differs between ranks")
    _same_error_everywhere(ValueError, lambda: gp.predict(Xs[:, :1] if last else Xs), "X must have shape")
    _same_error_everywhere(RuntimeError, lambda: gp.predict(Xs + (1.0 if last else 0.0)),
                           "test points X differs between ranks")
    _same_error_everywhere(ValueError, lambda: gp.optimize(method="sgd" if last else "adam"), "method must be")
    _same_error_everywhere(ValueError, lambda: gp.optimize(max_iter=0 if last else 5), "max_iter must be")
    # still usable, and unchanged, on every rank
    close(gp.log_marginal_likelihood(), lml, "LML after the refused calls")
    mean = gp.predict(Xs)
    close(mean, gprat.ExactGP(k, noise_variance=0.1).fit(X, y).predict(Xs), "mean after the refused calls")
    return "9 refused calls, model intact"


def save(path):
    X, y = data(90, 2, seed=3)
    k = gprat.kernels.Matern52([0.7, 1.1], signal_variance=0.9)
    gp = gd.ExactGP(k, noise_variance=0.02, block_size=16).fit(X, y)
    gp.optimize(max_iter=5)
    gp.save(path)
    Xs = data(11, 2, seed=4)[0]
    mean, std = gp.predict(Xs, return_std=True)
    if rank == 0:
        np.savez(path + ".expected.npz", mean=mean, std=std, theta=gp.theta, Xs=Xs)
    comm.Barrier()
    return path


def raise_on_one_rank():
    """Rank 1 raises before a collective that the others enter: the job must end, not hang."""
    X, y = data(300, 2)
    gp = gd.ExactGP(gprat.kernels.SquaredExponential(1.0), block_size=32).fit(X, y)
    if rank == 1:
        raise RuntimeError("deliberate failure on rank 1")
    gp.log_marginal_likelihood(gp.theta + 0.1, eval_gradient=True)  # the others wait in pdpotrf
    time.sleep(60)


def kill_one_rank():
    """Rank 1 dies (SIGKILL) in the middle of an optimization: the others must exit within seconds."""
    X, y = data(400, 2)
    gp = gd.ExactGP(gprat.kernels.SquaredExponential([1.0, 1.0]), block_size=32).fit(X, y)
    calls = [0]

    def cb(it, loss):
        calls[0] += 1
        if rank == 1 and calls[0] == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    gp.optimize(max_iter=1000, callback=cb)
    time.sleep(60)


def run_until_interrupted():
    """Training steps until the job is interrupted (the test sends SIGINT to mpirun)."""
    X, y = data(400, 2)
    gp = gd.ExactGP(gprat.kernels.SquaredExponential([1.0, 1.0]), block_size=32).fit(X, y)
    if rank == 0:
        print("started", flush=True)
    while True:
        gp.log_marginal_likelihood(gp.theta + 0.01, eval_gradient=True)


if __name__ == "__main__":
    scenario = sys.argv[1]
    result = globals()[scenario](*sys.argv[2:])
    comm.Barrier()
    if rank == 0:
        print(f"OK {scenario} on {size} ranks: {result}", flush=True)
