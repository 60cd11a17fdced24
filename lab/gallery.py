"""The chapters as static HTML pages, plots included, readable before running anything (`python -m lab gallery`).

    python -m lab gallery                    # every chapter in full mode -> gallery/ (index.html first)
    python -m lab gallery --quick            # quick mode (LAB_QUICK=1): minutes, smaller budgets
    python -m lab gallery --chapters 00,03b --out /tmp/g

Each chapter in `notebooks/` is executed top to bottom (nbclient, a fresh kernel in `notebooks/`,
the pristine chapters: never the user's copies in work/), and its outputs are rendered with
nbconvert's HTMLExporter. Plotly figures: a kernel shows them as plotly's JSON mimetype, which a
static page cannot draw, so `render` turns each into a `<div>` drawn by `Plotly.newPlot`, with
plotly.js loaded from one local `plotly.min.js` beside the pages: no network at all, a single
copy of the library for the whole gallery. Widgets (live dashboards, panels) keep their state in
the kernel, which a static page does not have: each is replaced by a short note saying what is
there when the chapter runs (progress bars keep just their text). `index.html` links every chapter with its
status, run time, mode and when it ran; `--chapters` re-renders those pages and keeps the other rows.

The test suite renders the same way (tests/gallery_plugin.py): it keeps the outputs nbval already
got for every notebook cell and renders them with `render` at the end of the session, so the CI
check executes no chapter twice.
"""
from __future__ import annotations

import copy
import html
import json
import os
import re
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .errors import check

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = ROOT / "notebooks"
PLOTLY_JSON = "application/vnd.plotly.v1+json"
WIDGET = "application/vnd.jupyter.widget-view+json"
PLOTLY_FILE = "plotly.min.js"
PROGRESS = re.compile(r"\d+%\|")  # tqdm's text: "  0%|          | 0/2 [00:00<?, ?engine/s]"
WIDGET_NOTE = ("<div class=\"lab-widget-note\" style=\"border:1px dashed #999;padding:8px 12px;color:#555;"
               "font-style:italic\">A live widget is here when the chapter runs ({what}): a static page "
               "cannot keep a widget's state. Run the chapter to use it.</div>")


def _plotly_div(fig_json: dict) -> str:
    """A figure's JSON as a div drawn by plotly.js (loaded once per page, not embedded here)."""
    import plotly.io as pio
    return pio.to_html(fig_json, include_plotlyjs=False, include_mathjax=False, full_html=False,
                       default_width="100%", default_height=480, validate=False)


def static_outputs(nb) -> int:
    """Make every output of `nb` (in place) renderable without a kernel; returns the plotly figures found.

    Plotly JSON -> an HTML div (text/html, placed first); a widget view -> a note (text/html) in its place.
    """
    figures = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if PLOTLY_JSON in data and "text/html" not in data:
                data["text/html"] = _plotly_div(data[PLOTLY_JSON])
                figures += 1
            elif "text/html" in data and "Plotly.newPlot" in data["text/html"]:
                figures += 1
            if WIDGET in data:
                what = data.get("text/plain", "a widget")
                what = what if isinstance(what, str) else "".join(what)
                for k in [k for k in data if k != "text/plain"]:
                    del data[k]
                if PROGRESS.search(what):  # a progress bar (tqdm, e.g. engines starting): only its text
                    continue
                what = "an interactive dashboard or panel" if "children=" in what else what.strip()[:80]
                data["text/html"] = WIDGET_NOTE.format(what=html.escape(what))
    nb.metadata.pop("widgets", None)  # no stale widget state in a page
    return figures


def render(nb, out_html, plotly_src: str = PLOTLY_FILE, title: Optional[str] = None) -> dict:
    """Write `nb` (a notebook node with outputs, e.g. an executed chapter) as one static HTML page.

    Args:
        nb: the notebook (not modified: a copy is rendered).
        out_html: the page to write.
        plotly_src: where the page loads plotly.js from (a path relative to the page), when it has figures;
            `plotly.min.js` is written there (beside the page) if it is not there yet.
        title: the page title (default: the notebook's first heading).

    Returns:
        {"path", "title", "figures", "bytes"}.
    """
    from nbconvert import HTMLExporter
    nb = copy.deepcopy(nb)
    figures = static_outputs(nb)
    title = title or first_heading(nb) or Path(out_html).stem
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    if figures:
        tag = f'<script type="text/javascript" src="{html.escape(plotly_src)}" charset="utf-8"></script>'
        body = body.replace("</head>", tag + "\n</head>", 1)
        lib = Path(out_html).parent / plotly_src
        if not lib.exists():
            write_plotlyjs(lib)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    body = share_styles(body, out_html.parent)
    out_html.write_text(body, encoding="utf-8")
    return {"path": out_html, "title": title, "figures": figures, "bytes": len(body)}


STYLE_FILE = "lab.css"
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.S)


def share_styles(page: str, folder) -> str:
    """The template's styles (~260 kB, the same on every page) go to one `lab.css` beside the pages,
    as plotly.js does; the page links it. Writes the file if it is missing."""
    css = "\n".join(_STYLE.findall(page))
    if not css:
        return page
    path = Path(folder) / STYLE_FILE
    if not path.exists() or path.read_text(encoding="utf-8") != css:
        path.write_text(css, encoding="utf-8")
    page = _STYLE.sub("", page)
    return page.replace("</head>", f'<link rel="stylesheet" href="{STYLE_FILE}">\n</head>', 1)


def write_plotlyjs(path) -> Path:
    from plotly.offline import get_plotlyjs
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(get_plotlyjs(), encoding="utf-8")
    return path


