"""The JSON description of a kernel tree that model files store (``kernel_tree``).

A node is a JSON object with a ``"type"``:

* ``{"type": "Sum", "k1": node, "k2": node}`` and ``{"type": "Product", "k1": node, "k2": node}``
  (the names of :data:`gprat.kernels.registry.OPERATORS`);
* a family, by its class name in :data:`gprat.kernels.registry.FAMILIES`, with each of its
  constructor parameters (``"lengthscale"`` a number or a list of numbers, one per active
  feature, for the stationary families), ``"active_dims"`` (a list of feature indices or
  null) and ``"fixed"`` (a list of parameter names), e.g.
  ``{"type": "Periodic", "lengthscale": 1.0, "period": 1.0, "active_dims": null, "fixed": ["period"]}``.

Numbers are written with Python's shortest round-trip repr, so a loaded kernel has bitwise the
saved parameters. :func:`kernel_from_description` checks every node and names the place of a
bad one in the tree (``kernel.k1.k2``).
"""

import inspect
import json
import numbers

import numpy as np

from ..kernels import registry
from ..kernels.base import Kernel
from ..kernels.stationary import Stationary

__all__ = ["describe_kernel", "kernel_from_description", "kernel_to_json", "kernel_from_json", "MAX_DEPTH"]

#: Deepest tree a description may hold (guards the recursion against a hand-made file).
MAX_DEPTH = 64

_FAMILIES = {cls.__name__: cls for cls in registry.FAMILIES}


def _family_params(cls):
    """Constructor parameter names of a family, without active_dims and fixed."""
    names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    return tuple(p for p in names if p not in ("active_dims", "fixed"))


def describe_kernel(kernel):
    """The description (JSON-ready dict) of a gprat kernel tree.

    Parameters
    ----------
    kernel : gprat.kernels.Kernel

    Returns
    -------
    dict

    Examples
    --------
    >>> from gprat.kernels import SquaredExponential, White
    >>> describe_kernel(SquaredExponential(2.0) + White(0.1, fixed=True))["k2"]
    {'type': 'White', 'noise_level': 0.1, 'active_dims': None, 'fixed': ['noise_level']}
    """
    if not isinstance(kernel, Kernel):
        raise TypeError(f"kernel must be a gprat.kernels kernel; got {type(kernel).__name__}")
    for name, cls in registry.OPERATORS.items():
        if type(kernel) is cls:
            return {"type": name, "k1": describe_kernel(kernel.k1), "k2": describe_kernel(kernel.k2)}
    if type(kernel).__name__ not in _FAMILIES or _FAMILIES[type(kernel).__name__] is not type(kernel):
        raise TypeError(f"model files store the families {', '.join(_FAMILIES)} and Sum/Product; got "
                        f"{type(kernel).__name__}")
    out = {"type": type(kernel).__name__}
    for name in _family_params(type(kernel)):
        value = getattr(kernel, name)
        out[name] = [float(v) for v in value] if np.ndim(value) else float(value)
    out["active_dims"] = None if kernel.active_dims is None else [int(d) for d in kernel.active_dims]
    out["fixed"] = list(kernel.fixed)
    return out


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def kernel_from_description(node, path="kernel", depth=0):
    """Build the kernel a description holds, checking every node.

    Parameters
    ----------
    node : dict
        A description as :func:`describe_kernel` writes it.
    path : str, default="kernel"
        Name of this node in error messages; children are ``path.k1`` and ``path.k2``.

    Returns
    -------
    gprat.kernels.Kernel

    Raises
    ------
    ValueError
        For a malformed node; the message starts with the node's path.

    Examples
    --------
    >>> kernel_from_description({"type": "Sum", "k1": {"type": "Constant", "constant_value": 2.0},
    ...                          "k2": {"type": "Periodic", "lengthscale": 1.0}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: kernel.k2: Periodic needs the parameter(s) period; got keys lengthscale, type
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"{path}: the tree is deeper than {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise ValueError(f"{path}: a kernel node must be a JSON object; got {type(node).__name__} {node!r}")
    kind = node.get("type")
    if kind in registry.OPERATORS:
        extra = sorted(set(node) - {"type", "k1", "k2"})
        missing = [k for k in ("k1", "k2") if k not in node]
        if missing or extra:
            raise ValueError(f"{path}: a {kind} node has exactly the keys type, k1, k2; got {', '.join(sorted(node))}")
        k1 = kernel_from_description(node["k1"], path + ".k1", depth + 1)
        k2 = kernel_from_description(node["k2"], path + ".k2", depth + 1)
        return registry.OPERATORS[kind](k1, k2)
    if kind not in _FAMILIES:
        known = ", ".join(list(registry.OPERATORS) + list(_FAMILIES))
        raise ValueError(f"{path}: unknown kernel type {kind!r}; expected one of {known}")
    cls = _FAMILIES[kind]
    params = _family_params(cls)
    missing = [p for p in params if p not in node]
    if missing:
        raise ValueError(f"{path}: {kind} needs the parameter(s) {', '.join(missing)}; got keys "
                         f"{', '.join(sorted(node))}")
    extra = sorted(set(node) - {"type", "active_dims", "fixed", *params})
    if extra:
        raise ValueError(f"{path}: {kind} has no parameter(s) {', '.join(extra)}; its parameters are "
                         f"{', '.join(params)}, active_dims, fixed")
    values = {}
    for name in params:
        value = node[name]
        is_list = isinstance(value, list) and value and all(_is_number(v) for v in value)
        if not (_is_number(value) or (is_list and name == "lengthscale" and issubclass(cls, Stationary))):
            raise ValueError(f"{path}: {kind}.{name} must be a number"
                             f"{' or a list of numbers' if name == 'lengthscale' else ''}; got {value!r}")
        values[name] = np.array(value, dtype=np.float64) if isinstance(value, list) else float(value)
    active_dims = node.get("active_dims")
    if active_dims is not None and not (isinstance(active_dims, list)
                                        and all(isinstance(d, int) and not isinstance(d, bool) for d in active_dims)):
        raise ValueError(f"{path}: {kind}.active_dims must be null or a list of feature indices; got {active_dims!r}")
    fixed = node.get("fixed", [])
    if not (isinstance(fixed, list) and all(isinstance(f, str) for f in fixed)):
        raise ValueError(f"{path}: {kind}.fixed must be a list of parameter names; got {fixed!r}")
    try:
        return cls(**values, active_dims=active_dims, fixed=tuple(fixed))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def kernel_to_json(kernel):
    """The description of ``kernel`` as a JSON string (no NaN or infinity)."""
    return json.dumps(describe_kernel(kernel), allow_nan=False)


def _refuse_constant(name):
    raise ValueError(f"the kernel description holds {name}; parameters must be finite numbers")


def kernel_from_json(text):
    """Build the kernel a JSON description holds (see :func:`kernel_from_description`).

    Raises
    ------
    ValueError
        If ``text`` is not JSON or the description is malformed (naming the node).
    """
    try:
        node = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        raise ValueError(f"the kernel description is not valid JSON: {err}") from None
    return kernel_from_description(node)

