"""Stations, usage, per-user energy and network KPIs of a hand-made fleet whose figures are known
exactly: events with clear id tags go into a real InfluxDB, the scheduled detection job judges
them, and the real service answers over HTTP.

The fleet (UTC; 6 kW while charging, so 100 Wh a minute; a reading a minute). Stations A (two
connectors) and B (one); the week is Monday 2026-11-23 to Monday 2026-11-30.

    S0  A/1  CARD-3  Sun 22 20:00  30 min charging              (before the week)
    S1  A/1  CARD-1  Mon 08:00     30 charging, 30 idle (full)
    S2  A/2  CARD-2  Mon 08:30     60 charging
    S3  B/1  CARD-1  Mon 08:45     30 charging                  (CARD-1 at two stations at once)
    S4  A/1  CARD-2  Tue 10:00     20 charging, a HighTemperature warning during it
    S5  B/1  CARD-3  Wed 23:50     20 charging, 10 idle, Faulted (OverCurrentFailure) at 00:15
    S6  B/1  CARD-4  Fri 18:00      5 plugged in, no energy; station B Faulted (connector 0) 18:02
    S7  A/1  CARD-2  Sat 14:00     30 charging, the card Blocked just before
    S8  A/2  CARD-5  Sun 23:30     60 charging                  (stops after the week)

and A/2 Faulted (GroundFailure) Tue 12:00-12:10, outside any session.

No clear id tag may come out anywhere: not in an answer, nor a log line (every record of the
module, the service's at DEBUG), nor anything stored (InfluxDB's series and values, the state
database's file).

Exact to the millisecond: InfluxDB points keep the charger's time to the millisecond and carry
their identity in the digits below it (``chargewatch.schema``), so a session read back may start
and stop up to 1 ms after the times sent, and figures in seconds agree to a few ms.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from analytics.jobs import DetectionJob
from chargewatch.events import EventDecoder, parse_ts
from chargewatch.flags import query_flags
from chargewatch.influx import BatchWriter, LocalInfluxd
from chargewatch.kinds import AnomalyKind
from chargewatch.roles import Role
from chargewatch.settings import Settings
from ingest.files import ingest_stream
from ingest.pseudonym import Pseudonymizer
from service.serve import Service, build_app

from .server import served

KEY = "usage-test-pseudonym-key-0123456789"
SINCE, UNTIL = "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"
WEEK = {"since": SINCE, "until": UNTIL}
CARDS = [f"CARD-{n}" for n in range(1, 6)]
OUR_LOGGERS = ("alerts", "analytics", "api", "chargewatch", "ingest", "service")
_MONDAY = datetime(2026, 11, 23, tzinfo=UTC)


def at(day: int, hour: int, minute: int) -> datetime:
    """``day`` days after Monday 2026-11-23 (-1: the Sunday before)."""
    return _MONDAY + timedelta(days=day, hours=hour, minutes=minute)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Plan:
    session: str
    station: str
    connector: int
    card: str
    start: datetime
    charge_min: int
    idle_min: int = 0


PLANS = [
    Plan("S0", "A", 1, "CARD-3", at(-1, 20, 0), 30),
    Plan("S1", "A", 1, "CARD-1", at(0, 8, 0), 30, 30),
    Plan("S2", "A", 2, "CARD-2", at(0, 8, 30), 60),
    Plan("S3", "B", 1, "CARD-1", at(0, 8, 45), 30),
    Plan("S4", "A", 1, "CARD-2", at(1, 10, 0), 20),
    Plan("S5", "B", 1, "CARD-3", at(2, 23, 50), 20, 10),
    Plan("S6", "B", 1, "CARD-4", at(4, 18, 0), 0, 5),
    Plan("S7", "A", 1, "CARD-2", at(5, 14, 0), 30),
    Plan("S8", "A", 2, "CARD-5", at(6, 23, 30), 60),
]


def status(
    moment: datetime, station: str, connector: int, value: str, **extra: str
) -> dict[str, Any]:
    return {
        "type": "status",
        "ts": ts(moment),
        "station_id": station,
        "connector_id": connector,
        "status": value,
        **extra,
    }


def session_events(p: Plan) -> list[dict[str, Any]]:
    where = {"station_id": p.station, "connector_id": p.connector}
    stop = p.start + timedelta(minutes=p.charge_min + p.idle_min)
    events: list[dict[str, Any]] = [
        {
            "type": "session_start",
            "ts": ts(p.start),
            **where,
            "session_id": p.session,
            "id_tag": p.card,
        },
        status(p.start, p.station, p.connector, "Charging" if p.charge_min else "SuspendedEV"),
        {
            "type": "session_stop",
            "ts": ts(stop),
            **where,
            "session_id": p.session,
            "reason": "EVDisconnected",
        },
        status(stop, p.station, p.connector, "Available"),
    ]
    if p.charge_min and p.idle_min:
        full = p.start + timedelta(minutes=p.charge_min)
        events.append(status(full, p.station, p.connector, "SuspendedEV"))
    for k in range(p.charge_min + p.idle_min + 1):
        events.append(
            {
                "type": "reading",
                "ts": ts(p.start + timedelta(minutes=k)),
                **where,
                "session_id": p.session,
                "power_w": 6000 if k < p.charge_min else 0,
                "energy_wh": 50_000 + 100 * min(k, p.charge_min),
            }
        )
    return events


def fleet_events() -> list[dict[str, Any]]:
    events = [status(at(-1, 0, 0), s, c, "Available") for s, c in (("A", 1), ("A", 2), ("B", 1))]
    for plan in PLANS:
        events += session_events(plan)
    events += [
        status(at(1, 10, 5), "A", 1, "Charging", error_code="HighTemperature"),
        status(at(1, 12, 0), "A", 2, "Faulted", error_code="GroundFailure"),
        status(at(1, 12, 10), "A", 2, "Available"),
        status(at(3, 0, 15), "B", 1, "Faulted", error_code="OverCurrentFailure"),
        status(at(4, 18, 2), "B", 0, "Faulted", error_code="PowerMeterFailure"),
        {
            "type": "authorize",
            "ts": ts(at(5, 13, 59)),
            "station_id": "A",
            "id_tag": "CARD-2",
            "result": "Blocked",
        },
    ]
    return events


@dataclass
class Fleet:
    service: Service
    client: httpx.Client
    keys: dict[Role, str]
    bodies: list[bytes]  # every answer's body, checked for clear id tags at the end
    judged_at_ns: int

    def get(self, path: str, **params: Any) -> httpx.Response:
        """A viewer's GET."""
        headers = {"Authorization": f"Bearer {self.keys[Role.VIEWER]}"}
        response = self.client.get(path, params=params, headers=headers)
        self.bodies.append(response.content)
        return response


