"""What every control in `widgets` shares: it owns one ipywidgets box and displays as it."""


class Displayable:
    """Displaying the object (last line of a cell, or `.show()`) displays its `widget`."""
    widget = None

    def show(self):
        from IPython.display import display
        display(self.widget)
        return self

    def _repr_mimebundle_(self, **kw):
        return self.widget._repr_mimebundle_(**kw)
