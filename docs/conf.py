"""Sphinx configuration of the gprat documentation.

Build (from the repository root, after ``pip install ".[docs]"``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning into an error: a public name without a docstring (numpydoc's GL08
check, and the ``gprat_api_coverage`` extension for names no page documents), a broken
cross-reference (``nitpicky``) or a gallery script that raises fails the build.
"""

import os
import sys
from pathlib import Path

import gprat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "gprat"
author = "the gprat authors"
copyright = "gprat authors, MIT licence"
release = gprat.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinxarg.ext",
    "gprat_api_coverage",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "auto_examples/*.md5", "auto_examples/*.json"]
root_doc = "index"

# -- references: a reference that does not resolve is a warning, hence an error under -W ------
nitpicky = True
# Types in numpydoc "Parameters"/"Returns" sections are prose ("ndarray of shape (n, d)",
# "array-like"), not references: numpydoc_xref_param_type stays off so they are not resolved.
numpydoc_xref_param_type = False
# Names outside this project that autodoc writes into signatures and bases, and that no page
# of ours documents (there is no intersphinx: the build must work offline, as in CI).
nitpick_ignore = [
    ("py:class", "sklearn.gaussian_process.GaussianProcessRegressor"),
    ("py:mod", "sklearn.gaussian_process.kernels"),
    ("py:class", "sklearn.base.BaseEstimator"),
    ("py:class", "sklearn.base.RegressorMixin"),
    ("py:class", "sklearn.base.MultiOutputMixin"),
    ("py:class", "numpy.linalg.LinAlgError"),
    ("py:class", "numpy.float64"),
]
nitpick_ignore_regex = [
    # scikit-learn's kernel classes, the bases of gprat.kernels' scikit-learn spellings
    ("py:class", r"sklearn\.gaussian_process\.kernels\..*"),
    # private base classes that show-inheritance names (gprat.kernels.families._Simple,
    # gprat.models._kernel_noise.KernelNoiseModel, ...): any name with a private component
    ("py:class", r"gprat(\.\w+)*\._\w+(\.\w+)*"),
]

# -- numpydoc: a public name without a docstring fails the build -------------------------------
numpydoc_show_class_members = False  # autodoc's :members: lists them once
numpydoc_class_members_toctree = False
numpydoc_validation_checks = {"GL08"}  # GL08: "The object does not have a docstring"
numpydoc_validation_exclude = {
    r"\.__init__$",  # constructors are documented on the class (numpydoc convention)
}

# no "members" default: each directive lists what it documents (a module page of a name that is
# documented under its public path elsewhere shows only its docstring)
autodoc_default_options = {"undoc-members": True, "show-inheritance": True,
                           "member-order": "bysource"}
autodoc_typehints = "none"  # the docstrings carry the types
autoclass_content = "class"

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# -- gallery: every examples/plot_*.py runs during the build; its figures and output are shown --
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # the command-line scripts the plot_ scripts import from: listed in the gallery text, not run twice
    "ignore_pattern": r"(^|[/\\])(mauna_loa|svgp_million|_scale)\.py$",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "min_reported_time": 0,
    "show_memory": False,
    "reset_modules": ("matplotlib",),
}
# Gallery scripts read this: "docs" keeps each under a minute on 2 cores; "full" is the
# published scale (see each script's header).
os.environ.setdefault("GPRAT_EXAMPLE_SCALE", "docs")

html_theme = "furo"
html_title = f"gprat {release}"
html_static_path = ["_static"]
html_css_files = ["gprat.css"]


def _drop_object_bases_line(app, doctree, docname):
    """Leave "Bases: object" out: every class has it, it says nothing. (autodoc writes the line
    even when an autodoc-process-bases handler empties the list, so the line itself goes.)"""
    from docutils import nodes

    for paragraph in list(doctree.findall(nodes.paragraph)):
        if paragraph.astext().strip() == "Bases: object":
            paragraph.parent.remove(paragraph)


def _readable_signature(app, what, name, obj, options, signature, return_annotation):
    """Write ``dtype=numpy.float64`` for the repr ``<class 'numpy.float64'>`` in signatures."""
    if signature:
        signature = signature.replace("<class 'numpy.float64'>", "numpy.float64").replace(
            "<class 'numpy.float32'>", "numpy.float32")
    return signature, return_annotation


def setup(app):
    """Register the signature/bases clean-ups above."""
    app.connect("doctree-resolved", _drop_object_bases_line)
    app.connect("autodoc-process-signature", _readable_signature)
