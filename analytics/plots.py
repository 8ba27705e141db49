"""A session's charging profile as a PNG (matplotlib, Agg backend, no pyplot).

Power and offered power against minutes since the start, state of charge on a second axis,
the segments (charging, paused by the car or the charger, idle after full) as a band along the
bottom, flagged ranges shaded and labelled with their kind, and a title with the station,
connector, energy and duration. Figures are built with the object API (``Figure`` and an Agg
canvas), never pyplot's global state; matplotlib still shares caches (fonts, text layout)
between figures, so renders are serialized by a lock (``render_profile_png``'s caller may
call from any thread).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from chargewatch.catalog import SessionRow
from chargewatch.events import format_ts
from chargewatch.readmodel import ProfileGrid, Segment, SegmentKind

__all__ = ["PLOT_VERSION", "render_profile_png"]

PLOT_VERSION = "1"  # part of the ETag: a new look must not be served from old caches
_DPI = 100
_LOCK = threading.Lock()
_SEGMENT_COLOURS = {
    SegmentKind.CHARGING: "#2ca02c",
    SegmentKind.SUSPENDED_EV: "#1f77b4",
    SegmentKind.SUSPENDED_EVSE: "#ff7f0e",
    SegmentKind.IDLE: "#9e9e9e",
}
_SEGMENT_LABELS = {
    SegmentKind.CHARGING: "charging",
    SegmentKind.SUSPENDED_EV: "paused by car",
    SegmentKind.SUSPENDED_EVSE: "paused by charger",
    SegmentKind.IDLE: "idle after full",
}
_BAND = 0.045  # the segment band's height, as a fraction of the axes


def render_profile_png(
    grid: ProfileGrid, segments: Sequence[Segment], *, width_px: int, height_px: int
) -> bytes:
    """The profile of ``grid``'s session as PNG bytes of exactly ``width_px`` x ``height_px``."""
    with _LOCK:
        return _render(grid, segments, width_px, height_px)


def _render(grid: ProfileGrid, segments: Sequence[Segment], width_px: int, height_px: int) -> bytes:
    row = grid.row
    figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg
    figure.subplots_adjust(left=0.08, right=0.92, top=0.79, bottom=0.13)
    power_axes = figure.add_subplot()
    minutes = np.arange(len(grid.power_w)) * grid.step_s / 60.0
    power_kw = _array(grid.power_w) / 1000.0
    offered_kw = _array(grid.power_offered_w) / 1000.0
    power_axes.plot(minutes, power_kw, color="#d62728", linewidth=1.4, label="power")
    if np.isfinite(offered_kw).any():
        power_axes.step(
            minutes,
            offered_kw,
            where="post",
            color="#555555",
            linewidth=1.0,
            linestyle="--",
            label="offered",
        )
    power_axes.set_xlabel(f"minutes since {format_ts(row.start_ns)[:16].replace('T', ' ')} UTC")
    power_axes.set_ylabel("power (kW)")
    span_min = max(float(minutes[-1]) if minutes.size else 0.0, row.duration_s / 60.0, 1.0)
    power_axes.set_xlim(0.0, span_min)
    top = np.nanmax(np.concatenate([power_kw, offered_kw, [1.0]]))
    power_axes.set_ylim(-0.08 * top, 1.15 * top)  # room below zero for the segment band
    power_axes.grid(True, alpha=0.3)

    soc = _array(grid.soc_pct)
    if np.isfinite(soc).any():
        soc_axes = power_axes.twinx()
        soc_axes.plot(minutes, soc, color="#9467bd", linewidth=1.2, label="state of charge")
        soc_axes.set_ylim(0.0, 105.0)
        soc_axes.set_ylabel("state of charge (%)")

    _segments(power_axes, row, segments)
    _flags(power_axes, row)
    handles, labels = power_axes.get_legend_handles_labels()
    if np.isfinite(soc).any():
        handles.append(Patch(color="#9467bd"))
        labels.append("state of charge")
    for kind in dict.fromkeys(s.kind for s in segments):
        handles.append(Patch(color=_SEGMENT_COLOURS[kind], alpha=0.8))
        labels.append(_SEGMENT_LABELS[kind])
    # above the axes, in one row: nothing drawn inside them hides behind it
    figure.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.5, 0.80),
        ncol=len(labels),
        fontsize=8,
        frameon=False,
    )
    figure.suptitle(_title(row), fontsize=10, y=0.98)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=_DPI)
    return out.getvalue()


def _segments(axes: Axes, row: SessionRow, segments: Sequence[Segment]) -> None:
    """Each segment as a bar along the bottom of the axes (x in minutes, y in axes fraction)."""
    transform = axes.get_xaxis_transform()
    for kind in SegmentKind:
        spans = [
            ((s.start_ns - row.start_ns) / 60e9, (s.end_ns - s.start_ns) / 60e9)
            for s in segments
            if s.kind is kind
        ]
        if spans:
            axes.broken_barh(
                spans, (0.0, _BAND), transform=transform, color=_SEGMENT_COLOURS[kind], alpha=0.8
            )


def _flags(axes: Axes, row: SessionRow) -> None:
    """Each flagged range shaded, its kind written at its top."""
    transform = axes.get_xaxis_transform()
    lo, hi = axes.get_xlim()
    for n, verdict in enumerate(v for v in row.verdicts if v.flagged):
        if verdict.start_ns is None or verdict.end_ns is None:
            continue
        start = min(max((verdict.start_ns - row.start_ns) / 60e9, lo), hi)
        end = min(max((verdict.end_ns - row.start_ns) / 60e9, lo), hi)
        end = max(end, start + (hi - lo) * 0.004)  # a moment still shows as a line
        axes.axvspan(start, end, color="#e377c2", alpha=0.18, linewidth=0)
        axes.text(
            start,
            0.97 - 0.06 * (n % 4),
            f" {verdict.kind}",
            transform=transform,
            fontsize=7,
            color="#a0106e",
            va="top",
            clip_on=True,
        )


def _title(row: SessionRow) -> str:
    energy = row.energy_register_wh if row.energy_register_wh is not None else row.energy_power_wh
    energy_text = f"{energy / 1000:.2f} kWh" if energy is not None else "energy unknown"
    hours, rest = divmod(round(row.duration_s), 3600)
    duration = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60} s"
    state = "" if row.stop_ns is not None else " (open)"
    return (
        f"{row.station_id} connector {row.connector_id}: {energy_text} in {duration}{state}\n"
        f"session {row.session_id}"
    )


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
