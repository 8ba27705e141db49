"""A session's charging profile as a PNG (matplotlib, Agg backend, no pyplot).

Power and offered power against minutes since the start, state of charge on a second axis,
the segments (charging, paused by the car or the charger, idle after full) as a band along the
bottom, flagged ranges shaded and labelled with their kind, and a title with the station,
connector, energy and duration.

Speed: building a figure (axes, ticks, legend) costs more than drawing one, and drawing text
costs most of the drawing, so a chart is built once per picture size and reused, and what every
profile shares (the legend, the state-of-charge axis, the frame) is drawn once into a background
that each render restores (matplotlib's blitting). A render sets its lines' data, limits and
texts, adds the session's bands and shaded ranges, draws only those and the power axes' ticks
over the background, and removes the session's artists again. Text is stamped, not typeset:
each distinct string (tick labels above all: "0", "20", "40" come back in every picture) is laid
out and rasterized by FreeType once, its glyph images kept (``_TextStamps``) and composed again
at whole-pixel positions (at most half a pixel from where matplotlib would put them). Charts are
used one render at a time under a lock (matplotlib's object API, never pyplot's global state; it
still shares caches between figures), so ``render_profile_png`` may be called from any thread.
PNGs are written with zlib level 1: a few percent larger, several times faster to encode.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from PIL import Image

from chargewatch.catalog import SessionRow
from chargewatch.events import format_ts
from chargewatch.readmodel import ProfileGrid, Segment, SegmentKind

__all__ = ["PLOT_VERSION", "render_profile_png"]

PLOT_VERSION = "6"  # part of the ETag: a new look must not be served from old caches
_DPI = 100
_CHARTS = 4  # picture sizes kept built
_LOCK = threading.Lock()
_BUILT: OrderedDict[tuple[int, int], _Chart] = OrderedDict()
_POWER, _OFFERED, _SOC, _FLAG = "#d62728", "#555555", "#9467bd", "#e377c2"
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
        chart = _BUILT.get((width_px, height_px))
        if chart is None:
            chart = _BUILT[(width_px, height_px)] = _Chart(width_px, height_px)
            while len(_BUILT) > _CHARTS:
                _BUILT.popitem(last=False)
        _BUILT.move_to_end((width_px, height_px))
        return chart.render(grid, segments)


class _Chart:
    """A figure of one size with everything every profile has; ``render`` fills it in."""

    def __init__(self, width_px: int, height_px: int) -> None:
        self.figure = Figure(figsize=(width_px / _DPI, height_px / _DPI), dpi=_DPI)
        FigureCanvasAgg(self.figure)  # attaches itself: savefig renders with Agg
        self.figure.subplots_adjust(left=0.08, right=0.92, top=0.79, bottom=0.13)
        self.power_axes = power = self.figure.add_subplot()
        self.soc_axes = soc = power.twinx()
        (self.power,) = power.plot([], [], color=_POWER, linewidth=1.4)
        (self.offered,) = power.step([], [], where="post", color=_OFFERED, linewidth=1.0, ls="--")
        (self.soc,) = soc.plot([], [], color=_SOC, linewidth=1.2)
        # a figure text, not the axis label: it is the same for every profile, so it stays in
        # the background while the power axis (ticks) is drawn anew
        self.figure.text(0.015, 0.46, "power (kW)", rotation="vertical", va="center")
        # likewise the time axis' label; the start it counts from is in the title
        self.figure.text(0.5, 0.03, "minutes since the start", ha="center", va="bottom")
        soc.set_ylabel("state of charge (%)")
        soc.set_ylim(0.0, 105.0)
        for axis in (power.xaxis, power.yaxis, soc.yaxis):
            axis.set_major_locator(MaxNLocator(nbins=5))  # every label drawn costs ~3 ms
        power.grid(True, alpha=0.3)
        handles = [self.power, self.offered, Patch(color=_SOC)]
        handles += [Patch(color=_SEGMENT_COLOURS[k], alpha=0.8) for k in SegmentKind]
        labels = ["power", "offered", "state of charge"] + [_SEGMENT_LABELS[k] for k in SegmentKind]
        # above the axes, in one row: nothing drawn inside them hides behind it
        self.figure.legend(
            handles,
            labels,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.80),
            ncol=len(labels),
            fontsize=8,
            frameon=False,
        )
        self.title = self.figure.suptitle("", fontsize=10, y=0.98)
        # the segment band: a collection per kind, made once, its bars set at each render (a
        # new broken_barh per render cost more than drawing it: limits, transforms, adding)
        self.bands = {
            kind: PolyCollection(
                [], color=_SEGMENT_COLOURS[kind], alpha=0.8, transform=power.get_xaxis_transform()
            )
            for kind in SegmentKind
        }
        for band in self.bands.values():
            power.add_collection(band, autolim=False)
            band.set_animated(True)
        # what changes with every session is drawn over the background, not into it
        self.dynamic: list[tuple[Axes | Figure, Artist]] = [
            (power, power.xaxis),
            (power, power.yaxis),
            (power, self.offered),
            (power, self.power),
            (soc, self.soc),
            (self.figure, self.title),
        ]
        for _, artist in self.dynamic:
            artist.set_animated(True)
        canvas = self.figure.canvas
        assert isinstance(canvas, FigureCanvasAgg)
        self.canvas = canvas
        canvas.draw()  # type: ignore[no-untyped-call]
        self.background = canvas.copy_from_bbox(self.figure.bbox)  # type: ignore[no-untyped-call]
        # the size never changes, so the canvas keeps this renderer for every render
        renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
        renderer.draw_text = _TextStamps(renderer)

    def render(self, grid: ProfileGrid, segments: Sequence[Segment]) -> bytes:
        row = grid.row
        power_axes = self.power_axes
        minutes = np.arange(len(grid.power_w)) * grid.step_s / 60.0
        power_kw = _array(grid.power_w) / 1000.0
        offered_kw = _array(grid.power_offered_w) / 1000.0
        self.power.set_data(minutes, power_kw)
        self.offered.set_data(minutes, offered_kw)
        self.soc.set_data(minutes, _array(grid.soc_pct))
        span_min = max(float(minutes[-1]) if minutes.size else 0.0, row.duration_s / 60.0, 1.0)
        power_axes.set_xlim(0.0, span_min)
        finite = np.concatenate([power_kw, offered_kw])
        finite = finite[np.isfinite(finite)]
        top = max(float(finite.max()) if finite.size else 0.0, 1.0)
        power_axes.set_ylim(-0.08 * top, 1.15 * top)  # room below zero for the segment band
        self.title.set_text(_title(row))
        _set_bands(self.bands, row, segments)
        added = _flags(power_axes, row, span_min)
        try:
            canvas = self.canvas
            canvas.restore_region(self.background)  # type: ignore[no-untyped-call]
            axis_x, axis_y, *rest = self.dynamic  # the grid first, the session's ranges over it
            ranges = [*self.bands.values(), *added]
            for where, artist in [axis_x, axis_y, *[(power_axes, a) for a in ranges], *rest]:
                where.draw_artist(artist)
            width, height = canvas.get_width_height()
            pixels = canvas.buffer_rgba()  # type: ignore[no-untyped-call]
            image = Image.frombuffer("RGBA", (width, height), pixels, "raw")
            out = io.BytesIO()
            # 64 colours are plenty for a chart: a third of the bytes and faster to write (RGB:
            # an RGBA palette would carry a transparency chunk the opaque picture has no use for)
            palette = image.convert("RGB").quantize(64, method=Image.Quantize.FASTOCTREE)
            palette.save(out, format="png", compress_level=1)
            return out.getvalue()
        finally:
            for artist in added:
                artist.remove()


class _TextStamps:
    """An Agg renderer's ``draw_text`` that keeps what FreeType made of each string (the glyph
    images and where each goes, relative to the text's origin) and stamps them again.

    A string drawn at a whole-pixel origin always yields the same glyph images, shifted by whole
    pixels; so each text is drawn at its origin rounded to the pixel, recorded the first time
    (the renderer's own ``draw_text``, its Agg canvas swapped for a recorder) and from then on
    only composed (``draw_text_image``, the call Agg's text ends in). Rotated text and mathtext
    take the renderer's own path. At most ``_STAMPS`` strings, least recently used out."""

    def __init__(self, renderer: RendererAgg) -> None:
        self._renderer = renderer
        self._draw_text: Any = renderer.draw_text
        self._stamps: OrderedDict[Hashable, list[tuple[np.ndarray, int, int]]] = OrderedDict()

    def __call__(
        self,
        gc: Any,
        x: float,
        y: float,
        s: str,
        prop: FontProperties,
        angle: float,
        ismath: bool | str = False,
        mtext: Any = None,
    ) -> None:
        if ismath or angle != 0:
            self._draw_text(gc, x, y, s, prop, angle, ismath=ismath, mtext=mtext)
            return
        x0, y0 = round(x), round(y)
        key = (s, _font_key(prop), bool(gc.get_antialiased()), _features(mtext))
        stamps = self._stamps.get(key)
        if stamps is None:
            stamps = self._record(gc, x0, y0, s, prop, mtext)
            self._stamps[key] = stamps
            while len(self._stamps) > _STAMPS:
                self._stamps.popitem(last=False)
        else:
            self._stamps.move_to_end(key)
        agg = self._renderer._renderer
        for image, dx, dy in stamps:
            agg.draw_text_image(image, x0 + dx, y0 + dy, 0, gc)

    def _record(
        self, gc: Any, x0: int, y0: int, s: str, prop: FontProperties, mtext: Any
    ) -> list[tuple[np.ndarray, int, int]]:
        recorder = _Recorder()
        agg = self._renderer._renderer
        self._renderer._renderer = recorder
        try:
            self._draw_text(gc, x0, y0, s, prop, 0, ismath=False, mtext=mtext)
        finally:
            self._renderer._renderer = agg
        return [(image, x - x0, y - y0) for image, x, y in recorder.images]


class _Recorder:
    """Stands in for the Agg canvas while a text is drawn: keeps each glyph image and place."""

    def __init__(self) -> None:
        self.images: list[tuple[np.ndarray, int, int]] = []

    def draw_text_image(self, image: np.ndarray, x: int, y: int, angle: float, gc: Any) -> None:
        self.images.append((np.array(image, copy=True), int(x), int(y)))


_STAMPS = 512  # strings kept per chart: tick labels, titles, flag names (a few kB each)


def _font_key(prop: FontProperties) -> tuple[Hashable, ...]:
    """Everything of a font that shapes its glyphs (the colour is applied when stamping)."""
    return (
        tuple(prop.get_family()),
        prop.get_style(),
        prop.get_variant(),
        prop.get_weight(),
        prop.get_stretch(),
        prop.get_size_in_points(),
        prop.get_file(),
    )


def _features(mtext: Any) -> Hashable:
    if mtext is None:
        return None
    features = mtext.get_fontfeatures()
    return (None if features is None else tuple(features), mtext.get_language())


def _set_bands(
    bands: dict[SegmentKind, PolyCollection], row: SessionRow, segments: Sequence[Segment]
) -> None:
    """Each segment as a bar along the bottom of the axes (x in minutes, y in axes fraction),
    in its kind's collection (none: an empty one, which draws nothing)."""
    bars: dict[SegmentKind, list[list[tuple[float, float]]]] = {kind: [] for kind in bands}
    for s in segments:
        a, b = (s.start_ns - row.start_ns) / 60e9, (s.end_ns - row.start_ns) / 60e9
        bars[s.kind].append([(a, 0.0), (a, _BAND), (b, _BAND), (b, 0.0)])
    for kind, band in bands.items():
        band.set_verts(bars[kind])


def _flags(axes: Axes, row: SessionRow, span_min: float) -> list[Artist]:
    """Each flagged range shaded, its kind written at its top."""
    transform = axes.get_xaxis_transform()
    added: list[Artist] = []
    for n, verdict in enumerate(v for v in row.verdicts if v.flagged):
        if verdict.start_ns is None or verdict.end_ns is None:
            continue
        start = min(max((verdict.start_ns - row.start_ns) / 60e9, 0.0), span_min)
        end = min(max((verdict.end_ns - row.start_ns) / 60e9, 0.0), span_min)
        end = max(end, start + span_min * 0.004)  # a moment still shows as a line
        added.append(axes.axvspan(start, end, color=_FLAG, alpha=0.18, linewidth=0))
        added.append(
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
        )
    return added


def _title(row: SessionRow) -> str:
    energy = row.energy_register_wh if row.energy_register_wh is not None else row.energy_power_wh
    energy_text = f"{energy / 1000:.2f} kWh" if energy is not None else "energy unknown"
    hours, rest = divmod(round(row.duration_s), 3600)
    duration = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60} s"
    state = "" if row.stop_ns is not None else " (open)"
    return (
        f"{row.station_id} connector {row.connector_id}: {energy_text} in {duration}{state}\n"
        f"session {row.session_id}, started {format_ts(row.start_ns)[:16].replace('T', ' ')} UTC"
    )


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
