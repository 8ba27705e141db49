"""The session read API on a small loaded fleet (``conftest.read_fleet``): a hand-made session's
figures come out exactly, a real session's profile draws, lists filter and page, refusals name
the parameter."""

from __future__ import annotations

import io
import struct
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from matplotlib.image import imread

from chargewatch.events import parse_ts
from chargewatch.flags import query_flags
from chargewatch.kinds import AnomalyKind

from .conftest import HAND_CARD, HAND_SESSION, HAND_STATION, ReadFleet


def test_a_hand_made_session_comes_out_exactly(read_fleet: ReadFleet) -> None:
    answer = read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}")
    assert answer.status_code == 200
    s = answer.json()
    assert {k: s[k] for k in ("session_id", "station_id", "connector_id", "start", "stop")} == {
        "session_id": HAND_SESSION,
        "station_id": HAND_STATION,
        "connector_id": 1,
        "start": "2026-11-23T10:00:00.000Z",
        "stop": "2026-11-23T10:30:00.000Z",
    }
    assert s["open"] is False
    assert s["user_pseudonym"] == read_fleet.pseudonym
    assert s["energy"]["register_wh"] == 3600.0
    # point times carry a content digest below the millisecond: integrals move by micro-Wh
    assert s["energy"]["integrated_power_wh"] == pytest.approx(3600.0, abs=0.01)
    assert s["duration_s"] == pytest.approx(1800.0, abs=0.001)
    assert s["billing"] == {"confidence": 1.0, "reasons": []}
    segments = [(g["kind"], g["start"][11:19], g["end"][11:19]) for g in s["segments"]]
    assert segments == [("charging", "10:00:00", "10:21:00"), ("idle", "10:21:00", "10:30:00")]
    assert s["taper_onset"]["time"] == "2026-11-23T10:16:00.000Z"
    assert s["taper_onset"]["soc_pct"] == 66.0
    assert s["taper_onset"]["offset_s"] == pytest.approx(960.0, abs=0.001)
    assert s["flags"] == [] and s["flagged_kinds"] == []
    assert set(s["scores"]) == {kind.value for kind in AnomalyKind}  # every kind's
    assert s["readings"] == 31
    assert s["judged_at"] == "2026-11-24T00:00:05.000Z"


def test_no_answer_holds_the_clear_id_tag(read_fleet: ReadFleet) -> None:
    """The hand-made session's card went in clear (authorize, session start); every answer
    about it shows its pseudonym only."""
    window: dict[str, Any] = {**read_fleet.window, "limit": 1000}
    answers = [
        read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}"),
        read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}/profile"),
        read_fleet.get("/api/v1/sessions", **window),
        read_fleet.get("/api/v1/sessions", **window, pseudonym=read_fleet.pseudonym),
        read_fleet.get("/api/v1/flags", **window),
        read_fleet.get("/api/v1/scores", **window),
    ]
    assert all(a.status_code == 200 for a in answers)
    assert read_fleet.pseudonym in answers[0].text and read_fleet.pseudonym in answers[3].text
    assert not [a.url for a in answers if HAND_CARD in a.text or '"id_tag"' in a.text]


def test_a_hand_made_profile_comes_out_exactly(read_fleet: ReadFleet) -> None:
    answer = read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}/profile")
    assert answer.status_code == 200
    profile = answer.json()
    assert profile["step_s"] == 60.0
    points = profile["points"]
    assert len(points) == 31
    assert [p["time"] for p in points[:2]] == [
        "2026-11-23T10:00:00.000Z",
        "2026-11-23T10:01:00.000Z",
    ]
    assert [p["power_w"] for p in points] == [12000.0] * 16 + [6000.0] * 5 + [0.0] * 10
    assert [p["soc_pct"] for p in points] == [50.0 + min(k, 20) for k in range(31)]
    assert [p["power_offered_w"] for p in points] == [22000.0] * 31
    delivered = [200.0 * k for k in range(16)] + [3000.0 + 100 * k for k in range(1, 7)]
    assert [p["energy_wh"] for p in points] == delivered + [3600.0] * 9
    coarse = read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}/profile", step_s=600).json()
    assert [p["power_w"] for p in coarse["points"]] == [12000.0, 9600.0, 600.0, 0.0]
    assert [p["energy_wh"] for p in coarse["points"]] == [1800.0, 3400.0, 3600.0, 3600.0]


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk comes first
    return width, height


