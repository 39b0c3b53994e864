"""The non-stationary-profile families: rational quadratic, periodic, linear, constant, white.

Each is defined as scikit-learn defines it (``sklearn.gaussian_process.kernels``), so values
agree at equal hyperparameters; ``d`` is the Euclidean distance over the active features:

==================  ======================================  ===========================
family              k(x, y)                                 scikit-learn
==================  ======================================  ===========================
RationalQuadratic   (1 + d^2 / (2 alpha l^2))^(-alpha)      RationalQuadratic
Periodic            exp(-2 sin^2(pi d / period) / l^2)      ExpSineSquared
Linear              sigma_0^2 + x . y                       DotProduct
Constant            constant_value                          ConstantKernel
White               noise_level if x is y, else 0           WhiteKernel
==================  ======================================  ===========================

White acts on the diagonal of ``K(X)`` only: ``K(X, X)`` (two point sets that happen to be
equal) has no white term, as in scikit-learn.
"""

import numpy as np

from .base import Family, _check_parameter

__all__ = ["RationalQuadratic", "Periodic", "Linear", "Constant", "White"]


def _reads_no_inputs(self, n_features):
    """inf for every feature: this kernel does not read the inputs (see :meth:`Family.input_scales`)."""
    return np.full(n_features, np.inf)


class _Simple(Family):
    """A family of named scalar parameters (``_PARAMS``), each positive and finite."""

    _PARAMS = ()

    def __init__(self, *values, active_dims=None, fixed=()):
        owner = type(self).__name__
        for name, value in zip(self._PARAMS, values):
            setattr(self, name, _check_parameter(value, owner, name))
        super().__init__(active_dims, fixed)

    @property
    def param_names(self):
        """list of str: the family's parameters, in theta order."""
        return list(self._PARAMS)

    def _values(self):
        return [getattr(self, name) for name in self._PARAMS]

    def _from_values(self, values):
        return type(self)(*(float(v) for v in values), active_dims=self.active_dims, fixed=self.fixed)

    def get_params(self, deep=True):
        """Constructor parameters as a dict."""
        return {**{n: getattr(self, n) for n in self._PARAMS}, "active_dims": self.active_dims, "fixed": self.fixed}

    def __repr__(self):
        args = ", ".join(f"{n}={getattr(self, n):.4g}" for n in self._PARAMS)
        return f"{type(self).__name__}({args}{self._extra_repr()})"


class RationalQuadratic(_Simple):
    """Rational quadratic kernel ``k = (1 + d^2 / (2 alpha l^2))^(-alpha)`` (a scale mixture of RBFs).

    Parameters
    ----------
    lengthscale : float, default=1.0
    alpha : float, default=1.0
        Scale-mixture parameter (> 0); alpha -> infinity gives the RBF.
    active_dims : sequence of int or None, default=None
    fixed : iterable of str or bool, default=()

    Examples
    --------
    >>> import numpy as np
    >>> from gprat.kernels import RationalQuadratic
    >>> k = RationalQuadratic(lengthscale=1.0, alpha=0.5)
    >>> float(k(np.zeros((1, 1)), np.ones((1, 1)))[0, 0])  # (1 + 1 / 1)^(-1/2)
    0.7071067811865476
    """

    _core_name = "RationalQuadratic"
    short_name = "rq"
    _PARAMS = ("lengthscale", "alpha")

    def __init__(self, lengthscale=1.0, alpha=1.0, active_dims=None, fixed=()):
        super().__init__(lengthscale, alpha, active_dims=active_dims, fixed=fixed)

    def lengthscale_spans(self, feature_spans):
        """The box diagonal of the active features for the lengthscale, NaN for alpha (see
        :meth:`Kernel.lengthscale_spans`): ``d^2 / l^2`` is what it reads."""
        return np.array([float(np.linalg.norm(self._active_spans(feature_spans))), np.nan])


class Periodic(_Simple):
    """Periodic kernel ``k = exp(-2 sin^2(pi d / period) / l^2)`` (scikit-learn's ExpSineSquared).

    Parameters
    ----------
    lengthscale : float, default=1.0
    period : float, default=1.0
    active_dims : sequence of int or None, default=None
    fixed : iterable of str or bool, default=()
    """

    _core_name = "Periodic"
    short_name = "periodic"
    _PARAMS = ("lengthscale", "period")

    def __init__(self, lengthscale=1.0, period=1.0, active_dims=None, fixed=()):
        super().__init__(lengthscale, period, active_dims=active_dims, fixed=fixed)


class Linear(_Simple):
    """Linear (dot-product) kernel ``k = sigma_0^2 + x . y`` (scikit-learn's DotProduct).

    Parameters
    ----------
    sigma_0 : float, default=1.0
        Inhomogeneity: the prior standard deviation of the bias.
    active_dims : sequence of int or None, default=None
    fixed : iterable of str or bool, default=()
    """

    _core_name = "Linear"
    short_name = "linear"
    _PARAMS = ("sigma_0",)

    def __init__(self, sigma_0=1.0, active_dims=None, fixed=()):
        super().__init__(sigma_0, active_dims=active_dims, fixed=fixed)


class Constant(_Simple):
    """Constant kernel ``k = constant_value``; ``c * k`` is ``Constant(c) * k``.

    Parameters
    ----------
    constant_value : float, default=1.0
    fixed : iterable of str or bool, default=()
    """

    _core_name = "Constant"
    short_name = "constant"
    _PARAMS = ("constant_value",)

    def __init__(self, constant_value=1.0, active_dims=None, fixed=()):
        super().__init__(constant_value, active_dims=active_dims, fixed=fixed)

    input_scales = _reads_no_inputs


class White(_Simple):
    """White-noise kernel: ``noise_level`` on the diagonal of ``K(X)``, 0 in ``K(X, Y)``.

    Parameters
    ----------
    noise_level : float, default=1.0
    fixed : iterable of str or bool, default=()

    Examples
    --------
    >>> import numpy as np
    >>> from gprat.kernels import White
    >>> X = np.zeros((2, 1))
    >>> White(0.5)(X).tolist(), White(0.5)(X, X).tolist()
    ([[0.5, 0.0], [0.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]])
    """

    _core_name = "White"
    short_name = "white"
    _PARAMS = ("noise_level",)

    def __init__(self, noise_level=1.0, active_dims=None, fixed=()):
        super().__init__(noise_level, active_dims=active_dims, fixed=fixed)

    input_scales = _reads_no_inputs
