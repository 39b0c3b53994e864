"""Issue #14's device measurements, one section per call (benchmarks/device_check.sh runs them).

Sections (float64, d = 8, ARD squared exponential, benchmarks/common.py's problem):
  env         GPU model, driver, CUDA, torch, GPyTorch, CuPy versions
  cholesky    gprat's tiled Cholesky (device time of the factorization phase, several tile sizes
              and stream counts) and its whole-matrix cusolverDnXpotrf path, against CuPy's and
              torch's potrf on the same K, at --n (default 32768 65536)
  train       one training step (LML + every gradient) against the floor torch.linalg.cholesky +
              torch.cholesky_inverse on the same K
  gpytorch    GPyTorch exact GP, float64, Cholesky forced: one loss + backward, against gprat's step
  predict     fit, then predict mean + std for m test points
  big         one float64 training step at n = 131072 (69 GB of lower tiles)
  cpu         strong scaling of the CPU Cholesky and training step against threaded dpotrf (SciPy)
Each case has a time cap (--cap seconds, default 60): a case whose first call exceeds it is
recorded with that one time and not repeated. Results are JSON lines appended to --out.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import make_problem  # noqa: E402

D = 8


def emit(out, record):
    record["time_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(record, default=float)
    print(line, flush=True)
    with open(out, "a") as f:
        f.write(line + "\n")


REPEATS = 2


def repeat(fn, cap, repeats=None, sync=None):
    """Median wall seconds of fn() over `repeats` calls after one warm-up; the warm-up alone when
    it exceeded `cap`. Returns (median, [times], capped)."""
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()
    first = time.perf_counter() - t0
    if first > cap:
        return first, [first], True
    times = []
    for _ in range(REPEATS if repeats is None else repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), times, False


def torch_kernel(p, dtype=None):
    """K = k(X, X) + noise I on the GPU through torch (the competitors' matrix)."""
    import torch

    dtype = dtype or torch.float64
    X = torch.as_tensor(p.X / p.lengthscale, device="cuda", dtype=dtype)
    K = torch.cdist(X, X).pow_(2).mul_(-0.5).exp_().mul_(p.signal_variance)
    K.diagonal().add_(p.noise_variance)
    return K


def gprat_engine(p, tile_size=None, streams=8, dtype=np.float64):
    import gprat
    import gprat._cuda as cuda

    k = gprat.kernels.SquaredExponential(lengthscale=p.lengthscale, signal_variance=p.signal_variance)
    cls = cuda.ExactGP64 if dtype == np.float64 else cuda.ExactGP32
    return cls(k._to_core(), np.ascontiguousarray(p.X, dtype=dtype), np.ascontiguousarray(p.y, dtype=dtype),
               p.noise_variance, tile_size, device=0, streams=streams)


def free_gpu():
    import gc

    gc.collect()
    try:
        import torch

        torch.cuda.empty_cache()
    except Exception:
        pass
    try:
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    except Exception:
        pass


def section_env(a):
    import gprat
    import gprat._cuda as cuda

    rec = {"section": "env", "python": sys.version.split()[0], "platform": platform.platform(),
           "gprat_device": cuda.device_description(0), "cuda_devices": cuda.device_count(),
           "cpu_count": os.cpu_count()}
    for name in ("torch", "gpytorch", "cupy", "numpy", "scipy"):
        try:
            rec[name] = __import__(name).__version__
        except Exception as error:  # recorded, not fatal
            rec[name] = f"unavailable: {error}"
    try:
        import torch

        rec["torch_cuda"] = torch.version.cuda
        rec["gpu"] = torch.cuda.get_device_name(0)
    except Exception:
        pass
    try:
        import subprocess

        rec["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    except Exception:
        pass
    emit(a.out, rec)


def section_cholesky(a):
    import torch

    for n in a.n:
        p = make_problem(n, 16, D)
        configs = [(nb, s) for nb in a.tiles for s in a.streams]
        best = None
        for nb, s in configs:
            gp = gprat_engine(p, nb, s)
            gp.profiling = True
            med, times, capped = repeat(lambda: gp.fit(), a.cap)
            chol = gp.last_times()["cholesky"]
            emit(a.out, {"section": "cholesky", "library": "gprat-tiled", "n": n, "tile_size": gp.tile_size,
                         "streams": s, "cholesky_s": chol, "fit_wall_s": med, "times": times, "capped": capped,
                         "phases": gp.last_times()})
            best = chol if best is None else min(best, chol)
            del gp
            free_gpu()
        gp = gprat_engine(p, a.tiles[0], a.streams[0])
        gp.cholesky_algorithm = "whole"
        gp.profiling = True
        try:
            med, times, capped = repeat(lambda: gp.fit(), a.cap)
            emit(a.out, {"section": "cholesky", "library": "gprat-whole-Xpotrf", "n": n,
                         "cholesky_s": gp.last_times()["cholesky"], "fit_wall_s": med, "capped": capped})
        except MemoryError as error:
            emit(a.out, {"section": "cholesky", "library": "gprat-whole-Xpotrf", "n": n, "error": str(error)})
        del gp
        free_gpu()
        K = torch_kernel(p)
        sync = torch.cuda.synchronize
        med, times, capped = repeat(lambda: torch.linalg.cholesky(K), a.cap, sync=sync)
        emit(a.out, {"section": "cholesky", "library": "torch.linalg.cholesky", "n": n, "cholesky_s": med,
                     "times": times, "capped": capped, "gprat_best_over_this": best / med})
        try:
            import cupy

            Kc = cupy.from_dlpack(K)
            med, times, capped = repeat(lambda: cupy.linalg.cholesky(Kc), a.cap,
                                        sync=cupy.cuda.Device().synchronize)
            emit(a.out, {"section": "cholesky", "library": "cupy.linalg.cholesky (cuSOLVER potrf)", "n": n,
                         "cholesky_s": med, "times": times, "capped": capped, "gprat_best_over_this": best / med})
            del Kc
        except Exception as error:
            emit(a.out, {"section": "cholesky", "library": "cupy", "n": n, "error": repr(error)})
        del K
        free_gpu()


def section_train(a):
    import torch

    for n in a.n:
        p = make_problem(n, 16, D)
        gp = gprat_engine(p, None, a.streams[0])
        gp.profiling = True
        theta = list(p.theta)
        med, times, capped = repeat(lambda: gp.training_step(theta, True), a.cap)
        phases = gp.last_times()
        del gp
        free_gpu()
        K = torch_kernel(p)

        def floor():
            L = torch.linalg.cholesky(K)
            return torch.cholesky_inverse(L)

        fmed, ftimes, fcapped = repeat(floor, a.cap, sync=torch.cuda.synchronize)
        emit(a.out, {"section": "train", "n": n, "gprat_step_s": med, "times": times, "capped": capped,
                     "phases": phases, "floor_potrf_plus_inverse_s": fmed, "floor_times": ftimes,
                     "ratio_to_floor": med / fmed, "target_ratio": 1.3})
        del K
        free_gpu()


def section_gpytorch(a):
    import gpytorch
    import torch

    for n in a.n:
        p = make_problem(n, 16, D)
        X = torch.as_tensor(p.X, device="cuda", dtype=torch.float64)
        y = torch.as_tensor(p.y, device="cuda", dtype=torch.float64)

        class Model(gpytorch.models.ExactGP):
            def __init__(self, X, y, likelihood):
                super().__init__(X, y, likelihood)
                self.mean_module = gpytorch.means.ZeroMean()
                self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=D))

            def forward(self, x):
                return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

        likelihood = gpytorch.likelihoods.GaussianLikelihood().to(device="cuda", dtype=torch.float64)
        model = Model(X, y, likelihood).to(device="cuda", dtype=torch.float64)
        model.train(), likelihood.train()
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)

        def step():
            with gpytorch.settings.max_cholesky_size(10**9), gpytorch.settings.fast_computations(False, False, False):
                model.zero_grad()
                loss = -mll(model(X), y)
                loss.backward()

        try:
            med, times, capped = repeat(step, a.cap, sync=torch.cuda.synchronize)
            rec = {"section": "gpytorch", "n": n, "gpytorch_step_s": med, "times": times, "capped": capped}
        except Exception as error:  # out of memory is a result too
            rec = {"section": "gpytorch", "n": n, "error": repr(error)[:500]}
        del model, likelihood, mll, X, y
        free_gpu()
        gp = gprat_engine(p, None, a.streams[0])
        gmed, gtimes, gcapped = repeat(lambda: gp.training_step(list(p.theta), True), a.cap)
        rec.update({"gprat_step_s": gmed, "gprat_times": gtimes, "gprat_capped": gcapped})
        if "gpytorch_step_s" in rec:
            rec["speedup"] = rec["gpytorch_step_s"] / gmed
            rec["target_speedup"] = 5.0
        emit(a.out, rec)
        del gp
        free_gpu()


