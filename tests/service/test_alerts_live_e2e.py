"""Pages driven live over OCPP into the real `chargewatch serve`, through a real Alertmanager
running the generated config, to a real webhook receiver (issue 14).

- A station that closes its WebSocket pages as StationOffline once it has been silent for
  ``CHARGEWATCH_STATION_OFFLINE_HEARTBEATS`` of the heartbeat interval its BootNotification was
  answered with; the Faulted connector it reported before is then suppressed by inhibition at
  Alertmanager (API v2), and the receiver gets nothing new for it.
- A stall in a live session: a session started 40 min ago by the charger's clock, its readings
  one a minute (charging, then 14 min with nothing flowing while the connector says Charging
  and the car is at a third of its charge), sent in seconds. It pages once; power flows again,
  it resolves once (the stall detector flags a stall still going on in an open session when
  the car is shown not full; the alert is live while the flag reaches the session's latest
  judged reading).

The figures (time to page, to resolve): pytest --log-cli-level=INFO.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from websockets.sync.client import connect as connect_sync
from websockets.typing import Subprotocol

from alerts.client import AlertmanagerClient
from alerts.server import LocalAlertmanager
from chargewatch.influx import LocalInfluxd

from ..alerts.receiver import Notification, Receiver, firing, resolved
from .test_alerts_e2e import (
    GROUP_WAIT_S,
    INTERVAL_S,
    PAGE_WITHIN_S,
    Station16,
    database,
    paged_alertmanager,
    receiver,
)
from .test_ocpp_abuse import LoggedServe

__all__ = ["database", "paged_alertmanager", "receiver"]  # fixtures, used by name

logger = logging.getLogger(__name__)

# The heartbeat interval BootNotification answers with, and the offline rule's multiple of it.
# Liveness is sampled once a second, so a station heard at its interval is never seen as silent:
# 3 x 2 s > 2 s + 1 s (ingest/ocppj/liveness.py).
HEARTBEAT_S = 2
OFFLINE_AFTER = 3
SAMPLE_S = 1
OFFLINE_WITHIN_S = OFFLINE_AFTER * HEARTBEAT_S + PAGE_WITHIN_S
QUIET_CYCLES = 3


def group(notifications: list[Notification], alertname: str, station: str) -> list[Notification]:
    """The notifications of one group (the generated config groups by station and alertname)."""
    wanted = {"alertname": alertname, "station_id": station}
    return [n for n in notifications if n["groupLabels"] == wanted]


def serve_process(tmp_path: Path, influxd: LocalInfluxd, database: str, am: str) -> LoggedServe:
    return LoggedServe(
        tmp_path / "serve",
        influxd.url,
        database,
        CHARGEWATCH_DETECT_INTERVAL_S=f"{INTERVAL_S:g}",
        CHARGEWATCH_ALERTMANAGER_URLS=am,
        CHARGEWATCH_OCPP_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S),
        CHARGEWATCH_OCPP_LIVENESS_SAMPLE_S=str(SAMPLE_S),
        CHARGEWATCH_STATION_OFFLINE_HEARTBEATS=str(OFFLINE_AFTER),
    )


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveStation(Station16):
    """``Station16`` with transactions, meter values and a heartbeat kept while waiting."""

    def heartbeat(self) -> None:
        self.call("Heartbeat", {})

    def waiting(
        self,
        receiver: Receiver,
        until: Callable[[list[Notification]], bool],
        *,
        timeout_s: float,
    ) -> list[Notification]:
        """``Receiver.wait`` while heartbeating at the interval the station was given (a
        station that waits in silence would rightly be offline)."""
        deadline = time.monotonic() + timeout_s
        beat = 0.0
        while True:
            got = receiver.notifications("/page")
            if until(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"no such notifications in {timeout_s} s: {got}")
            if time.monotonic() - beat >= HEARTBEAT_S / 2:
                self.heartbeat()
                beat = time.monotonic()
            time.sleep(0.05)

    def idle(self, seconds: float) -> None:
        """Wait ``seconds``, heartbeating at the interval the station was given."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.heartbeat()
            time.sleep(min(left, HEARTBEAT_S / 2))

    def status_at(self, moment: datetime, status: str) -> None:
        payload = {"connectorId": 1, "errorCode": "NoError", "status": status}
        self.call("StatusNotification", payload | {"timestamp": stamp(moment)})

    def start_transaction(self, moment: datetime, id_tag: str) -> int:
        answer = self.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": id_tag, "meterStart": 0, "timestamp": stamp(moment)},
        )
        return int(answer["transactionId"])

    def meter_value(self, tx: int, moment: datetime, power_w: float, wh: float, soc: float) -> None:
        sampled: list[dict[str, Any]] = [
            {"measurand": "Power.Active.Import", "value": f"{power_w:.0f}", "unit": "W"},
            {"measurand": "Energy.Active.Import.Register", "value": f"{wh:.0f}", "unit": "Wh"},
            {"measurand": "Power.Offered", "value": "11000", "unit": "W"},
            {"measurand": "SoC", "value": f"{soc:.0f}", "unit": "Percent", "location": "EV"},
        ]
        self.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": stamp(moment), "sampledValue": sampled}],
            },
        )


