"""The window's detectors from one window to the next (``analytics.window._fit``): the taper
band, the costliest thing learned, is kept by the partition for ``REFIT_NS`` (or until its
history doubles); the station ratings and every other detector are fitted on each window's own
history; the detectors asked for are never fitted themselves (every partition fits copies)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from analytics.assemble import Assembler
from analytics.batch import SessionBatch
from analytics.detectors import Detector, EarlyTaper, default_detectors
from analytics.window import REFIT_NS, _Band, _fit
from chargewatch.errors import NotFittedError
from chargewatch.events import Event, Reading, SessionStart, SessionStop
from tests.analytics._support import at

AC = "ST-AC"  # an 11 kW AC station, charging all along
DC = "ST-DC"  # a 150 kW DC station that only appears in the later history


def session(station: str, name: str, begin: float, minutes: int, power_w: float) -> list[Event]:
    """A session of ``minutes`` at ``power_w``, a reading every 30 s."""
    events: list[Event] = [SessionStart(at(begin), station, 1, name, "P1", 0.0)]
    for k in range(2 * minutes):
        t = begin + 0.5 + k / 2
        energy = power_w * (t - begin) / 60.0
        events.append(
            Reading(at(t), station, 1, name, energy_wh=energy, power_w=power_w, soc_pct=20.0 + t)
        )
    events.append(SessionStop(at(begin + minutes + 1), station, 1, name, None, "EVDisconnected"))
    return events


def history(*sessions: list[Event]) -> SessionBatch:
    assembler = Assembler()
    for i, event in enumerate(sorted((e for s in sessions for e in s), key=lambda e: e.ts_ns)):
        assembler.add(i, event)
    return next(iter(assembler.finish()))


def taper_of(fitted: Sequence[Detector]) -> EarlyTaper:
    return next(d for d in fitted if isinstance(d, EarlyTaper))


def test_the_band_is_kept_and_the_ratings_are_each_window_s() -> None:
    first = history(session(AC, "A1", 0, 40, 11_000.0))
    given: list[Detector] = [d for d in default_detectors() if d.per_row]
    fitted, band = _fit(None, given, first, None, at(45))
    assert band is not None and band.at_ns == at(45)
    assert taper_of(fitted) is band.taper

    # five minutes on, a DC station joins the history: the band is kept, the DC station rated
    later = history(session(AC, "A1", 0, 40, 11_000.0), session(DC, "D1", 42, 5, 150_000.0))
    fitted, kept = _fit(band, given, later, None, at(50))
    assert kept is band
    taper = taper_of(fitted)
    assert taper is not band.taper  # a copy: the band's own taper keeps its first ratings
    assert taper.band_ is band.taper.band_
    rated = taper.ratings_.lookup(later.station_id)
    assert rated.tolist() == pytest.approx([11_000.0, 150_000.0])
    assert taper.n_fit_rows_ == later.n_sessions
    assert np.isnan(band.taper.ratings_.lookup(np.array([DC], dtype=object))).all()

    # the detectors asked for were not fitted: each partition fits copies of its own
    for detector in given:
        with pytest.raises(NotFittedError):
            detector.score(later, now_ns=at(50))


@pytest.mark.parametrize(
    ("minutes_on", "sessions", "relearned"),
    [
        (REFIT_NS / 60e9 - 1, 1, False),
        (REFIT_NS / 60e9, 1, True),  # an hour on: learned again
        (5, 3, True),  # three times the sessions: learned again
    ],
    ids=["within the hour", "an hour on", "history doubled"],
)
def test_the_band_is_learned_again_an_hour_on_or_when_the_history_doubles(
    minutes_on: float, sessions: int, relearned: bool
) -> None:
    first = history(session(AC, "A1", 0, 40, 11_000.0))
    given: list[Detector] = [d for d in default_detectors() if d.per_row]
    _, band = _fit(None, given, first, None, at(45))
    assert band is not None
    more = [session(AC, f"B{k}", 45 * k, 40, 11_000.0) for k in range(1, sessions)]
    later = history(session(AC, "A1", 0, 40, 11_000.0), *more)
    now = at(45) + round(minutes_on * 60e9)
    _, after = _fit(band, given, later, None, now)
    assert isinstance(after, _Band)
    assert (after is not band) == relearned
    assert after.at_ns == (now if relearned else at(45))


def test_other_detectors_are_not_kept() -> None:
    """A band learned with other taper parameters is not used."""
    first = history(session(AC, "A1", 0, 40, 11_000.0))
    one: list[Detector] = [EarlyTaper()]
    _, band = _fit(None, one, first, None, at(45))
    other: list[Detector] = [EarlyTaper(quantile=0.02)]
    fitted, after = _fit(band, other, first, None, at(50))
    assert after is not band and after is not None and after.given.quantile == 0.02
    assert taper_of(fitted) is after.taper
