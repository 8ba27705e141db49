"""Turn one station's plan into its events and labels, connector by connector, in time order.

Each connector carries its energy register from one session to the next, so a meter fault that
moves the register (a reset, a jump, a miscalibration) stays visible in what follows, as it
would on a real meter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from chargewatch.kinds import AnomalyKind

from .events import EventBuffer, encode_readings, format_ts_ms, format_ts_ms_array
from .fleet import StationSpec
from .inject import Readings, Window, counted_extra_wh, drop_single_samples
from .injectors import INJECTORS, Label, SessionCharge, SessionSpan
from .link import upload_late
from .physics import (
    ChargeSpec,
    ChargeTrace,
    LimitWindow,
    ac_capability_w,
    dc_capability_w,
    simulate_charge,
)
from .planning import (
    UNPLUG_MAX_S,
    FaultPlan,
    GhostPlan,
    RejectPlan,
    SessionPlan,
    StationPlan,
    capability_for,
)
from .readings import StationSensors, sample_times
from .vehicles import VEHICLES, FloatArray, Vehicle

_IDLE_EVERY_MS = 15 * 60_000
_DT_AC_S = 5.0
_DT_DC_S = 2.0
_RAMP_DOWN_DC_S = 6.0
_RAMP_DOWN_AC_S = 5.0
# close_at_end: the stop comes this long before the run's end, so that it and the last reading
# (at most one sampling interval earlier) are written
_CLOSE_MARGIN_MS = 60_000


@dataclass(slots=True)
class StationResult:
    labels: list[Label] = field(default_factory=list)
    # every session, for labels that need two of them (injectors' fleet_labels)
    spans: dict[str, SessionSpan] = field(default_factory=dict)
    sessions: int = 0


class StationRun:
    """Writes one station's events into a buffer."""

    def __init__(
        self,
        plan: StationPlan,
        rank: int,
        start_ms: int,
        end_ms: int,
        rng: np.random.Generator,
        buffer: EventBuffer,
        *,
        late_uploads: bool = False,
        close_at_end: bool = False,
    ) -> None:
        self.plan = plan
        self.station: StationSpec = plan.station
        self.rank = rank
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.rng = rng
        self.buffer = buffer
        self.result = StationResult()
        self.sensors = StationSensors(self.station, rng)
        # lost links (link.py) from a child stream: they take no draw from the station's own
        self.link_rng = rng.spawn(1)[0] if late_uploads else None
        # sessions are cut here: the run's end, or just before it when they are to be stopped
        # (a stop at the end itself would not be written: nothing is sent at or after the end);
        # one that starts later than that stays open
        self.cut_ms = end_ms - _CLOSE_MARGIN_MS if close_at_end else end_ms

    def run(self) -> StationResult:
        for connector in range(1, self.station.connectors + 1):
            self._run_connector(connector)
        return self.result

    # --- helpers -------------------------------------------------------------------------

    def _emit(self, sent_ms: int, event: dict[str, Any]) -> None:
        if sent_ms < self.end_ms:
            self.buffer.add(
                sent_ms,
                self.rank,
                {"type": event.pop("type"), "ts": format_ts_ms(self._stamp(sent_ms)), **event},
            )

    def _status(self, sent_ms: int, connector: int, status: str, **extra: str) -> None:
        self._emit(
            sent_ms,
            {
                "type": "status",
                "station_id": self.station.station_id,
                "connector_id": connector,
                "status": status,
                "error_code": extra.pop("error_code", "NoError"),
                **extra,
            },
        )

    def _label(
        self, kind: AnomalyKind, session_id: str | None, connector: int, window: Window
    ) -> None:
        self.result.labels.append(
            {
                "session_id": session_id,
                "station_id": self.station.station_id,
                "connector_id": connector,
                "kind": kind,
                "start_ms": window[0],
                "end_ms": window[1],
            }
        )

    def _label_session(
        self, s: SessionPlan, r: Readings, window: Window, whole: tuple[int, int]
    ) -> None:
        """The session's label (``window``), the other kinds its fault shows as
        (``Readings.also``), and meter_mismatch over the ``whole`` session where the register,
        read as a counter, counted more than 15 % beyond what flowed (a jump it keeps, a leap
        or a fall of one reading: ``counted_extra_wh``)."""
        assert s.anomaly is not None
        self._label(s.anomaly, s.session_id, s.connector, window)
        for kind, where in r.also:
            self._label(AnomalyKind(kind), s.session_id, s.connector, where)
        session_wh = float(r.energy_wh[-1] - r.energy_wh[0])
        register_fault = s.anomaly in (AnomalyKind.METER_JUMP, AnomalyKind.METER_BACKWARDS)
        if register_fault and counted_extra_wh(r) > 0.15 * session_wh:
            self._label(AnomalyKind.METER_MISMATCH, s.session_id, s.connector, whole)

    def _stamp(self, ms: Any) -> Any:
        """The time as the station's clock stamps it: truncated to its unit (whole minutes on
        some; a millisecond, that is as it is, on most)."""
        unit = self.station.stamp_unit_ms
        return ms if unit == 1 else ms // unit * unit

    def _ms(self, base_ms: int, seconds: float) -> int:
        return base_ms + round(seconds * 1000)

    # --- a connector's day ---------------------------------------------------------------

    def _run_connector(self, connector: int) -> None:
        plan = self.plan
        items: list[tuple[int, SessionPlan | FaultPlan | RejectPlan | GhostPlan]] = []
        items += [(s.arrival_ms, s) for s in plan.sessions if s.connector == connector]
        items += [(f.start_ms, f) for f in plan.faults if f.connector == connector]
        items += [(r.at_ms - 30_000, r) for r in plan.rejects if r.connector == connector]
        items += [(g.start_ms, g) for g in plan.ghosts if g.connector == connector]
        items.sort(key=lambda item: item[0])
        register_wh = self.station.initial_register_wh[connector - 1]
        free_ms = self.start_ms + int(self.rng.integers(0, 30_000))
        self._status(free_ms, connector, "Available")
        for first_ms, item in items:
            self._idle_readings(connector, free_ms, first_ms, register_wh)
            if isinstance(item, SessionPlan):
                free_ms, register_wh = self._session(item, register_wh)
            elif isinstance(item, GhostPlan):
                free_ms, register_wh = self._ghost(item, register_wh)
            elif isinstance(item, FaultPlan):
                free_ms = self._fault(item)
            else:
                free_ms = self._reject(item)
        self._idle_readings(connector, free_ms, self.end_ms, register_wh)

    def _idle_readings(self, connector: int, from_ms: int, to_ms: int, register_wh: float) -> None:
        """Idle connectors of some stations report their register every quarter hour."""
        if not self.station.reports_idle:
            return
        first = (from_ms // _IDLE_EVERY_MS + 1) * _IDLE_EVERY_MS
        marks = np.arange(first, min(to_ms, self.end_ms) - 5_000, _IDLE_EVERY_MS, dtype=np.int64)
        if not marks.size:
            return
        sent_ms = marks + self.rng.integers(0, 3_000, size=marks.size)
        columns = self.sensors.idle(register_wh, marks.size)
        lines = encode_readings(
            format_ts_ms_array(self._stamp(sent_ms)),
            self.station.station_id,
            connector,
            None,
            columns,
        )
        self.buffer.add_lines(sent_ms, self.rank, lines, "reading")

    def _fault(self, f: FaultPlan) -> int:
        extra = {"error_code": f.error_code}
        if f.vendor_error_code:
            extra["vendor_error_code"] = f.vendor_error_code
        if f.info:
            extra["info"] = f.info
        self._status(f.start_ms, f.connector, "Faulted", **extra)
        self._status(f.end_ms, f.connector, "Available")
        return f.end_ms

    def _reject(self, r: RejectPlan) -> int:
        sid = self.station.station_id
        if r.plugged:
            self._status(r.at_ms - int(self.rng.integers(5_000, 25_000)), r.connector, "Preparing")
        self._emit(
            r.at_ms,
            {"type": "authorize", "station_id": sid, "id_tag": r.id_tag, "result": r.result},
        )
        if not r.plugged:
            return r.at_ms
        back_ms = r.at_ms + int(self.rng.integers(20_000, 90_000))
        self._status(back_ms, r.connector, "Available")
        return back_ms

    # --- sessions ------------------------------------------------------------------------

    def _session(self, s: SessionPlan, register_wh: float) -> tuple[int, float]:
        st, rng = self.station, self.rng
        vehicle = VEHICLES[s.vehicle]
        start_ms = s.start_ms
        cut_ms = self.cut_ms if start_ms < self.cut_ms - 1_000 else self.end_ms
        spec = ChargeSpec(
            capability_w=capability_for(st, s),
            soc0_pct=s.soc0_pct,
            target_pct=s.target_pct,
            battery_wh=vehicle.battery_kwh * 1000.0,
            efficiency=s.efficiency,
            charge_start_s=s.charge_start_s,
            ramp_s=s.ramp_s,
            ramp_down_s=_RAMP_DOWN_DC_S if st.is_dc else _RAMP_DOWN_AC_S,
            dt_s=_DT_DC_S if st.is_dc else _DT_AC_S,
            until_s=(min(s.departure_ms, cut_ms) - start_ms) / 1000.0,
            linger_s=s.linger_s,
            limits=tuple(s.limits),
            derates=tuple(s.derates),
        )
        trace = simulate_charge(spec)
        stop_ms = self._ms(start_ms, trace.stop_s)
        is_open = stop_ms >= self.end_ms
        triggers = self._trigger_times(s, trace, spec.ramp_down_s)
        r, offered_w = self._readings(trace, start_ms, register_wh, triggers, not is_open, s.limits)
        window = self._inject(s, r, trace, start_ms, stop_ms)
        if s.anomaly is not None and r.soc_pct is None:
            # the cars' SoC habits (coarse steps, stopping, only at the ends:
            # readings.reported_soc) are left to normal sessions: each kind is measured on
            # sessions that show it as its injector made it
            r.soc_pct = trace.soc_at(r.energy_wh)
        drop_single_samples(r, st.drop_prob, rng)
        if self.link_rng is not None and not is_open:
            upload_late(r, stop_ms, self.end_ms, self.link_rng)

        sid, c = st.station_id, s.connector
        self._emit(
            s.arrival_ms,
            {"type": "authorize", "station_id": sid, "id_tag": s.id_tag, "result": s.auth_result},
        )
        prep_s = float(rng.uniform(0.5, s.auth_to_start_s - 0.5))
        self._status(self._ms(s.arrival_ms, prep_s), c, "Preparing")
        meter_start = self.sensors.register(np.array([register_wh]))[0]
        self._emit(
            start_ms,
            {
                "type": "session_start",
                "station_id": sid,
                "connector_id": c,
                "session_id": s.session_id,
                "id_tag": s.id_tag,
                "meter_start_wh": meter_start,
            },
        )
        self.result.sessions += int(start_ms < self.end_ms)
        self._write_readings(r, offered_w, trace, vehicle, c, s.session_id)
        self._status(self._ms(start_ms, s.charge_start_s), c, "Charging")
        for w in s.limits:
            if (
                w.offered_w == 0.0
                and w.start_s < trace.stop_s
                and (trace.full_s is None or w.start_s < trace.full_s)
            ):
                self._status(self._ms(start_ms, w.start_s), c, "SuspendedEVSE")
                if w.end_s < trace.stop_s:
                    self._status(self._ms(start_ms, w.end_s), c, "Charging")
        for begin_s, end_s in s.suspended_evse:  # a charger-side stall, the offer unchanged
            if begin_s < trace.stop_s:
                self._status(self._ms(start_ms, begin_s), c, "SuspendedEVSE")
                if end_s < trace.stop_s:
                    self._status(self._ms(start_ms, end_s), c, "Charging")
        if trace.full_s is not None:
            self._status(self._ms(start_ms, trace.full_s), c, "SuspendedEV")
        register_after = float(r.register_wh[-1])
        self.result.spans[s.session_id] = SessionSpan(sid, c, start_ms, min(stop_ms, self.end_ms))
        if window is not None and s.anomaly is not None:
            self._label_session(s, r, window, (start_ms, min(stop_ms, self.end_ms)))
        if is_open:
            return self.end_ms, register_after
        self._emit(
            stop_ms,
            {
                "type": "session_stop",
                "station_id": sid,
                "connector_id": c,
                "session_id": s.session_id,
                "meter_stop_wh": self.sensors.register(r.register_wh[-1:])[0],
                "reason": s.stop_reason,
            },
        )
        self._status(stop_ms + int(rng.integers(300, 2_000)), c, "Finishing")
        unplug_s = (
            rng.uniform(2.0, 10.0)
            if s.stop_reason == "EVDisconnected"
            else rng.uniform(10.0, UNPLUG_MAX_S)
        )
        free_ms = self._ms(stop_ms, float(unplug_s))
        self._status(free_ms, c, "Available")
        return free_ms, register_after

    def _trigger_times(
        self,
        s: SessionPlan,
        trace: ChargeTrace,
        ramp_down_s: float,
    ) -> list[float]:
        """Chargers send a meter value when their state changes (charging starts, the car is
        full, the offered limit changes) and once the power has settled after it."""
        rises = [s.charge_start_s] + [w.end_s for w in s.limits]
        falls = [w.start_s for w in s.limits]
        if trace.full_s is not None:
            falls.append(trace.full_s)
        full_s = trace.full_s if trace.full_s is not None else math.inf
        times = [
            t + lag for t in rises if t < full_s for lag in (0.05, trace.dt_s + s.ramp_s + 1.0)
        ]
        times += [
            t + lag
            for t in falls
            if t < full_s + 1.0
            for lag in (0.05, trace.dt_s + ramp_down_s + 1.0)
        ]
        return sorted(t for t in times if 0.0 < t < trace.stop_s - 0.5)

    def _readings(
        self,
        trace: ChargeTrace,
        start_ms: int,
        register_wh: float,
        triggers: list[float],
        closed: bool,
        limits: Sequence[LimitWindow],
    ) -> tuple[Readings, FloatArray]:
        t_s, periodic = sample_times(
            trace.stop_s, self.station.interval_s, triggers, closed, self.rng
        )
        sent_ms = start_ms + np.round(t_s * 1000.0).astype(np.int64)
        inside = sent_ms < self.end_ms
        t_s, periodic, sent_ms = t_s[inside], periodic[inside], sent_ms[inside]
        power_w, energy_wh = trace.at(t_s)
        offered_w = np.full(t_s.size, self.station.rating_w)
        for w in limits:
            offered_w[(t_s >= w.start_s) & (t_s < w.end_s)] = w.offered_w
        n = t_s.size
        r = Readings(
            t_s=t_s,
            sent_ms=sent_ms,
            ts_ms=self._stamp(sent_ms.copy()),
            power_w=power_w,
            energy_wh=energy_wh,
            register_wh=register_wh + energy_wh,
            periodic=periodic,
            keep=np.ones(n, dtype=bool),
            protect=np.zeros(n, dtype=bool),
        )
        return r, offered_w

    def _inject(
        self,
        s: SessionPlan,
        r: Readings,
        trace: ChargeTrace,
        start_ms: int,
        stop_ms: int,
    ) -> Window | None:
        if s.anomaly is None or r.t_s.size < 4:
            return None
        charge = SessionCharge(self.station, s, trace, start_ms, stop_ms)
        return INJECTORS[s.anomaly].inject(charge, r, self.rng)

    def _write_readings(
        self,
        r: Readings,
        offered_w: FloatArray,
        trace: ChargeTrace,
        vehicle: Vehicle,
        connector: int,
        session_id: str | None,
    ) -> None:
        keep = r.keep
        # Transaction.Begin and End: the first reading, and the last when it is the stop's
        ends = np.zeros(r.t_s.size, dtype=bool)
        ends[:1] = True
        ends[-1:] |= r.t_s[-1:] >= trace.stop_s
        columns = self.sensors.session(
            r.register_wh[keep],
            r.power_w[keep],
            offered_w[keep],
            trace.soc_at(r.energy_wh[keep]) if r.soc_pct is None else r.soc_pct[keep],
            r.sent_ms[keep],
            vehicle,
            temperature_c=None if r.temperature_c is None else r.temperature_c[keep],
            soc_as_is=r.soc_pct is not None,
            at_ends=ends[keep],
        )
        lines = encode_readings(
            format_ts_ms_array(r.ts_ms[keep]),
            self.station.station_id,
            connector,
            session_id,
            columns,
        )
        self.buffer.add_lines(r.sent_ms[keep], self.rank, lines, "reading")

    # --- energy with no session ----------------------------------------------------------

    def _ghost(self, g: GhostPlan, register_wh: float) -> tuple[int, float]:
        st, rng = self.station, self.rng
        vehicle = VEHICLES[g.vehicle]
        target = 90.0 if st.is_dc else 100.0
        capability = (
            dc_capability_w(st, vehicle, 0.95)
            if st.is_dc
            else ac_capability_w(st, vehicle, target, 5.0, 0.25)
        )
        spec = ChargeSpec(
            capability_w=capability,
            soc0_pct=g.soc0_pct,
            target_pct=target,
            battery_wh=vehicle.battery_kwh * 1000.0,
            efficiency=0.92,
            charge_start_s=float(rng.uniform(2.0, 10.0)),
            ramp_s=20.0 if st.is_dc else 6.0,
            ramp_down_s=_RAMP_DOWN_DC_S if st.is_dc else _RAMP_DOWN_AC_S,
            dt_s=_DT_DC_S if st.is_dc else _DT_AC_S,
            until_s=(g.end_ms - g.start_ms) / 1000.0,
            linger_s=0.0,
        )
        trace = simulate_charge(spec)
        r, offered_w = self._readings(trace, g.start_ms, register_wh, [], True, ())
        if g.with_status:
            self._status(g.start_ms, g.connector, "Charging")
        self._write_readings(r, offered_w, trace, vehicle, g.connector, None)
        end_ms = int(r.sent_ms[-1])
        if g.with_status:
            self._status(end_ms + 2_000, g.connector, "Available")
        flowing = np.flatnonzero(r.power_w > 0)
        if flowing.size:
            window = (int(r.sent_ms[flowing[0]]), end_ms)
            self._label(g.anomaly, None, g.connector, window)
        return end_ms + 2_000, float(r.register_wh[-1])
