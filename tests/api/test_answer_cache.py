"""The read model's answer cache: entries expire, the least recently used go first past the byte
bound, and a finished session's answers are kept until it is judged again (then made anew)."""

from __future__ import annotations

from dataclasses import replace

from analytics.read.model import AnswerCache, ReadModel
from chargewatch.catalog import upsert_sessions

from .conftest import HAND_SESSION, ReadFleet


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_time() -> None:
    clock = Clock()
    cache = AnswerCache(max_bytes=1000, ttl_s=60.0, clock=clock)
    cache.put("a", "A", 10)
    clock.now += 59.9
    assert cache.get("a") == "A"
    clock.now += 0.1
    assert cache.get("a") is None
    assert len(cache) == 0


def test_the_least_recently_used_go_first_past_the_bound() -> None:
    cache = AnswerCache(max_bytes=100, ttl_s=60.0, clock=Clock())
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # now b is the least recently used
    cache.put("c", "C", 40)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    cache.put("c", "C2", 30)  # replaced, not counted twice
    cache.put("d", "D", 30)
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == ("A", "C2", "D")
    cache.put("huge", "H", 101)  # larger than the whole bound: not kept, nothing dropped
    assert cache.get("huge") is None and cache.get("a") == "A"


def test_a_finished_sessions_answers_are_kept_until_it_is_judged_again(
    read_fleet: ReadFleet,
) -> None:
    reads = read_fleet.service.reads
    assert isinstance(reads, ReadModel)
    row = next(r for r in read_fleet.rows if r.session_id == HAND_SESSION)
    assert row.stop_ns is not None
    detail = reads.session(HAND_SESSION)
    grid = reads.profile(HAND_SESSION, step_s=30.0)
    image = reads.profile_png(HAND_SESSION, step_s=None, width_px=500, height_px=300)
    assert detail is not None and grid is not None and image is not None
    # the same objects: nothing was read from InfluxDB or drawn again
    assert reads.session(HAND_SESSION) is detail
    assert reads.profile(HAND_SESSION, step_s=30.0) is grid
    again = reads.profile_png(HAND_SESSION, step_s=None, width_px=500, height_px=300)
    assert again is not None and again.png is image.png and again.etag == image.etag
    revalidated = reads.profile_png(
        HAND_SESSION, step_s=None, width_px=500, height_px=300, if_none_match={image.etag}
    )
    assert revalidated is not None and revalidated.png is None
    # another parameter is another answer
    assert reads.profile(HAND_SESSION, step_s=60.0) is not grid

    judged_again = replace(row, updated_at_ns=row.updated_at_ns + 1)
    upsert_sessions(read_fleet.service.state, [judged_again])
    try:
        fresh = reads.session(HAND_SESSION)
        assert fresh is not None and fresh is not detail
        assert fresh.row == judged_again
        assert (fresh.segments, fresh.taper_onset) == (detail.segments, detail.taper_onset)
        redrawn = reads.profile_png(HAND_SESSION, step_s=None, width_px=500, height_px=300)
        assert redrawn is not None and redrawn.png is not image.png
        assert redrawn.etag != image.etag  # the row is part of what the picture shows
    finally:
        upsert_sessions(read_fleet.service.state, [row])
