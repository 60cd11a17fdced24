"""The CI check that the chapters render (issue 17): nbval's own outputs, rendered at the session's end.

While the suite runs the chapters under nbval, each notebook cell item keeps the outputs its kernel
produced (`IPyNbCell.test_outputs`, the list nbval compares with). This plugin collects them, puts
them back into each notebook's cells, and at the end of the session renders every notebook with
`lab.gallery.render` (what `python -m lab gallery` uses) into test-artifacts/gallery/, with an
index. No chapter is executed a second time. A notebook that fails to render fails the session.
Under pytest-xdist each worker renders the notebooks it ran and the main process writes the index.
Registered by tests/conftest.py.
"""
from __future__ import annotations

import copy
import json
import traceback
from pathlib import Path

import pytest


class GalleryPlugin:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.notebooks = {}  # notebook path -> {"nb", "outputs": {cell_num: outputs}, "failed": set}

    def _entry(self, item):
        nb = getattr(item.parent, "nb", None)
        if nb is None or not hasattr(item, "cell_num") or not hasattr(item, "test_outputs"):
            return None  # not an nbval cell
        return self.notebooks.setdefault(str(item.parent.fspath), {"nb": nb, "outputs": {}, "failed": set()})

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        entry = self._entry(item)
        if entry is None:
            return
        if item.test_outputs is not None:
            entry["outputs"][item.cell_num] = item.test_outputs
        if outcome.get_result().failed:
            entry["failed"].add(item.cell_num)

    def pytest_sessionstart(self, session):
        runs_notebooks = any("notebooks" in a or a.endswith(".ipynb") for a in session.config.args)
        if runs_notebooks and not _is_worker(session.config):  # a fresh folder (xdist workers start after this)
            for f in list(self.out_dir.glob("*.html")) + list(self.out_dir.glob("*.json")):
                f.unlink()

    def pytest_sessionfinish(self, session, exitstatus):
        """Render the notebooks this process ran (with xdist: each worker its own, one sidecar JSON per
        page); the main process then writes the index from every sidecar and fails on a broken render."""
        from lab import gallery
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for path, entry in sorted(self.notebooks.items()):
            nb = copy.deepcopy(entry["nb"])
            code = [c for c in nb.cells if c.cell_type == "code"]
            for num, cell in enumerate(code):
                cell.outputs = entry["outputs"].get(num, [])
                cell.execution_count = num + 1 if num in entry["outputs"] else None
            stem = Path(path).stem
            failed = sorted(entry["failed"])
            page = {"chapter": stem, "path": str(self.out_dir / f"{stem}.html"), "title": stem, "seconds": None,
                    "ok": not failed, "error": f"cells {failed} failed under nbval" if failed else "", "render_error": ""}
            try:
                info = gallery.render(nb, self.out_dir / f"{stem}.html")
                page.update(title=info["title"], figures=info["figures"])
            except Exception:
                page.update(ok=False, error="rendering failed", render_error=traceback.format_exc())
            (self.out_dir / f"{stem}.json").write_text(json.dumps(page))
        if _is_worker(session.config):
            return
        pages = [json.loads(f.read_text()) for f in sorted(self.out_dir.glob("*.json"))]
        if not pages:
            return
        gallery.write_index(self.out_dir, pages, "quick (nbval's outputs)")
        broken = [f"{p['chapter']}: {p['render_error']}" for p in pages if p["render_error"]]
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        say = reporter.write_line if reporter else print
        say(f"\ngallery: {len(pages) - len(broken)} chapters rendered from nbval's outputs -> {self.out_dir}/index.html")
        if broken:
            say("gallery: RENDERING FAILED for\n" + "\n".join(broken))
            session.exitstatus = 1


def _is_worker(config) -> bool:
    """True in a pytest-xdist worker process."""
    return hasattr(config, "workerinput")
