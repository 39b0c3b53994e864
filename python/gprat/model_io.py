"""Saved GP models: what ``gprat fit`` writes and ``gprat predict`` reads.

A model file is an uncompressed NumPy ``.npz`` archive (read with ``allow_pickle=False``)
holding these arrays:

=================  ==========================  =====================================================
key                type, shape                 meaning
=================  ==========================  =====================================================
format             str, ()                     always ``"gprat-model"``
format_version     int64, ()                   ``1``; readers refuse newer versions
gprat_version      str, ()                     version of gprat that wrote the file
kernel             str, ()                     ``"se"``, ``"matern12"``, ``"matern32"``, ``"matern52"``
lengthscale        float64, () or (d,)         one lengthscale, or one per feature (ARD)
signal_variance    float64, ()
noise_variance     float64, ()
dtype              str, ()                     engine precision, ``"float64"`` or ``"float32"``
X_train            float64, (n, d)             training inputs, in the units of the data file
y_train            float64, (n,)               training targets, in the units of the data file
x_mean, x_scale    float64, (d,)               the GP sees ``(X - x_mean) / x_scale``
y_mean, y_scale    float64, ()                 ... and ``(y - y_mean) / y_scale``
feature_names      str, (d,)                   column names (``"0"``, ``"3"`` ... for ``.npy`` data)
target_name        str, ()
=================  ==========================  =====================================================

Hyperparameters are those of the GP on the standardized data. Only the data and the
hyperparameters are stored: loading is cheap, and the factorization is recomputed on the
first prediction.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "KERNELS", "GPModel", "ModelFileError", "load_model"]

FORMAT_NAME = "gprat-model"
FORMAT_VERSION = 1

#: Kernel names in model files and on the command line -> classes in gprat.kernels.
KERNELS = {
    "se": "SquaredExponential",
    "matern12": "Matern12",
    "matern32": "Matern32",
    "matern52": "Matern52",
}

_REQUIRED = (
    "format",
    "format_version",
    "kernel",
    "lengthscale",
    "signal_variance",
    "noise_variance",
    "dtype",
    "X_train",
    "y_train",
    "x_mean",
    "x_scale",
    "y_mean",
    "y_scale",
    "feature_names",
    "target_name",
)


class ModelFileError(ValueError):
    """A file is not a readable gprat model file."""


def _package():
    return importlib.import_module(__package__ or "gprat")


def _scale(values):
    """Standard deviation, with 1 where it is 0 (a constant column stays constant)."""
    scale = np.std(values, axis=0)
    return np.where(scale > 0.0, scale, 1.0)


class GPModel:
    """An exact GP with its training data and standardization, as stored in a model file.

    Parameters
    ----------
    kernel : {"se", "matern12", "matern32", "matern52"}
    lengthscale : float or array-like of shape (n_features,)
    signal_variance : float
    noise_variance : float
        Hyperparameters of the GP on the standardized data.
    X_train : array-like of shape (n_samples, n_features)
    y_train : array-like of shape (n_samples,)
        Training data in the units of the data file.
    x_mean, x_scale : array-like of shape (n_features,)
    y_mean, y_scale : float
        Standardization: the GP sees ``(X - x_mean) / x_scale`` and ``(y - y_mean) / y_scale``.
    feature_names : sequence of str, optional
        Default ``"x0"``, ``"x1"``, ...
    target_name : str, default="y"
    dtype : {"float64", "float32"}, default="float64"

    Examples
    --------
    >>> import numpy as np
    >>> from gprat.model_io import GPModel
    >>> X = np.linspace(0, 5, 40)[:, None]
    >>> y = np.sin(X[:, 0]) + 0.01 * np.random.default_rng(0).standard_normal(40)
    >>> model = GPModel.train(X, y, max_iter=20)
    >>> mean, std = model.predict([[2.5]], return_std=True)
    >>> bool(abs(mean[0] - np.sin(2.5)) < 0.05)
    True
    """

    def __init__(
        self,
        kernel,
        lengthscale,
        signal_variance,
        noise_variance,
        X_train,
        y_train,
        *,
        x_mean,
        x_scale,
        y_mean,
        y_scale,
        feature_names=None,
        target_name="y",
        dtype="float64",
    ):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {kernel!r}.")
        self.kernel = kernel
        self.X_train = np.array(X_train, dtype=np.float64, ndmin=2)
        self.y_train = np.array(y_train, dtype=np.float64).reshape(-1)
        n, d = self.X_train.shape
        if self.y_train.size != n:
            raise ValueError(
                f"y_train must have one entry per row of X_train; got len(y_train)={self.y_train.size}, "
                f"X_train.shape[0]={n}."
            )
        self.lengthscale = np.array(lengthscale, dtype=np.float64)
        if self.lengthscale.shape not in ((), (d,)):
            raise ValueError(
                f"lengthscale must be a scalar or have one entry per feature ({d}); got shape {self.lengthscale.shape}."
            )
        self.signal_variance = float(signal_variance)
        self.noise_variance = float(noise_variance)
        self.x_mean = np.array(x_mean, dtype=np.float64).reshape(d)
        self.x_scale = np.array(x_scale, dtype=np.float64).reshape(d)
        self.y_mean = float(y_mean)
        self.y_scale = float(y_scale)
        names = [f"x{j}" for j in range(d)] if feature_names is None else [str(f) for f in feature_names]
        if len(names) != d:
            raise ValueError(f"feature_names must have {d} entries; got {len(names)}.")
        self.feature_names = names
        self.target_name = str(target_name)
        self.dtype = np.dtype(dtype).name
        self._gp = None

    # -- training --------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        X,
        y,
        *,
        kernel="se",
        ard=True,
        max_iter=100,
        feature_names=None,
        target_name="y",
        dtype="float64",
        callback=None,
    ):
        """Standardize the data, fit an exact GP and optimize its hyperparameters.

        Starts from lengthscale ``sqrt(n_features)`` (per feature with ``ard``), signal
        variance 1 and noise variance 0.1 on the standardized data, then runs L-BFGS-B on
        the log marginal likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        kernel : {"se", "matern12", "matern32", "matern52"}, default="se"
        ard : bool, default=True
            One lengthscale per feature instead of one for all.
        max_iter : int, default=100
            Optimizer iterations; 0 keeps the initial hyperparameters.
        feature_names : sequence of str, optional
        target_name : str, default="y"
        dtype : {"float64", "float32"}, default="float64"
        callback : callable, optional
            ``callback(iteration, loss)`` after each optimizer iteration.

        Returns
        -------
        GPModel
        """
        from ._validation import as_matrix, as_vector, check_positive_int

        X = np.array(as_matrix(X, "X"), dtype=np.float64)  # a copy: the model keeps it
        y = np.array(as_vector(y, "y", length=X.shape[0]), dtype=np.float64)
        if isinstance(max_iter, (bool, np.bool_)) or max_iter != 0:
            max_iter = check_positive_int(max_iter, "max_iter", allow_none=False)
        d = X.shape[1]
        lengthscale = np.full(d, np.sqrt(d)) if ard else np.sqrt(d)
        model = cls(
            kernel,
            lengthscale,
            1.0,
            0.1,
            X,
            y,
            x_mean=X.mean(axis=0),
            x_scale=_scale(X),
            y_mean=y.mean(),
            y_scale=float(_scale(y)),
            feature_names=feature_names,
            target_name=target_name,
            dtype=dtype,
        )
        if max_iter > 0:
            gp = model.gp
            gp.optimize(method="L-BFGS-B", max_iter=int(max_iter), callback=callback)
            model._read_hyperparameters(gp)
        return model

    def _read_hyperparameters(self, gp):
        values = np.exp(np.asarray(gp.theta, dtype=np.float64))
        self.lengthscale = values[:-2].copy() if self.lengthscale.ndim else np.array(values[0])
        self.signal_variance = float(values[-2])
        self.noise_variance = float(values[-1])

    # -- prediction ------------------------------------------------------------------------

    @property
    def n_features(self):
        """int: Number of input columns."""
        return self.X_train.shape[1]

    def _standardize(self, X):
        return (X - self.x_mean) / self.x_scale

    @property
    def gp(self):
        """gprat.ExactGP: the GP on the standardized data, fitted on first access."""
        if self._gp is None:
            package = _package()
            kernel_class = getattr(package.kernels, KERNELS[self.kernel])
            lengthscale = self.lengthscale if self.lengthscale.ndim else float(self.lengthscale)
            kernel = kernel_class(lengthscale=lengthscale, signal_variance=self.signal_variance)
            gp = package.ExactGP(kernel, noise_variance=self.noise_variance, dtype=np.dtype(self.dtype))
            self._gp = gp.fit(self._standardize(self.X_train), (self.y_train - self.y_mean) / self.y_scale)
        return self._gp

    def predict(self, X, return_std=False, include_noise=False):
        """Predictive mean (and standard deviation) in the units of the training target.

        Parameters
        ----------
        X : array-like of shape (n_points, n_features)
        return_std : bool, default=False
        include_noise : bool, default=False
            Add the noise variance: the spread of new observations, not of the latent
            function.

        Returns
        -------
        mean : ndarray of shape (n_points,)
        std : ndarray of shape (n_points,)
            Only with ``return_std``.

        Raises
        ------
        ValueError
            If ``X`` does not have ``n_features`` columns or holds NaN/inf.
        """
        from ._validation import _as_numeric_array

        X = np.array(_as_numeric_array(X, "X"), dtype=np.float64, ndmin=2)
        if X.ndim != 2 or X.shape[1] != self.n_features or X.shape[0] == 0:
            raise ValueError(
                f"X must have {self.n_features} columns ({', '.join(self.feature_names)}); got shape {X.shape}."
            )
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or infinite values.")
        Z = self._standardize(X)
        if not return_std:
            return self.y_mean + self.y_scale * np.asarray(self.gp.predict(Z))
        mean, std = self.gp.predict(Z, return_std=True, include_noise=include_noise)
        return self.y_mean + self.y_scale * np.asarray(mean), self.y_scale * np.asarray(std)

    # -- files -----------------------------------------------------------------------------

    def save(self, path):
        """Write the model file (see the module docstring), replacing ``path`` atomically.

        Parameters
        ----------
        path : str or path-like
            Written as given; no suffix is added.

        Returns
        -------
        pathlib.Path
        """
        package = _package()
        arrays = {
            "format": np.array(FORMAT_NAME),
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
            "gprat_version": np.array(str(getattr(package, "__version__", "unknown"))),
            "kernel": np.array(self.kernel),
            "lengthscale": self.lengthscale,
            "signal_variance": np.array(self.signal_variance),
            "noise_variance": np.array(self.noise_variance),
            "dtype": np.array(self.dtype),
            "X_train": self.X_train,
            "y_train": self.y_train,
            "x_mean": self.x_mean,
            "x_scale": self.x_scale,
            "y_mean": np.array(self.y_mean),
            "y_scale": np.array(self.y_scale),
            "feature_names": np.array(self.feature_names, dtype=np.str_),
            "target_name": np.array(self.target_name),
        }
        path = Path(path)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    def __repr__(self):
        return (
            f"GPModel(kernel={self.kernel!r}, n_samples={self.X_train.shape[0]}, "
            f"n_features={self.n_features}, target_name={self.target_name!r})"
        )


def load_model(path):
    """Read a model file written by :meth:`GPModel.save` (``gprat fit``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    GPModel
        Not yet factorized: that happens on the first prediction.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a gprat model file, lacks an entry, or was written in a newer
        format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ModelFileError(
            f"{path} is not a gprat model file (expected a .npz written by 'gprat fit'): {error}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ModelFileError(f"{path} holds a single NumPy array, not a gprat model file (.npz).")
    with archive:
        if "format" not in archive.files or str(archive["format"]) != FORMAT_NAME:
            raise ModelFileError(f"{path} is not a gprat model file (no format={FORMAT_NAME!r} entry).")
        missing = [key for key in _REQUIRED if key not in archive.files]
        if missing:
            raise ModelFileError(f"{path} is not a complete gprat model file; missing: {', '.join(missing)}.")
        try:
            version = int(archive["format_version"])
            data = {key: archive[key] for key in _REQUIRED}
        except (ValueError, TypeError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"{path}: unreadable entry in the model file: {error}") from None
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} has model format version {version}; this gprat reads versions up to "
                f"{FORMAT_VERSION}. Upgrade gprat to read it."
            )
    try:
        return GPModel(
            str(data["kernel"]),
            data["lengthscale"],
            float(data["signal_variance"]),
            float(data["noise_variance"]),
            data["X_train"],
            data["y_train"],
            x_mean=data["x_mean"],
            x_scale=data["x_scale"],
            y_mean=float(data["y_mean"]),
            y_scale=float(data["y_scale"]),
            feature_names=[str(name) for name in data["feature_names"]],
            target_name=str(data["target_name"]),
            dtype=str(data["dtype"]),
        )
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: inconsistent model file: {error}") from None
