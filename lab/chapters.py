"""Your own copies of the chapters: JupyterLab opens `work/`, filled from the pristine `notebooks/`.

`./scripts/lab.sh` runs `python -m lab chapters sync` before JupyterLab starts. Chapters missing
from `work/` are copied there; a copy you changed (edited, or just ran: autosave writes the
outputs) is never overwritten, and an untouched copy takes a newer pristine version. To start a
chapter over, `python -m lab chapters fresh 07` copies it again and keeps yours in `work/backups/`.
Tests, nbval and the gallery read `notebooks/`, which JupyterLab never opens, so running a chapter
never changes the repository. The same command writes the lab's JupyterLab settings (no pop-up
asking to fetch Jupyter's news).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import List, Optional, Tuple

from .errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
PRISTINE = ROOT / "notebooks"
WORK = ROOT / "work"
MANIFEST = ".chapters.json"  # in work/: each copy's hash as copied, to tell untouched copies from yours
NOTIFICATION = "@jupyterlab/apputils-extension/notification.jupyterlab-settings"


def sync(work: Path = WORK, pristine: Path = PRISTINE) -> List[str]:
    """Copy the chapters missing from `work`; refresh untouched copies whose pristine chapter changed.

    A copy that differs from what was copied is the user's: kept, with a line saying how to get
    the newer version. Returns one line per chapter copied, updated or kept.

    Example:
        >>> sync()   # ['copied 00_start_here.ipynb', ...] on first launch, [] afterwards
    """
    work, pristine = Path(work), Path(pristine)
    work.mkdir(parents=True, exist_ok=True)
    copied = _manifest(work)
    said = []
    for src in sorted(pristine.glob("*.ipynb")):
        dst, new = work / src.name, _sha(src)
        have = _sha(dst) if dst.exists() else None
        if have is None:
            said.append(f"copied {src.name}")
        elif copied.get(src.name) == new or have == new:
            copied[src.name] = new  # up to date, or yours of a chapter that has not changed since
            continue
        elif have == copied.get(src.name):
            said.append(f"updated {src.name} (you had not changed it)")
        else:
            said.append(f"kept your {src.name}; notebooks/ has a newer one: "
                        f"python -m lab chapters fresh {_number(src.name)} (yours goes to backups/)")
            continue
        shutil.copyfile(src, dst)
        copied[src.name] = new
    _save_manifest(work, copied)
    return said


def fresh(chapter: str, work: Path = WORK, pristine: Path = PRISTINE) -> Tuple[Path, Optional[Path]]:
    """A fresh copy of one chapter (`"07"` or its file name) in `work`; the old copy moves to `work/backups/`.

    Returns (the fresh copy, the backup or None when there was no copy).
    """
    work, pristine = Path(work), Path(pristine)
    names = sorted(p.name for p in pristine.glob("*.ipynb"))
    match = [n for n in names if n == chapter or n == f"{chapter}.ipynb" or n.startswith(f"{chapter}_")]
    if len(match) != 1:
        raise ConfigError("chapter", "a chapter number or file name: " + ", ".join(_number(n) for n in names), chapter)
    name = match[0]
    dst, backup = work / name, None
    work.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        (work / "backups").mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = work / "backups" / f"{dst.stem}-{stamp}.ipynb"
        n = 1
        while backup.exists():  # two in one second: never overwrite an earlier backup
            n += 1
            backup = work / "backups" / f"{dst.stem}-{stamp}-{n}.ipynb"
        dst.rename(backup)
    shutil.copyfile(pristine / name, dst)
    copied = _manifest(work)
    copied[name] = _sha(pristine / name)
    _save_manifest(work, copied)
    return dst, backup


def jupyter_settings(settings_dir: Optional[Path] = None) -> Path:
    """Write the lab's JupyterLab settings: never fetch Jupyter's news, so no pop-up asks about it.

    Goes to JupyterLab's user-settings folder (the project's `.jupyter/config/lab/user-settings`
    under scripts/setup.sh). A choice already made there (in Settings > Notifications) is kept.
    """
    if settings_dir is None:  # where JupyterLab looks; never $HOME when run outside scripts/lab.sh
        config = os.environ.get("JUPYTER_CONFIG_DIR") or ROOT / ".jupyter" / "config"
        settings_dir = os.environ.get("JUPYTERLAB_SETTINGS_DIR") or Path(config) / "lab" / "user-settings"
    path = Path(settings_dir) / NOTIFICATION
    try:
        current = json.loads(path.read_text()) if path.exists() else {}
    except (ValueError, OSError):
        return path  # hand-written (JSON5 comments): the user's file, left alone
    if "fetchNews" not in current:
        current.update(fetchNews="false", checkForUpdates=current.get("checkForUpdates", False))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2) + "\n")
    return path


def _number(name: str) -> str:
    return name.split("_", 1)[0]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(work: Path) -> dict:
    try:
        return json.loads((work / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _save_manifest(work: Path, copied: dict) -> None:
    tmp = work / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(copied, indent=1, sort_keys=True))
    os.replace(tmp, work / MANIFEST)
