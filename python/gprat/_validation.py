"""Conversion and validation of user input into the arrays the compiled core expects.

Arrays that already have the requested dtype and are C-contiguous pass through without a copy;
everything else array-like (lists, Fortran order, strided views, big-endian, integers, float32
for a float64 model) is converted. Bad input raises ValueError or TypeError saying what was
expected and what was given.
"""

import numbers
import operator

import numpy as np

_DTYPES = {np.dtype(np.float64): np.float64, np.dtype(np.float32): np.float32}


def check_dtype(dtype):
    """Return numpy.float64 or numpy.float32 for a dtype-like; raise TypeError otherwise."""
    try:
        key = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32; got {dtype!r}") from err
    if key not in _DTYPES:
        raise TypeError(f"dtype must be numpy.float64 or numpy.float32; got {key}")
    return _DTYPES[key]


def _as_numeric_array(a, name):
    if a is None:
        raise TypeError(f"{name} must be an array of numbers; got None")
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:  # ragged nested lists, objects numpy cannot convert
        raise ValueError(f"{name} must be a rectangular array of real numbers; could not convert it: {err}") from None
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must hold real numbers; got a boolean array (convert it explicitly, e.g. {name}.astype(float))")
    if kind == "c":
        raise TypeError(f"{name} must hold real numbers; got complex dtype {arr.dtype}")
    if kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers (float or integer dtype); got dtype {arr.dtype}")
    return arr


def _check_finite(out, name, source):
    finite = np.isfinite(out)
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        index = where[0] if len(where) == 1 else where
        given = source[where]
        if np.isfinite(given):
            found = f"{float(given)!r}, which overflows {out.dtype},"
        else:
            found = f"{out[where]}"
        raise ValueError(f"{name} must contain only finite values; found {found} at index {index}")


def _contiguous_finite(arr, name, dtype):
    """`arr` as a C-contiguous array of `dtype` (no copy when it already is one), all finite."""
    with np.errstate(over="ignore"):  # an overflowing float32 cast is reported below
        out = np.ascontiguousarray(arr, dtype=dtype)
    _check_finite(out, name, arr)
    return out


def as_matrix(X, name="X", dtype=np.float64, n_features=None):
    """Return X as a C-contiguous 2-D array of `dtype` (no copy when it already is one).

    Raises
    ------
    TypeError
        For non-numeric, boolean or complex data.
    ValueError
        For a shape other than (n_samples, n_features) with both positive, non-finite
        values, or a feature count other than `n_features`.
    """
    arr = _as_numeric_array(X, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); got {arr.ndim} dimension(s) "
            f"with shape {arr.shape}. Reshape 1-D data with {name}.reshape(-1, 1) (one feature) "
            f"or {name}.reshape(1, -1) (one sample)."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one feature; got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"{name} has {arr.shape[1]} features, but the model was fitted with {n_features} features"
        )
    return _contiguous_finite(arr, name, dtype)


def as_vector(y, name="y", dtype=np.float64, length=None):
    """Return y as a C-contiguous 1-D array of `dtype`; a column (n, 1) is accepted."""
    arr = _as_numeric_array(y, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n_samples,); got shape {arr.shape}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(
            f"{name} must have one entry per row of X; got len({name})={arr.shape[0]}, X.shape[0]={length}"
        )
    return _contiguous_finite(arr, name, dtype)


def check_positive(value, name):
    """Return `value` as a float after checking it is a finite number > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive real number; got {value!r}")
    v = float(value)
    if not v > 0 or v == np.inf:
        raise ValueError(f"{name} must be positive and finite; got {v}")
    return v


#: Hyperparameters live in [HYPER_MIN, HYPER_MAX] so that |log(value)| < THETA_MAX: the engine
#: refuses |theta| >= 700 (exp overflows near 709).
HYPER_MIN, HYPER_MAX = 1e-300, 1e300
THETA_MAX = float(np.log(HYPER_MAX))


def check_hyperparameter(value, name):
    """Return `value` as a float after checking it is a number in [1e-300, 1e300]."""
    v = check_positive(value, name)
    if not HYPER_MIN <= v <= HYPER_MAX:
        raise ValueError(f"{name} must lie between {HYPER_MIN:g} and {HYPER_MAX:g}; got {v:g}")
    return v


def check_non_negative(value, name):
    """Return `value` as a float after checking it is a finite number >= 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a non-negative real number; got {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be non-negative and finite; got {v}")
    return v


def check_int(value, name, minimum=1, allow_none=False):
    """Return `value` as an int >= `minimum` (or None when allowed); the one integer check.

    Raises
    ------
    TypeError
        For a bool, a float or anything that is not an integer.
    ValueError
        For an integer below `minimum`.
    """
    kind = {1: "a positive integer", 0: "a non-negative integer"}.get(minimum, f"an integer >= {minimum}")
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be {kind}{' or None' if allow_none else ''}; got {value!r}")
    try:
        v = operator.index(value)
    except TypeError as err:
        raise TypeError(
            f"{name} must be {kind}{' or None' if allow_none else ''}; got {type(value).__name__} {value!r}"
        ) from err
    if v < minimum:
        raise ValueError(f"{name} must be {kind}; got {v}")
    return v


def check_positive_int(value, name, allow_none=True):
    """Return `value` as an int > 0 (or None when allowed): :func:`check_int` with minimum 1."""
    return check_int(value, name, 1, allow_none)


def check_real(value, name):
    """Return `value` as a finite float; a bool or a non-number is a TypeError, inf/NaN a ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    return v


class ThetaRangeError(ValueError):
    """theta entries beyond +-THETA_MAX: hyperparameters too large or too small to represent."""


def check_theta(theta, n_params, n_log=None):
    """Return theta as a float64 vector of n_params finite entries with |theta| <= THETA_MAX.

    Only the first `n_log` entries (all when None) are logarithms and range-checked; the rest
    (e.g. a constant mean) need only be finite.
    """
    arr = _as_numeric_array(theta, "theta")
    arr = np.asarray(arr, dtype=np.float64).reshape(-1) if arr.ndim <= 1 else arr
    if arr.ndim != 1 or arr.shape[0] != n_params:
        raise ValueError(f"theta must be a 1-D array of {n_params} log-hyperparameters; got shape {np.shape(theta)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"theta must contain only finite values; got {arr}")
    if np.any(np.abs(arr[: n_params if n_log is None else n_log]) > THETA_MAX):
        raise ThetaRangeError(
            f"theta entries are logarithms of hyperparameters and must lie in [-{THETA_MAX:.1f}, {THETA_MAX:.1f}] "
            f"(values between {HYPER_MIN:g} and {HYPER_MAX:g}); got {arr}"
        )
    return np.ascontiguousarray(arr, dtype=np.float64)
