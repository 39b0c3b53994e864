"""Dense NumPy reference for composed kernels, written from scikit-learn's definitions
(sklearn.gaussian_process.kernels) and independent of gprat.

A description is a nested tuple: ``("Sum", a, b)``, ``("Product", a, b)`` or a family leaf
``(name, params, active_dims)`` with ``params`` the parameter values in gprat's theta order
(the families' docs: stationary [lengthscale(s)..., signal_variance], RationalQuadratic
[lengthscale, alpha], Periodic [lengthscale, period], Linear [sigma_0], Constant [value],
White [noise_level]) and ``active_dims`` a list of features or None (all).
"""

import numpy as np

STATIONARY = ("SquaredExponential", "Matern12", "Matern32", "Matern52")


def _columns(X, dims):
    return X if dims is None else X[:, list(dims)]


def _leaf(name, params, X, Y, same):
    """k(X, Y) of one family; `same`: Y is X as one point set (White's diagonal)."""
    p = np.asarray(params, dtype=np.float64)
    diff = X[:, None, :] - Y[None, :, :]
    dist2 = np.sum(diff**2, axis=2)
    if name in STATIONARY:
        ls, s2 = p[:-1], p[-1]
        r2 = np.sum((diff / ls) ** 2, axis=2)
        r = np.sqrt(r2)
        f = {
            "SquaredExponential": lambda: np.exp(-0.5 * r2),
            "Matern12": lambda: np.exp(-r),
            "Matern32": lambda: (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r),
            "Matern52": lambda: (1 + np.sqrt(5) * r + 5.0 / 3.0 * r2) * np.exp(-np.sqrt(5) * r),
        }[name]()
        return s2 * f
    if name == "RationalQuadratic":
        l, alpha = p
        return (1 + dist2 / (2 * alpha * l**2)) ** (-alpha)
    if name == "Periodic":
        l, period = p
        return np.exp(-2 * np.sin(np.pi * np.sqrt(dist2) / period) ** 2 / l**2)
    if name == "Linear":
        return p[0] ** 2 + X @ Y.T
    if name == "Constant":
        return np.full(dist2.shape, p[0])
    if name == "White":
        return p[0] * np.eye(X.shape[0]) if same else np.zeros(dist2.shape)
    raise ValueError(name)


def matrix(desc, X, Y=None):
    """K(X, Y) of the description; K(X) (White on its diagonal) when Y is None."""
    same = Y is None
    Y = X if Y is None else Y
    if desc[0] in ("Sum", "Product"):
        a, b = matrix(desc[1], X, None if same else Y), matrix(desc[2], X, None if same else Y)
        return a + b if desc[0] == "Sum" else a * b
    name, params, dims = desc
    return _leaf(name, params, _columns(X, dims), _columns(Y, dims), same)


def theta(desc):
    """log of every parameter, leaves left to right."""
    if desc[0] in ("Sum", "Product"):
        return np.concatenate([theta(desc[1]), theta(desc[2])])
    return np.log(np.asarray(desc[1], dtype=np.float64))


def with_theta(desc, t):
    """The description at log-parameters t."""
    t = list(t)

    def rebuild(d):
        if d[0] in ("Sum", "Product"):
            a = rebuild(d[1])
            return (d[0], a, rebuild(d[2]))
        n = len(d[1])
        values = [float(np.exp(t.pop(0))) for _ in range(n)]
        return (d[0], values, d[2])

    return rebuild(desc)


def gradient_fd(desc, X, Y=None, h=1e-6):
    """dK/dtheta by central differences, shape (n_params, n, m)."""
    t0 = theta(desc)
    out = []
    for p in range(t0.size):
        up, down = t0.copy(), t0.copy()
        up[p] += h
        down[p] -= h
        out.append((matrix(with_theta(desc, up), X, Y) - matrix(with_theta(desc, down), X, Y)) / (2 * h))
    return np.array(out)


def lml(desc, X, y, noise):
    """log p(y | X) with K = k(X) + noise I, by a dense Cholesky (R&W Algorithm 2.1)."""
    K = matrix(desc, X) + noise * np.eye(X.shape[0])
    L = np.linalg.cholesky(K)
    alpha = np.linalg.solve(L.T, np.linalg.solve(L, y))
    return float(-0.5 * y @ alpha - np.sum(np.log(np.diag(L))) - 0.5 * len(y) * np.log(2 * np.pi))


def lml_gradient(desc, X, y, noise):
    """d lml / d[theta..., log noise] = 1/2 tr((alpha alpha^T - K^-1) dK/dtheta_j), dK by differences."""
    n = X.shape[0]
    K = matrix(desc, X) + noise * np.eye(n)
    Kinv = np.linalg.inv(K)
    alpha = Kinv @ y
    W = np.outer(alpha, alpha) - Kinv
    dK = list(gradient_fd(desc, X)) + [noise * np.eye(n)]
    return np.array([0.5 * np.sum(W * d) for d in dK])
