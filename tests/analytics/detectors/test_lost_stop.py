"""A session whose stop was lost (an OCPP 1.6 StopTransaction the station never delivered) and
a later session on the same connector: the first ended before the second started, when exactly
is unknown, so its silence after its last reading is no data gap. A third-party station through
``serve`` had the first flagged "no reading for 3.0 h since the last reading, the session still
open"."""

from __future__ import annotations

from analytics.detectors import detect, fit_detectors
from tests.analytics.detectors.helpers import NOW_NS, Spec, charge, make_batch, with_


def sessions(second_connector: int) -> list[Spec]:
    first = with_(charge(power_w=11_000.0, minutes=60.0), session_id="S1", stop_s=None)
    second = charge(
        power_w=11_000.0,
        minutes=60.0,
        offset_s=3 * 3600.0,
        register0_wh=1_011_100.0,
        session_id="S2",
        connector_id=second_connector,
        id_pseudonym="U2",
    )
    return [first, second]


def gaps(specs: list[Spec]) -> list[str]:
    batch = make_batch(specs)
    results = detect(batch, now_ns=NOW_NS, detectors=fit_detectors(batch))
    (gap,) = [r for r in results if r.kind == "data_gap"]
    return [str(batch.session_id[i]) for i, hit in enumerate(gap.flagged) if hit]


def test_an_open_session_superseded_on_its_connector_has_no_gap() -> None:
    assert gaps(sessions(second_connector=1)) == []


def test_an_open_session_silent_while_another_connector_charges_has_one() -> None:
    assert gaps(sessions(second_connector=2)) == ["S1"]
