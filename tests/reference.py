"""Independent dense NumPy/SciPy oracle for the tests (R&W Algorithm 2.1).

Nothing here calls gprat: kernels are written from their textbook formulas with
scipy.spatial.distance, and the GP quantities with numpy.linalg / scipy.linalg.
"""

import numpy as np
import scipy.linalg
from scipy.spatial.distance import cdist

KERNELS = ("SquaredExponential", "Matern12", "Matern32", "Matern52")


def scaled_distance(X, Y, lengthscale):
    ls = np.atleast_1d(np.asarray(lengthscale, dtype=np.float64))
    return cdist(X / ls, Y / ls, metric="euclidean")


def kernel_matrix(name, X, Y, lengthscale, signal_variance):
    """k(X, Y) from the closed-form formula of each kernel."""
    r = scaled_distance(X, Y, lengthscale)
    if name == "SquaredExponential":
        f = np.exp(-0.5 * r**2)
    elif name == "Matern12":
        f = np.exp(-r)
    elif name == "Matern32":
        s = np.sqrt(3.0) * r
        f = (1.0 + s) * np.exp(-s)
    elif name == "Matern52":
        s = np.sqrt(5.0) * r
        f = (1.0 + s + s**2 / 3.0) * np.exp(-s)
    else:
        raise ValueError(name)
    return signal_variance * f


def theta_of(lengthscale, signal_variance, noise_variance):
    return np.log(np.concatenate([np.atleast_1d(lengthscale), [signal_variance, noise_variance]]))


def unpack(theta, ard):
    v = np.exp(np.asarray(theta, dtype=np.float64))
    ls = v[:-2] if ard else v[0]
    return ls, v[-2], v[-1]


def lml(name, X, y, theta, ard):
    """log p(y|X) by Algorithm 2.1 with LAPACK's dense Cholesky."""
    ls, s2, noise = unpack(theta, ard)
    K = kernel_matrix(name, X, X, ls, s2) + noise * np.eye(len(X))
    L = np.linalg.cholesky(K)
    alpha = scipy.linalg.cho_solve((L, True), y)
    return -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * len(X) * np.log(2 * np.pi)


def lml_gradient_fd(name, X, y, theta, ard, h=1e-5):
    """Central finite differences of lml in theta (O(h^2) accurate)."""
    theta = np.asarray(theta, dtype=np.float64)
    g = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        g[j] = (lml(name, X, y, theta + e, ard) - lml(name, X, y, theta - e, ard)) / (2 * h)
    return g


def kernel_log_derivatives(name, X, lengthscale, signal_variance, ard):
    """dK/dlog(lengthscale_k) for each lengthscale, by hand from the textbook formulas:
    with D_k = (x_k - x'_k)^2 / l_k^2 and r^2 = sum_k D_k,
      SE:   K D_k            M12: s2 exp(-r) D_k / r  (0 at r = 0)
      M32:  3 s2 exp(-sqrt3 r) D_k      M52: 5/3 s2 (1 + sqrt5 r) exp(-sqrt5 r) D_k
    (isotropic: D_k summed over k, i.e. r^2)."""
    ls = np.atleast_1d(np.asarray(lengthscale, dtype=np.float64))
    diffs = (X[:, None, :] - X[None, :, :]) / (ls if ard else ls[0])
    D = diffs**2  # (n, n, d)
    r = np.sqrt(D.sum(axis=2))
    if name == "SquaredExponential":
        factor = signal_variance * np.exp(-0.5 * r**2)
    elif name == "Matern12":
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(r > 0, signal_variance * np.exp(-r) / r, 0.0)
    elif name == "Matern32":
        factor = 3.0 * signal_variance * np.exp(-np.sqrt(3.0) * r)
    elif name == "Matern52":
        factor = 5.0 / 3.0 * signal_variance * (1.0 + np.sqrt(5.0) * r) * np.exp(-np.sqrt(5.0) * r)
    else:
        raise ValueError(name)
    if ard:
        return [factor * D[:, :, k] for k in range(D.shape[2])]
    return [factor * r**2]


