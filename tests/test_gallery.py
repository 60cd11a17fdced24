"""lab.gallery: a notebook's outputs as a static page whose plotly figures draw offline (seconds, no kernel)."""
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from lab import gallery
from lab.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"


def tiny_notebook():
    """What a kernel leaves in a chapter: a heading, printed text, a plotly figure (as the kernel's
    default renderer shows it: plotly's JSON mimetype) and a widget view."""
    import plotly.graph_objects as go
    import plotly.io as pio
    fig = go.Figure(go.Scatter(x=[0, 1, 2, 3], y=[3, 1, 2, 0], name="loss"), layout={"title": {"text": "tiny loss"}})
    bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
    return new_notebook(cells=[
        new_markdown_cell("# 99 · A tiny chapter\n\nSome text."),
        new_code_cell("print('hello')", outputs=[new_output("stream", name="stdout", text="hello gallery\n")]),
        new_code_cell("fig", outputs=[new_output("execute_result", data={**bundle, "text/plain": "Figure(...)"},
                                                 execution_count=2)]),
        new_code_cell("LiveDashboard(run)", outputs=[new_output("display_data", data={
            "text/plain": "LiveDashboard(run 'x')", gallery.WIDGET: {"model_id": "abc", "version_major": 2}})]),
        new_code_cell("Cluster.start()", outputs=[new_output("display_data", data={
            "text/plain": "  0%|          | 0/2 [00:00<?, ?engine/s]", gallery.WIDGET: {"model_id": "def"}})]),
    ])


def test_render_writes_a_page_with_the_figure_the_text_and_a_widget_note(tmp_path):
    nb = tiny_notebook()
    info = gallery.render(nb, tmp_path / "99_tiny.html")
    page = (tmp_path / "99_tiny.html").read_text()
    assert info["figures"] == 1 and info["title"] == "99 · A tiny chapter"
    assert "hello gallery" in page and "Plotly.newPlot" in page and "tiny loss" in page
    assert '<script type="text/javascript" src="plotly.min.js"' in page
    assert "cdn.plot.ly" not in page  # plotly.js comes from the file beside the page, never the network
    assert (tmp_path / gallery.PLOTLY_FILE).stat().st_size > 1_000_000
    assert "A live widget is here when the chapter runs" in page and "LiveDashboard(run" in page
    assert page.count("A live widget is here") == 1 and "0/2 [00:00" in page  # a progress bar: its text only
    assert gallery.PLOTLY_JSON in nb.cells[2].outputs[0].data and "text/html" not in nb.cells[2].outputs[0].data  # input untouched
    index = gallery.write_index(tmp_path, [{**info, "chapter": "99_tiny", "ok": True, "seconds": 1.0}], "quick")
    assert 'href="99_tiny.html"' in index.read_text()


def test_an_index_for_some_chapters_keeps_the_other_rows_with_their_own_mode_and_time(tmp_path):
    for stem in ("00_a", "03b_b", "03_c"):
        (tmp_path / f"{stem}.html").write_text("page")
    page = lambda stem, **kw: {"chapter": stem, "path": str(tmp_path / f"{stem}.html"), "title": stem, "seconds": 2.0, **kw}
    gallery.write_index(tmp_path, [page("03b_b", rendered="2000-01-01 00:00 UTC"), page("00_a")], "full")
    text = gallery.write_index(tmp_path, [page("03_c", ok=False, error="boom")], "quick", keep=True).read_text()
    rows = gallery.index_rows(tmp_path)
    assert [r["chapter"] for r in rows] == ["00_a", "03_c", "03b_b"]  # the chapters' file order
    assert [r["mode"] for r in rows] == ["full", "quick", "full"] and rows[2]["rendered"] == "2000-01-01 00:00 UTC"
    assert "FAILED: boom" in text and "2000-01-01 00:00 UTC" in text
    assert [r["chapter"] for r in gallery.index_rows(gallery.write_index(tmp_path, [page("00_a")], "full").parent)] == ["00_a"]


def test_chapter_selection_by_number_and_a_bad_one_in_one_line():
    assert [p.name for p in gallery.chapters(["00"])] == ["00_start_here.ipynb"]
    with pytest.raises(ConfigError, match="chapters must be chapter numbers"):
        gallery.chapters(["99"])


def test_the_page_draws_its_figure_in_chromium_with_the_network_off(tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing", pytrace=False)
        pytest.skip(f"{CHROMIUM} is not installed")
    from playwright.sync_api import sync_playwright
    gallery.render(tiny_notebook(), tmp_path / "99_tiny.html")
    requests = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(120_000)  # parsing 4.8 MB of plotly.js on a loaded 2-core machine
            page.route("http*://**", lambda route: (requests.append(route.request.url), route.abort()))
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((tmp_path / "99_tiny.html").as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg")
            traces = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => el.data.length)")
            points = page.locator(".js-plotly-plot .scatterlayer path.js-line").count()
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "test-artifacts" / "gallery-tiny.png"), full_page=True)
        finally:
            browser.close()
    assert traces == [1] and points == 1
    assert not errors, errors


def test_the_suite_renders_the_outputs_nbval_got_without_running_a_notebook_again(tmp_path):
    """tests/gallery_plugin.py on a tiny notebook under nbval: the page holds what the kernel printed
    and plotted in that one run (a random number printed once proves no second execution)."""
    import subprocess
    import sys
    nb = new_notebook(cells=[
        new_markdown_cell("# A tiny chapter"),
        new_code_cell("import random\nt = f'token {random.random()}'\nprint(t)\nopen('ran.txt', 'a').write(t + '\\n')"),
        # a figure as plotly's default renderer shows it in a kernel (its JSON mimetype), without importing plotly there
        new_code_cell("from IPython.display import display\n"
                      "display({'%s': {'data': [{'type': 'bar', 'y': [1, 3, 2]}], 'layout': {}}}, raw=True)"
                      % gallery.PLOTLY_JSON),
    ])
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    out = tmp_path / "pages"
    (tmp_path / "conftest.py").write_text(
        "from gallery_plugin import GalleryPlugin\n\n"
        f"def pytest_configure(config):\n    config.pluginmanager.register(GalleryPlugin({str(out)!r}), 'lab-gallery')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    res = subprocess.run([sys.executable, "-m", "pytest", str(tmp_path / "tiny.ipynb"), "--nbval-lax", "--nbval-current-env",
                          "-p", "no:cacheprovider", "-q", "-s", "--rootdir", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "gallery: 1 chapters rendered" in res.stdout
    page = (out / "tiny.html").read_text()
    ran = (tmp_path / "ran.txt").read_text().splitlines()
    assert len(ran) == 1 and ran[0] in page  # executed once (by nbval), and the page shows that run's output
    assert "Plotly.newPlot" in page and '"type":"bar"' in page.replace(" ", "")
    assert 'href="tiny.html"' in (out / "index.html").read_text()


def test_gallery_command_rejects_an_unknown_chapter_in_one_line(tmp_path, capsys):
    from lab.cli import main
    assert main(["gallery", "--chapters", "99", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: chapters must be chapter numbers") and len(err.strip().splitlines()) == 1
