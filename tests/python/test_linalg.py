"""Tiled linear algebra against NumPy/SciPy/LAPACK."""

import numpy as np
import pytest
import scipy.linalg
from scipy.linalg import lapack

import gprat
from gprat import linalg

SIZES = [1, 2, 7, 100, 257, 1000]


# Per n: tile sizes that divide n, that leave a ragged last tile, and one larger than n.
TILE_SIZES = {1: [1, 4], 2: [1, 2, 5], 7: [1, 3, 7, 10], 100: [25, 32, 128], 257: [64, 100, 257, 300],
              1000: [100, 128, 250]}


def spd(n, rng, dtype=np.float64):
    A = rng.standard_normal((n, n))
    return (A @ A.T / n + np.eye(n)).astype(dtype)


CASES = [(n, nb) for n in SIZES for nb in TILE_SIZES[n]]


@pytest.mark.parametrize("n,nb", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cholesky_matches_lapack(n, nb, dtype, rng, threads):
    A = spd(n, rng, dtype)
    L = linalg.cholesky(A, tile_size=nb)
    assert L.dtype == dtype
    ref = np.linalg.cholesky(A.astype(np.float64))
    eps = np.finfo(dtype).eps
    residual = np.linalg.norm(A.astype(np.float64) - L.astype(np.float64) @ L.T.astype(np.float64)) / (
        n * eps * np.linalg.norm(A)
    )
    assert residual < 10
    assert np.all(np.triu(L, 1) == 0)
    np.testing.assert_allclose(L, ref, rtol=0, atol=(1e-12 if dtype == np.float64 else 1e-4) * max(1, np.abs(ref).max()))


@pytest.mark.parametrize("n,nb", CASES)
def test_triangular_solves(n, nb, rng):
    L = np.linalg.cholesky(spd(n, rng))
    b = rng.standard_normal(n)
    B = rng.standard_normal((n, 5))
    for trans in (False, True):
        for rhs in (b, B):
            x = linalg.solve_triangular(L, rhs, trans=trans, tile_size=nb)
            ref = scipy.linalg.solve_triangular(L, rhs, lower=True, trans=1 if trans else 0)
            np.testing.assert_allclose(x, ref, rtol=1e-10, atol=1e-10 * np.abs(ref).max())
            assert x.shape == rhs.shape


@pytest.mark.parametrize("n,nb", CASES)
def test_inverse_and_log_determinant(n, nb, rng):
    A = spd(n, rng)
    L = np.linalg.cholesky(A)
    Ainv = linalg.cho_inverse(L, tile_size=nb)
    ref = scipy.linalg.cho_solve((L, True), np.eye(n))
    np.testing.assert_allclose(Ainv, ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())
    np.testing.assert_allclose(linalg.log_determinant(L), np.linalg.slogdet(A)[1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,nb", [(7, 3), (100, 32), (257, 64), (257, 300)])
@pytest.mark.parametrize("bad", ["first", "middle", "last"])
def test_not_positive_definite_reports_lapack_order(n, nb, bad, rng):
    A = spd(n, rng)
    k = {"first": 0, "middle": n // 2, "last": n - 1}[bad]
    # Make the leading minor of order k+1 indefinite: a large negative diagonal entry.
    A[k, k] = -10.0 * n
    info = lapack.dpotrf(np.asfortranarray(A), lower=1)[1]
    assert info > 0
    with pytest.raises(gprat.NotPositiveDefiniteError) as excinfo:
        linalg.cholesky(A, tile_size=nb)
    assert excinfo.value.order == info
    assert isinstance(excinfo.value, np.linalg.LinAlgError)
    assert isinstance(excinfo.value, ValueError)


def test_semidefinite_matrix_order_matches_lapack(rng):
    # A rank-deficient PSD matrix: the failing order comes from rounding, as in LAPACK.
    V = rng.standard_normal((50, 20))
    A = V @ V.T
    info = lapack.dpotrf(np.asfortranarray(A), lower=1)[1]
    with pytest.raises(gprat.NotPositiveDefiniteError) as excinfo:
        linalg.cholesky(A, tile_size=50)  # one tile: the very same LAPACK call
    assert excinfo.value.order == info


def test_bad_input():
    with pytest.raises(ValueError, match="square"):
        linalg.cholesky(np.ones((3, 4)))
    with pytest.raises(ValueError, match="finite"):
        linalg.cholesky(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="tile_size"):
        linalg.cholesky(np.eye(3), tile_size=0)
    with pytest.raises(TypeError):
        linalg.cholesky(np.array([["a"]]))
    with pytest.raises(ValueError, match="shape"):
        linalg.solve_triangular(np.eye(3), np.ones(4))


@pytest.mark.parametrize("nb", [7, 32, 100])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_tiled_symmetric_factor_in_place(nb, dtype, rng):
    A = spd(100, rng, dtype)
    t = linalg.TiledSymmetric(A, tile_size=nb)
    np.testing.assert_array_equal(t.to_numpy(), np.tril(A))
    t.cholesky()
    tol = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(t.to_numpy(), np.linalg.cholesky(A.astype(np.float64)), atol=tol)
    np.testing.assert_allclose(t.log_determinant(), np.linalg.slogdet(A.astype(np.float64))[1], rtol=tol)
    with pytest.raises(ValueError, match="already"):
        t.cholesky()
    A[50, 50] = -1.0
    with pytest.raises(gprat.NotPositiveDefiniteError) as excinfo:
        linalg.TiledSymmetric(A, tile_size=nb).cholesky()
    assert excinfo.value.order == lapack.dpotrf(np.asfortranarray(A, dtype=np.float64), lower=1)[1]
