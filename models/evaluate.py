"""Scoring flags against ground-truth labels (CONTRACTS.md sections 2 and 4), at session level.

A flag is a true positive when a label has its (session_id, kind). Where either side has no
session (energy delivered on a connector with no session open), they match on (station,
connector, kind) with overlapping time spans, give or take ``slack_ns``. Precision counts flags,
recall counts labels; "overall" adds up every kind (micro average).

What must not be flagged matters as much (CONTRACTS.md section 3), so the report also counts
flags on sessions that carry no label at all, and, given the number of sessions, the fraction of
normal sessions flagged by anything (the target is 1 % or less).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from chargewatch.errors import EventError
from chargewatch.events import iter_jsonl, parse_ts
from chargewatch.flags import Flag

__all__ = [
    "DEFAULT_SLACK_NS",
    "Evaluation",
    "KindScore",
    "Label",
    "Outcomes",
    "count_sessions",
    "evaluate",
    "match",
    "read_labels",
]

DEFAULT_SLACK_NS = 5 * 60 * 1_000_000_000


@dataclass(frozen=True, slots=True)
class Label:
    """One ground-truth line: this (session, kind) is anomalous between start and end."""

    session_id: str | None
    station_id: str
    connector_id: int
    kind: str
    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class KindScore:
    """Precision, recall and F1 of one kind (``None`` where undefined: no flags, no labels)."""

    kind: str
    flags: int
    labels: int
    true_positives: int  # flags that match a label
    labels_found: int  # labels matched by at least one flag
    false_alarms_on_normal: int  # flags on sessions (or connector spans) with no label at all
    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The scores per kind, overall, and how often normal sessions were flagged."""

    kinds: list[KindScore]
    overall: KindScore
    sessions: int | None  # sessions in the data set, when known
    normal_sessions: int | None
    normal_sessions_flagged: int
    normal_flagged_fraction: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_labels(path: Path) -> list[Label]:
    """The labels of a JSON Lines file; ``EventError`` names the bad line and field."""
    labels: list[Label] = []
    with path.open("rb") as stream:
        for number, line in iter_jsonl(stream):
            try:
                labels.append(_label(orjson.loads(line)))
            except orjson.JSONDecodeError as exc:
                raise EventError(None, f"line {number}: not valid JSON ({exc.msg})") from None
            except EventError as exc:
                raise EventError(exc.field, f"line {number}: {exc.reason}") from None
    return labels


def _label(obj: Any) -> Label:
    if not isinstance(obj, dict):
        raise EventError(None, "a label must be a JSON object")
    session_id, station_id, kind = obj.get("session_id"), obj.get("station_id"), obj.get("kind")
    if session_id is not None and not isinstance(session_id, str):
        raise EventError("session_id", "must be a string or null")
    if not isinstance(station_id, str):
        raise EventError("station_id", "must be a string")
    if not isinstance(kind, str):
        raise EventError("kind", "must be a string")
    connector_id = obj.get("connector_id")
    if isinstance(connector_id, bool) or not isinstance(connector_id, int):
        raise EventError("connector_id", "must be an integer")
    return Label(
        session_id=session_id,
        station_id=station_id,
        connector_id=connector_id,
        kind=kind,
        start_ns=parse_ts(obj.get("start"), "start"),
        end_ns=parse_ts(obj.get("end"), "end"),
    )


