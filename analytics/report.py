"""The evaluation report: a folder holding ``index.html`` and its PNG images, opened from disk.

``chargewatch evaluate --model V --report DIR`` (or ``--compare V1 V2``) writes, for labeled
data judged by one or two models (``analytics.judged``):

- precision, recall and F1 per kind (``models.evaluate``), the models side by side and, for
  two, the second's difference from the first;
- per model, the confusion between kinds: for each session, every kind it is labeled with
  (``normal`` when none) against every kind that flagged it (``nothing`` when none);
- per model, each kind's score histogram for normal sessions and for sessions labeled with
  that kind (and the novelty score's, normal against labeled with any kind, for a version
  with a novelty forest), and each kind's threshold curve: precision and recall at the
  session level if a session were flagged whenever its score reaches the threshold, with the
  detector's own flags as a point (its flags are its rules, not a threshold on the score
  alone);
- per model, every false positive (a flag no label matches) and false negative (a label no
  flag found) with the session's profile drawn as the read API draws it
  (``analytics.plots``), at most ``MAX_PICTURES`` of each, saying how many were left out.

Everything is static: no script, no style sheet or font fetched, images by relative path, so
the folder can be zipped, mailed or served as it is. Every text written into the HTML (ids,
reasons, file names: data from stations) goes through ``html.escape``.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analytics.batch import NO_TIME, SessionBatch
from analytics.judged import Judged
from analytics.plots import render_profile_png
from analytics.profiles import Profiles, profiles

# The read API's own grid and segment runs, so a picture here is the one the API serves.
from analytics.read.model import _grid, _segments
from analytics.read.readings import SessionReadings
from chargewatch.catalog import KindVerdict, SessionRow
from chargewatch.events import format_ts
from chargewatch.flags import Flag
from models.evaluate import Evaluation, KindScore, Label, Outcomes, evaluate, match

__all__ = [
    "MAX_PICTURES",
    "ModelEvaluation",
    "ReportSummary",
    "evaluate_judged",
    "write_report",
]

# Profile pictures per model and list (false positives, false negatives): each costs ~40 ms and
# ~30 kB; 30 of each is what a person goes through in one sitting, and a run that misses more
# than that has a problem the tables already show.
MAX_PICTURES = 30
PICTURE_SIZE = (800, 300)
# Score histograms: 20 bins of 0.05 over [0, 1].
HISTOGRAM_BINS = np.linspace(0.0, 1.0, 21)
# The threshold curve's thresholds: every 0.01 of the score's range.
THRESHOLDS = np.linspace(0.0, 1.0, 101)
_PANEL_COLUMNS = 3
_PANEL_PX = (330, 230)
_DPI = 100
NORMAL, NOTHING = "normal", "nothing"
NOVELTY = "novelty"


@dataclass(frozen=True, slots=True)
class ModelEvaluation:
    """One model's verdicts on the labeled data, measured."""

    judged: Judged
    evaluation: Evaluation
    outcomes: Outcomes


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """What a report holds: the page, images written, profile pictures left out."""

    index: Path
    images: int
    pictures_left_out: int


def evaluate_judged(judged: Judged, labels: Sequence[Label]) -> ModelEvaluation:
    """``judged``'s flags measured against ``labels``; its sessions count for the rate of
    normal sessions flagged."""
    sessions = sum(1 for sid in judged.batch.session_id.tolist() if sid is not None)
    return ModelEvaluation(
        judged=judged,
        evaluation=evaluate(judged.flags, labels, sessions=sessions),
        outcomes=match(judged.flags, labels),
    )


def write_report(
    folder: Path,
    models: Sequence[ModelEvaluation],
    labels: Sequence[Label],
    *,
    source: str,
    labels_source: str,
    now: datetime | None = None,
) -> ReportSummary:
    """Write ``index.html`` and its images into ``folder`` (made if missing; files of an
    earlier report of the same names are replaced)."""
    folder.mkdir(parents=True, exist_ok=True)
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    parts = [_head(source, labels_source, models, moment), _metrics_table(models)]
    images = 0
    left_out = 0
    for number, model in enumerate(models, start=1):
        section, written, skipped = _model_section(folder, number, model, labels)
        parts.append(section)
        images += written
        left_out += skipped
    parts.append("</body>\n</html>\n")
    index = folder / "index.html"
    index.write_text("".join(parts), encoding="utf-8")
    return ReportSummary(index=index, images=images, pictures_left_out=left_out)


