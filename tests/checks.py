"""Small assertion and file helpers shared by the Python tests (no reference values here)."""

import numpy as np


def close(a, b, rtol, what):
    """Assert max|a - b| <= rtol * max|b| (b is the reference), with equal shapes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    err = np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)
    assert err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.1g}"


def rewrite_archive(path, **changes):
    """Rewrite the .npz at `path` with entries replaced (a value of None deletes the entry)."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays.update(changes)
    for key, value in list(arrays.items()):
        if value is None:
            del arrays[key]
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path