def first_heading(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


_ROW = re.compile(r"<tr data-page='([^']*)'>")


def index_rows(out_dir) -> List[dict]:
    """The pages an existing index.html in `out_dir` lists (each row keeps its record), [] if none."""
    path = Path(out_dir) / "index.html"
    if not path.exists():
        return []
    return [json.loads(html.unescape(m)) for m in _ROW.findall(path.read_text(encoding="utf-8"))]


def write_index(out_dir, pages: Sequence[dict], mode: str, keep: bool = False) -> Path:
    """index.html: one row per chapter (link, title, status, seconds, mode, when it ran), sorted by chapter.

    Each page's own mode and time are in its row (pages without them get `mode` and now). keep: also
    list the rows of the existing index for chapters not in `pages` whose page is still there (a
    `--chapters` run re-renders some pages and keeps the others, which ran earlier).
    """
    now = time.strftime("%Y-%m-%d %H:%M %Z")
    records = {}
    if keep:
        records = {r["chapter"]: r for r in index_rows(out_dir) if (Path(out_dir) / r["path"]).exists()}
    for p in pages:
        records[p["chapter"]] = {"chapter": p["chapter"], "path": Path(p["path"]).name, "title": p["title"],
                                 "ok": p.get("ok", True), "error": p.get("error", ""), "seconds": p.get("seconds"),
                                 "mode": p.get("mode", mode), "rendered": p.get("rendered", now)}
    rows = []
    for r in sorted(records.values(), key=lambda r: r["chapter"]):
        status = "ran" if r["ok"] else f"FAILED: {html.escape(r['error'][:200])}"
        secs = f"{r['seconds']:.0f} s" if r.get("seconds") is not None else ""
        rows.append(f"<tr data-page='{html.escape(json.dumps(r), quote=True)}'>"
                    f"<td><a href=\"{html.escape(r['path'])}\">{html.escape(r['chapter'])}</a></td>"
                    f"<td>{html.escape(r['title'])}</td><td>{status}</td><td>{secs}</td>"
                    f"<td>{html.escape(r['mode'])}</td><td>{html.escape(r['rendered'])}</td></tr>")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>distlab: the chapters, rendered</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} td{{padding:4px 12px}}
tr:nth-child(even){{background:#f4f4f4}}</style></head>
<body><h1>distlab: the chapters, rendered</h1>
<p>Every chapter executed top to bottom (in the mode and at the time its row gives),
its outputs and plots saved as static pages (no network needed). Live widgets appear as notes:
run the chapter in JupyterLab (<code>./scripts/lab.sh</code>) to use them.</p>
<table><tr><th>chapter</th><th>title</th><th>status</th><th>run time</th><th>mode</th><th>rendered</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = Path(out_dir) / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def chapters(selection: Optional[Sequence[str]] = None, folder: Path = CHAPTERS) -> List[Path]:
    """The chapter files, sorted; `selection` picks some by number ("00", "03b") or file name."""
    names = sorted(Path(folder).glob("*.ipynb"))
    if not selection:
        return names
    picked = []
    for s in selection:
        match = [p for p in names if p.name == s or p.stem == s or p.name.startswith(f"{s}_")]
        check(len(match) == 1, "chapters", "chapter numbers or file names: " + ", ".join(p.name.split("_")[0] for p in names), s)
        picked.append(match[0])
    return picked


def execute(path, quick: bool, timeout: float = 1800):
    """Run one chapter top to bottom in a fresh kernel (its folder as working directory); the notebook node.

    Raises nbclient's CellExecutionError on a failing cell; the node then holds the outputs so far
    (the error included), which `build` renders all the same.
    """
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(str(path), as_version=4)
    before = os.environ.get("LAB_QUICK")
    os.environ["LAB_QUICK"] = "1" if quick else "0"  # the kernel inherits this process's environment
    try:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(Path(path).parent)}})
        client.execute()
    except Exception as e:
        e.nb = nb  # the outputs so far, the error included
        raise
    finally:
        if before is None:
            os.environ.pop("LAB_QUICK", None)
        else:
            os.environ["LAB_QUICK"] = before
    return nb


def build(out_dir=None, quick: bool = False, selection: Optional[Sequence[str]] = None,
          timeout: float = 1800, log=print) -> Dict[str, object]:
    """Execute and render the chapters into `out_dir` (default gallery/); returns {"pages", "failed", "index"}."""
    paths = chapters(selection)  # a bad selection fails before anything is written
    out_dir = Path(out_dir) if out_dir else ROOT / "gallery"
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plotlyjs(out_dir / PLOTLY_FILE)
    pages = []
    for path in paths:
        log(f"{path.name}: running ({'quick' if quick else 'full'} mode) ...")
        t0 = time.perf_counter()
        ok, error = True, ""
        try:
            nb = execute(path, quick, timeout)
        except Exception as e:  # a failing cell: render what ran, mark it in the index
            ok, error = False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
            nb = getattr(e, "nb", None)
            if nb is None:
                import nbformat
                nb = nbformat.read(str(path), as_version=4)
        seconds = time.perf_counter() - t0
        info = render(nb, out_dir / f"{path.stem}.html")
        pages.append({**info, "chapter": path.stem, "ok": ok, "error": error, "seconds": seconds,
                      "rendered": time.strftime("%Y-%m-%d %H:%M %Z")})
        log(f"{path.name}: {'ok' if ok else 'FAILED (' + error + ')'} in {seconds:.0f} s, "
            f"{info['figures']} figures -> {info['path']}")
    index = write_index(out_dir, pages, "quick" if quick else "full", keep=bool(selection))  # the other chapters' rows stay
    failed = [p["chapter"] for p in pages if not p["ok"]]
    return {"pages": pages, "failed": failed, "index": index}

