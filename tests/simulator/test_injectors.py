"""The anomaly injectors: one per kind, found by kind, drawn in the kernel's order."""

from __future__ import annotations

from chargewatch.kinds import AnomalyKind
from simulator.config import ANOMALY_KINDS
from simulator.injectors import INJECTORS


def test_every_anomaly_kind_has_its_injector() -> None:
    assert set(INJECTORS) == set(AnomalyKind)
    assert all(injector.kind is kind for kind, injector in INJECTORS.items())


def test_kinds_are_drawn_in_the_kernels_order() -> None:
    # the order is part of what a seed writes: a new kind changes the files, a reordered
    # registry does not
    assert tuple(AnomalyKind) == ANOMALY_KINDS