def count_sessions(path: Path) -> int:
    """How many distinct sessions an event file starts (or mentions in a stop)."""
    sessions: set[str] = set()
    with path.open("rb") as stream:
        for _number, line in iter_jsonl(stream):
            # a cheap byte test first: most lines are readings
            if b"session_st" not in line:
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if (
                isinstance(obj, dict)
                and obj.get("type") in ("session_start", "session_stop")
                and isinstance(obj.get("session_id"), str)
            ):
                sessions.add(obj["session_id"])
    return len(sessions)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _score(kind: str, flags: int, labels: int, tp: int, found: int, false_alarms: int) -> KindScore:
    precision, recall = _ratio(tp, flags), _ratio(found, labels)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else (0.0 if precision is not None and recall is not None else None)
    )
    return KindScore(kind, flags, labels, tp, found, false_alarms, precision, recall, f1)


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What matching found, item by item: ``matched[i]`` when ``flags[i]`` matches a label (a
    true positive), ``normal[i]`` when it fell on a session (or connector span) with no label
    at all, ``found[j]`` when ``labels[j]`` was matched by at least one flag."""

    matched: list[bool]
    normal: list[bool]
    found: list[bool]


def match(
    flags: Sequence[Flag], labels: Sequence[Label], *, slack_ns: int = DEFAULT_SLACK_NS
) -> Outcomes:
    """Match ``flags`` with ``labels`` (the module docstring's rules)."""
    by_session: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_connector: dict[tuple[str, int, str], list[int]] = defaultdict(list)
    labelled_sessions = {label.session_id for label in labels if label.session_id is not None}
    connector_spans: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_connector[(label.station_id, label.connector_id, label.kind)].append(index)
        if label.session_id is not None:
            by_session[(label.session_id, label.kind)].append(index)
        else:
            connector_spans[(label.station_id, label.connector_id)].append(
                (label.start_ns, label.end_ns)
            )

    def overlaps(flag: Flag, start_ns: int, end_ns: int) -> bool:
        return flag.start_ns <= end_ns + slack_ns and start_ns <= flag.end_ns + slack_ns

    found = [False] * len(labels)
    matched: list[bool] = []
    normal: list[bool] = []
    for flag in flags:
        matches: list[int] = []
        if flag.session_id is not None:
            matches = list(by_session.get((flag.session_id, flag.kind), ()))
        candidates = by_connector.get((flag.station_id, flag.connector_id, flag.kind), ())
        matches += [
            i
            for i in candidates
            if (flag.session_id is None or labels[i].session_id is None)
            and overlaps(flag, labels[i].start_ns, labels[i].end_ns)
        ]
        for i in matches:
            found[i] = True
        matched.append(bool(matches))
        if matches:
            normal.append(False)
        elif flag.session_id is not None:
            normal.append(flag.session_id not in labelled_sessions)
        else:
            spans = connector_spans.get((flag.station_id, flag.connector_id), ())
            normal.append(not any(overlaps(flag, start, end) for start, end in spans))
    return Outcomes(matched=matched, normal=normal, found=found)


def evaluate(
    flags: Sequence[Flag],
    labels: Iterable[Label],
    *,
    sessions: int | None = None,
    slack_ns: int = DEFAULT_SLACK_NS,
) -> Evaluation:
    """Score ``flags`` against ``labels``; ``sessions`` is the data set's session count (for the
    fraction of normal sessions flagged)."""
    labels = list(labels)
    labelled_sessions = {label.session_id for label in labels if label.session_id is not None}
    outcomes = match(flags, labels, slack_ns=slack_ns)
    found = {j for j, hit in enumerate(outcomes.found) if hit}
    tp: dict[str, int] = defaultdict(int)
    false_alarms: dict[str, int] = defaultdict(int)
    flagged_normal: set[str] = set()
    for flag, hit, normal in zip(flags, outcomes.matched, outcomes.normal, strict=True):
        if hit:
            tp[flag.kind] += 1
        elif normal:
            false_alarms[flag.kind] += 1
            if flag.session_id is not None:
                flagged_normal.add(flag.session_id)

    flag_count: dict[str, int] = defaultdict(int)
    label_count: dict[str, int] = defaultdict(int)
    found_count: dict[str, int] = defaultdict(int)
    for flag in flags:
        flag_count[flag.kind] += 1
    for index, label in enumerate(labels):
        label_count[label.kind] += 1
        found_count[label.kind] += index in found
    kinds = sorted(set(flag_count) | set(label_count))
    scores = [
        _score(k, flag_count[k], label_count[k], tp[k], found_count[k], false_alarms[k])
        for k in kinds
    ]
    overall = _score(
        "overall",
        sum(s.flags for s in scores),
        sum(s.labels for s in scores),
        sum(s.true_positives for s in scores),
        sum(s.labels_found for s in scores),
        sum(s.false_alarms_on_normal for s in scores),
    )
    normal_count = None if sessions is None else max(sessions - len(labelled_sessions), 0)
    return Evaluation(
        kinds=scores,
        overall=overall,
        sessions=sessions,
        normal_sessions=normal_count,
        normal_sessions_flagged=len(flagged_normal),
        normal_flagged_fraction=None
        if normal_count is None
        else _ratio(len(flagged_normal), normal_count),
    )
