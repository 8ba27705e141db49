"""Every detector scores a batch that holds sessions but no reading at all (a session_start and
a status, nothing else: a real station's first minute) without an error, and flags nothing."""

from __future__ import annotations

import pytest

from analytics.assemble import assemble
from analytics.detectors import DETECTORS, BaseDetector, fit_detectors
from chargewatch.events import ChargePointStatus
from tests.analytics._support import at, numbered, start, status


@pytest.mark.parametrize("cls", list(DETECTORS.values()), ids=lambda c: c.__name__)
def test_a_batch_without_readings(cls: type[BaseDetector]) -> None:
    batch = assemble(numbered([start(0), status(1, ChargePointStatus.CHARGING)]))
    assert batch.n_sessions == 1
    (detector,) = fit_detectors(batch, [cls()])
    result = detector.score(batch, now_ns=at(60))
    assert not result.flagged.any()
