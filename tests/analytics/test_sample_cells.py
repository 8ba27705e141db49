"""The history detectors are fitted on does not depend on the size of the batches scored.

``analytics.pipeline`` scores in small batches of rows of like length and asks the assembler
for the history that batches of ``max_cells`` would have given (``sample_cells``): the rows of
the one batch when they fit, else the same sample of rows spread over them.
"""

from __future__ import annotations

import numpy as np

from analytics.assemble import Assembler
from analytics.batch import SessionBatch
from chargewatch.events import Event

from ._support import numbered, reading, start, stop


def _assembler() -> Assembler:
    """40 sessions of 1 to 5 readings, and one of 30: mostly padding when held together."""
    assembler = Assembler()
    events: list[Event] = []
    for k in range(41):
        sid = f"S{k:02d}"
        count = 30 if k == 7 else 1 + k % 5
        events += [start(100 * k, session=sid), stop(100 * k + 99, session=sid)]
        events += [reading(100 * k + j, session=sid) for j in range(count)]
    for arrival, event in numbered(events):
        assembler.add(arrival, event)
    return assembler


def _same(a: SessionBatch, b: SessionBatch) -> None:
    for name in a.__dataclass_fields__:
        if name != "extra":
            x, y = getattr(a, name), getattr(b, name)
            if x.dtype == object:
                assert list(x) == list(y), name
            else:
                assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), name


def test_the_sample_is_the_whole_batch_that_sample_cells_would_hold() -> None:
    whole = list(_assembler().finish(max_cells=41 * 30))
    handout = _assembler().finish(max_cells=40, sample_cells=41 * 30)
    assert len(whole) == 1 and len(handout) > 1 and handout.sample is not None
    _same(handout.sample, whole[0])
    scored = [str(sid) for batch in handout for sid in batch.session_id]
    assert sorted(scored) == sorted(str(sid) for sid in whole[0].session_id)


def test_the_sample_is_the_one_batches_of_sample_cells_come_with() -> None:
    big = _assembler().finish(max_cells=300)
    small = _assembler().finish(max_cells=40, sample_cells=300)
    assert len(big) > 1 and big.sample is not None and small.sample is not None
    _same(small.sample, big.sample)


def test_no_sample_when_sample_cells_is_zero() -> None:
    handout = _assembler().finish(max_cells=40, sample_cells=0)
    assert len(handout) > 1 and handout.sample is None
    widths = [batch.n_steps for batch in handout]
    assert widths == sorted(widths)  # rows of like length together: short rows, little padding
    assert int(np.sum([b.n_sessions for b in handout])) == 41
