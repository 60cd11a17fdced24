"""Widget logic, headless (no browser): the panel's knobs, messages and live changes, the
dashboard's traces and records, the arena's exports. One test drives a real 2-engine cluster."""
import asyncio
import csv
import json
from types import SimpleNamespace

import pytest

from lab.config import RunConfig
from lab.runs import RunData, load_run
from widgets import Arena, LiveDashboard, StrategyPanel
from widgets.measure import measure_dashboard, synthetic_records
from lab.compression import COMPRESSORS
from lab.strategies import STRATEGIES
from widgets.panel import COMMON_KNOBS, compressor_knobs, visible_knobs


def fake_cluster(workers=2):
    """Enough of a Cluster for a panel that never starts a run."""
    return SimpleNamespace(workers=workers, cluster_id="none", timeout_s=5.0)


def shown(panel):
    """Names of the knob widgets in the panel's box, as the user sees them."""
    ids = {id(w): n for n, w in panel.knobs.items()}
    return [ids[id(w)] for w in panel._knob_box.children]


def test_toggling_strategy_and_compressor_shows_their_knobs():
    panel = StrategyPanel(fake_cluster(), RunConfig(steps=50), dashboard=False)
    assert set(panel.strategy.options) >= {"sync", "ps", "async", "ssp", "local"}
    panel.strategy.value = "ssp"
    assert "staleness" in shown(panel) and "period" not in shown(panel)
    panel.strategy.value = "local"
    assert "period" in shown(panel) and "staleness" not in shown(panel)
    panel.strategy.value = "async"
    assert not {"period", "staleness"} & set(shown(panel))
    assert set(panel.compressor.options) == set(COMPRESSORS.names())
    for comp in COMPRESSORS.names():
        knobs = compressor_knobs(comp)
        panel.compressor.value = comp
        assert set(knobs) <= set(shown(panel))
        assert not ({"ratio", "levels", "rank"} - set(knobs)) & set(shown(panel)), comp
    assert {"ratio", "error_feedback"} <= set(compressor_knobs("topk")) and compressor_knobs("none") == []
    assert "majority_vote" in compressor_knobs("signsgd") and "error_feedback" not in compressor_knobs("efsignsgd")
    # the common knobs are always there; a name nobody registered gets just those
    assert {"workers", "lr", "batch_size", "slowdown", "bandwidth_mbps", "latency_ms"} <= set(shown(panel))
    assert visible_knobs("brand-new", "none") == list(COMMON_KNOBS)
    # `compressed` asks for a compressor (one line, no traceback) and shows its base's knobs
    panel.compressor.value = "none"
    panel.strategy.value = "compressed"
    assert "base" in shown(panel) and panel.message.startswith("compressor must be one of")
    panel.compressor.value = "topk"
    panel.knobs["base"].value = "ssp"
    assert "staleness" in shown(panel) and panel.message == ""
    cfg = panel.config()
    assert (cfg.strategy.name, cfg.strategy.base, cfg.strategy.effective()) == ("compressed", "ssp", "ssp")
    assert set(panel.strategy.options) == set(STRATEGIES.names())


def test_invalid_combination_gives_one_line_message_not_an_exception():
    panel = StrategyPanel(fake_cluster(), RunConfig(steps=50, model=__import__("lab").ModelConfig(name="lstm")),
                          dashboard=False)
    assert "model" in panel.message and "\n" not in panel.message
    assert panel.start() is None and "⚠" in panel.msg.value
    ok = StrategyPanel(fake_cluster(), RunConfig(steps=50), dashboard=False)
    assert ok.message == ""
    ok.knobs["link"].value = True
    assert not ok.knobs["bandwidth_mbps"].disabled and ok.config().link.bandwidth_mbps is not None
    ok.knobs["slowdown"].children[1].value = 3.0
    assert ok.config().slowdown == [3.0, 1.0]
    assert "schedule" in shown(ok) and set(ok.knobs["schedule"].options) == {"constant", "cosine", "linear"}
    ok.knobs["schedule"].value = "cosine"
    assert ok.config().optim.schedule == "cosine"


