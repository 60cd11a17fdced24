"""The user's copies of the chapters (work/) and the lab's JupyterLab settings, as scripts/lab.sh makes them."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab import chapters
from lab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def _launch_prep(tmp_path, work):
    """What scripts/lab.sh runs before JupyterLab starts, with the lab's settings in a private config dir."""
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp_path / "jconfig"))
    env.pop("JUPYTERLAB_SETTINGS_DIR", None)
    out = subprocess.run([sys.executable, "-m", "lab", "chapters", "sync", "--work", str(work)],
                         capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout, env


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).glob("*.ipynb"))}


def _outputs(nb_path):
    return [o for c in json.loads(Path(nb_path).read_text())["cells"] if c["cell_type"] == "code"
            for o in c.get("outputs", [])]


def test_launch_writes_settings_without_the_news_popup(tmp_path):
    _, env = _launch_prep(tmp_path, tmp_path / "work")
    settings = tmp_path / "jconfig" / "lab" / "user-settings"
    saved = json.loads((settings / chapters.NOTIFICATION).read_text())
    assert saved["fetchNews"] == "false"  # "Never": JupyterLab does not ask to fetch its news
    # and JupyterLab's own settings reader (what the server hands the page) agrees
    from jupyterlab_server.settings_utils import get_settings
    lab_dir = Path(sys.prefix) / "share" / "jupyter" / "lab"
    got, _ = get_settings(str(lab_dir / "settings"), str(lab_dir / "schemas"), str(settings),
                          schema_name="@jupyterlab/apputils-extension:notification")
    assert got["settings"]["fetchNews"] == "false" and got["settings"]["checkForUpdates"] is False


def test_settings_keep_a_choice_the_user_made(tmp_path):
    path = tmp_path / chapters.NOTIFICATION
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "true"}))
    chapters.jupyter_settings(tmp_path)
    assert json.loads(path.read_text()) == {"fetchNews": "true"}


def test_sync_copies_missing_keeps_edits_and_refreshes_untouched_copies(tmp_path):
    pristine, work = tmp_path / "notebooks", tmp_path / "work"
    pristine.mkdir()
    for name in ("00_a.ipynb", "01_b.ipynb", "02_c.ipynb"):
        (pristine / name).write_text(f'{{"v": 1, "name": "{name}"}}')
    assert chapters.sync(work, pristine) == [f"copied {n}" for n in ("00_a.ipynb", "01_b.ipynb", "02_c.ipynb")]
    assert chapters.sync(work, pristine) == []  # second launch: nothing to do
    (work / "01_b.ipynb").write_text("my edits")
    (work / "02_c.ipynb").unlink()
    for name in ("00_a.ipynb", "01_b.ipynb"):  # the chapters get a new version upstream
        (pristine / name).write_text(f'{{"v": 2, "name": "{name}"}}')
    said = chapters.sync(work, pristine)
    assert said[0] == "updated 00_a.ipynb (you had not changed it)"
    assert said[1].startswith("kept your 01_b.ipynb") and "fresh 01" in said[1]
    assert said[2] == "copied 02_c.ipynb"
    assert (work / "00_a.ipynb").read_text() == (pristine / "00_a.ipynb").read_text()
    assert (work / "01_b.ipynb").read_text() == "my edits"  # never clobbered
    new, backup = chapters.fresh("01", work, pristine)
    assert new.read_text() == (pristine / "01_b.ipynb").read_text() and backup.read_text() == "my edits"
    _, backup2 = chapters.fresh("01_b.ipynb", work, pristine)
    assert backup2 != backup and backup.exists()  # a second fresh copy never overwrites the first backup
    assert chapters.sync(work, pristine) == []
    with pytest.raises(ConfigError, match="chapter must be"):
        chapters.fresh("7", work, pristine)


@pytest.mark.timeout(900)
def test_a_chapter_run_through_the_launch_path_leaves_notebooks_pristine(tmp_path):
    """Run chapter 00 where JupyterLab runs it (the work copy, kernel in work/), saving its outputs
    there as autosave would; the repository's chapters stay as they were, without outputs."""
    import nbformat
    from nbclient import NotebookClient
    before = _hashes(NOTEBOOKS)
    work = tmp_path / "work"
    said, _ = _launch_prep(tmp_path, work)
    assert "copied 00_start_here.ipynb" in said and _hashes(work) == before
    copy = work / "00_start_here.ipynb"
    nb = nbformat.read(copy, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    nbformat.write(nb, copy)
    assert _outputs(copy), "the chapter produced no output"
    assert _hashes(NOTEBOOKS) == before
    for name in before:  # tests/test_packaging.py::test_notebooks_hold_no_outputs, on the pristine chapters
        assert not _outputs(NOTEBOOKS / name), name
    # the next launch keeps the run copy; a fresh one starts over and keeps it as a backup
    said, _ = _launch_prep(tmp_path, work)
    assert "00_start_here" not in said and _outputs(copy)
    new, backup = chapters.fresh("00", work)
    assert not _outputs(new) and _outputs(backup)
