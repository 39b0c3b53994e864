"""Tiled, task-parallel dense linear algebra on NumPy arrays.

These functions copy the input into the tiled layout, run the tiled algorithm on the task
runtime and copy the result back. They exist for users who want the building blocks and for
testing against LAPACK; the GP engine keeps its matrices tiled throughout.
"""

import numpy as np

from . import _core
from ._validation import _as_numeric_array, check_positive_int
from .runtime import wait_for_lifecycle

__all__ = ["cholesky", "solve_triangular", "cho_inverse", "log_determinant", "TiledSymmetric"]


def _square(a, name):
    arr = _as_numeric_array(a, name)
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square 2-D array; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must contain only finite values; found NaN or infinity")
    return arr


def cholesky(a, tile_size=None):
    """Lower Cholesky factor ``L`` with ``a = L @ L.T`` (tiled right-looking algorithm).

    Only the lower triangle of `a` is read.

    Parameters
    ----------
    a : array-like of shape (n, n)
        Symmetric positive definite matrix (float64, or float32 computed in float32).
    tile_size : int or None, default=None
        Tile size; None chooses one from n and the thread count.

    Returns
    -------
    ndarray of shape (n, n)
        L, with zeros above the diagonal.

    Raises
    ------
    NotPositiveDefiniteError
        With ``.order`` the 1-based order of the failing leading minor (as LAPACK reports it).
    """
    a = _square(a, "a")
    wait_for_lifecycle()
    return _core.cholesky(a, check_positive_int(tile_size, "tile_size"))


def solve_triangular(L, b, trans=False, tile_size=None):
    """Solve ``L x = b`` (or ``L.T x = b`` with ``trans=True``) for lower-triangular L.

    Parameters
    ----------
    L : array-like of shape (n, n)
        Lower-triangular factor (the upper triangle is ignored).
    b : array-like of shape (n,) or (n, k)
    trans : bool, default=False
    tile_size : int or None, default=None

    Returns
    -------
    ndarray of the shape of b
    """
    L = _square(L, "L")
    b = np.ascontiguousarray(_as_numeric_array(b, "b"), dtype=L.dtype)
    if b.ndim not in (1, 2) or b.shape[0] != L.shape[0]:
        raise ValueError(f"b must have shape ({L.shape[0]},) or ({L.shape[0]}, k); got {b.shape}")
    if not np.all(np.isfinite(b)):
        raise ValueError("b must contain only finite values; found NaN or infinity")
    wait_for_lifecycle()
    return _core.solve_lower(L, b, bool(trans), check_positive_int(tile_size, "tile_size"))


def cho_inverse(L, tile_size=None):
    """Inverse ``A^{-1} = L^{-T} L^{-1}`` of an SPD matrix from its lower Cholesky factor.

    Parameters
    ----------
    L : array-like of shape (n, n)
    tile_size : int or None, default=None

    Returns
    -------
    ndarray of shape (n, n)
        The symmetric inverse (both triangles filled).
    """
    L = _square(L, "L")
    wait_for_lifecycle()
    return _core.spd_inverse(L, check_positive_int(tile_size, "tile_size"))


def log_determinant(L):
    """``log det(A) = 2 * sum(log(diag(L)))`` from the lower Cholesky factor L of A."""
    L = _square(L, "L")
    wait_for_lifecycle()
    return _core.log_determinant(L)


class TiledSymmetric:
    """A symmetric matrix copied once into the tiled layout, factored in place.

    The GP engine keeps its matrices tiled; this class gives the same path to users (and to the
    benchmarks, which time the factorization without the layout conversion, as the LAPACK
    yardstick is timed without its Fortran-order copy).

    Parameters
    ----------
    a : array-like of shape (n, n)
        Symmetric positive definite (only the lower triangle is read).
    tile_size : int or None, default=None

    Examples
    --------
    >>> import numpy as np
    >>> t = TiledSymmetric(np.array([[4.0, 2.0], [2.0, 5.0]]), tile_size=1)
    >>> t.cholesky()
    >>> t.to_numpy()
    array([[2., 0.],
           [1., 2.]])
    """

    def __init__(self, a, tile_size=None):
        a = _square(a, "a")
        cls = _core.TiledSymmetric32 if a.dtype == np.float32 else _core.TiledSymmetric64
        self._core = cls(a, check_positive_int(tile_size, "tile_size"))

    @property
    def tile_size(self):
        """int: rows per tile."""
        return self._core.tile_size

    def cholesky(self):
        """Factor in place (A = L L^T); raises NotPositiveDefiniteError with the failing order."""
        wait_for_lifecycle()
        self._core.cholesky()

    def log_determinant(self):
        """float: log det A, after :meth:`cholesky`."""
        wait_for_lifecycle()
        return self._core.log_determinant()

    def to_numpy(self):
        """ndarray of shape (n, n): L after :meth:`cholesky` (zeros above the diagonal), else the lower triangle of A."""
        return self._core.to_numpy()
