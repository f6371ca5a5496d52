"""wandb.Plotly: a plotly figure, stored as its JSON (the figure's own serialisation) for the dashboard to draw."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from trackio_shim.errors import MediaError
from trackio_shim.media import _FRAME_MARGIN, Media, is_figure, module_of
from trackio_shim.session.encoding import json_friendly

if TYPE_CHECKING:
    from trackio_shim.media.wire import WireContext


def is_plotly(value: Any) -> bool:
    """A plotly figure (``plotly.graph_objs.Figure`` and its widget variant)."""
    return module_of(value).startswith("plotly.") and hasattr(value, "to_plotly_json")


class Plotly(Media):
    """A plotly figure, as ``wandb.Plotly``: a ``plotly.graph_objects.Figure`` or a figure dict (``{"data":
    [...], "layout": {...}}``). Stored as JSON; the run page draws it with plotly.js where the dashboard bundles
    it, and otherwise draws its x/y traces plainly and offers the JSON for download. Unlike wandb, a matplotlib
    figure is not converted: log it with ``Image``."""

    def __init__(self, val: Any) -> None:
        self.figure = val
        if is_figure(val):
            self._problem = "Plotly() of a matplotlib figure is not converted here; log it as Image(figure)"

    def payload(self, ctx: WireContext) -> dict[str, Any]:
        if self._problem:
            raise MediaError(self._problem)
        figure = self.figure
        if is_plotly(figure):
            text = figure.to_json()  # plotly's own encoder: numpy arrays, dates and typed arrays as it knows them
        elif isinstance(figure, dict):
            try:
                text = json.dumps(json_friendly(figure), allow_nan=False)
            except ValueError as exc:
                raise MediaError(f"a plotly figure dict must be JSON: {exc}") from None
        else:
            raise MediaError(f"Plotly() takes a plotly figure or a figure dict, not {type(figure).__qualname__}")
        if len(text) > ctx.max_frame_bytes - _FRAME_MARGIN:
            raise MediaError(f"a plotly figure of {len(text):,} bytes of JSON is over TRACKIOD_MAX_FRAME_BYTES")
        return {"_type": "plotly", "json": text}
