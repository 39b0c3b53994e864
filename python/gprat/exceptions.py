"""Exception types raised by gprat."""

import numpy as np

__all__ = [
    "NotPositiveDefiniteError",
    "BackendUnavailableError",
    "RuntimeStateError",
    "NotFittedError",
    "NumericalWarning",
]


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """A matrix that must be symmetric positive definite is not.

    ``order`` is the 1-based order of the leading minor that is not positive definite, the
    number LAPACK's ``potrf`` reports as ``info`` for the whole matrix. It is also a
    ``ValueError`` (``numpy.linalg.LinAlgError`` derives from it).

    Parameters
    ----------
    message : str
        What failed.
    order : int or None
        1-based order of the failing leading minor.
    """

    def __init__(self, message, order=None):
        super().__init__(message)
        self.order = order

    def __reduce__(self):
        return (type(self), (str(self), self.order))


class BackendUnavailableError(RuntimeError):
    """The requested backend (e.g. CUDA) was not built into this installation or has no device."""


class RuntimeStateError(RuntimeError):
    """The task runtime cannot accept work in its current state (it is suspended)."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted model was called before ``fit``."""


class NumericalWarning(RuntimeWarning):
    """gprat changed a computation to keep it numerically sound, and says how.

    Issued when ``ExactGP.fit`` had to add jitter to the diagonal of K to factor it (the
    message gives the jitter used; it is stored as ``jitter_``), and when an optimizer met
    hyperparameters whose covariance matrix is not positive definite and backed off from them.
    """
