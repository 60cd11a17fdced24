"""The two ways to install (pip with pyproject.toml, conda with environment.yml) list the same things."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pip_deps_of_environment_yml():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if re.match(r"\s*- pip:\s*$", l))
    deps = []
    for l in lines[start + 1:]:
        m = re.match(r"\s+- (.+)$", l)
        if not m:
            break
        deps.append(m.group(1).strip())
    return deps


def test_environment_yml_matches_pyproject():
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(proj["dependencies"]) | set(proj["optional-dependencies"]["test"])
    got = set(_pip_deps_of_environment_yml()) - {"-e ."}
    assert got == wanted, f"only in environment.yml: {got - wanted}; only in pyproject.toml: {wanted - got}"
    assert "-e ." in _pip_deps_of_environment_yml()  # the lab itself


def test_torch_is_pinned_and_no_torchvision():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("torch==") for d in deps)  # unpinned torch pulls a multi-GB CUDA build
    assert not any(d.startswith("torchvision") for d in deps)


def test_widgets_never_imported_by_lab():
    for f in (ROOT / "lab").rglob("*.py"):
        src = f.read_text()
        assert not re.search(r"^\s*(from|import)\s+widgets\b", src, re.M), f"{f} imports widgets"


def test_notebooks_hold_no_outputs():
    import json
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code"), f"{nb.name} has saved outputs"


def test_notebooks_are_valid_nbformat_with_cell_ids():
    """nbformat 4.5 wants an id on every cell (a missing one is a warning today, an error tomorrow)."""
    import nbformat
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        node = nbformat.reads(nb.read_text(), as_version=nbformat.NO_CONVERT)
        nbformat.validate(node)
        ids = [c.get("id") for c in node.cells]
        assert all(ids) and len(set(ids)) == len(ids), f"{nb.name}: every cell needs its own id"
