"""The code on the documentation's pages runs: the user guide's ``>>>`` examples as doctests, and
the other libraries' side-by-side blocks (GPyTorch, scikit-learn) where that library is installed.

The guide's expected outputs are facts stated independently of gprat's code (shapes, which
exception, that an optimized likelihood is higher than the start, the true noise level the data
were drawn with), not values copied from a run. The Sphinx build (``.ci/run``) runs the gallery
scripts; the doctests of the docstrings are in test_docstrings.py.
"""

import doctest
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
#: Every page with ``>>>`` examples (a new guide page is covered without listing it).
PAGES = sorted(p for p in [DOCS / "index.rst", *DOCS.glob("guide/*.rst")] if ">>>" in p.read_text())
#: ``.. code-block:: python`` blocks that name the library they need on their first line.
REQUIRES = re.compile(r"^\.\. code-block:: python\n\n((?:   .*\n|\n)+)", re.M)
#: Pages that need scikit-learn for their doctests (the estimator or its kernel spellings).
NEEDS_SKLEARN = {"three_ways_in.rst", "kernels.rst", "migrating.rst"}


def test_the_guide_pages_are_found():
    names = {p.name for p in PAGES}
    assert {"index.rst", "choosing_a_model.rst", "three_ways_in.rst", "robustness.rst", "migrating.rst"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples(page):
    if page.name in NEEDS_SKLEARN:
        pytest.importorskip("sklearn")
    result = doctest.testfile(str(page), module_relative=False, verbose=False, report=True,
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{page.name}: no examples found"
    assert result.failed == 0, f"{result.failed} example(s) failed on {page.relative_to(REPO)}"


def _library_blocks(page):
    """(library, code) of each ``.. code-block:: python`` on `page` whose first line is ``# requires: LIB``."""
    blocks = []
    for match in REQUIRES.finditer(page.read_text()):
        code = "\n".join(line[3:] for line in match.group(1).splitlines())
        first = code.lstrip().splitlines()[0]
        if first.startswith("# requires:"):
            blocks.append((first.split(":", 1)[1].strip(), code))
    return blocks


def test_migrating_side_by_side_agrees():
    """The other libraries' blocks of the migration page run and agree with gprat's on the same data.

    The reference is the other library itself: its posterior mean on the page's test points.
    """
    np = pytest.importorskip("numpy")
    page = DOCS / "guide" / "migrating.rst"
    blocks = _library_blocks(page)
    assert {lib for lib, _ in blocks} == {"gpytorch", "sklearn"}
    globs = {}
    parser = doctest.DocTestParser()
    # the page's own doctests first: they define X, y, X_test and gprat's means
    for example in parser.get_examples(page.read_text()):
        exec(compile(example.source, str(page), "exec"), globs)  # noqa: S102 - our own page
    ran = 0
    for library, code in blocks:
        try:
            __import__(library)
        except ImportError:
            continue
        exec(compile(code, f"{page.name}:{library}", "exec"), globs)  # noqa: S102
        ran += 1
    if "mean_sk" in globs:
        # same kernel, same data, both at their own optimum: the same posterior mean
        np.testing.assert_allclose(globs["mean_ours"], globs["mean_sk"], atol=5e-3)
    if "mean_gpytorch" in globs:
        # 50 Adam steps each from slightly different starts: close, not equal
        assert np.max(np.abs(globs["mean_gprat"] - globs["mean_gpytorch"])) < 0.2
    if ran == 0:
        pytest.skip("neither GPyTorch nor scikit-learn is installed")


def test_example_scale_is_checked(monkeypatch):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        import _scale
    finally:
        sys.path.pop(0)
    monkeypatch.setenv("GPRAT_EXAMPLE_SCALE", "full")
    assert _scale.pick(1, 2) == 2
    monkeypatch.delenv("GPRAT_EXAMPLE_SCALE")
    assert _scale.pick(1, 2) == 1
    monkeypatch.setenv("GPRAT_EXAMPLE_SCALE", "huge")
    with pytest.raises(ValueError, match="docs, full; got 'huge'"):
        _scale.example_scale()


def test_every_gallery_script_says_how_to_scale_up():
    scripts = sorted((REPO / "examples").glob("plot_*.py"))
    assert len(scripts) >= 5
    for script in scripts:
        assert "GPRAT_EXAMPLE_SCALE=full" in script.read_text(), script.name