def test_a_real_sessions_profile_png_draws_and_revalidates(read_fleet: ReadFleet) -> None:
    flagged = next(r for r in read_fleet.rows if r.flagged_kinds and r.stop_ns is not None)
    path = f"/api/v1/sessions/{flagged.session_id}/profile.png"
    answer = read_fleet.get(path, width=900, height=450)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert png_size(answer.content) == (900, 450)
    pixels = imread(io.BytesIO(answer.content), format="png")
    assert pixels.shape[:2] == (450, 900)
    assert float(np.var(pixels[..., :3])) > 0.01, "the picture is blank"
    etag = answer.headers["etag"]
    headers = {"Authorization": f"Bearer {read_fleet.keys['viewer']}"}
    again = read_fleet.client.get(
        path, params={"width": 900, "height": 450}, headers={**headers, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    other = read_fleet.get(path, width=640, height=480)
    assert png_size(other.content) == (640, 480) and other.headers["etag"] != etag
    assert read_fleet.get(path, width=900, height=450).content == answer.content  # cached


def test_lists_filter_and_every_page_holds_new_rows_once(read_fleet: ReadFleet) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {**read_fleet.window, "limit": 7}
        if cursor is not None:
            params["cursor"] = cursor
        page = read_fleet.get("/api/v1/sessions", **params).json()
        seen += [item["session_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(r.session_id for r in read_fleet.rows)
    assert len(seen) == len(set(seen)) > 20

    def ids(**params: Any) -> set[str]:
        answer = read_fleet.get(
            "/api/v1/sessions", **{**read_fleet.window, "limit": 1000, **params}
        )
        assert answer.status_code == 200, answer.text
        return {item["session_id"] for item in answer.json()["items"]}

    rows = read_fleet.rows
    assert ids(station_id=HAND_STATION) == {HAND_SESSION}
    assert ids(pseudonym=read_fleet.pseudonym) == {HAND_SESSION}
    station = rows[0].station_id
    assert ids(station_id=station, connector_id=2) == {
        r.session_id for r in rows if r.station_id == station and r.connector_id == 2
    }
    assert ids(flagged="true") == {r.session_id for r in rows if r.flagged_kinds}
    kind = rows[0].flagged_kinds[0] if rows[0].flagged_kinds else "data_gap"
    assert ids(kind=kind) == {r.session_id for r in rows if kind in r.flagged_kinds}
    assert ids(since="2026-11-23T10:00:00Z", until="2026-11-23T10:00:00.001Z") == {HAND_SESSION}


def test_flags_page_through_what_is_stored(read_fleet: ReadFleet) -> None:
    since, until = parse_ts(read_fleet.window["since"]), parse_ts(read_fleet.window["until"])
    stored = query_flags(read_fleet.service.influx, since, until)
    assert stored, "the fleet should hold flags"
    seen: list[tuple[str | None, str, str]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {**read_fleet.window, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = read_fleet.get("/api/v1/flags", **params).json()
        seen += [(f["session_id"], f["kind"], f["start"]) for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen, key=str) == sorted(
        ((f.session_id, f.kind, f.to_json()["start"]) for f in stored), key=str
    )
    one = next(f for f in stored if f.session_id is not None)
    by_session = read_fleet.get(
        "/api/v1/flags", **read_fleet.window, session_id=one.session_id, kind=one.kind
    ).json()["items"]
    assert [(f["session_id"], f["kind"]) for f in by_session] == [(one.session_id, one.kind)]
    by_station = read_fleet.get("/api/v1/flags", **read_fleet.window, station_id=one.station_id)
    assert {f["station_id"] for f in by_station.json()["items"]} == {one.station_id}


def test_scores_rank_by_a_kind(read_fleet: ReadFleet) -> None:
    ranked = read_fleet.get("/api/v1/scores", **read_fleet.window, kind="stall", limit=5).json()
    scores = [item["scores"]["stall"] for item in ranked["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5
    top = read_fleet.get(
        "/api/v1/scores", **read_fleet.window, kind="stall", min_score=0.5, limit=1000
    ).json()["items"]
    assert {i["session_id"] for i in top} == {
        r.session_id
        for r in read_fleet.rows
        if any(v.kind == "stall" and (v.score or 0) >= 0.5 for v in r.verdicts)
    }
    one = read_fleet.get("/api/v1/scores", session_id=HAND_SESSION).json()["items"]
    assert [i["session_id"] for i in one] == [HAND_SESSION] and len(one[0]["scores"]) == len(
        AnomalyKind
    )


@pytest.mark.parametrize(
    ("path", "params", "status", "detail"),
    [
        ("/api/v1/sessions/no-such-session", {}, 404, "session_id: no session 'no-such-session'"),
        ("/api/v1/sessions/no-such-session/profile", {}, 404, "session_id: no session"),
        ("/api/v1/sessions/no-such-session/profile.png", {}, 404, "session_id: no session"),
        (
            "/api/v1/sessions",
            {"since": "2026-10-01T00:00:00Z", "until": "2026-11-24T00:00:00Z"},
            422,
            "until: the window is 54.0 days long; at most 31 days",
        ),
        (
            "/api/v1/flags",
            {"since": "2026-11-24T00:00:00Z", "until": "2026-11-23T00:00:00Z"},
            422,
            "until: must be later than since",
        ),
        ("/api/v1/scores", {"since": "yesterday"}, 422, "since: 'yesterday' is not an RFC 3339"),
        ("/api/v1/scores", {"since": "2026-11-23T00:00:00"}, 422, "since: '2026-11-23T00:00:00'"),
        ("/api/v1/sessions", {"cursor": "bm9wZQ"}, 422, "cursor: not a cursor"),
        ("/api/v1/flags", {"cursor": "WyJmbGFncyIsMSwyXQ"}, 200, None),
        ("/api/v1/scores", {"min_score": 0.5}, 422, "min_score: needs kind"),
        ("/api/v1/sessions", {"kind": "melted"}, 422, "query.kind"),
        ("/api/v1/sessions", {"limit": 0}, 422, "query.limit"),
        ("/api/v1/sessions", {"station_id": "bad\x07id"}, 422, "station_id: contains control"),
        ("/api/v1/sessions/no-such-session/profile.png", {"width": 99999}, 422, "query.width"),
    ],
)
def test_refusals_name_the_parameter(
    read_fleet: ReadFleet, path: str, params: dict[str, Any], status: int, detail: str | None
) -> None:
    answer = read_fleet.get(path, **params)
    assert answer.status_code == status, answer.text
    if detail is not None:
        assert detail in answer.json()["detail"]


def test_a_cursor_of_the_sessions_list_is_refused_by_scores(read_fleet: ReadFleet) -> None:
    page = read_fleet.get("/api/v1/sessions", **read_fleet.window, limit=1).json()
    answer = read_fleet.get(
        "/api/v1/scores", **read_fleet.window, kind="stall", cursor=page["next_cursor"]
    )
    assert answer.status_code == 422
    assert answer.json()["detail"] == "cursor: this cursor belongs to another listing or order"


def test_a_burst_of_pictures_is_bounded_and_never_holds_up_json(
    read_fleet: ReadFleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one key's burst waits in that key's own line (and past its requests in flight gets
    # 429); pictures of many keys at once wait at the threads, past PNG_WAITING 503
    import api.sessions

    monkeypatch.setattr(api.sessions, "PNG_WAITING", 2)
    read_fleet.fresh_key("burst")
    many = [f"picture-{n}" for n in range(8)]
    for name in many:
        read_fleet.fresh_key(name)
    path = f"/api/v1/sessions/{HAND_SESSION}/profile.png"
    with ThreadPoolExecutor(max_workers=48) as pool:
        # every size a new picture: nothing comes from the cache
        pictures = [pool.submit(read_fleet.get, path, "burst", width=400 + n) for n in range(40)]
        others = [
            pool.submit(read_fleet.get, path, name, width=900 + 10 * n + k)
            for n, name in enumerate(many)
            for k in range(2)
        ]
        time.sleep(0.05)
        began = time.monotonic()
        detail = read_fleet.get(f"/api/v1/sessions/{HAND_SESSION}")
        waited_s = time.monotonic() - began
        answers = [picture.result() for picture in pictures]
        answers_of_many = [picture.result() for picture in others]
    assert detail.status_code == 200 and waited_s < 2.0
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) <= {200, 429, 503} and codes[429] and codes[200] >= 3, codes
    assert all(a.headers["retry-after"] for a in answers if a.status_code != 200)
    codes_of_many = Counter(answer.status_code for answer in answers_of_many)
    assert set(codes_of_many) <= {200, 503} and codes_of_many[200] >= 3, codes_of_many
    refused = next(a for a in answers + answers_of_many if a.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["detail"] == "pictures: too many being drawn; retry shortly"
