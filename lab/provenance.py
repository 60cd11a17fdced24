"""Where a result came from: the commit, package versions and machine (and, for a run, its seeds).

Saved benchmark results (`lab.bench.results`) and saved runs (`meta.json` under `runs/<id>/`,
`lab.runs`) both carry these fields, so a figure or a curve can be traced back and repeated
(`python -m lab run --from runs/<id>`).
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]   # the checkout holding lab/ (if it is one)
PACKAGES = ("torch", "numpy", "ipyparallel")
DIST = "distlab"   # the lab's distribution name (pyproject.toml)


def commit(root=ROOT) -> Optional[str]:
    """The checkout's commit, with '+dirty' when tracked files differ from it; None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def packages(names: Sequence[str] = PACKAGES) -> dict:
    """{'python': '3.11.9', 'lab': ..., 'torch': ..., ...}: the versions installed (missing ones left out)."""
    out = {"python": sys.version.split()[0]}
    for key, dist in (("lab", DIST), *((n, n) for n in names)):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def gpus() -> list:
    """The GPUs' names, without initialising CUDA in this process (nvidia-smi, or torch if it already did)."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                return [l.strip() for l in out.stdout.splitlines() if l.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def machine() -> dict:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "arch": platform.machine(),
            "cpus": os.cpu_count(), "gpus": gpus()}


def gather(command: Optional[str] = None, packages_: Sequence[str] = PACKAGES) -> dict:
    """The fields a saved run or result carries besides its figures."""
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit(),
            "packages": packages(packages_), "machine": machine(), "command": command}