@contextlib.contextmanager
def live_station(url: str) -> Iterator[LiveStation]:
    with connect_sync(url, subprotocols=[Subprotocol("ocpp1.6")], open_timeout=10) as ws:
        yield LiveStation(ws)


def test_a_disconnected_station_pages_offline_and_inhibits_its_connector_alerts(
    influxd: LocalInfluxd,
    database: str,
    tmp_path: Path,
    receiver: Receiver,
    paged_alertmanager: LocalAlertmanager,
) -> None:
    serve = serve_process(tmp_path, influxd, database, paged_alertmanager.url)
    station = f"CP-{uuid.uuid4().hex[:6]}"
    url = f"ws://127.0.0.1:{serve.port}/ocpp/{station}"
    serve.start()
    try:
        with live_station(url) as cp:
            answer = cp.call(
                "BootNotification", {"chargePointVendor": "Acme", "chargePointModel": "AC22"}
            )
            assert answer["status"] == "Accepted" and answer["interval"] == HEARTBEAT_S
            cp.status("Faulted", "GroundFailure")
            cp.waiting(
                receiver,
                lambda n: len(firing(group(n, "GroundFailure", station))) == 1,
                timeout_s=PAGE_WITHIN_S,
            )
        # the WebSocket is closed: the station goes silent
        closed_at = time.monotonic()
        got = receiver.wait(
            "/page",
            lambda n: len(firing(group(n, "StationOffline", station))) == 1,
            timeout_s=OFFLINE_WITHIN_S,
        )
        logger.info(
            "offline page %.2f s after the close (silence allowed %d s, bound %.0f s)",
            time.monotonic() - closed_at,
            OFFLINE_AFTER * HEARTBEAT_S,
            OFFLINE_WITHIN_S,
        )
        [page] = firing(group(got, "StationOffline", station))
        [offline] = page["alerts"]
        assert offline["labels"] == {
            "alertname": "StationOffline",
            "severity": "page",
            "owner": "charger",
            "station_id": station,
        }
        assert page["receiver"] == "charger-page"
        fault_notes = len(group(got, "GroundFailure", station))

        with AlertmanagerClient([paged_alertmanager.url]) as am:
            held = {
                a.labels["alertname"]: a for a in am.alerts(filters=[f'station_id="{station}"'])
            }
        assert set(held) == {"StationOffline", "GroundFailure"}
        assert held["StationOffline"].state == "active"
        fault = held["GroundFailure"]
        assert fault.state == "suppressed"
        assert fault.inhibited_by == (held["StationOffline"].am_fingerprint,)
        assert fault.silenced_by == ()

        time.sleep(QUIET_CYCLES * INTERVAL_S + 2 * GROUP_WAIT_S)
        after = receiver.notifications("/page")
        assert len(group(after, "GroundFailure", station)) == fault_notes, after
        assert len(group(after, "StationOffline", station)) == 1, after
    finally:
        serve.stop()


