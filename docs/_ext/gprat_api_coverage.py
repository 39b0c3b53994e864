"""Sphinx extension: warn (an error under ``-W``) for every public name no API page documents.

numpydoc's GL08 check fails a documented object without a docstring; this one catches the
name that is not documented at all. Public means: listed in ``__all__`` of a module in
:data:`PUBLIC_MODULES` (plus the names those modules load lazily, :data:`LAZY`). A name counts
as documented when the Python domain holds it under the module's public path, e.g.
``gprat.ExactGP`` for ``gprat.__all__``'s ``"ExactGP"``.
"""

import importlib

from sphinx.util import logging

logger = logging.getLogger(__name__)

#: Modules whose ``__all__`` is the public API.
PUBLIC_MODULES = ("gprat", "gprat.kernels", "gprat.distributed", "gprat.io", "gprat.linalg", "gprat.optim")
#: Names a module loads on first use (scikit-learn is optional), hence absent from ``__all__``.
LAZY = {
    "gprat": ("GaussianProcessRegressor",),
    "gprat.kernels": ("RBF", "Matern", "ExpSineSquared", "DotProduct", "ConstantKernel", "WhiteKernel"),
}
#: ``__all__`` entries that are modules (documented as modules) or plain values.
SKIP = {"gprat.kernels", "gprat.linalg", "gprat.__version__"}


def public_names():
    """Every ``module.name`` of the public API, as a sorted list."""
    names = set()
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in list(getattr(module, "__all__", ())) + list(LAZY.get(module_name, ())):
            names.add(f"{module_name}.{name}")
    return sorted(names - SKIP)


def check(app, env):
    """Warn once per public name that the Python domain does not hold."""
    documented = set(env.get_domain("py").objects) | set(env.get_domain("py").modules)
    for name in public_names():
        if name not in documented:
            logger.warning(f"public name {name} is not documented on any API page (docs/api/*.rst)",
                           type="gprat", subtype="api")


def setup(app):
    """Register the check to run once every document is read."""
    app.connect("env-check-consistency", check)
    return {"version": "1", "parallel_read_safe": True}