# -- the page -----------------------------------------------------------------------------------

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eee; }
td.zero { color: #bbb; }
td.off { background: #fde0dc; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { max-width: 800px; font-size: 0.85em; }
.better { color: #1a7f37; } .worse { color: #b42318; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _head(
    source: str, labels_source: str, models: Sequence[ModelEvaluation], moment: datetime
) -> str:
    names = ", ".join(m.judged.model for m in models)
    first = models[0].evaluation if models else None
    sessions = "" if first is None or first.sessions is None else f"{first.sessions} sessions; "
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>chargewatch evaluation: {_e(names)}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n"
        f"<h1>Evaluation of {_e(names)}</h1>\n"
        f"<p>Data: {_e(source)}; labels: {_e(labels_source)}; {_e(sessions)}"
        f"written {_e(moment.strftime('%Y-%m-%d %H:%M UTC'))}.</p>\n"
    )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "<td>-</td>"
    points = (b - a) * 100
    style = "better" if points > 0.05 else "worse" if points < -0.05 else ""
    return f'<td class="{style}">{points:+.1f} pp</td>'


def _metrics_table(models: Sequence[ModelEvaluation]) -> str:
    """Precision, recall and F1 per kind and overall, the models side by side."""
    by_model = [{s.kind: s for s in m.evaluation.kinds} for m in models]
    kinds = sorted({kind for scores in by_model for kind in scores})
    head = "<tr><th>kind</th><th>labels</th>"
    for m in models:
        name = _e(m.judged.model)
        head += "".join(f"<th>{col} ({name})</th>" for col in ("flags", "P", "R", "F1"))
    if len(models) == 2:
        head += "<th>&Delta; P</th><th>&Delta; R</th><th>&Delta; F1</th>"
    rows = []
    for kind in [*kinds, "overall"]:
        scores: list[KindScore | None] = [
            m.evaluation.overall if kind == "overall" else by_model[i].get(kind)
            for i, m in enumerate(models)
        ]
        labels = max((s.labels for s in scores if s is not None), default=0)
        cells = f"<td>{_e(kind)}</td><td>{labels}</td>"
        for s in scores:
            if s is None:
                cells += "<td>0</td><td>-</td><td>-</td><td>-</td>"
            else:
                cells += (
                    f"<td>{s.flags}</td><td>{_pct(s.precision)}</td>"
                    f"<td>{_pct(s.recall)}</td><td>{_pct(s.f1)}</td>"
                )
        if len(models) == 2:
            a, b = scores
            for name in ("precision", "recall", "f1"):
                cells += _delta(
                    None if a is None else getattr(a, name), None if b is None else getattr(b, name)
                )
        rows.append(f"<tr>{cells}</tr>")
    normal = "".join(
        f"<li>{_e(m.judged.model)}: {m.evaluation.normal_sessions_flagged} of "
        f"{m.evaluation.normal_sessions} normal sessions flagged "
        f"({_pct(m.evaluation.normal_flagged_fraction)})</li>"
        for m in models
    )
    return (
        "<h2>Precision, recall and F1 per kind</h2>\n"
        f'<table id="metrics"><thead>{head}</tr></thead><tbody>\n'
        + "\n".join(rows)
        + f"\n</tbody></table>\n<ul>{normal}</ul>\n"
    )


def _model_section(
    folder: Path, number: int, model: ModelEvaluation, labels: Sequence[Label]
) -> tuple[str, int, int]:
    judged = model.judged
    name = _e(judged.model)
    sessions = _session_rows(judged.batch)
    labelled = _labels_by_session(labels)
    parts = [f"<h2>{name}</h2>\n", _confusion(number, judged, sessions, labelled)]
    scores_png = f"scores-{number}.png"
    (folder / scores_png).write_bytes(_histograms(judged, sessions, labelled))
    curve_png = f"threshold-{number}.png"
    (folder / curve_png).write_bytes(_threshold_curves(judged, sessions, labelled))
    parts.append(
        f"<h3>Scores of normal and labeled sessions ({name})</h3>\n"
        f'<p><img src="{scores_png}" alt="score histograms per kind, {name}"></p>\n'
        f"<h3>Threshold curves ({name})</h3>\n<p>Session level: a session counts as flagged "
        "for a kind when its score reaches the threshold. The point is where the detector's "
        "own flags stand (at the lowest score it flagged).</p>\n"
        f'<p><img src="{curve_png}" alt="precision and recall against threshold, {name}"></p>\n'
    )
    pictures = _Pictures(folder, number, judged)
    positives = [f for f, hit in zip(judged.flags, model.outcomes.matched, strict=True) if not hit]
    negatives = [label for label, hit in zip(labels, model.outcomes.found, strict=True) if not hit]
    parts.append(pictures.false_positives(positives))
    parts.append(pictures.false_negatives(negatives))
    return "".join(parts), 2 + pictures.drawn, pictures.left_out


def _session_rows(batch: SessionBatch) -> dict[str, int]:
    return {str(sid): i for i, sid in enumerate(batch.session_id.tolist()) if sid is not None}


def _labels_by_session(labels: Sequence[Label]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for label in labels:
        if label.session_id is not None:
            out[label.session_id].add(label.kind)
    return out


def _confusion(
    number: int, judged: Judged, sessions: dict[str, int], labelled: dict[str, set[str]]
) -> str:
    """Label kind (rows) against flagged kind (columns), counted over sessions."""
    flagged = np.stack([r.flagged for r in judged.results], axis=1)
    kinds = judged.kinds
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for sid, row in sessions.items():
        truth = sorted(labelled.get(sid, ())) or [NORMAL]
        hits = [kinds[k] for k in np.flatnonzero(flagged[row]).tolist()] or [NOTHING]
        for t in truth:
            for f in hits:
                counts[(t, f)] += 1
    rows_kinds = [k for k in kinds if any(counts[(k, f)] for f in [*kinds, NOTHING])]
    head = "".join(f"<th>{_e(k)}</th>" for k in [*kinds, NOTHING])
    body = []
    for labelled_as in [*rows_kinds, NORMAL]:
        cells = ""
        for flagged_as in [*kinds, NOTHING]:
            n = counts[(labelled_as, flagged_as)]
            right = labelled_as == flagged_as or (labelled_as == NORMAL and flagged_as == NOTHING)
            style = "zero" if n == 0 else ("" if right else "off")
            cells += f'<td class="{style}">{n}</td>'
        body.append(f"<tr><th>{_e(labelled_as)}</th>{cells}</tr>")
    return (
        f"<h3>Confusion between kinds ({_e(judged.model)})</h3>\n<p>Sessions by the kind they "
        "are labeled with (rows) and the kind that flagged them (columns); a session with two "
        "labels or two flags counts in each pair. Shaded: off the diagonal.</p>\n"
        f'<table id="confusion-{number}" class="confusion"><thead><tr><th>label \\ flag</th>'
        f"{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>\n"
    )


def _panels(count: int) -> tuple[Figure, list[Axes]]:
    rows = max(1, math.ceil(count / _PANEL_COLUMNS))
    width, height = _PANEL_PX[0] * _PANEL_COLUMNS, _PANEL_PX[1] * rows
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    # fixed margins: a constrained layout measures every text and costs seconds per figure
    axes = figure.subplots(rows, _PANEL_COLUMNS, squeeze=False).ravel().tolist()
    inches = height / _DPI
    figure.subplots_adjust(
        left=0.05, right=0.98, top=1 - 0.3 / inches, bottom=0.5 / inches, wspace=0.2, hspace=0.5
    )
    for extra in axes[count:]:
        extra.set_visible(False)
    return figure, axes[:count]


def _png(figure: Figure) -> bytes:
    import io

    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _split(
    score: np.ndarray, kind: str | None, sessions: dict[str, int], labelled: dict[str, set[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """``score`` of normal sessions (no label at all) and of those labeled ``kind`` (None:
    labeled with any kind)."""
    normal = [i for sid, i in sessions.items() if sid not in labelled]
    positive = [
        i
        for sid, i in sessions.items()
        if (kind in labelled.get(sid, ()) if kind is not None else sid in labelled)
    ]
    return score[normal], score[positive]


def _histograms(judged: Judged, sessions: dict[str, int], labelled: dict[str, set[str]]) -> bytes:
    """One panel per kind; and the novelty score's (normal against labeled with any kind)
    when the model has a novelty forest."""
    panels: list[tuple[str, np.ndarray, np.ndarray]] = [
        (kind, *_split(judged.score_of(kind), kind, sessions, labelled)) for kind in judged.kinds
    ]
    if judged.novelty is not None:
        panels.append((NOVELTY, *_split(judged.novelty, None, sessions, labelled)))
    figure, axes = _panels(len(panels))
    for ax, (name, normal, positive) in zip(axes, panels, strict=True):
        normal, positive = normal[np.isfinite(normal)], positive[np.isfinite(positive)]
        what = "any kind" if name == NOVELTY else name
        bins = HISTOGRAM_BINS.tolist()
        ax.hist(normal, bins=bins, color="#1f77b4", alpha=0.6, label="normal")
        ax.hist(positive, bins=bins, color="#d62728", alpha=0.7, label=f"labeled {what}")
        ax.set_yscale("symlog", linthresh=1.0)  # a few labeled among thousands of normal
        ax.set_title(f"{name} ({positive.size} labeled, {normal.size} normal)", fontsize=8)
        ax.set_xlim(0.0, 1.0)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper center")
    figure.supxlabel("score", fontsize=8)
    return _png(figure)


def _threshold_curves(
    judged: Judged, sessions: dict[str, int], labelled: dict[str, set[str]]
) -> bytes:
    figure, axes = _panels(len(judged.kinds))
    rows = np.array(list(sessions.values()), dtype=np.int64)
    ids = list(sessions)
    for ax, result in zip(axes, judged.results, strict=True):
        kind = result.kind
        truth = np.array([kind in labelled.get(sid, ()) for sid in ids], dtype=bool)
        score = np.nan_to_num(result.score[rows], nan=-1.0)
        reached = score[None, :] >= THRESHOLDS[:, None]
        hits = (reached & truth[None, :]).sum(axis=1)
        called = reached.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(called > 0, hits / called, np.nan)
            recall = hits / truth.sum() if truth.any() else np.full(THRESHOLDS.size, np.nan)
        ax.plot(THRESHOLDS, precision, color="#1f77b4", label="precision")
        ax.plot(THRESHOLDS, recall, color="#d62728", label="recall")
        flagged = result.flagged[rows]
        if flagged.any():
            at = float(np.min(score[flagged]))
            tp = int((flagged & truth).sum())
            ax.plot([at], [tp / int(flagged.sum())], "o", color="#1f77b4", markersize=5)
            if truth.any():
                ax.plot([at], [tp / int(truth.sum())], "o", color="#d62728", markersize=5)
        ax.set_title(f"{kind} ({int(truth.sum())} labeled)", fontsize=8)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(-0.03, 1.03)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    figure.supxlabel("threshold on the score", fontsize=8)
    return _png(figure)


class _Pictures:
    """Profile pictures of one model's false positives and negatives."""

    def __init__(self, folder: Path, number: int, judged: Judged) -> None:
        self.folder = folder
        self.number = number
        self.judged = judged
        self.figures: Profiles = profiles(judged.batch)
        self.sessions = _session_rows(judged.batch)
        self.drawn = 0
        self.left_out = 0

    def false_positives(self, flags: list[Flag]) -> str:
        items = []
        for flag in flags:
            row = self._row(flag.session_id, flag.station_id, flag.connector_id, flag.start_ns)
            caption = (
                f"flagged {flag.kind} (score {flag.score:.2f}) on "
                f"{_where(flag.session_id, flag.station_id, flag.connector_id)} "
                f"from {format_ts(flag.start_ns)}: {flag.reason}"
            )
            items.append((row, caption))
        return self._list("False positives", "fp", "flags no label matches", items)

    def false_negatives(self, labels: list[Label]) -> str:
        items = []
        for label in labels:
            row = self._row(label.session_id, label.station_id, label.connector_id, label.start_ns)
            score = "" if row is None else _score_text(self.judged, label.kind, row)
            caption = (
                f"labeled {label.kind}, not flagged{score}: "
                f"{_where(label.session_id, label.station_id, label.connector_id)} "
                f"from {format_ts(label.start_ns)} to {format_ts(label.end_ns)}"
            )
            items.append((row, caption))
        return self._list("False negatives", "fn", "labels no flag found", items)

    def _list(self, title: str, prefix: str, what: str, items: list[tuple[int | None, str]]) -> str:
        name = _e(self.judged.model)
        shown = items[:MAX_PICTURES]
        parts = [f"<h3>{title} ({name}): {len(items)} {what}</h3>\n"]
        if not items:
            parts.append("<p>None.</p>\n")
        for n, (row, caption) in enumerate(shown, start=1):
            if row is None:
                parts.append(f"<p>{_e(caption)} (no readings of it in the data to draw)</p>\n")
                continue
            file = f"{prefix}-{self.number}-{n}.png"
            (self.folder / file).write_bytes(self._draw(row))
            self.drawn += 1
            parts.append(
                f'<figure><img src="{file}" width="{PICTURE_SIZE[0]}" '
                f'height="{PICTURE_SIZE[1]}" alt="profile: {_e(caption)}">'
                f"<figcaption>{_e(caption)}</figcaption></figure>\n"
            )
        if len(items) > len(shown):
            hidden = len(items) - len(shown)
            self.left_out += hidden
            parts.append(f"<p>{hidden} more not drawn (at most {MAX_PICTURES} shown).</p>\n")
        return "".join(parts)

    def _row(
        self, session_id: str | None, station_id: str, connector_id: int, at_ns: int
    ) -> int | None:
        """The row of a session, or the orphan segment on that connector that spans ``at``."""
        if session_id is not None:
            return self.sessions.get(session_id)
        batch = self.judged.batch
        for i in range(batch.n_sessions):
            if (
                batch.session_id[i] is None
                and batch.station_id[i] == station_id
                and int(batch.connector_id[i]) == connector_id
                and int(batch.start_ns[i]) <= at_ns <= _row_end(batch, i)
            ):
                return i
        return None

    def _draw(self, i: int) -> bytes:
        batch, judged = self.judged.batch, self.judged
        one = _one_row(batch, i)
        readings = SessionReadings(batch=one, digest="")
        row = _session_row(judged, self.figures, i)
        grid = _grid(row, readings, None)
        return render_profile_png(
            grid, _segments(readings), width_px=PICTURE_SIZE[0], height_px=PICTURE_SIZE[1]
        )


def _where(session_id: str | None, station_id: str, connector_id: int) -> str:
    place = f"{station_id} connector {connector_id}"
    return f"session {session_id} at {place}" if session_id is not None else f"no session, {place}"


def _score_text(judged: Judged, kind: str, row: int) -> str:
    try:
        score = float(judged.score_of(kind)[row])
    except KeyError:
        return ""
    return f" (score {score:.2f})" if math.isfinite(score) else " (not scored)"


def _row_end(batch: SessionBatch, i: int) -> int:
    stop = int(batch.stop_ns[i])
    if stop != NO_TIME:
        return stop
    n = int(batch.n_samples[i])
    return int(batch.t_ns[i, n - 1]) if n else int(batch.start_ns[i])


def _one_row(batch: SessionBatch, i: int) -> SessionBatch:
    """Row ``i`` alone, cut to its own samples (the padding of the others left out)."""
    one = batch.take(np.array([i]))
    width = int(one.n_samples[0])
    fields = {
        name: (value[:, :width] if value.ndim == 2 else value)
        for name in SessionBatch.__dataclass_fields__
        if name != "extra" and (value := getattr(one, name)) is not None
    }
    return SessionBatch(**fields)


def _number(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _session_row(judged: Judged, figures: Profiles, i: int) -> SessionRow:
    """What the picture needs of a catalogue row, from the judged batch."""
    batch = judged.batch
    verdicts = []
    for result in judged.results:
        flagged = bool(result.flagged[i])
        start, end = int(result.start_ns[i]), int(result.end_ns[i])
        verdicts.append(
            KindVerdict(
                kind=result.kind,
                score=_number(result.score[i]),
                flagged=flagged,
                start_ns=start if flagged and start != NO_TIME else None,
                end_ns=end if flagged and end != NO_TIME else None,
                reason=None,
            )
        )
    stop = int(batch.stop_ns[i])
    session_id = batch.session_id[i]
    return SessionRow(
        session_id=str(session_id) if session_id is not None else "(none: no session open)",
        station_id=str(batch.station_id[i]),
        connector_id=int(batch.connector_id[i]),
        start_ns=int(batch.start_ns[i]),
        stop_ns=None if stop == NO_TIME else stop,
        id_pseudonym=None,
        energy_register_wh=_number(figures.energy_register_wh[i]),
        energy_power_wh=_number(figures.energy_power_wh[i]),
        billing_confidence=_number(figures.billing_confidence[i]),
        billing_notes=(),
        duration_s=float(figures.duration_s[i]),
        flagged_kinds=tuple(v.kind for v in verdicts if v.flagged),
        updated_at_ns=judged.now_ns,
        verdicts=tuple(verdicts),
    )