# Charging at 7 kW, the rate of an 11 kW AC wallbox's 32 A on a car that takes two phases; the
# stall is 14 min with nothing flowing, over the 10 min of CONTRACTS section 3; the car is at a
# third of its charge (nowhere near full, which would explain nothing flowing).
CHARGING_W = 7000.0
CHARGING_MIN, STALL_MIN, BACK_MIN = 10, 14, 10
SOC_START = 30.0
BATTERY_WH = 60_000.0


class Reading(NamedTuple):
    at: datetime
    power_w: float
    wh: float
    soc: float


def session_readings(began: datetime) -> tuple[list[Reading], list[Reading]]:
    """One reading a minute from ``began``: charging then the stall (the first list, ending in
    the stall), then power back (the second)."""
    readings: list[Reading] = []
    wh, soc = 0.0, SOC_START
    for m in range(CHARGING_MIN + STALL_MIN + BACK_MIN + 1):
        stalled = CHARGING_MIN <= m <= CHARGING_MIN + STALL_MIN
        power = 0.0 if stalled else CHARGING_W
        if m:
            wh += power / 60
            soc += 100 * power / 60 / BATTERY_WH
        readings.append(Reading(began + timedelta(minutes=m), power, wh, soc))
    cut = CHARGING_MIN + STALL_MIN + 1
    return readings[:cut], readings[cut:]


def test_a_stall_in_a_live_session_pages_once_and_resolves_once_power_flows_again(
    influxd: LocalInfluxd,
    database: str,
    tmp_path: Path,
    receiver: Receiver,
    paged_alertmanager: LocalAlertmanager,
) -> None:
    began = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40)
    stalled, back = session_readings(began)
    serve = serve_process(tmp_path, influxd, database, paged_alertmanager.url)
    station = f"CP-{uuid.uuid4().hex[:6]}"
    url = f"ws://127.0.0.1:{serve.port}/ocpp/{station}"

    def stalls(n: list[Notification]) -> list[Notification]:
        return group(n, "ChargingStall", station)

    serve.start()
    try:
        with live_station(url) as cp:
            cp.boot()
            tx = cp.start_transaction(began, "04E1A2B3C4D5")
            cp.status_at(began, "Charging")
            for r in stalled:
                cp.meter_value(tx, r.at, r.power_w, r.wh, r.soc)
            sent_at = time.monotonic()
            cp.waiting(receiver, lambda n: len(firing(stalls(n))) == 1, timeout_s=PAGE_WITHIN_S)
            logger.info("stall paged %.2f s after its readings", time.monotonic() - sent_at)
            [fired] = firing(stalls(receiver.notifications("/page")))[0]["alerts"]
            assert fired["labels"]["severity"] == "page"
            assert fired["labels"]["kind"] == "stall"
            assert fired["annotations"]["session_id"] == f"{station}-{tx}"

            for r in back:
                cp.meter_value(tx, r.at, r.power_w, r.wh, r.soc)
            back_at = time.monotonic()
            cp.waiting(receiver, lambda n: len(resolved(stalls(n))) == 1, timeout_s=PAGE_WITHIN_S)
            logger.info(
                "stall resolved %.2f s after power flowed again", time.monotonic() - back_at
            )
            [gone] = resolved(stalls(receiver.notifications("/page")))[0]["alerts"]
            assert gone["labels"] == fired["labels"] and gone["startsAt"] == fired["startsAt"]
            cp.idle(QUIET_CYCLES * INTERVAL_S)  # nothing more may arrive
        got = stalls(receiver.notifications("/page"))
        assert len(firing(got)) == 1 and len(resolved(got)) == 1, got
    finally:
        serve.stop()
