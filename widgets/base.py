"""What every control in `widgets` shares: it owns one ipywidgets box and displays as it."""
import ipywidgets as W


class Displayable:
    """Displaying the object (last line of a cell, or `.show()`) displays its `widget`."""
    widget = None

    def show(self):
        from IPython.display import display
        display(self.widget)
        return self

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)


FIGURE_WIDTH = 440  # px: two columns fit JupyterLab's notebook beside the file browser


def figure_grid(figs, width: int = FIGURE_WIDTH):
    """Plotly FigureWidgets in as many fixed-width columns as fit (one on a narrow screen).

    Each figure gets an explicit width: inside ipywidgets containers a FigureWidget does not
    follow its cell's size (plotly/plotly.py#5208), so "1fr" columns let it spill over the
    next one. `auto-fill` columns of that width wrap instead.
    """
    figs = list(figs)
    for f in figs:
        f.layout.width = width
    return W.GridBox(figs, layout=W.Layout(grid_template_columns=f"repeat(auto-fill, {width}px)",
                                           grid_gap="4px 12px", width="100%"))
