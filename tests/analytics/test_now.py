"""What "now" is for a file of events: neither fooled by a quiet end nor by a clock far ahead."""

from __future__ import annotations

from analytics.assemble import Assembler
from analytics.detectors import detect, fit_detectors
from chargewatch.events import ChargePointStatus, Reading, StatusChange

from ._support import MIN, at

YEAR_NS = 365 * 24 * 60 * MIN


def test_idle_readings_after_the_last_control_event_are_not_in_the_future() -> None:
    assembler = Assembler()
    arrival = 0
    for station in ("A", "B", "C"):
        arrival += 1
        assembler.add(arrival, StatusChange(at(0), station, 1, ChargePointStatus.AVAILABLE))
        for step in range(0, 24 * 60, 15):  # idle connectors report every 15 min for a day
            arrival += 1
            assembler.add(arrival, Reading(at(step), station, 1, None, energy_wh=1000.0))
    assert assembler.now_ns == at(24 * 60 - 15)
    batch = next(iter(assembler.finish()))
    detectors = fit_detectors(batch)
    results = {r.kind: r for r in detect(batch, now_ns=assembler.now_ns, detectors=detectors)}
    assert not results["clock_fault"].flagged.any()


def test_one_station_years_ahead_does_not_move_now() -> None:
    assembler = Assembler()
    for arrival, station in enumerate(("A", "B", "C", "D", "E"), start=1):
        assembler.add(arrival, Reading(at(60), station, 1, None, energy_wh=1.0))
    assembler.add(9, Reading(at(60) + 5 * YEAR_NS, "F", 1, None, energy_wh=1.0))
    assert assembler.now_ns == at(60)


def test_one_station_stamping_its_statuses_years_ahead_does_not_move_now() -> None:
    # a clock 4.8 years ahead stamps a session's statuses and stop as well as its readings
    # (an independently written fleet, outside seed 1, 120866: "now" followed the statuses,
    # and a 1,744-day data gap took the place of the clock fault)
    assembler = Assembler()
    for arrival, station in enumerate(("A", "B", "C", "D", "E"), start=1):
        assembler.add(arrival, StatusChange(at(55), station, 1, ChargePointStatus.CHARGING))
        assembler.add(10 + arrival, Reading(at(60), station, 1, None, energy_wh=1.0))
    ahead = at(60) + int(4.8 * YEAR_NS)
    assembler.add(20, StatusChange(ahead, "F", 1, ChargePointStatus.FINISHING))
    assembler.add(21, Reading(ahead, "F", 1, None, energy_wh=1.0))
    assert assembler.now_ns == at(60)


def test_the_latest_control_event_still_leads_now_at_a_quiet_end() -> None:
    # most stations fell silent hours before the last one's stop: that stop is the data's end
    assembler = Assembler()
    for arrival, station in enumerate(("A", "B", "C", "D", "E"), start=1):
        assembler.add(arrival, StatusChange(at(10), station, 1, ChargePointStatus.AVAILABLE))
    assembler.add(9, StatusChange(at(20 * 60), "F", 1, ChargePointStatus.FINISHING))
    assert assembler.now_ns == at(20 * 60)