def lml_gradient(name, X, y, theta, ard):
    """Closed-form gradient 1/2 tr((alpha alpha^T - K^-1) dK/dtheta_j), dense, with the
    hand-written derivatives above and LAPACK's Cholesky for K^-1."""
    theta = np.asarray(theta, dtype=np.float64)
    ls, s2, noise = unpack(theta, ard)
    n = len(X)
    Kf = kernel_matrix(name, X, X, ls, s2)
    L = np.linalg.cholesky(Kf + noise * np.eye(n))
    Kinv = scipy.linalg.cho_solve((L, True), np.eye(n))
    alpha = Kinv @ y
    W = np.outer(alpha, alpha) - Kinv
    dKs = kernel_log_derivatives(name, X, ls, s2, ard) + [Kf, noise * np.eye(n)]
    return np.array([0.5 * np.sum(W * dK) for dK in dKs])


def predict(name, X, y, Xs, theta, ard, include_noise=False):
    """(mean, variance, covariance) of the posterior at Xs, Algorithm 2.1 lines 4-6."""
    ls, s2, noise = unpack(theta, ard)
    K = kernel_matrix(name, X, X, ls, s2) + noise * np.eye(len(X))
    L = np.linalg.cholesky(K)
    alpha = scipy.linalg.cho_solve((L, True), y)
    Ks = kernel_matrix(name, Xs, X, ls, s2)
    mean = Ks @ alpha
    V = scipy.linalg.solve_triangular(L, Ks.T, lower=True)
    cov = kernel_matrix(name, Xs, Xs, ls, s2) - V.T @ V
    if include_noise:
        cov = cov + noise * np.eye(len(Xs))
    return mean, np.diag(cov).copy(), cov


# --- GPRat's conventions (DESIGN.md, "GPRat compatibility"), written from the spec ---------------

#: GPRat adds this to the softplus of the noise parameter.
GPRAT_NOISE_OFFSET = 1e-6


def gprat_samples(input_series, output_series, n_samples, n_reg):
    """GPRat's sliding-window samples: row i of X is input_series[i : i + n_reg], y_i is
    output_series[i]."""
    s = np.asarray(input_series, dtype=np.float64)
    X = np.array([s[i : i + n_reg] for i in range(n_samples)])
    return X, np.asarray(output_series, dtype=np.float64)[:n_samples].copy()


def gprat_loss(X, y, params):
    """GPRat's loss at params = [lengthscale l, vertical_lengthscale v, noise s]: NLML / n
    for k(x, x') = v exp(-|x - x'|^2 / (2 l^2)) + s [x == x'] (constant term included)."""
    return -lml("SquaredExponential", X, y, np.log(params), False) / len(X)


def gprat_loss_gradient(X, y, params):
    """d gprat_loss / d params (in the parameter values, not their logs):
    d/dv = (d/dlog v) / v, from the dense closed-form gradient lml_gradient."""
    params = np.asarray(params, dtype=np.float64)
    return -lml_gradient("SquaredExponential", X, y, np.log(params), False) / len(X) / params


def _softplus(p):
    return np.logaddexp(0.0, p)  # log(1 + exp(p)) without overflow


def _softplus_inverse(value):
    return value + np.log(-np.expm1(-value))  # log(exp(value) - 1) without overflow


def gprat_adam(X, y, params, trainable, learning_rate, beta1, beta2, epsilon, n_steps):
    """GPRat's Adam, step by step from DESIGN.md, in NumPy: returns (losses, params).

    Unconstrained p with value = softplus(p) (+ 1e-6 for the noise), g = d loss / d p
    = d loss / d value * sigmoid(p); m <- b1 m + (1 - b1) g, w <- b2 w + (1 - b2) g^2;
    with t = step + 1: p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(w) + eps).
    Each loss is evaluated before its step; untrainable values are never touched.
    """
    values = np.array(params, dtype=np.float64)
    trainable = np.asarray(trainable, dtype=bool)
    offset = np.array([0.0, 0.0, GPRAT_NOISE_OFFSET])
    p = _softplus_inverse(values - offset)
    m = np.zeros(3)
    w = np.zeros(3)
    losses = []
    for step in range(n_steps):
        losses.append(gprat_loss(X, y, values))
        g = gprat_loss_gradient(X, y, values) / (1.0 + np.exp(-p))  # sigmoid(p) = d softplus / dp
        m = beta1 * m + (1.0 - beta1) * g
        w = beta2 * w + (1.0 - beta2) * g * g
        t = step + 1
        p_new = p - learning_rate * np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) * m / (np.sqrt(w) + epsilon)
        p = np.where(trainable, p_new, p)
        values = np.where(trainable, _softplus(p) + offset, values)
    return losses, values


