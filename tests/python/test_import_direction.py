"""Python imports point one way (docs/architecture.md): a module imports only from its own layer
or below, never the package facade, and only backends.py looks a module up by name."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "gprat"

#: Layer of each top-level room, bottom first.
LAYERS = {
    "exceptions": 0, "_version": 0, "_core": 0, "_distributed": 0,
    "_validation": 1, "_memory": 1,
    "runtime": 2, "backends": 2,
    "kernels": 3, "linalg": 3,
    "optim": 4,
    "models": 5,
    "io": 6, "estimator": 6, "sparse_estimator": 6, "compat": 6, "simulate": 6, "plotting": 6, "distributed": 7,
    "cli": 7,
    "__init__": 8, "__main__": 8,
}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _room(path, package=PACKAGE):
    parts = path.relative_to(package).with_suffix("").parts
    return parts[0]


def _imported_rooms(path, package=PACKAGE):
    """Top-level rooms of gprat that `path` imports (relative or absolute), with line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(package).parts) - 1  # 0: gprat/x.py, 1: gprat/room/x.py
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names = [node.module] if node.module and node.module.split(".")[0] == "gprat" else []
                rooms = [n.split(".")[1] if "." in n else "__init__" for n in names]
            elif node.level > depth + 1:
                rooms = []
            else:
                inside_room = depth >= 1 and node.level == 1  # "from .x import" inside a room stays in it
                if inside_room:
                    rooms = [_room(path, package)]
                elif node.module:
                    rooms = [node.module.split(".")[0]]
                else:  # "from .. import a, b" / "from . import a, b" at the top level
                    rooms = [alias.name for alias in node.names]
            found += [(room, node.lineno) for room in rooms]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "gprat" or alias.name.startswith("gprat."):
                    parts = alias.name.split(".")
                    found.append((parts[1] if len(parts) > 1 else "__init__", node.lineno))
    return found


def test_every_room_has_a_layer():
    rooms = {_room(p) for p in _modules()}
    assert rooms <= set(LAYERS), rooms - set(LAYERS)


def _check_imports(path, package=PACKAGE):
    room = _room(path, package)
    for imported, line in _imported_rooms(path, package):
        assert imported in LAYERS, f"{path.name}:{line} imports unknown room {imported!r}"
        assert LAYERS[imported] <= LAYERS[room], (
            f"{path.relative_to(package)}:{line} ({room}, layer {LAYERS[room]}) imports {imported} "
            f"(layer {LAYERS[imported]}): imports must point down"
        )


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    _check_imports(path)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_lookup_by_name(path):
    if path.name == "backends.py":
        return  # the one place that loads the optional CUDA module by name
    assert "importlib" not in path.read_text(encoding="utf-8"), f"{path.name} uses importlib"


def test_the_checker_sees_an_upward_import(tmp_path):
    # The check can fail: a kernels module importing the models is reported.
    bad = PACKAGE / "kernels" / "base.py"
    source = bad.read_text(encoding="utf-8") + "\nfrom ..models import ExactGP\n"
    fake = tmp_path / "gprat" / "kernels" / "base.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(source)
    with pytest.raises(AssertionError, match="imports must point down"):
        _check_imports(fake, tmp_path / "gprat")