def pseudonym(card: str) -> str:
    return Pseudonymizer(KEY.encode())(card)


class Kept(logging.Handler):
    """Every log record, formatted, with its arguments; except this test's own HTTP client's
    (its requests to ``/api/v1/``: one sends a clear card on purpose, to be refused)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{self.format(record)} {record.args!r}"
        if not (record.name.startswith("httpx") and "/api/v1/" in line):
            self.lines.append(line)


@contextmanager
def logs_kept() -> Iterator[Kept]:
    """Every record logged meanwhile: the root at INFO, chargewatch's own packages at DEBUG."""
    kept = Kept()
    root = logging.getLogger()
    ours = [logging.getLogger(name) for name in OUR_LOGGERS]
    levels = [root.level, *(logger.level for logger in ours)]
    root.addHandler(kept)
    root.setLevel(logging.INFO)
    for logger in ours:
        logger.setLevel(logging.DEBUG)
    try:
        yield kept
    finally:
        root.removeHandler(kept)
        for logger, level in zip([root, *ours], levels, strict=True):
            logger.setLevel(level)


def stored_text(service: Service) -> str:
    """Everything InfluxDB holds of the fleet (tags, fields, series keys) and the state
    database's bytes, as one text."""
    texts: list[str] = []
    since, until = parse_ts("2026-11-01T00:00:00Z"), parse_ts("2026-12-31T00:00:00Z")
    window = f"time >= {since} AND time < {until}"
    everything = service.influx.query(f"SELECT * FROM /.*/ WHERE {window}")
    keys = service.influx.query("SHOW SERIES; SHOW TAG VALUES WITH KEY =~ /.*/")
    assert any(series.name == "usage" for series in everything)
    for series in everything + keys:
        texts += series.tags.values()
        for column in series.columns.values():
            if column.dtype == object:
                texts += [str(v) for v in column if v is not None]
    state = service.settings.state_db_file
    for path in state.parent.glob(state.name + "*"):  # the database, its WAL and journal
        texts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def fleet(influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with logs_kept() as kept:
        yield from _fleet(influxd, tmp_path_factory)
    assert kept.lines  # the records were kept (HTTP requests, the service's own)
    leaked = [line for line in kept.lines if any(card in line for card in CARDS)]
    assert not leaked, f"a clear id tag in a log line: {leaked[:3]}"


def _fleet(influxd: LocalInfluxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    folder: Path = tmp_path_factory.mktemp("usage-fleet")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd.url,
        influx_database=f"usage_{uuid.uuid4().hex[:10]}",
        data_dir=folder / "data",
        detect_interval_s=0,
        pseudonym_key=KEY,  # type: ignore[arg-type]
    )
    service = Service(settings)
    service.start()
    try:
        body = b"".join(orjson.dumps(e) + b"\n" for e in fleet_events())
        with BatchWriter(service.influx) as writer:
            ingest_stream(
                io.BytesIO(body),
                decoder=EventDecoder(service.pseudonymize),
                sink=writer,
                on_reject=lambda rejection: pytest.fail(f"rejected: {rejection}"),
            )
        # The scheduled job, run once at Monday 02:00: it judges the nine days before, window
        # by window, and notes when it first stored each flag.
        now = parse_ts("2026-11-30T02:00:00Z")
        job = DetectionJob(service.detect_client, service.state, first_lookback_s=9 * 86400)
        job.run(now)
        keys = {role: service.state.create_api_key(role) for role in Role}
        with served(build_app(service)) as url, httpx.Client(base_url=url, timeout=30) as client:
            fleet = Fleet(service, client, keys, [], now)
            yield fleet
            for answer in fleet.bodies:  # no clear id tag in any answer
                assert not any(card.encode() in answer for card in CARDS)
            stored = stored_text(service).upper()
            assert not [card for card in CARDS if card in stored], "a clear id tag stored"
    finally:
        service.stop()


# -- usage ----------------------------------------------------------------------------------

HOUR_S = 3600.0
MS_SHARE = 1e-6  # a few ms of a connector-hour
MS_MIN = 1e-4  # a few ms, in minutes
MS_WH = 0.01  # a few ms of 6 kW


def cell(day: int, hour: int) -> int:
    return day * 24 + hour


# occupied, charging, idle after full (minutes), energy (Wh) per hour of week, UTC
EXPECTED_CELLS = {
    cell(0, 8): (105, 75, 30, 7500),
    cell(0, 9): (45, 45, 0, 4500),
    cell(1, 10): (20, 20, 0, 2000),
    cell(2, 23): (10, 10, 0, 1000),
    cell(3, 0): (20, 10, 10, 1000),
    cell(4, 18): (5, 0, 0, 0),
    cell(5, 14): (30, 30, 0, 3000),
    cell(6, 23): (30, 30, 0, 3000),
}


def test_usage_of_the_network_comes_out_exactly(fleet: Fleet) -> None:
    answer = fleet.get("/api/v1/usage", **WEEK)
    assert answer.status_code == 200, answer.text
    usage = answer.json()
    assert (usage["since"], usage["until"], usage["tz"]) == (
        "2026-11-23T00:00:00.000Z",
        "2026-11-30T00:00:00.000Z",
        "UTC",
    )
    assert usage["stations"] is None
    assert usage["connectors"] == 3
    assert usage["sessions"] == 8
    rows = usage["hour_of_week"]
    assert len(rows) == 168
    assert [(r["weekday"], r["hour"]) for r in rows[:2]] == [(0, 0), (0, 1)]
    assert {r["exposure_h"] for r in rows} == {3.0}  # three connectors, each hour once
    for i, row in enumerate(rows):
        occupied, charging, idle, energy = EXPECTED_CELLS.get(i, (0, 0, 0, 0))
        assert row["occupancy"] == pytest.approx(occupied * 60 / (3 * HOUR_S), abs=MS_SHARE), i
        assert row["charging_share"] == pytest.approx(charging * 60 / (3 * HOUR_S), abs=MS_SHARE)
        assert row["idle_after_full_min"] == pytest.approx(idle, abs=MS_MIN)
        assert row["energy_wh"] == pytest.approx(energy, abs=MS_WH)
    assert usage["energy_wh"] == pytest.approx(22_000, abs=MS_WH)
    assert usage["idle_after_full_min"] == pytest.approx(40, abs=MS_MIN)
    assert usage["occupancy"] == pytest.approx(265 * 60 / (3 * 168 * HOUR_S), abs=MS_SHARE)
    assert usage["charging_share"] == pytest.approx(220 * 60 / (3 * 168 * HOUR_S), abs=MS_SHARE)
    assert usage["peak_concurrent_sessions"] == 3
    assert usage["peak_at"] == "2026-11-23T08:45:00.000Z"
    # CARD-1 and CARD-2 came twice or more, CARD-3 the Sunday before; CARD-4 and CARD-5 once
    assert (usage["users"], usage["returning_users"]) == (5, 3)
    assert usage["returning_share"] == pytest.approx(0.6)
    durations = {
        (b["lower"], b["upper"]): b["sessions"] for b in usage["duration_distribution"]["bins"]
    }
    assert usage["duration_distribution"]["unit"] == "min"
    assert {k: v for k, v in durations.items() if v} == {
        (0, 15): 1,
        (15, 30): 1,
        (30, 45): 3,
        (60, 90): 3,
    }
    assert durations[(1440, None)] == 0
    energies = {
        (b["lower"], b["upper"]): b["sessions"] for b in usage["energy_distribution"]["bins"]
    }
    assert {k: v for k, v in energies.items() if v} == {(0, 2): 1, (2, 5): 5, (5, 10): 2}
    hours = usage["energy_by_hour"]
    assert len(hours) == 168
    assert hours[8] == {
        "start": "2026-11-23T08:00:00Z",
        "energy_wh": pytest.approx(7500, abs=MS_WH),
    }


def test_usage_of_one_station_and_in_another_zone(fleet: Fleet) -> None:
    b = fleet.get("/api/v1/usage", station="B", **WEEK).json()
    assert (b["stations"], b["connectors"], b["sessions"]) == (["B"], 1, 3)
    assert b["energy_wh"] == pytest.approx(5000, abs=MS_WH)
    assert b["hour_of_week"][cell(0, 8)]["occupancy"] == pytest.approx(
        0.25, abs=MS_SHARE
    )  # 08:45-09:00
    assert b["peak_concurrent_sessions"] == 1

    # India (+05:30): Monday 08:00-09:00 UTC is 13:30-14:30 local, half in each hour
    india = fleet.get("/api/v1/usage", tz="Asia/Kolkata", **WEEK).json()
    assert india["tz"] == "Asia/Kolkata"
    rows = india["hour_of_week"]
    occupied_min = {
        i: r["occupancy"] * r["exposure_h"] * 60 for i, r in enumerate(rows) if r["occupancy"]
    }
    # 13:00 local holds 08:00-08:30 UTC: S1 30 min; 14:00 local holds 08:30-09:30: S1 30 +
    # S2 60 + S3 30; 15:00 local nothing (S2 ended 09:30 UTC = 15:00 local)
    assert occupied_min[cell(0, 13)] == pytest.approx(30, abs=MS_MIN)
    assert occupied_min[cell(0, 14)] == pytest.approx(120, abs=MS_MIN)
    # the week runs from Monday 05:30 to Monday 05:30 local: each hour still comes once
    assert {r["exposure_h"] for r in rows} == {3.0}
    # its local hours: the first and the last only half in the week
    hours = india["energy_by_hour"]
    assert len(hours) == 169
    assert (hours[0]["start"], hours[-1]["start"]) == (
        "2026-11-23T05:00:00+05:30",
        "2026-11-30T05:00:00+05:30",
    )
    assert sum(r["energy_wh"] for r in rows) == pytest.approx(22_000, abs=MS_WH)


def test_usage_as_heatmaps(fleet: Fleet) -> None:
    answer = fleet.get("/api/v1/usage.png", station=["A", "B"], **WEEK)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert answer.content[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (
        int.from_bytes(answer.content[16:20], "big"),
        int.from_bytes(answer.content[20:24], "big"),
    )
    assert (width, height) == (1000, 620)


@pytest.mark.parametrize(
    ("params", "says"),
    [
        (
            {"since": "2026-01-01T00:00:00Z", "until": "2026-06-01T00:00:00Z"},
            "until: the window is",
        ),
        ({"tz": "Mars/Olympus", **WEEK}, "tz: not an IANA time zone"),
        ({"tz": "../../etc/passwd", **WEEK}, "tz: not an IANA time zone"),
        ({"since": UNTIL, "until": SINCE}, "until: must be later than since"),
    ],
)
def test_usage_refuses_bad_windows_and_zones(
    fleet: Fleet, params: dict[str, str], says: str
) -> None:
    answer = fleet.get("/api/v1/usage", **params)
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(says)


# -- stations -------------------------------------------------------------------------------


def test_stations_now_and_over_the_week(fleet: Fleet) -> None:
    answer = fleet.get("/api/v1/stations", **WEEK)
    assert answer.status_code == 200, answer.text
    stations = {s["station_id"]: s for s in answer.json()["stations"]}
    assert sorted(stations) == ["A", "B"]
    a, b = stations["A"], stations["B"]
    assert [(c["connector_id"], c["status"], c["since"]) for c in a["connectors"]] == [
        (1, "Available", "2026-11-28T14:30:00.000Z"),
        (2, "Charging", "2026-11-29T23:30:00.000Z"),
    ]
    assert a["last_seen"].startswith("2026-11-29T23:59:00")  # S8's reading just before the end
    assert b["last_seen"].startswith("2026-11-27T18:05:00")
    assert a["sessions"] == {
        "sessions": 5,
        "open": 0,
        "finished": 5,
        "successful": 5,
        "success_rate": 1.0,
        "failed_no_energy": 0,
        "failed_faulted": 0,
        "failed_stall": 0,
        "failed_meter": 0,
        "energy_wh": pytest.approx(20_000),
    }
    assert (a["faults"], a["faults_by_error_code"], a["warnings_by_error_code"]) == (
        1,
        {"GroundFailure": 1},
        {"HighTemperature": 1},
    )
    assert b["sessions"]["successful"] == 1
    assert b["sessions"]["success_rate"] == pytest.approx(1 / 3)
    # S5 on its connector, S6 by the whole station (connector 0), which also delivered nothing
    assert (b["sessions"]["failed_faulted"], b["sessions"]["failed_no_energy"]) == (2, 1)
    assert b["faults_by_error_code"] == {"OverCurrentFailure": 1, "PowerMeterFailure": 1}
    assert [c["connector_id"] for c in b["connectors"]] == [1]  # connector 0 is no connector
    assert a["open_alerts"] == b["open_alerts"] == []


def test_one_station_and_an_unknown_one(fleet: Fleet) -> None:
    one = fleet.get("/api/v1/stations/B", **WEEK)
    assert one.status_code == 200
    assert one.json()["sessions"]["sessions"] == 3
    assert fleet.get("/api/v1/stations/NOPE", **WEEK).status_code == 404


# -- per-user energy ------------------------------------------------------------------------


def test_a_users_energy_with_the_sessions_that_need_review_apart(fleet: Fleet) -> None:
    card2 = pseudonym("CARD-2")
    answer = fleet.get(f"/api/v1/users/{card2}/energy", **WEEK)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["pseudonym"] == card2
    assert [(s["session_id"], s["energy_wh"], s["review"]) for s in body["sessions"]] == [
        ("S2", 6000.0, []),
        ("S4", 2000.0, []),
    ]
    assert body["energy_wh"] == 8000.0
    assert [(s["session_id"], s["review"]) for s in body["needs_review"]] == [
        ("S7", ["unauthorized_energy"])
    ]
    assert all(0 <= s["billing_confidence"] <= 1 for s in body["sessions"] + body["needs_review"])

    card1 = fleet.get(f"/api/v1/users/{pseudonym('CARD-1')}/energy", **WEEK).json()
    assert card1["sessions"] == []
    assert [(s["session_id"], s["review"]) for s in card1["needs_review"]] == [
        ("S1", ["concurrent_id_tag"]),
        ("S3", ["concurrent_id_tag"]),
    ]


@pytest.mark.parametrize("ask", [{"format": "csv"}, {"accept": "text/csv"}])
def test_a_users_energy_as_csv(fleet: Fleet, ask: dict[str, str]) -> None:
    card2 = pseudonym("CARD-2")
    headers = {"Authorization": f"Bearer {fleet.keys[Role.VIEWER]}"}
    params = dict(WEEK)
    if "accept" in ask:
        headers["Accept"] = ask["accept"]
    else:
        params["format"] = ask["format"]
    answer = fleet.client.get(f"/api/v1/users/{card2}/energy", params=params, headers=headers)
    fleet.bodies.append(answer.content)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [(r["session_id"], r["energy_wh"], r["review"]) for r in rows] == [
        ("S2", "6000.0", ""),
        ("S4", "2000.0", ""),
        ("S7", "3000.0", "unauthorized_energy"),
    ]
    assert {r["pseudonym"] for r in rows} == {card2}
    assert rows[0]["start"] == "2026-11-23T08:30:00.000Z"


def test_a_clear_card_number_is_refused_without_an_echo(fleet: Fleet) -> None:
    answer = fleet.get("/api/v1/users/CARD-2/energy", **WEEK)
    assert answer.status_code == 422
    assert "CARD-2" not in answer.text


# -- network KPIs ---------------------------------------------------------------------------


def test_network_kpis_of_the_week(fleet: Fleet) -> None:
    answer = fleet.get("/api/v1/kpis", **WEEK)
    assert answer.status_code == 200, answer.text
    kpis = answer.json()
    assert kpis["stations"] == 2
    sessions = kpis["sessions"]
    assert (sessions["sessions"], sessions["finished"], sessions["successful"]) == (8, 8, 6)
    assert sessions["success_rate"] == pytest.approx(0.75)
    assert sessions["energy_wh"] == pytest.approx(25_000)
    assert kpis["flagged_sessions"] == 3
    by_kind = {k["kind"]: k["sessions"] for k in kpis["flagged_by_kind"]}
    assert {k: n for k, n in by_kind.items() if n} == {
        "unauthorized_energy": 1,
        "concurrent_id_tag": 2,
    }
    assert list(by_kind) == [kind.value for kind in AnomalyKind]
    # every flag of the week was first stored by the job's one run, at its clock
    flags = query_flags(fleet.service.influx, parse_ts(SINCE), parse_ts(UNTIL))
    delays = [(fleet.judged_at_ns - f.start_ns) / 1e9 for f in flags]
    ttf = kpis["time_to_flag"]
    assert ttf["flags"] == len(flags) == 3
    assert ttf["mean_s"] == pytest.approx(sum(delays) / len(delays))
