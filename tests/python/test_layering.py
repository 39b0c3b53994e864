"""The C++ layers point one way (docs: DESIGN.md "Layers"): each header and source file under
cpp/ may include gprat/ headers of its own layer and of the layers listed for it below, nothing
else. In particular kernels/ only computes (no runtime/, no linalg/) and the tile descriptor in
tiles/ does not know the task runtime. Reads files only; needs no build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: layer -> the other layers it may include (a layer may always include itself).
ALLOWED = {
    "core": set(),
    "tiles": {"core"},
    "runtime": {"core"},
    "kernels": {"core", "tiles"},
    "linalg": {"core", "tiles", "runtime"},
    "gp": {"core", "tiles", "runtime", "linalg", "kernels"},
    # the per-rank work of gprat.distributed: kernels' tile functions on the runtime, and the
    # panel products' local gemm through linalg's tile kernels (the one place that calls BLAS); no gp/
    "distributed": {"core", "tiles", "runtime", "kernels", "linalg"},
    "approx": {"core", "tiles", "runtime", "linalg", "kernels"},
    # the CUDA backend: the per-pair kernel code and the runtime's interrupt hook; nothing
    # outside cuda/ includes it (no other layer lists it)
    "cuda": {"core", "tiles", "runtime", "kernels"},
    # optimizers over a callable (the C++ L-BFGS behind ExactGP.optimize): they know no model
    "optim": {"core"},
}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]gprat/([a-z_]+)/([^">]+)[">]', re.MULTILINE)


def _layer_files():
    files = []
    for root in (REPO / "cpp" / "include" / "gprat", REPO / "cpp" / "src"):
        for path in sorted(root.rglob("*")):
            if path.suffix in {".hpp", ".cpp", ".h", ".cu", ".cuh"}:
                files.append((path.relative_to(root).parts[0], path))
    return files


def violations(layer: str, text: str) -> list[str]:
    """The includes in `text` (a file of `layer`) that break the layer rule."""
    allowed = ALLOWED[layer] | {layer}
    return [f"gprat/{dep}/{name}" for dep, name in INCLUDE.findall(text) if dep not in allowed]


def test_every_layer_is_known():
    layers = {layer for layer, _ in _layer_files()}
    assert layers, "no C++ files found"
    assert layers <= ALLOWED.keys(), f"add the new layer(s) {sorted(layers - ALLOWED.keys())} to ALLOWED"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_includes_point_down(layer):
    bad = {}
    for file_layer, path in _layer_files():
        if file_layer == layer:
            found = violations(layer, path.read_text())
            if found:
                bad[str(path.relative_to(REPO))] = found
    assert not bad, f"{layer}/ may include only {sorted(ALLOWED[layer] | {layer})}; found {bad}"


def test_rule_catches_a_bad_include():
    # The checker itself: kernels/ including the runtime or linalg is reported, its own layer is not.
    text = '#include "gprat/runtime/task_graph.hpp"\n#include <gprat/linalg/priority.hpp>\n#include "gprat/kernels/x.hpp"\n'
    assert violations("kernels", text) == ["gprat/runtime/task_graph.hpp", "gprat/linalg/priority.hpp"]
    assert violations("tiles", '#include "gprat/runtime/access.hpp"\n') == ["gprat/runtime/access.hpp"]