# --- Heteroscedastic noise, several outputs, constant mean (issue #13) --------------------------
# Written per output from the Gaussian density itself (scipy.stats), not from the engine's
# formulas: log p(Y) = sum_j log N(y_j; c_j 1, K),  K = k(X, X) + diag(fixed) + learned I.


def noisy_covariance(name, X, lengthscale, signal_variance, fixed=None, learned=0.0):
    """k(X, X) + diag(fixed) + learned I (fixed: per-sample noise variances or None)."""
    K = kernel_matrix(name, X, X, lengthscale, signal_variance)
    diag = np.full(len(X), float(learned)) + (0.0 if fixed is None else np.asarray(fixed, dtype=np.float64))
    return K + np.diag(diag)


def _columns(Y):
    Y = np.asarray(Y, dtype=np.float64)
    return Y.reshape(len(Y), -1)


def general_lml(name, X, Y, lengthscale, signal_variance, fixed=None, learned=0.0, mean=None):
    """sum_j log N(y_j; c_j 1, K) by scipy.stats.multivariate_normal, one output at a time."""
    from scipy.stats import multivariate_normal

    K = noisy_covariance(name, X, lengthscale, signal_variance, fixed, learned)
    Y = _columns(Y)
    c = np.zeros(Y.shape[1]) if mean is None else np.broadcast_to(np.asarray(mean, dtype=np.float64), (Y.shape[1],))
    return float(sum(multivariate_normal(mean=np.full(len(X), c[j]), cov=K).logpdf(Y[:, j]) for j in range(Y.shape[1])))


def general_lml_gradient(name, X, Y, lengthscale, signal_variance, ard, fixed=None, learned=None, mean=None):
    """Gradient in theta = [log lengthscale(s), log s2, (log learned), (c_1..c_p)], dense, per
    output j: d/dtheta_q = 1/2 a_j^T dK a_j - 1/2 tr(K^{-1} dK) with a_j = K^{-1}(y_j - c_j),
    and d/dc_j = 1^T a_j; summed over outputs. K^{-1} by numpy.linalg.inv."""
    Y = _columns(Y)
    n, p = Y.shape
    Kf = kernel_matrix(name, X, X, lengthscale, signal_variance)
    K = noisy_covariance(name, X, lengthscale, signal_variance, fixed, 0.0 if learned is None else learned)
    Kinv = np.linalg.inv(K)
    dKs = kernel_log_derivatives(name, X, lengthscale, signal_variance, ard) + [Kf]
    if learned is not None:
        dKs.append(learned * np.eye(n))
    c = np.zeros(p) if mean is None else np.broadcast_to(np.asarray(mean, dtype=np.float64), (p,))
    grad = np.zeros(len(dKs))
    mean_grad = np.zeros(p)
    for j in range(p):
        a = Kinv @ (Y[:, j] - c[j])
        for q, dK in enumerate(dKs):
            grad[q] += 0.5 * a @ dK @ a - 0.5 * np.trace(Kinv @ dK)
        mean_grad[j] = a.sum()
    return grad if mean is None else np.concatenate([grad, mean_grad])


def general_predict(name, X, Y, Xs, lengthscale, signal_variance, fixed=None, learned=0.0, mean=None):
    """(mean (m, p), variance (m), covariance (m, m)) of the posterior of f at Xs, by
    numpy.linalg.solve (no Cholesky): mean_j = c_j + Ks K^{-1} (y_j - c_j)."""
    Y = _columns(Y)
    p = Y.shape[1]
    c = np.zeros(p) if mean is None else np.broadcast_to(np.asarray(mean, dtype=np.float64), (p,))
    K = noisy_covariance(name, X, lengthscale, signal_variance, fixed, learned)
    Ks = kernel_matrix(name, Xs, X, lengthscale, signal_variance)
    mu = c + Ks @ np.linalg.solve(K, Y - c)
    cov = kernel_matrix(name, Xs, Xs, lengthscale, signal_variance) - Ks @ np.linalg.solve(K, Ks.T)
    return mu, np.diag(cov).copy(), cov
