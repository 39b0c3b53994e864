"""What the sparse models (SGPR, SVGP) share: a kernel plus one learned noise variance.

Both hold ``theta = log [kernel parameters..., noise_variance]``, choose their inducing points
Z the same way (a count: k-means++ rows of the data; an array: Z itself, checked against the
data's feature count), optimize the same trainable mask and return predictions in the same
shape. The jitter policy's first factorization (try no jitter, then the growing schedule of
:func:`gprat.models.exact._jitter_schedule`) is :func:`factor_with_jitter`.
"""

import numbers
from collections import namedtuple

import numpy as np

from .._validation import as_matrix, check_positive, check_positive_int, check_theta
from ..exceptions import NotFittedError, NotPositiveDefiniteError
from ..kernels import Kernel
from .exact import _jitter_schedule

__all__ = ["KernelNoiseModel", "JitterOutcome", "factor_with_jitter"]


class KernelNoiseModel:
    """Mixin: ``kernel`` and ``noise_variance`` attributes, theta = their logs, Z from a spec.

    A subclass sets ``_NAME`` and ``_FIT_HINT`` (for messages) and may override :meth:`_theta_changed`, which
    the theta setter calls after the new values are in place.
    """

    _NAME = "model"
    _FIT_HINT = "call fit(X, y) first"

    @property
    def n_params(self):
        """int: entries of theta (kernel parameters, then log noise_variance)."""
        return self.kernel.n_params + 1

    @property
    def theta(self):
        """ndarray: log [kernel parameters..., noise_variance]."""
        return np.concatenate([self.kernel.theta, [np.log(self.noise_variance)]])

    @theta.setter
    def theta(self, theta):
        theta = check_theta(theta, self.n_params)
        self.kernel = self.kernel.with_theta(theta[:-1])
        self.noise_variance = float(np.exp(theta[-1]))
        self._theta_changed()

    def _theta_changed(self):
        """Hook: called by the theta setter (the fitted state may need refactoring)."""

    def _require_fit(self, what):
        if self._core is None:
            raise NotFittedError(f"{self._NAME}.{what} needs a fitted model; {self._FIT_HINT}")

    def _check_kernel_and_noise(self):
        """The kernel's type and the noise variance; returns the noise variance as a float."""
        if not isinstance(self.kernel, Kernel):
            raise TypeError(f"kernel must be a gprat.kernels kernel; got {type(self.kernel).__name__}")
        return check_positive(self.noise_variance, "noise_variance")

    def _trainable_mask(self, trainable):
        """theta's mask: the kernel's own and the noise (None), or `trainable` (n_params bools)."""
        npar = self.n_params
        if trainable is None:
            return np.concatenate([self.kernel.trainable, [True]])
        mask = np.asarray(trainable)
        if mask.dtype != bool or mask.shape != (npar,):
            raise ValueError(f"trainable must be {npar} booleans (kernel parameters, then the noise); got {trainable!r}")
        return mask

    def _inducing_points_for(self, X, random_state, too_many):
        """Z from ``self.inducing_points`` for data X: k-means++ rows of X for a count M
        (M <= n_samples, else ValueError with the message ``too_many(M, n_samples)``), else the
        array itself, which must have X's feature count."""
        from .sgpr import initial_inducing_points  # sgpr imports this module

        spec = self.inducing_points
        n, d = X.shape
        if isinstance(spec, numbers.Integral) and not isinstance(spec, bool):
            m = check_positive_int(int(spec), "inducing_points", allow_none=False)
            if m > n:
                raise ValueError(too_many(m, n))
            return initial_inducing_points(X, m, random_state)
        return as_matrix(spec, "inducing_points", np.float64, n_features=d)

    @staticmethod
    def _check_predict_flags(return_std, return_cov):
        if return_std and return_cov:
            raise ValueError("at most one of return_std and return_cov may be True")

    @staticmethod
    def _predict_result(mean, var, cov, return_std, return_cov):
        """mean, (mean, std) or (mean, cov), as the flags ask."""
        if return_std:
            return mean, np.sqrt(var)
        if return_cov:
            return mean, cov
        return mean

    def _repr_inducing(self):
        spec = self.inducing_points
        return spec if isinstance(spec, numbers.Integral) else f"<array {np.shape(spec)}>"


#: The first factorization that worked: jitter added, its factor relative to mean(diag K),
#: the value the factorization returned, and the error of the attempt without jitter (or None).
JitterOutcome = namedtuple("JitterOutcome", "jitter relative value first_error")


def factor_with_jitter(attempt, mean_diag, dtype, max_jitter, failure):
    """Run ``attempt(jitter)`` with no jitter, then the jitter schedule, until one succeeds.

    An attempt fails when it raises :class:`NotPositiveDefiniteError` or returns a value that is
    not finite (a numerically singular factor). ``jitter = c * mean_diag`` for c in
    ``[0] + _jitter_schedule(dtype, max_jitter)`` (1e-10 or 1e-6, tenfold, up to max_jitter).

    Parameters
    ----------
    attempt : callable
        ``attempt(jitter) -> float`` (the factorization's log likelihood or bound).
    mean_diag : float
        The scale of the jitter: mean of the matrix's diagonal.
    dtype : numpy.float64 or numpy.float32
    max_jitter : float
    failure : callable
        ``failure(first_error, last_error, largest_relative_or_None) -> Exception``: the error to
        raise when every attempt fails (None: jitter is disabled).

    Returns
    -------
    JitterOutcome
    """
    first_error = last_error = None
    tried = []
    for rel in [0.0] + _jitter_schedule(dtype, max_jitter):
        try:
            value = float(attempt(rel * mean_diag))
        except NotPositiveDefiniteError as err:
            first_error, last_error = first_error or err, err
            tried.append(rel)
            continue
        if not np.isfinite(value):
            first_error = first_error or NotPositiveDefiniteError(
                f"the value is {value} (the matrix is numerically singular)", None)
            last_error = first_error
            tried.append(rel)
            continue
        return JitterOutcome(rel * mean_diag, rel, value, first_error)
    raise failure(first_error, last_error, tried[-1] if len(tried) > 1 else None) from first_error