def test_dashboard_one_trace_per_worker_keeps_every_record_and_marks_changes():
    recs = synthetic_records(8, 120, changes_at={60: {"lr": 0.01}})
    dash = LiveDashboard(max_fps=1000)
    for i in range(0, len(recs), 37):  # uneven polls
        dash.feed(recs[i:i + 37])
    dash.flush()
    assert len(dash.records) == len(recs) == 8 * 120
    assert len(dash.figs["loss"].data) == 8 and len(dash.figs["throughput"].data) == 8
    assert len(dash.figs["bytes"].data) == 16 and len(dash.figs["staleness"].data) == 8
    assert [len(t.x) for t in dash.figs["loss"].data] == [120] * 8
    assert sum(sum(t.y) for t in dash.figs["staleness"].data) == 8 * 120
    assert len(dash.figs["breakdown"].data) == 5 and "SIMULATED" in dash.figs["breakdown"].data[3].name
    assert "overlapped" in dash.figs["breakdown"].data[4].name  # sync's overlap: hatched, shown as such
    assert [s.x0 for s in dash.figs["loss"].layout.shapes] == [60]
    assert len(dash.figs["metric"].data[0].x) == 120 // 25
    dash.x_toggle.value = "bytes"
    assert dash.figs["loss"].data[0].x[-1] == pytest.approx(120 * 2 * 291368 / 1e6)
    dash.smoothing.value = 0.9
    assert len(dash.figs["loss"].data[0].y) == 120


def test_dashboard_cost_is_small_at_8_workers_10_updates_per_second():
    stats = measure_dashboard(workers=8, rate=10, seconds=4)
    assert stats["records"] == 8 * 40
    assert stats["busy_per_s"] < 0.5             # well under half a core per second of training
    assert stats["lag_p95_ms"] < 2000


def _saved(label, steps, tmp_path):
    return RunData(label, RunConfig(name=label), synthetic_records(2, steps), {"status": "finished"}, tmp_path)


def test_exports_contain_every_run(tmp_path):
    arena = Arena()
    for i, name in enumerate(("sync", "async+topk", "local")):
        arena.add(_saved(name, 60 + 20 * i, tmp_path))
    paths = arena.export(tmp_path / "out" / "arena")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert [r["run"] for r in rows] == ["sync", "async+topk", "local"]
    doc = json.loads(paths["json"].read_text())
    assert [r["label"] for r in doc["runs"]] == ["sync", "async+topk", "local"]
    html = paths["html"].read_text()
    assert html.count("<html") == 1 and "plotly" in html and all(n in html for n in ("async+topk", "local"))
    assert all(len(f.data) == 3 for f in arena.figs.values())


@pytest.mark.timeout(300)
def test_slider_change_on_running_run_reaches_every_worker_at_one_step(cluster2, runs_dir, tmp_path):
    """Move the lr slider while a real run goes: every worker switches at one step, marked."""
    panel = StrategyPanel(cluster2, RunConfig(steps=400, eval_every=50, runs_dir=runs_dir))
    arena = Arena(panel=panel)
    before = panel.config().optim.lr
    new_lr = 0.02 if before != 0.02 else 0.01

    async def scenario():  # the notebook's event loop: watch() polls while we wait here
        run = panel.start()
        assert run is not None, panel.message
        while run.step < 5 and not run.done:
            await asyncio.sleep(0.05)
        panel.knobs["lr"].value = new_lr          # what dragging the slider does
        await asyncio.wait_for(run._task, 240)
        await asyncio.sleep(0.6)
        return run

    run = asyncio.run(scenario())
    assert run.status == "finished", run.meta.get("error")
    marked = [r for r in run.records if r.get("changes")]
    assert sorted(r["rank"] for r in marked) == [0, 1]
    assert len({r["step"] for r in marked}) == 1
    step = marked[0]["step"]
    assert all(r["lr"] == pytest.approx(new_lr) for r in run.records if r["step"] >= step)
    assert all(r["lr"] == pytest.approx(before) for r in run.records if r["step"] < step)
    assert "from step" in panel.message
    meta = json.loads((run.path / "meta.json").read_text())
    assert meta["events"][0]["step"] == step and meta["events"][0]["changes"] == {"lr": new_lr}
    # the dashboard drew both workers, kept every record and marked the change
    dash = panel.dashboard
    assert len(dash.records) == len(run.records) == 2 * 400
    assert len(dash.figs["loss"].data) == 2
    assert [s.x0 for s in dash.figs["loss"].layout.shapes] == [step]
    assert panel.progress.value == 400 and not panel.start_button.disabled
    # the arena picked up the panel's run; the saved run reloads into it
    assert arena.runs == [run]
    arena.add(str(run.path))
    assert len(arena.runs) == 2 and len(load_run(run.path).records) == 800
