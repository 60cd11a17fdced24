"""widgets: what the user looks at. ipywidgets controls and plotly dashboards over `lab` runs.

`LiveDashboard` (chapter 00) draws one run live per worker; `StrategyPanel` picks a strategy and
its knobs, starts / pauses / stops a run and changes knobs while it goes; `Arena` (chapter 12)
runs several configurations one after another and overlays them, with CSV / JSON / HTML exports.
This package imports `lab`; `lab` never imports it.
"""
from .dashboard import LiveDashboard

__all__ = ["LiveDashboard", "StrategyPanel", "Arena", "SearchView"]


def __getattr__(name):  # lazy, so `from widgets import LiveDashboard` stays light
    if name == "StrategyPanel":
        from .panel import StrategyPanel
        return StrategyPanel
    if name == "Arena":
        from .arena import Arena
        return Arena
    if name == "SearchView":   # lab.search's live view: learning curves, knobs against the result
        from .search import SearchView
        return SearchView
    raise AttributeError(name)