def section_predict(a):
    for n in a.n:
        p = make_problem(n, a.m, D)
        gp = gprat_engine(p, None, a.streams[0])
        t0 = time.perf_counter()
        gp.fit()
        fit_s = time.perf_counter() - t0
        Xs = np.ascontiguousarray(p.Xs)
        med, times, capped = repeat(lambda: gp.predict(Xs, True, False, False), a.cap)
        emit(a.out, {"section": "predict", "n": n, "m": a.m, "fit_s": fit_s, "predict_mean_std_s": med,
                     "times": times, "capped": capped})
        del gp
        free_gpu()


def section_big(a):
    import gprat._cuda as cuda

    for n in a.n:
        p = make_problem(n, 16, D)
        gp = gprat_engine(p, None, a.streams[0])
        gp.profiling = True
        t0 = time.perf_counter()
        try:
            lml, grad = gp.training_step(list(p.theta), True)
            emit(a.out, {"section": "big", "n": n, "tile_size": gp.tile_size, "step_s": time.perf_counter() - t0,
                         "phases": gp.last_times(), "lml": lml, "gradient": list(grad),
                         "device_tile_bytes": cuda.ExactGP64.device_fit_bytes(n, D, gp.tile_size),
                         "dense_bytes": 8 * n * n})
        except MemoryError as error:
            emit(a.out, {"section": "big", "n": n, "error": str(error)})
        del gp
        free_gpu()


