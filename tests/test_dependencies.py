"""Everything the code imports is declared in pyproject.toml: at the top of a module, as a
dependency; inside a function (an optional part: the app, a sweep on Ray, CUDA), as a
dependency or in an extra. tinycudann is the one exception: not on PyPI, used when found."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent
OWN = {"dream3d", "generators", "scenes", "app"}
NOT_ON_PYPI = {"tinycudann"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    return core, extras


def imports() -> dict[str, bool]:
    """Third-party top-level modules the code imports -> whether any import is at module level."""
    found: dict[str, bool] = {}
    files = [ROOT / "app.py"] + [
        p for part in ("dream3d", "generators", "scenes") for p in (ROOT / part).rglob("*.py")
    ]
    for path in files:
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                module = name.split(".")[0]
                if module in sys.stdlib_module_names or module in OWN:
                    continue
                found[module] = found.get(module, False) or id(node) in top
    return found


def test_every_import_is_declared():
    core, extras = declared()
    dists = packages_distributions()
    missing = []
    for module, at_top in sorted(imports().items()):
        if module in NOT_ON_PYPI:
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        allowed = core if at_top else core | extras
        if not names & allowed:
            missing.append(f"{module} ({'module level' if at_top else 'in a function'})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_the_check_sees_what_the_code_imports():
    """The scan finds the imports this file knows are there (a scan that finds nothing
    would pass the test above)."""
    found = imports()
    assert found["torch"] and found["yaml"] and found["tqdm"]  # module level
    assert found["transformers"] is False and found["diffusers"] is False  # in functions
    assert "gradio" in found and "ray" in found and "tinycudann" in found
