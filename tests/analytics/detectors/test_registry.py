"""The registry of detectors and what every detector class promises (``BaseDetector``): one
detector per anomaly kind, parameters read back from the signature and documented, and no
scoring before ``fit``."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

from analytics.detectors import (
    DETECTORS,
    BaseDetector,
    EarlyTaper,
    MeterJump,
    MeterMismatch,
    default_detectors,
    detect,
)
from chargewatch.errors import ChargewatchError, NotFittedError
from chargewatch.kinds import AnomalyKind
from tests.analytics.detectors.helpers import NOW_NS, charge, make_batch

CLASSES = list(DETECTORS.values())


def test_the_registry_has_one_detector_per_kind_in_contract_order() -> None:
    assert list(DETECTORS) == list(AnomalyKind)
    for kind, cls in DETECTORS.items():
        assert cls.kind is kind
    assert [d.kind for d in default_detectors()] == list(AnomalyKind)


def test_a_kind_equals_its_string() -> None:
    # flags and labels carry the plain value (CONTRACTS.md sections 2 and 4)
    kind: str = AnomalyKind.EARLY_TAPER
    assert kind == "early_taper" and f"{kind}" == "early_taper"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_get_params_round_trips(cls: type[BaseDetector]) -> None:
    detector = cls()
    copy = cls(**detector.get_params())
    assert copy.get_params() == detector.get_params()
    assert repr(detector) == f"{cls.__name__}()"  # nothing differs from the defaults


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_parameter_is_documented(cls: type[BaseDetector]) -> None:
    """A numpydoc ``Parameters`` section names each parameter with its type and default."""
    doc = inspect.getdoc(cls) or ""
    for name, value in cls().get_params().items():
        entry = re.search(rf"^{name} : .+, default (.+)$", doc, re.MULTILINE)
        assert entry, f"{cls.__name__}: {name} not in its Parameters section"
        assert repr(value) in entry.group(1), (name, value, entry.group(1))


def test_repr_shows_what_differs_from_the_defaults() -> None:
    assert repr(EarlyTaper(min_drop=0.5)) == "EarlyTaper(min_drop=0.5)"
    assert repr(MeterMismatch(jump=MeterJump(jitter_s=5.0))) == (
        "MeterMismatch(jump=MeterJump(jitter_s=5.0))"
    )


def test_parameters_must_be_keyword_only() -> None:
    class Positional(BaseDetector):
        kind = AnomalyKind.STALL

        def __init__(self, threshold: float = 1.0) -> None:
            self.threshold = threshold

        def score(self, batch, *, now_ns):  # type: ignore[no-untyped-def]
            raise AssertionError

    with pytest.raises(TypeError, match="keyword-only"):
        Positional().get_params()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_an_unfitted_detector_refuses_to_score(cls: type[BaseDetector]) -> None:
    batch = make_batch([charge(power_w=11_000.0, minutes=60)])
    detector = cls()
    with pytest.raises(NotFittedError, match=f"{cls.__name__}.*call fit"):
        detector.score(batch, now_ns=NOW_NS)
    assert issubclass(NotFittedError, ChargewatchError)
    assert detector.fit(batch) is detector
    (result,) = detect(batch, now_ns=NOW_NS, detectors=[detector])
    assert result.kind == cls.kind and result.score.shape == (1,)


def test_fitting_on_nothing_is_fitting() -> None:
    """Fitted on an empty history every detector scores with its built-in defaults."""
    empty = make_batch([]).take(np.zeros(0, np.int64))
    batch = make_batch([charge(power_w=11_000.0, minutes=60)])
    detectors = [d.fit(empty) for d in default_detectors()]
    assert all(d.n_fit_rows_ == 0 for d in detectors)
    assert len(detect(batch, now_ns=NOW_NS, detectors=detectors)) == len(AnomalyKind)


def test_meter_mismatch_fits_a_copy_of_the_jump_it_is_given() -> None:
    jump = MeterJump(jitter_s=5.0)
    mismatch = MeterMismatch(jump=jump).fit(make_batch([charge()]))
    assert mismatch.jump_ is not jump and not hasattr(jump, "n_fit_rows_")
    assert mismatch.jump_.get_params() == jump.get_params()