def section_cpu(a):
    import scipy.linalg
    from threadpoolctl import threadpool_limits

    import gprat

    for n in a.n:
        p = make_problem(n, 16, D)
        from common import kernel_matrix

        A = kernel_matrix(p)
        base = {}
        for t in sorted(a.threads, reverse=True):  # fastest first: the caps then skip slow ones early
            gprat.start(t)
            k = gprat.kernels.SquaredExponential(lengthscale=p.lengthscale, signal_variance=p.signal_variance)
            model = gprat.ExactGP(k, noise_variance=p.noise_variance).fit(p.X, p.y)
            rec = {"section": "cpu", "n": n, "threads": t}
            for name, fn in (("gprat_cholesky_s", lambda: gprat.linalg.cholesky(A)),
                             # not the fitted theta, whose factor a CPU step would reuse
                             ("gprat_train_step_s", lambda: model.log_marginal_likelihood(model.theta + 1e-7, eval_gradient=True))):
                estimate = base.get(name, (None, None))
                if estimate[0] is not None and estimate[0] * estimate[1] / t > a.cap:
                    rec[name] = None
                    rec[name + "_skipped_estimate"] = estimate[0] * estimate[1] / t
                    continue
                med, times, capped = repeat(fn, a.cap, repeats=1)
                rec[name] = med
                base.setdefault(name, (med, t))
            est = base.get("dpotrf_s", (None, None))
            if est[0] is not None and est[0] * est[1] / t > a.cap:
                rec["dpotrf_s"] = None
            else:
                with threadpool_limits(t):
                    med, times, capped = repeat(lambda: scipy.linalg.cholesky(A, lower=True, check_finite=False,
                                                                               overwrite_a=False), a.cap, repeats=1)
                rec["dpotrf_s"] = med
                base.setdefault("dpotrf_s", (med, t))
            if rec.get("dpotrf_s") and rec.get("gprat_cholesky_s"):
                rec["speedup_vs_dpotrf"] = rec["dpotrf_s"] / rec["gprat_cholesky_s"]
            emit(a.out, rec)
        gprat.start()


SECTIONS = {"env": section_env, "cholesky": section_cholesky, "train": section_train, "gpytorch": section_gpytorch,
            "predict": section_predict, "big": section_big, "cpu": section_cpu}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("section", choices=sorted(SECTIONS))
    ap.add_argument("--n", type=int, nargs="+", default=[32768])
    ap.add_argument("--m", type=int, default=10000)
    ap.add_argument("--tiles", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--streams", type=int, nargs="+", default=[8])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--cap", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=2, help="timed calls after the warm-up (median)")
    ap.add_argument("--out", default=os.path.join(os.environ.get("OUT", "."), "results.jsonl"))
    a = ap.parse_args(argv)
    global REPEATS
    REPEATS = a.repeats
    try:
        SECTIONS[a.section](a)
    except Exception as error:  # one failed section must not hide the others' results
        emit(a.out, {"section": a.section, "error": f"{type(error).__name__}: {error}"[:2000]})
        raise


if __name__ == "__main__":
    main()
