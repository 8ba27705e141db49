"""The fleet simulator writes contract-true, deterministic, physically consistent, labeled data."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from chargewatch.kinds import AnomalyKind
from simulator import SimulationConfig, SimulationSummary, simulate
from tests.simulator.power import fill_power, phases_of

START = datetime(2026, 11, 23, tzinfo=UTC)
KINDS = tuple(kind.value for kind in AnomalyKind)
TS_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STATUSES = {
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
}
ERROR_CODES = {
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "OverVoltage",
    "WeakSignal",
}
AUTH_RESULTS = {"Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"}
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "reading": {"station_id": str, "connector_id": int},
    "session_start": {"station_id": str, "connector_id": int, "session_id": str, "id_tag": str},
    "session_stop": {"station_id": str, "connector_id": int, "session_id": str},
    "status": {"station_id": str, "connector_id": int, "status": str},
    "authorize": {"station_id": str, "id_tag": str, "result": str},
}
NUMBER = (int, float)
OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "reading": {
        "session_id": str,
        "energy_wh": NUMBER,
        "power_w": NUMBER,
        "power_offered_w": NUMBER,
        "current_a": NUMBER,
        "voltage_v": NUMBER,
        "soc_pct": NUMBER,
        "temperature_c": NUMBER,
    },
    "session_start": {"meter_start_wh": NUMBER},
    "session_stop": {"meter_stop_wh": NUMBER, "reason": str},
    "status": {"error_code": str, "vendor_error_code": str, "info": str},
    "authorize": {},
}


def ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


@dataclass
class Session:
    session_id: str
    start: dict[str, Any] | None = None
    stop: dict[str, Any] | None = None
    readings: list[dict[str, Any]] = field(default_factory=list)  # in file order

    @property
    def start_ms(self) -> int:
        assert self.start is not None
        return ms(self.start["ts"])

    @property
    def stop_ms(self) -> int:
        return ms(self.stop["ts"]) if self.stop else ms(self.readings[-1]["ts"])

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time in s, power in W, register in Wh of the readings, in file order. Stations that
        report the register only at the transaction's ends (its Begin and End readings, or
        only its meterStart and meterStop) show it there; in between it holds its last value."""
        t = np.array([ms(r["ts"]) for r in self.readings]) / 1000.0
        p = np.array([r["power_w"] for r in self.readings], dtype=float)
        e = np.array([r.get("energy_wh", np.nan) for r in self.readings], dtype=float)
        if e.size and np.isnan(e[0]) and self.start is not None:
            e[0] = self.start.get("meter_start_wh", np.nan)
        if e.size > 1 and np.isnan(e[-1]) and self.stop is not None:
            e[-1] = self.stop.get("meter_stop_wh", np.nan)
        held = np.maximum.accumulate(np.where(np.isnan(e), 0, np.arange(e.size)))
        return t, p, e[held]

    def within(self, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        return [r for r in self.readings if start_ms <= ms(r["ts"]) <= end_ms]


@dataclass
class Fleet:
    summary: SimulationSummary
    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    sessions: dict[str, Session]
    events_path: Path
    labels_path: Path

    def labeled(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [x for x in self.labels if kind is None or x["kind"] == kind]

    def unlabeled_sessions(self) -> list[Session]:
        marked = {x["session_id"] for x in self.labels}
        return [s for sid, s in self.sessions.items() if sid not in marked and s.start]


def run(directory: Path, **overrides: Any) -> tuple[SimulationSummary, Path, Path]:
    settings: dict[str, Any] = {
        "stations": 8,
        "hours": 12.0,
        "seed": 1,
        "start": START,
        "anomaly_rate": 0.2,
        # the checks below read the events' plain form; test_formats.py checks the variety
        "message_variety": False,
    }
    settings.update(overrides)
    directory.mkdir(parents=True, exist_ok=True)
    events_path, labels_path = directory / "events.jsonl", directory / "labels.jsonl"
    summary = simulate(SimulationConfig(**settings), events_path, labels_path)
    return summary, events_path, labels_path


def load(summary: SimulationSummary, events_path: Path, labels_path: Path) -> Fleet:
    events = [orjson.loads(line) for line in events_path.read_bytes().splitlines()]
    labels = [orjson.loads(line) for line in labels_path.read_bytes().splitlines()]
    fill_power(events)  # stations that send current and voltage instead of power
    sessions: dict[str, Session] = {}
    for event in events:
        sid = event.get("session_id")
        if sid is None:
            continue
        session = sessions.setdefault(sid, Session(sid))
        if event["type"] == "reading":
            session.readings.append(event)
        elif event["type"] == "session_start":
            session.start = event
        elif event["type"] == "session_stop":
            session.stop = event
    return Fleet(summary, events, labels, sessions, events_path, labels_path)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """A day of 40 stations with many anomalies, so every kind and phenomenon shows."""
    directory = tmp_path_factory.mktemp("fleet")
    return load(*run(directory, stations=40, hours=24.0, seed=5, anomaly_rate=0.3))


def trapezoid_wh(t_s: np.ndarray, power_w: np.ndarray) -> float:
    return float(np.sum(0.5 * (power_w[1:] + power_w[:-1]) * np.diff(t_s)) / 3600.0)


def stamp_slack_wh(t_s: np.ndarray, power_w: np.ndarray) -> float:
    """How far truncated stamps may move the trapezoid: nothing for millisecond stamps; for a
    station stamping whole minutes, a minute times the changes of power and its two ends (the
    bound meter_mismatch allows, analytics/detectors/meter.py)."""
    if t_s.size < 2 or np.any(np.mod(t_s, 60.0) != 0):
        return 0.0
    changes = float(np.sum(np.abs(np.diff(power_w))) + power_w[0] + power_w[-1])
    return 60.0 * changes / 3600.0


def integration_slack_wh(t_s: np.ndarray, power_w: np.ndarray) -> float:
    """How far the trapezoid may be from the energy when power changes between samples (half
    the change times the step, summed), and the stamps' slack: meter_mismatch's bound."""
    doubt = 0.5 * np.abs(np.diff(power_w)) * np.diff(t_s) / 3600.0
    return float(np.sum(doubt)) + stamp_slack_wh(t_s, power_w)


# --- configuration, determinism, summary ---------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stations": 0}, "stations"),
        ({"hours": 0.0}, "hours"),
        ({"hours": -3.0}, "hours"),
        ({"anomaly_rate": 1.5}, "anomaly_rate"),
        ({"anomaly_rate": -0.1}, "anomaly_rate"),
        ({"start": datetime(2026, 11, 23)}, "time zone"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_sentence(
    overrides: dict[str, Any],
    message: str,
) -> None:
    settings: dict[str, Any] = {"stations": 2, "hours": 1.0, "seed": 0, "start": START}
    settings.update(overrides)
    with pytest.raises(ValueError, match=message):
        SimulationConfig(**settings)


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    _, events_a, labels_a = run(tmp_path / "a", seed=42)
    _, events_b, labels_b = run(tmp_path / "b", seed=42)
    _, events_c, _ = run(tmp_path / "c", seed=43)
    assert events_a.read_bytes() == events_b.read_bytes()
    assert labels_a.read_bytes() == labels_b.read_bytes()
    assert events_a.read_bytes() != events_c.read_bytes()


def test_progress_is_reported_per_station(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    simulate(
        SimulationConfig(stations=5, hours=2.0, seed=3, start=START),
        tmp_path / "e.jsonl",
        tmp_path / "l.jsonl",
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(k, 5) for k in range(1, 6)]
    assert not any(tmp_path.glob(".simulate-*")), "the spool directory must be cleaned up"


def test_summary_counts_what_the_files_hold(fleet: Fleet) -> None:
    summary = fleet.summary
    by_type = Counter(e["type"] for e in fleet.events)
    assert summary.events == len(fleet.events)
    assert summary.events_by_type == {t: by_type[t] for t in REQUIRED}
    assert (
        summary.sessions
        == by_type["session_start"]
        == sum(1 for s in fleet.sessions.values() if s.start)
    )
    assert summary.labels_by_kind == {k: len(fleet.labeled(k)) for k in KINDS}


def test_close_at_end_stops_every_session_before_the_end(tmp_path: Path) -> None:
    def open_sessions(events_path: Path) -> tuple[set[str], int]:
        started: set[str] = set()
        stopped: set[str] = set()
        last_ms = 0
        for line in events_path.read_bytes().splitlines():
            event = orjson.loads(line)
            if event["type"] == "session_start":
                started.add(event["session_id"])
            elif event["type"] == "session_stop":
                stopped.add(event["session_id"])
            stamp = datetime.fromisoformat(event["ts"]).timestamp() * 1000
            last_ms = max(last_ms, int(stamp))
        return started - stopped, last_ms

    # late evening: at the end of a 20 h run many cars are still charging (no anomalies: a
    # clock fault would stamp lines years ahead)
    plain = {"hours": 20.0, "stations": 12, "seed": 5, "anomaly_rate": 0.0}
    _, cut_events, _ = run(tmp_path / "cut", **plain)
    _, closed_events, _ = run(tmp_path / "closed", close_at_end=True, **plain)
    still_open, _ = open_sessions(cut_events)
    assert still_open, "the plain run must leave sessions open at its end (else this shows nothing)"
    none_open, last_ms = open_sessions(closed_events)
    end_ms = START.timestamp() * 1000 + 20 * 3_600_000
    assert none_open == set()
    assert last_ms < end_ms


def test_no_anomaly_rate_writes_no_labels(tmp_path: Path) -> None:
    summary, _, labels_path = run(tmp_path, anomaly_rate=0.0)
    assert labels_path.read_bytes() == b""
    assert sum(summary.labels_by_kind.values()) == 0
    assert summary.sessions > 0


# --- the contract ----------------------------------------------------------------------------


def test_every_event_line_follows_the_contract(fleet: Fleet) -> None:
    for line_no, event in enumerate(fleet.events, start=1):
        kind = event["type"]
        assert kind in REQUIRED, line_no
        assert TS_FORMAT.match(event["ts"]), (line_no, event["ts"])
        datetime.fromisoformat(event["ts"])
        for key, expected in REQUIRED[kind].items():
            assert isinstance(event[key], expected), (line_no, key)
        for key, value in event.items():
            assert value is not None, (line_no, key)
            assert not isinstance(value, bool), (line_no, key)
            expected_optional = OPTIONAL[kind].get(key)
            if expected_optional is not None:
                assert isinstance(value, expected_optional), (line_no, key)
        if "connector_id" in event:
            assert event["connector_id"] >= 0
        assert 0 <= event.get("soc_pct", 0) <= 100, line_no
        assert event.get("voltage_v", 0) >= 0, line_no
        if kind == "status":
            assert event["status"] in STATUSES
            assert event.get("error_code", "NoError") in ERROR_CODES
        if kind == "authorize":
            assert event["result"] in AUTH_RESULTS
        assert 0 < len(event["station_id"]) <= 32 and event["station_id"].isprintable()


def test_labels_follow_the_contract(fleet: Fleet) -> None:
    assert fleet.labels
    for label in fleet.labels:
        assert set(label) == {"session_id", "station_id", "connector_id", "kind", "start", "end"}
        assert label["kind"] in KINDS
        assert TS_FORMAT.match(label["start"]) and TS_FORMAT.match(label["end"])
        assert ms(label["start"]) <= ms(label["end"])
        if label["session_id"] is None:
            assert label["kind"] == "unauthorized_energy"
        else:
            session = fleet.sessions[label["session_id"]]
            assert session.start is not None
            assert session.start["station_id"] == label["station_id"]
            assert session.start["connector_id"] == label["connector_id"]
    per_session = Counter((x["session_id"], x["kind"]) for x in fleet.labels if x["session_id"])
    assert max(per_session.values()) == 1, "one line per (session, kind)"
    kinds_of = defaultdict(set)
    for x in fleet.labels:
        if x["session_id"]:
            kinds_of[x["session_id"]].add(x["kind"])
    # one injected anomaly per session; a leap of one reading falls back at the next (and one
    # low reading climbs back: a jump and a fall), and what the register counted beyond 15 %
    # of the session's energy is billed, so its session is a meter_mismatch as well
    register = {"meter_jump", "meter_backwards", "meter_mismatch"}
    assert all(len(k) == 1 or k <= register for k in kinds_of.values()), kinds_of


def test_file_is_ordered_by_time_then_station_except_faulty_clocks(fleet: Fleet) -> None:
    faulty = {x["session_id"] for x in fleet.labeled("clock_fault")}
    keys = [
        (ms(e["ts"]), e["station_id"]) for e in fleet.events if e.get("session_id") not in faulty
    ]
    assert keys == sorted(keys)


# --- physics of normal sessions --------------------------------------------------------------


def test_unlabeled_sessions_meter_agrees_with_the_power_integral(fleet: Fleet) -> None:
    checked = 0
    for session in fleet.unlabeled_sessions():
        t, p, e = session.series()
        assert np.all(np.diff(e) >= 0), session.session_id
        assert np.all(np.diff(t) > 0), session.session_id
        assert session.start is not None
        assert e[0] == session.start["meter_start_wh"]
        if session.stop is not None:
            assert e[-1] == session.stop["meter_stop_wh"]
        delta_wh = e[-1] - e[0]
        if delta_wh > 500:
            checked += 1
            slack_wh = 0.03 * delta_wh + stamp_slack_wh(t, p)
            assert abs(trapezoid_wh(t, p) - delta_wh) <= slack_wh, session.session_id
    assert checked > 100


def test_register_of_a_connector_carries_over_between_normal_sessions(fleet: Fleet) -> None:
    touched = {
        (x["station_id"], x["connector_id"])
        for x in fleet.labels
        if x["kind"].startswith("meter_") or x["session_id"] is None
    }
    last: dict[tuple[str, int], int] = {}
    for event in fleet.events:
        key = (event["station_id"], event.get("connector_id", -1))
        value = event.get("energy_wh", event.get("meter_start_wh", event.get("meter_stop_wh")))
        if value is None or key in touched:
            continue
        assert value >= last.get(key, 0), (key, event)
        last[key] = value


# --- each anomaly shows where its label says ---------------------------------------------------


def _check_stall(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    a, b = ms(label["start"]), ms(label["end"])
    assert b - a >= 10 * 60_000
    inside = s.within(a + 90_000, b)
    assert len(inside) >= 3
    assert max(r["power_w"] for r in inside) < 50.0
    registers = [r["energy_wh"] for r in inside if "energy_wh" in r]  # some send it at the ends
    assert not registers or max(registers) - min(registers) <= 10
    assert all(r.get("soc_pct", 0) < 97 for r in inside)
    around = s.within(a - 10 * 60_000, b)
    assert len({r["power_offered_w"] for r in around}) == 1, "the offer is unchanged"
    resumes = any(r["power_w"] > 1000 for r in s.within(b, b + 30 * 60_000))
    # or the driver gives up: the session stops where the label ends (a stamp may be coarse)
    gives_up = s.stop is not None and abs(s.stop_ms - b) <= 60_000
    assert resumes or gives_up, "charging resumes, or the session stops at the stall's end"


def _check_early_taper(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    a, b = ms(label["start"]), ms(label["end"])
    before = [r["power_w"] for r in s.within(a - 10 * 60_000, a - 1) if r["power_w"] > 1000.0]
    if not before:  # a cold pack from the start of charging: it climbs back once warm
        early = [r["power_w"] for r in s.within(a, a + 3 * 60_000) if r["power_w"] > 1000.0]
        after = [r["power_w"] for r in s.within(b + 1, b + 10 * 60_000)]
        assert early and after
        assert np.median(early) < 0.7 * np.median(after)
        assert len({r["power_offered_w"] for r in s.within(a, b + 10 * 60_000)}) == 1
        return
    during = [r["power_w"] for r in s.within(a + 5 * 60_000, b)]
    assert before and during
    assert np.median(during) < 0.7 * np.median(before)
    assert min(during) > 1000.0, "derated, not stalled"
    assert len({r["power_offered_w"] for r in s.within(a - 10 * 60_000, b)}) == 1


def _check_meter_stuck(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    inside = s.within(ms(label["start"]), ms(label["end"]))
    assert len(inside) >= 5
    assert len({r["energy_wh"] for r in inside}) == 1
    assert min(r["power_w"] for r in inside) > 500.0


def _steps(s: Session, label: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p, e = s.series()
    a, b = ms(label["start"]) / 1000, ms(label["end"]) / 1000
    pair = (t[:-1] >= a) & (t[1:] <= b)
    return np.diff(e)[pair], np.diff(t)[pair], p[:-1][pair]


def _check_meter_backwards(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    rises, _, _ = _steps(s, label)
    assert rises.size and rises.min() < 0


def _check_meter_jump(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    rises, dt_s, _ = _steps(s, label)
    capacity_w = max(r["power_offered_w"] for r in s.readings)
    assert rises.size and np.any(rises > 2.0 * capacity_w * dt_s / 3600.0 + 100.0)


def _check_meter_mismatch(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    # the register read as a counter: its rises against the power over the same steps (a step
    # in which it falls is a reset, left out)
    t, p, e = s.series()
    rises, slices = np.diff(e), 0.5 * (p[1:] + p[:-1]) * np.diff(t) / 3600.0
    rising = rises >= 0
    assert abs(rises[rising].sum() / slices[rising].sum() - 1.0) > 0.15


def _check_data_gap(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    t, _, _ = s.series()
    gaps = np.diff(t)
    interval_s = float(np.median(gaps))
    a, b = ms(label["start"]) / 1000, ms(label["end"]) / 1000
    big = (gaps > max(300.0, 5 * interval_s)) & (t[:-1] >= a) & (t[1:] <= b)
    assert big.any()


def _check_clock_fault(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    t = [ms(r["ts"]) for r in s.readings]
    odd = [
        x
        for i, x in enumerate(t)
        if x < s.start_ms or x > s.stop_ms + 86_400_000 or (i and x < t[i - 1])
    ]
    assert odd


def _check_unauthorized_energy(fleet: Fleet, label: dict[str, Any], s: Session | None) -> None:
    a, b = ms(label["start"]), ms(label["end"])
    if s is None:  # energy on a connector with no session open
        rows = [
            e
            for e in fleet.events
            if e["type"] == "reading"
            and "session_id" not in e
            and e["station_id"] == label["station_id"]
            and e["connector_id"] == label["connector_id"]
            and a <= ms(e["ts"]) <= b
        ]
        assert len(rows) >= 3
        assert all(r["power_w"] > 0 for r in rows)
        if "energy_wh" in rows[0]:  # a station that reports it outside transactions
            assert rows[-1]["energy_wh"] - rows[0]["energy_wh"] > 100
        return
    assert s.start is not None
    asked = [
        e
        for e in fleet.events
        if e["type"] == "authorize"
        and e["station_id"] == s.start["station_id"]
        and e["id_tag"] == s.start["id_tag"]
        and 0 <= s.start_ms - ms(e["ts"]) < 60_000
    ]
    assert asked and asked[-1]["result"] != "Accepted"
    t, p, e = s.series()
    # the register, or the power where the register is reported only at a stop not yet sent
    assert max(e[-1] - e[0], trapezoid_wh(t, p)) > 100


def _check_concurrent_id_tag(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    assert s.start is not None
    others = [
        fleet.sessions[x["session_id"]]
        for x in fleet.labeled("concurrent_id_tag")
        if x["session_id"] != s.session_id
    ]
    twins = [
        o
        for o in others
        if o.start
        and o.start["id_tag"] == s.start["id_tag"]
        and o.start["station_id"] != s.start["station_id"]
        and o.start_ms < s.stop_ms
        and s.start_ms < o.stop_ms
    ]
    assert twins  # one partner, or two of a fleet card's group


def _check_soc_inconsistent(fleet: Fleet, label: dict[str, Any], s: Session) -> None:
    """The SoC dips or leaps between two readings, holds one value while tens of kWh flow, or
    the battery reads out of -20..60 degC at several readings."""
    inside = s.within(ms(label["start"]), ms(label["end"]))
    assert len(inside) >= 2
    soc = [r["soc_pct"] for r in inside if r.get("soc_pct") is not None]
    hot_or_cold = [r for r in inside if not -20 <= r.get("temperature_c", 20) <= 60]
    steps = np.diff(soc)
    t = np.array([ms(r["ts"]) for r in inside]) / 1000.0
    flowed_wh = trapezoid_wh(t, np.array([r["power_w"] for r in inside], dtype=float))
    frozen = len(soc) == len(inside) and len(set(soc)) == 1 and flowed_wh >= 14_000
    dipped_or_leapt = bool(steps.size) and (steps.min() <= -4 or steps.max() >= 9)
    assert dipped_or_leapt or frozen or len(hot_or_cold) >= 3, (label, soc)


def test_normal_cars_report_soc_in_their_own_habits(fleet: Fleet) -> None:
    """What soc_inconsistent must not flag is in every fleet: SoC in coarse steps, a car that
    stops reporting part-way, SoC only in the first and the last reading."""
    habits: Counter[str] = Counter()
    for s in fleet.unlabeled_sessions():
        has = [r.get("soc_pct") is not None for r in s.readings]
        values = [r["soc_pct"] for r in s.readings if r.get("soc_pct") is not None]
        if len(s.readings) < 4 or len(values) < 2:
            continue
        if all(has) and len(set(values)) > 1 and all(v % 5 == 0 for v in values):
            habits["coarse"] += 1
        elif has[0] and has[-1] and sum(has) == 2:
            habits["ends"] += 1
        elif has[0] and not has[-1] and all(has[: sum(has)]):
            habits["stops"] += 1
    assert min(habits["coarse"], habits["ends"], habits["stops"]) >= 1, habits


CHECKS: dict[str, Callable[[Fleet, dict[str, Any], Any], None]] = {
    "stall": _check_stall,
    "early_taper": _check_early_taper,
    "meter_stuck": _check_meter_stuck,
    "meter_backwards": _check_meter_backwards,
    "meter_jump": _check_meter_jump,
    "meter_mismatch": _check_meter_mismatch,
    "data_gap": _check_data_gap,
    "clock_fault": _check_clock_fault,
    "unauthorized_energy": _check_unauthorized_energy,
    "soc_inconsistent": _check_soc_inconsistent,
    "concurrent_id_tag": _check_concurrent_id_tag,
}


@pytest.mark.parametrize("kind", KINDS)
def test_each_anomaly_kind_shows_within_its_label(fleet: Fleet, kind: str) -> None:
    labels = fleet.labeled(kind)
    assert len(labels) >= 2, f"{kind} should appear at this anomaly rate"
    for label in labels:
        session = fleet.sessions.get(label["session_id"]) if label["session_id"] else None
        CHECKS[kind](fleet, label, session)


def test_kinds_are_chosen_about_evenly(fleet: Fleet) -> None:
    kinds_of = defaultdict(set)
    for x in fleet.labels:
        kinds_of[x["session_id"] or id(x)].add(x["kind"])
    counts: dict[str, float] = defaultdict(float)
    for kinds in kinds_of.values():
        # the fault injected, not what it shows as besides (a register fault's mismatch; a
        # reading that leaps and falls back, or falls and climbs back: either was injected)
        shown = kinds - {"meter_mismatch"} if len(kinds) > 1 else kinds
        for kind in shown:
            counts[kind] += 1 / len(shown)
    counts["concurrent_id_tag"] /= 2  # one pair, two lines
    assert min(counts.values()) >= 0.5 * max(counts.values()), counts


@pytest.mark.parametrize(
    "kind",
    [
        "stall",
        "early_taper",
        "data_gap",
        "unauthorized_energy",
        "concurrent_id_tag",
        "meter_stuck",
        "meter_backwards",
        "meter_jump",
        "soc_inconsistent",
    ],
)
def test_anomalous_sessions_carry_no_second_kind_by_accident(fleet: Fleet, kind: str) -> None:
    """Outside its own fault, the session's meter and power agree (no mismatch by accident)."""
    for label in fleet.labeled(kind):
        if label["session_id"] is None:
            continue
        s = fleet.sessions[label["session_id"]]
        t, p, e = s.series()
        rises, slices = np.diff(e), 0.5 * (p[1:] + p[:-1]) * np.diff(t) / 3600.0
        if kind in ("meter_backwards", "meter_jump"):  # leave out the faulty steps themselves
            keep = np.ones(rises.size, dtype=bool)
            for x in fleet.labels:  # a leap that falls back is a jump and a fall: two labels
                if x["session_id"] == s.session_id and x["kind"] in (
                    "meter_backwards",
                    "meter_jump",
                ):
                    a, b = ms(x["start"]) / 1000, ms(x["end"]) / 1000
                    keep &= ~((t[:-1] >= a) & (t[1:] <= b))
            rises, slices = rises[keep], slices[keep]
        else:
            assert np.all(rises >= 0), label
        if rises.sum() > 500:
            tolerance = 0.12 if kind == "meter_stuck" else 0.03
            # a stall or a jump adds changes of power that the samples follow only so far
            slack_wh = tolerance * rises.sum() + integration_slack_wh(t, p)
            assert abs(slices.sum() - rises.sum()) <= slack_wh, label


# --- normal behaviour that must be there (and is not labeled) ----------------------------------


def test_cars_sit_suspended_after_full(fleet: Fleet) -> None:
    by_connector = defaultdict(list)
    for s in fleet.unlabeled_sessions():
        assert s.start is not None
        by_connector[(s.start["station_id"], s.start["connector_id"])].append(s)
    long_idle = 0
    for status in fleet.events:
        if status["type"] != "status" or status["status"] != "SuspendedEV":
            continue
        at_ms = ms(status["ts"])
        for s in by_connector[(status["station_id"], status["connector_id"])]:
            if not s.start_ms <= at_ms <= s.stop_ms:
                continue
            after = s.within(at_ms + 60_000, s.stop_ms)
            if (
                after
                and all(r["power_w"] == 0 for r in after)
                and (ms(after[-1]["ts"]) - at_ms > 30 * 60_000)
            ):
                long_idle += 1
    assert long_idle >= 3


def test_power_follows_a_lowered_offer_without_a_label(fleet: Fleet) -> None:
    followed = 0
    for s in fleet.unlabeled_sessions():
        offered = np.array([r["power_offered_w"] for r in s.readings], dtype=float)
        if offered.min() >= offered.max():
            continue
        t, p, _ = s.series()
        low = offered < offered.max()
        if p[~low].max() > offered[low].min() * 1.1:  # the limit actually bites
            # the charger reports the new offer at once; the car follows within seconds
            changed_s = t[np.flatnonzero(np.diff(offered)) + 1]
            settled = low & (t - changed_s[np.searchsorted(changed_s, t, "right") - 1] > 30)
            assert np.all(p[settled] <= offered[settled] * 1.03 + 50.0), s.session_id
            followed += 1
    assert followed >= 3


def test_single_samples_go_missing_in_normal_sessions(fleet: Fleet) -> None:
    missing = 0
    for s in fleet.unlabeled_sessions():
        t, _, _ = s.series()
        gaps = np.diff(t)
        interval_s = float(np.median(gaps))
        missing += int(np.sum((gaps > 1.7 * interval_s) & (gaps < 2.3 * interval_s)))
    assert missing >= 5


def test_connectors_fault_and_recover(fleet: Fleet) -> None:
    faults = [e for e in fleet.events if e["type"] == "status" and e["status"] == "Faulted"]
    assert faults
    for fault in faults:
        assert fault["error_code"] not in ("NoError", None)
        later = [
            e
            for e in fleet.events
            if e["type"] == "status"
            and e["station_id"] == fault["station_id"]
            and e["connector_id"] == fault["connector_id"]
            and e["ts"] > fault["ts"]
        ]
        if later:
            assert later[0]["status"] == "Available"


def test_rejected_cards_start_no_session_unless_labeled(fleet: Fleet) -> None:
    rejected = [e for e in fleet.events if e["type"] == "authorize" and e["result"] != "Accepted"]
    unauthorized = {x["session_id"] for x in fleet.labeled("unauthorized_energy")}
    assert len(rejected) > len(unauthorized)
    starts = [e for e in fleet.events if e["type"] == "session_start"]
    for auth in rejected:
        followed = [
            s
            for s in starts
            if s["station_id"] == auth["station_id"]
            and s["id_tag"] == auth["id_tag"]
            and 0 <= ms(s["ts"]) - ms(auth["ts"]) < 60_000
        ]
        assert all(s["session_id"] in unauthorized for s in followed)


def test_idle_connectors_report_their_register(fleet: Fleet) -> None:
    idle = [
        e
        for e in fleet.events
        if e["type"] == "reading" and "session_id" not in e and e["power_w"] == 0
    ]
    assert len(idle) > 50


def test_users_come_back_at_other_stations(fleet: Fleet) -> None:
    stations_of = defaultdict(set)
    for s in fleet.sessions.values():
        if s.start:
            stations_of[s.start["id_tag"]].add(s.start["station_id"])
    assert sum(1 for v in stations_of.values() if len(v) >= 2) >= 5


def test_current_only_stations_agree_with_their_register(tmp_path: Path) -> None:
    """Some AC stations send current and voltage but no power (a station's measurands are its
    configuration); they send the register with every sample, and over a session the current
    times the voltage times the car's phases agrees with it."""
    _, events_path, _ = run(tmp_path, stations=120, hours=8.0, seed=3, anomaly_rate=0.0)
    events = [orjson.loads(line) for line in events_path.read_bytes().splitlines()]
    readings = [e for e in events if e["type"] == "reading"]
    current_only = {r["station_id"] for r in readings if "power_w" not in r}
    assert current_only, "a fleet of 120 stations holds some that send current, not power"
    by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in readings:
        if r["station_id"] in current_only:
            assert "power_w" not in r and "current_a" in r, r  # the station's habit holds
            assert float(r.get("voltage_v", 0.0)) < 300.0, r  # AC: a phase's voltage
            if r.get("session_id"):
                assert "energy_wh" in r, r
                by_session[r["session_id"]].append(r)
    checked = 0
    for rows in by_session.values():
        t = np.array([ms(r["ts"]) for r in rows]) / 1000.0
        va = np.array([r["current_a"] * r["voltage_v"] for r in rows], dtype=float)
        one_wh = trapezoid_wh(t, va)
        rise = float(rows[-1]["energy_wh"]) - float(rows[0]["energy_wh"])
        if rise < 1000.0:
            continue
        n = phases_of(rows)
        slack_wh = 0.02 * rise + n * integration_slack_wh(t, va) + 2.0
        assert abs(n * one_wh - rise) <= slack_wh, (rows[0]["session_id"], n, one_wh, rise)
        checked += 1
    assert checked >= 3
