"""Usage as PNG heatmaps (matplotlib, Agg, no pyplot): occupancy and charging share by hour of
week, Monday at the top, hours of the day left to right, one fixed colour scale (0-100 %) so
that pictures of different stations and weeks compare; a cell the window never covered is left
blank. Renders hold the profile plots' lock (``analytics.plots``): matplotlib shares its font and
text caches between all figures of a process, so every render in it must take the same lock.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analytics.plots import _LOCK  # one lock for every matplotlib render (module docstring)
from chargewatch.events import format_ts
from chargewatch.figures import UsageFigures

__all__ = ["HEATMAP_HEIGHT_PX", "HEATMAP_WIDTH_PX", "render_usage_png"]

HEATMAP_WIDTH_PX = 1000
HEATMAP_HEIGHT_PX = 620
_DPI = 100
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def render_usage_png(figures: UsageFigures) -> bytes:
    """Both heatmaps of ``figures`` as PNG bytes of ``HEATMAP_WIDTH_PX`` x ``HEATMAP_HEIGHT_PX``."""
    with _LOCK:
        return _render(figures)


def _render(figures: UsageFigures) -> bytes:
    figure = Figure(figsize=(HEATMAP_WIDTH_PX / _DPI, HEATMAP_HEIGHT_PX / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.06, right=0.9, top=0.86, bottom=0.08, hspace=0.45)
    panels = (
        ("occupancy (a session open)", figures.occupancy),
        ("charging share (power flowing)", figures.charging_share),
    )
    image = None
    for row, (title, values) in enumerate(panels):
        axes = figure.add_subplot(2, 1, row + 1)
        cells = np.ma.masked_invalid(values.reshape(7, 24) * 100.0)
        # one mesh with white cell edges: a grid of minor ticks costs a second per picture
        image = axes.pcolormesh(
            cells, cmap="viridis", vmin=0.0, vmax=100.0, edgecolors="white", linewidth=0.5
        )
        axes.set_xlim(0, 24)
        axes.set_ylim(7, 0)  # Monday on top
        axes.set_title(title, fontsize=10, loc="left")
        axes.set_yticks(np.arange(7) + 0.5, _DAYS, fontsize=8)
        axes.set_xticks(
            np.arange(0, 24, 3) + 0.5, [f"{h:02d}" for h in range(0, 24, 3)], fontsize=8
        )
        axes.tick_params(length=0)
    if image is not None:
        colorbar = figure.colorbar(image, ax=figure.axes, fraction=0.03, pad=0.02)
        colorbar.set_label("% of connector time", fontsize=9)
    scope = (
        "network"
        if figures.station_ids is None
        else ", ".join(figures.station_ids[:3]) + (" ..." if len(figures.station_ids) > 3 else "")
    )
    figure.suptitle(
        f"Usage of {scope}: {figures.connectors} connectors, {figures.sessions} sessions\n"
        f"{format_ts(figures.since_ns)} to {format_ts(figures.until_ns)}, hours in {figures.tz}",
        fontsize=11,
    )
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI, metadata={"Software": None})
    return out.getvalue()
