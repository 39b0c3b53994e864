"""Saved GP models: what ``gprat fit`` writes and ``gprat predict`` reads.

A model file is an uncompressed NumPy ``.npz`` archive (read with ``allow_pickle=False``)
holding these arrays:

=================  ==========================  =====================================================
key                type, shape                 meaning
=================  ==========================  =====================================================
format             str, ()                     always ``"gprat-model"``
format_version     int64, ()                   ``2`` (``1``: the same without model_type; ``3``: a file with
                                               noise_fixed or mean_constant; ``4``: a file with kernel_tree);
                                               newer ones are refused
model_type         str, ()                     the model class, ``"ExactGP"`` (absent in version 1: ExactGP)
gprat_version      str, ()                     version of gprat that wrote the file
kernel             str, ()                     short name from :mod:`gprat.kernels.registry`: ``"se"``, ``"matern12"``,
                                               ..., or ``"tree"`` (version 4: the kernel is in kernel_tree)
lengthscale        float64, () or (d,)         one lengthscale, or one per feature (ARD); absent with kernel_tree
signal_variance    float64, ()                 absent with kernel_tree
kernel_tree        str, ()                     version 4: JSON description of any kernel tree (families with
                                               parameters, active_dims, fixed; Sum/Product), see
                                               :mod:`gprat.io.kernel_description`
noise_variance     float64, ()
dtype              str, ()                     engine precision, ``"float64"`` or ``"float32"``
X_train            float64, (n, d)             training inputs, in the units of the data file
y_train            float64, (n,)               training targets, in the units of the data file
x_mean, x_scale    float64, (d,)               the GP sees ``(X - x_mean) / x_scale``
y_mean, y_scale    float64, ()                 ... and ``(y - y_mean) / y_scale``
feature_names      str, (d,)                   column names (``"0"``, ``"3"`` ... for ``.npy`` data)
target_name        str, ()
noise_fixed        float64, (n,)               optional: known per-sample noise variances (standardized units,
                                               >= 0) under the learned noise_variance
mean_constant      float64, ()                 optional: the learned constant mean (standardized units)
inducing_points    float64, (M, d)             version 5, model_type SGPR or SVGP: the inducing points Z
                                               (standardized inputs)
q_mean, q_sqrt     float64, (M,), (M, M)       version 5, model_type SVGP: the whitened q(v) = N(m, C C^T),
                                               C lower triangular; n_samples_svgp int64, (): the N its
                                               ELBO is scaled to
kiss_grid_size     int64, (d,)                 model_type ``"KissGP"`` only: grid points per feature (the grid
                                               covers the standardized training range, as at fit)
kiss_*             int64 or float64, ()        KissGP only: its settings ``kiss_n_probes``, ``kiss_max_cg_iter``,
                                               ``kiss_preconditioner_rank``, ``kiss_random_state`` (int64),
                                               ``kiss_cg_tol``, ``kiss_predict_cg_tol`` (float64); see
                                               :class:`gprat.KissGP`
=================  ==========================  =====================================================

A file without the optional entries is written as version 2, readable by every gprat that
reads version 2; one with them is version 3, so that an older gprat refuses it instead of
silently dropping the per-sample noise or the mean. A kernel that is not one stationary family
on all features with free parameters (a sum, a product, another family, active_dims, fixed
parameters) is stored as ``kernel_tree``, in version 4, which older gprat versions refuse. The
sparse models (``model_type`` ``"SGPR"`` or ``"SVGP"``) are written as version 5, with their
inducing points (and SVGP's variational parameters); an SVGP file is predicted from q alone,
an SGPR file is refitted on its training data (O(n M^2)) at the first prediction.

Hyperparameters are those of the GP on the standardized data. Only the data and the
hyperparameters are stored: loading is cheap, and the factorization is recomputed on the
first prediction.

Every entry is checked at load (type, shape, finiteness, range, and agreement with the other
entries), so a corrupt or hand-edited file fails there with a :class:`ModelFileError` naming
the field, never later inside a fit. A new model type adds its class to ``MODEL_TYPES`` and
its own entries after the common ones; ``format_version`` grows when an entry changes meaning.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .._validation import HYPER_MAX, HYPER_MIN, _as_numeric_array, _check_finite, as_matrix, as_vector, check_int
from .._version import __version__
from ..kernels import Kernel, registry
from ..kernels.stationary import Stationary
from .kernel_description import kernel_from_json, kernel_to_json
from ..models.exact import ExactGP
from ..models.sgpr import SGPR, initial_inducing_points
from ..models.svgp import SVGP
from ..models.kiss import KissGP

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MODEL_TYPES", "GPModel", "ModelFileError", "load_model"]

FORMAT_NAME = "gprat-model"
FORMAT_VERSION = 5
#: The version of files of the sparse model types (inducing points, variational parameters).
_SPARSE_VERSION = 5
#: Their entries.
_SPARSE_ENTRIES = ("inducing_points", "q_mean", "q_sqrt", "n_samples_svgp")
#: The sparse model types (files of version 5 with inducing points).
_SPARSE_TYPES = ("SGPR", "SVGP")
#: The version of files with a kernel_tree.
_TREE_VERSION = 4
#: ``kernel`` entry of a file whose kernel is in kernel_tree.
TREE_KERNEL = "tree"
#: The version written for files without the optional entries of version 3.
_BASE_VERSION = 2
#: The version of files with the optional entries (and no kernel_tree).
_EXTRAS_VERSION = 3
#: Optional entries (version 3).
_OPTIONAL = ("noise_fixed", "mean_constant")

#: Model types a file may hold -> the class that fits it.
MODEL_TYPES = {"ExactGP": ExactGP, "SGPR": SGPR, "SVGP": SVGP, "KissGP": KissGP}
#: Command-line spellings of the model types (``gprat fit --model``).
MODEL_NAMES = {"exact": "ExactGP", "sgpr": "SGPR", "svgp": "SVGP", "kiss": "KissGP"}
#: Entries of a KissGP file (int64 unless noted), mapped to KissGP's parameter names.
_KISS_ENTRIES = {"kiss_grid_size": "grid_size", "kiss_n_probes": "n_probes", "kiss_cg_tol": "cg_tol",
                 "kiss_max_cg_iter": "max_cg_iter", "kiss_preconditioner_rank": "preconditioner_rank",
                 "kiss_random_state": "random_state", "kiss_predict_cg_tol": "predict_cg_tol"}
#: KissGP entries stored as float64 (the others are int64).
_KISS_FLOATS = ("cg_tol", "predict_cg_tol")


def default_kiss_grid_size(n, d):
    """Grid points per feature for a KissGP trained from files (the CLI): about n^(1/d), at
    least 32, at most 10000 (d = 1), 400 (d = 2), 64 (d = 3) or 16 (d > 3)."""
    cap = {1: 10000, 2: 400, 3: 64}.get(d, 16)
    return int(min(cap, max(32, round(n ** (1.0 / d)))))

_REQUIRED = (
    "format",
    "format_version",
    "kernel",
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


#: Entries required unless the kernel is in kernel_tree.
_FAMILY_ENTRIES = ("lengthscale", "signal_variance")


class ModelFileError(ValueError):
    """A file is not a readable gprat model file."""


def _as_family_form(kernel):
    """(short name, lengthscale, signal_variance) of a kernel the version-2 entries express, else None."""
    if (type(kernel) in registry.FAMILIES and issubclass(type(kernel), Stationary) and kernel.in_model_files
            and kernel.active_dims is None and not kernel.fixed):
        return kernel.short_name, kernel.lengthscale, kernel.signal_variance
    return None


def _finite_array(value, name, ndim=None, shape=None, hint=None):
    """`value` as a float64 array of finite numbers with the given ndim or shape (ValueError/TypeError naming `name`)."""
    arr = np.array(_as_numeric_array(value, name), dtype=np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {arr.shape}.")
    if shape is not None and arr.shape != shape:
        expected = "a scalar" if shape == () else f"shape {shape}" + (f" ({hint})" if hint else "")
        raise ValueError(f"{name} must be {expected}; got shape {arr.shape}.")
    _check_finite(arr, name, arr)
    return arr


def _positive(arr, name):
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got {arr if arr.size < 8 else 'entries <= 0'}.")
    return arr


def _in_hyper_range(arr, name):
    if np.any(arr < HYPER_MIN) or np.any(arr > HYPER_MAX):
        raise ValueError(f"{name} must be positive, between {HYPER_MIN:g} and {HYPER_MAX:g}; got {arr}.")
    return arr


def _one_of(value, name, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
    return value


def _scale(values):
    """Standard deviation, with 1 where it is 0 (a constant column stays constant)."""
    scale = np.std(values, axis=0)
    return np.where(scale > 0.0, scale, 1.0)


class GPModel:
    """An exact GP with its training data and standardization, as stored in a model file.

    Parameters
    ----------
    kernel : {"se", "matern12", "matern32", "matern52"} or gprat.kernels.Kernel
        A family's short name (with ``lengthscale`` and ``signal_variance``), or any kernel
        tree (``lengthscale`` and ``signal_variance`` None: the tree holds its parameters; a
        single stationary family on all features with free parameters becomes its short name).
    lengthscale : float or array-like of shape (n_features,) or None
    signal_variance : float or None
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
    noise_fixed : array-like of shape (n_samples,) or None, default=None
        Known per-sample noise variances (standardized units) added under ``noise_variance``.
    mean_constant : float or None, default=None
        A learned constant mean of the standardized target (None: zero mean).

    Examples
    --------
    >>> import numpy as np
    >>> from gprat.io import GPModel
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
        model_type="ExactGP",
        noise_fixed=None,
        mean_constant=None,
        inducing_points=None,
        q_mean=None,
        q_sqrt=None,
        n_samples_svgp=None,
        model_options=None,
    ):
        if isinstance(kernel, Kernel):
            if lengthscale is not None or signal_variance is not None:
                raise ValueError("with a kernel object, lengthscale and signal_variance must be None (the kernel "
                                 f"holds its parameters); got lengthscale={lengthscale!r}, "
                                 f"signal_variance={signal_variance!r}.")
            form = _as_family_form(kernel)
            if form is not None:
                kernel, lengthscale, signal_variance = form
            else:
                kernel_to_json(kernel)  # TypeError for a kernel class model files do not store
        else:
            registry.by_short_name(kernel)  # ValueError naming the known kernels
        self.kernel = kernel
        self.model_type = _one_of(model_type, "model_type", MODEL_TYPES)
        self.X_train = _finite_array(X_train, "X_train", ndim=2)
        n, d = self.X_train.shape
        if n == 0 or d == 0:
            raise ValueError(f"X_train must have at least one row and one column; got shape {self.X_train.shape}.")
        self.y_train = _finite_array(y_train, "y_train", shape=(n,), hint="one entry per row of X_train")
        if self.is_tree:
            kernel.check_features(d)  # ValueError: ARD lengthscale count, active_dims range
            self.lengthscale = self.signal_variance = None
        else:
            self.lengthscale = _finite_array(lengthscale, "lengthscale")
            if self.lengthscale.shape not in ((), (d,)):
                raise ValueError(
                    f"lengthscale must be a scalar or have one entry per feature ({d}); got shape "
                    f"{self.lengthscale.shape}."
                )
            _in_hyper_range(self.lengthscale, "lengthscale")
            self.signal_variance = float(_in_hyper_range(_finite_array(signal_variance, "signal_variance", shape=()),
                                                         "signal_variance"))
        self.noise_variance = float(_in_hyper_range(_finite_array(noise_variance, "noise_variance", shape=()),
                                                    "noise_variance"))
        self.x_mean = _finite_array(x_mean, "x_mean", shape=(d,), hint="one entry per feature")
        self.x_scale = _positive(_finite_array(x_scale, "x_scale", shape=(d,), hint="one entry per feature"), "x_scale")
        self.y_mean = float(_finite_array(y_mean, "y_mean", shape=()))
        self.y_scale = float(_positive(_finite_array(y_scale, "y_scale", shape=()), "y_scale"))
        names = [f"x{j}" for j in range(d)] if feature_names is None else [str(f) for f in feature_names]
        if len(names) != d:
            raise ValueError(f"feature_names must have {d} entries; got {len(names)}.")
        self.feature_names = names
        self.target_name = str(target_name)
        self.dtype = _one_of(str(np.dtype(dtype).name) if not isinstance(dtype, str) else dtype, "dtype",
                             ("float64", "float32"))
        self.noise_fixed = None
        if noise_fixed is not None:
            self.noise_fixed = _finite_array(noise_fixed, "noise_fixed", shape=(n,), hint="one entry per row of X_train")
            if np.any(self.noise_fixed < 0) or np.any(self.noise_fixed > HYPER_MAX):
                raise ValueError(f"noise_fixed must hold variances between 0 and {HYPER_MAX:g}.")
        self.mean_constant = None if mean_constant is None else float(
            _finite_array(mean_constant, "mean_constant", shape=()))
        self.inducing_points = self.q_mean = self.q_sqrt = self.n_samples_svgp = None
        if self.model_type not in ("SGPR", "SVGP"):
            if any(v is not None for v in (inducing_points, q_mean, q_sqrt, n_samples_svgp)):
                raise ValueError("inducing_points, q_mean, q_sqrt and n_samples_svgp belong to model_type SGPR or "
                                 f"SVGP; got model_type {self.model_type}.")
        else:
            if self.noise_fixed is not None or self.mean_constant is not None:
                raise ValueError(f"model_type {self.model_type} takes no noise_fixed or mean_constant.")
            if inducing_points is None:
                raise ValueError(f"model_type {self.model_type} needs inducing_points.")
            self.inducing_points = _finite_array(inducing_points, "inducing_points", ndim=2)
            M = self.inducing_points.shape[0]
            if self.inducing_points.shape[1] != d or M == 0 or (self.model_type == "SGPR" and M > n):
                raise ValueError(f"inducing_points must have shape (M, {d}) with 1 <= M"
                                 f"{' <= n_samples' if self.model_type == 'SGPR' else ''}; got "
                                 f"{self.inducing_points.shape}.")
            if self.model_type == "SVGP":
                if q_mean is None or q_sqrt is None or n_samples_svgp is None:
                    raise ValueError("model_type SVGP needs q_mean, q_sqrt and n_samples_svgp.")
                self.q_mean = _finite_array(q_mean, "q_mean", shape=(M,), hint="one entry per inducing point")
                self.q_sqrt = _finite_array(q_sqrt, "q_sqrt", shape=(M, M), hint="M x M")
                if np.any(np.triu(self.q_sqrt, 1) != 0) or np.any(np.diag(self.q_sqrt) == 0):
                    raise ValueError("q_sqrt must be lower triangular with a non-zero diagonal.")
                self.n_samples_svgp = int(check_int(int(_finite_array(n_samples_svgp, "n_samples_svgp", shape=())),
                                                    "n_samples_svgp", 1))
            elif any(v is not None for v in (q_mean, q_sqrt, n_samples_svgp)):
                raise ValueError("q_mean, q_sqrt and n_samples_svgp belong to model_type SVGP.")
        self.model_options = self._check_model_options(model_options, d)
        self._gp = None

    def _check_model_options(self, options, d):
        """The KissGP settings (dict of its parameter names), checked; {} for an ExactGP."""
        if self.model_type != "KissGP":
            if options:
                raise ValueError(f"model_options are for model_type 'KissGP'; got {options!r} for {self.model_type}.")
            return {}
        if self.noise_fixed is not None or self.mean_constant is not None:
            raise ValueError("a KissGP model has a learned noise and a zero mean (no noise_fixed or mean_constant).")
        options = dict(options or {})
        unknown = set(options) - set(_KISS_ENTRIES.values())
        if unknown:
            raise ValueError(f"unknown KissGP options {sorted(unknown)}; expected {sorted(_KISS_ENTRIES.values())}.")
        grid = options.get("grid_size")
        if grid is not None:
            grid = np.asarray(grid)
            if grid.shape != (d,) or grid.dtype.kind not in "iu" or np.any(grid < 8):
                raise ValueError(f"kiss grid_size must be {d} integers >= 8; got {options['grid_size']!r}.")
            options["grid_size"] = [int(v) for v in grid]
        return options

    @property
    def is_tree(self):
        """bool: True when the kernel is a kernel object (stored as kernel_tree, version 4)."""
        return isinstance(self.kernel, Kernel)

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
        model_type="ExactGP",
        inducing_points=256,
        epochs=20,
        batch_size=1024,
        model_options=None,
    ):
        """Standardize the data, fit a GP and optimize its hyperparameters.

        Starts from lengthscale ``sqrt(n_features)`` (per feature with ``ard``), signal
        variance 1 and noise variance 0.1 on the standardized data, then runs L-BFGS-B on
        the log marginal likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        kernel : {"se", "matern12", "matern32", "matern52"} or gprat.kernels.Kernel, default="se"
            A short name, or the initial kernel (any tree, on the standardized data).
        ard : bool, default=True
            One lengthscale per feature instead of one for all (short names only).
        max_iter : int, default=100
            Optimizer iterations; 0 keeps the initial hyperparameters.
        feature_names : sequence of str, optional
        target_name : str, default="y"
        dtype : {"float64", "float32"}, default="float64"
        callback : callable, optional
            ``callback(iteration, loss)`` after each optimizer iteration (SVGP: each minibatch step).
        model_type : {"ExactGP", "SGPR", "SVGP", "KissGP"}, default="ExactGP"
            SGPR: L-BFGS-B on the collapsed bound over the hyperparameters and the inducing
            points; SVGP: `epochs` of minibatch training (natural gradients + Adam); KissGP:
            L-BFGS-B on its fixed-probe estimate, its grid (given in ``model_options["grid_size"]``,
            else :func:`~gprat.io.model_file.default_kiss_grid_size`) covering the standardized training range.
        inducing_points : int, default=256
            M for the sparse models (at most n_samples), chosen by k-means++ (seed 0).
        epochs, batch_size : int
            SVGP training.
        model_options : dict or None
            KissGP parameters (grid_size, n_probes, cg_tol, max_cg_iter, preconditioner_rank,
            random_state).

        Returns
        -------
        GPModel
        """
        X = np.array(as_matrix(X, "X"), dtype=np.float64)  # a copy: the model keeps it
        y = np.array(as_vector(y, "y", length=X.shape[0]), dtype=np.float64)
        if isinstance(max_iter, (bool, np.bool_)) or max_iter != 0:
            max_iter = check_int(max_iter, "max_iter", 0)
        d = X.shape[1]
        lengthscale = np.full(d, np.sqrt(d)) if ard else np.sqrt(d)
        tree = isinstance(kernel, Kernel)
        model_type = _one_of(model_type, "model_type", MODEL_TYPES)
        x_mean, x_scale = X.mean(axis=0), _scale(X)
        sparse = {}
        if model_type in _SPARSE_TYPES:
            M = check_int(inducing_points, "inducing_points", 1)
            if M > X.shape[0]:
                raise ValueError(f"inducing_points={M} is more than the {X.shape[0]} samples")
            Z = initial_inducing_points((X - x_mean) / x_scale, M, random_state=0)
            sparse = {"inducing_points": Z}
            if model_type == "SVGP":
                sparse.update(q_mean=np.zeros(M), q_sqrt=np.eye(M), n_samples_svgp=X.shape[0])
        if model_type == "KissGP":
            model_options = dict(model_options or {})
            if model_options.get("grid_size") is None:
                model_options["grid_size"] = [default_kiss_grid_size(X.shape[0], d)] * d
            elif np.ndim(model_options["grid_size"]) == 0:
                model_options["grid_size"] = [int(model_options["grid_size"])] * d
            model_options.setdefault("random_state", 0)
        model = cls(
            kernel,
            None if tree else lengthscale,
            None if tree else 1.0,
            0.1,
            X,
            y,
            x_mean=x_mean,
            x_scale=x_scale,
            y_mean=y.mean(),
            y_scale=float(_scale(y)),
            feature_names=feature_names,
            target_name=target_name,
            dtype=dtype,
            model_type=model_type,
            **sparse,
            model_options=model_options,
        )
        if model_type == "SVGP":
            svgp = SVGP(model._kernel_object(), noise_variance=model.noise_variance, inducing_points=Z,
                        dtype=np.dtype(dtype))
            svgp.fit(model._standardize(X), (y - model.y_mean) / model.y_scale, batch_size=check_int(batch_size,
                     "batch_size", 1), epochs=check_int(epochs, "epochs", 1), random_state=0, callback=callback)
            model._read_hyperparameters(svgp)
            model._gp = svgp
            return model
        if max_iter > 0:
            gp = model.gp
            gp.optimize(method="L-BFGS-B", max_iter=int(max_iter), callback=callback)
            model._read_hyperparameters(gp)
        return model

    def _read_hyperparameters(self, gp):
        if self.model_type in _SPARSE_TYPES:
            self.inducing_points = np.array(gp.inducing_points_, dtype=np.float64)
        if self.model_type == "SVGP":
            self.q_mean = np.array(gp.q_mean_, dtype=np.float64)
            self.q_sqrt = np.tril(np.array(gp.q_sqrt_, dtype=np.float64))
        theta = np.asarray(gp.theta, dtype=np.float64)
        n_log = len(theta) - (self.mean_constant is not None)  # the mean entry is not a logarithm
        values = np.exp(theta[:n_log])
        if self.mean_constant is not None:
            self.mean_constant = float(theta[-1])
        if self.is_tree:
            self.kernel = gp.kernel
            self.noise_variance = float(values[gp.kernel.n_params])
            return
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

    def _kernel_object(self):
        if self.is_tree:
            return self.kernel
        kernel_class = registry.by_short_name(self.kernel)
        lengthscale = self.lengthscale if self.lengthscale.ndim else float(self.lengthscale)
        return kernel_class(lengthscale=lengthscale, signal_variance=self.signal_variance)

    @property
    def gp(self):
        """The model on the standardized data (gprat.ExactGP, SGPR or SVGP), fitted on first access."""
        if self._gp is None:
            kernel = self._kernel_object()
            if self.model_type == "SGPR":
                gp = SGPR(kernel, noise_variance=self.noise_variance, inducing_points=self.inducing_points,
                          dtype=np.dtype(self.dtype))
                self._gp = gp.fit(self._standardize(self.X_train), (self.y_train - self.y_mean) / self.y_scale)
                return self._gp
            if self.model_type == "SVGP":
                gp = SVGP(kernel, noise_variance=self.noise_variance, inducing_points=self.inducing_points,
                          dtype=np.dtype(self.dtype))
                gp._restore(self.inducing_points, self.q_mean, self.q_sqrt, self.n_samples_svgp)
                self._gp = gp
                return self._gp
            if self.noise_fixed is None:
                noise = {"noise_variance": self.noise_variance}
            else:
                noise = {"noise_variance": self.noise_fixed, "learned_noise": self.noise_variance}
            if self.model_type == "KissGP":
                gp = KissGP(kernel, noise_variance=self.noise_variance, dtype=np.dtype(self.dtype), **self.model_options)
            else:
                gp = MODEL_TYPES[self.model_type](kernel, **noise, mean_constant=self.mean_constant,
                                                  dtype=np.dtype(self.dtype))
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
        extras = {}
        if self.noise_fixed is not None:
            extras["noise_fixed"] = self.noise_fixed
        if self.mean_constant is not None:
            extras["mean_constant"] = np.array(self.mean_constant)
        if self.model_type in _SPARSE_TYPES:
            extras["inducing_points"] = self.inducing_points
        if self.model_type == "SVGP":
            extras.update(q_mean=self.q_mean, q_sqrt=self.q_sqrt, n_samples_svgp=np.array(self.n_samples_svgp,
                                                                                         dtype=np.int64))
        kiss = {}
        if self.model_type == "KissGP":
            o = dict(self.model_options)
            if o.get("grid_size") is None:  # the grid the fitted model uses, so that a reload rebuilds it
                o["grid_size"] = [int(g[2]) for g in self.gp.grid_]
            # the settings' defaults do not depend on the kernel (a tree or a family name here)
            defaults = KissGP(registry.by_short_name("se")(), noise_variance=1.0, random_state=0)
            for entry, name in _KISS_ENTRIES.items():
                value = o.get(name, getattr(defaults, name))
                kiss[entry] = np.array(value, dtype=np.float64 if name in _KISS_FLOATS else np.int64)
        if self.is_tree:
            version = _TREE_VERSION
            kernel_entries = {"kernel": np.array(TREE_KERNEL), "kernel_tree": np.array(kernel_to_json(self.kernel))}
        else:
            version = _EXTRAS_VERSION if extras else _BASE_VERSION
            kernel_entries = {
                "kernel": np.array(self.kernel),
                "lengthscale": self.lengthscale,
                "signal_variance": np.array(self.signal_variance),
            }
        if self.model_type in _SPARSE_TYPES:
            version = _SPARSE_VERSION
        arrays = {
            "format": np.array(FORMAT_NAME),
            "format_version": np.array(version, dtype=np.int64),
            "model_type": np.array(self.model_type),
            "gprat_version": np.array(__version__),
            **kernel_entries,
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
            **extras,
            **kiss,
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
        try:
            kernel_entry = archive["kernel"] if "kernel" in archive.files else None
        except (ValueError, TypeError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"{path}: unreadable entry in the model file: {error}") from None
        tree = (kernel_entry is not None and kernel_entry.shape == () and kernel_entry.dtype.kind == "U"
                and str(kernel_entry) == TREE_KERNEL)
        required = _REQUIRED + (("kernel_tree",) if tree else _FAMILY_ENTRIES)
        missing = [key for key in required if key not in archive.files]
        if missing:
            raise ModelFileError(f"{path} is not a complete gprat model file; missing: {', '.join(missing)}.")
        try:
            data = {key: archive[key] for key in required}
            model_type = str(archive["model_type"]) if "model_type" in archive.files else "ExactGP"
            optional = {key: archive[key] for key in _OPTIONAL + _SPARSE_ENTRIES if key in archive.files}
            kiss = {key: archive[key] for key in _KISS_ENTRIES if key in archive.files}
        except (ValueError, TypeError, zipfile.BadZipFile) as error:
            raise ModelFileError(f"{path}: unreadable entry in the model file: {error}") from None
        version = data["format_version"]
        if version.shape != () or version.dtype.kind not in "iu" or int(version) < 1:
            raise ModelFileError(f"{path}: format_version must be an integer >= 1; got {version!r}.")
        version = int(version)
        if version >= 2 and "model_type" not in archive.files:
            raise ModelFileError(f"{path} is not a complete gprat model file; missing: model_type.")
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{path} has model format version {version}; this gprat reads versions up to "
                f"{FORMAT_VERSION}. Upgrade gprat to read it."
            )
        if model_type in _SPARSE_TYPES and version < _SPARSE_VERSION:
            raise ModelFileError(f"{path}: model_type {model_type} needs format_version {_SPARSE_VERSION}; got {version}.")
        if tree and version < _TREE_VERSION:
            raise ModelFileError(f"{path}: kernel={TREE_KERNEL!r} (a kernel_tree) needs format_version "
                                 f"{_TREE_VERSION}; got {version}.")
    for key in ("kernel", "dtype", "target_name") + (("kernel_tree",) if tree else ()):
        if data[key].shape != () or data[key].dtype.kind != "U":
            raise ModelFileError(f"{path}: {key} must be a string; got {data[key]!r}.")
    if data["feature_names"].ndim != 1 or data["feature_names"].dtype.kind != "U":
        raise ModelFileError(f"{path}: feature_names must be a 1-D array of strings; got {data['feature_names']!r}.")
    model_options = None
    if model_type == "KissGP":
        missing = [key for key in _KISS_ENTRIES if key not in kiss]
        if missing:
            raise ModelFileError(f"{path} is not a complete KissGP model file; missing: {', '.join(missing)}.")
        model_options = {}
        for key, name in _KISS_ENTRIES.items():
            arr = kiss[key]
            kind = "f" if name in _KISS_FLOATS else "iu"
            if arr.dtype.kind not in kind or (arr.ndim != (1 if name == "grid_size" else 0)):
                raise ModelFileError(f"{path}: {key} has the wrong type or shape; got {arr!r}.")
            model_options[name] = arr.tolist()
    if tree:
        try:
            kernel = kernel_from_json(str(data["kernel_tree"]))
        except ValueError as error:
            raise ModelFileError(f"{path}: invalid kernel_tree: {error}") from None
        family = (None, None)
    else:
        kernel = str(data["kernel"])
        family = (data["lengthscale"], data["signal_variance"])
    try:
        return GPModel(
            kernel,
            *family,
            data["noise_variance"],
            data["X_train"],
            data["y_train"],
            x_mean=data["x_mean"],
            x_scale=data["x_scale"],
            y_mean=data["y_mean"],
            y_scale=data["y_scale"],
            feature_names=[str(name) for name in data["feature_names"]],
            target_name=str(data["target_name"]),
            dtype=str(data["dtype"]),
            model_type=model_type,
            model_options=model_options,
            **optional,
        )
    except (ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: invalid model file: {error}") from None
