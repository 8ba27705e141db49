"""The InfluxDB client against the real server, and its retry policy against a misbehaving one.

httpx.MockTransport appears only where a real InfluxDB cannot misbehave on demand (503 with
Retry-After, 429, a storm of 500s); everything else talks to the session's real influxd.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from chargewatch.errors import (
    InfluxAuthError,
    InfluxConnectionError,
    InfluxError,
    InfluxNotFoundError,
    InfluxRequestError,
    InfluxServerError,
)
from chargewatch.influx import (
    MAX_RETRY_AFTER_S,
    BatchWriter,
    InfluxClient,
    LocalInfluxd,
    format_point,
    quote_ident,
)
from chargewatch.settings import Settings

from ..conftest import ADMIN, ADMIN_PASSWORD, free_port, unique_database

T0_NS = 1_700_000_000_000_000_000


def _select(client: InfluxClient, query: str) -> dict[str, np.ndarray]:
    (series,) = client.query(query)
    return series.columns


# -- writing and reading on the real server ---------------------------------------------------


def test_ping_names_the_server_version(influx: InfluxClient) -> None:
    assert influx.ping().startswith("1.")


def test_create_database_is_idempotent(influx: InfluxClient) -> None:
    influx.create_database()
    (databases,) = influx.query("SHOW DATABASES")
    assert list(databases.columns["name"]).count(influx.database) == 1


@pytest.mark.parametrize("gzip", [True, False], ids=["gzip", "plain"])
def test_columns_come_back_as_numpy_arrays_with_nulls(influxd: LocalInfluxd, gzip: bool) -> None:
    with InfluxClient(url=influxd.url, database=unique_database(), gzip=gzip) as client:
        client.create_database()
        client.write(
            [
                format_point("r", {"st": "A"}, {"p": 1.5, "n": 7, "s": "x y", "ok": True}, T0_NS),
                format_point("r", {"st": "A"}, {"p": -2.25, "s": 'é\n"q"', "ok": False}, T0_NS + 1),
                format_point("r", {"st": "A"}, {"n": 2**53, "ok": True}, T0_NS + 2),
            ]
        )
        cols = _select(client, f'SELECT "p", "n", "s", "ok" FROM "r" WHERE time >= {T0_NS}')
        client.query(f"DROP DATABASE {quote_ident(client.database)}")

    assert cols["time"].dtype == np.int64
    assert list(cols["time"]) == [T0_NS, T0_NS + 1, T0_NS + 2]
    assert cols["p"].dtype == np.float64
    np.testing.assert_array_equal(cols["p"], [1.5, -2.25, np.nan])
    assert cols["n"].dtype == np.float64  # integers with a null: float64 with NaN
    np.testing.assert_array_equal(cols["n"], [7.0, np.nan, 2.0**53])
    assert cols["s"].dtype == object
    assert list(cols["s"]) == ["x y", 'é\n"q"', None]
    assert cols["ok"].dtype == np.bool_
    assert list(cols["ok"]) == [True, False, True]


def test_booleans_with_nulls_are_objects_and_series_carry_tags(influx: InfluxClient) -> None:
    influx.write(
        [
            format_point("r", {"st": "A"}, {"ok": True, "p": 1.0}, T0_NS),
            format_point("r", {"st": "A"}, {"p": 2.0}, T0_NS + 1),
            format_point("r", {"st": "B"}, {"ok": False, "p": 3.0}, T0_NS),
        ]
    )
    series = influx.query(f'SELECT "ok", "p" FROM "r" WHERE time >= {T0_NS} GROUP BY "st"')

    assert [(s.name, s.tags, len(s)) for s in series] == [
        ("r", {"st": "A"}, 2),
        ("r", {"st": "B"}, 1),
    ]
    assert series[0].columns["ok"].dtype == object
    assert list(series[0].columns["ok"]) == [True, None]
    assert list(series[1].columns["ok"]) == [False]


def test_query_returns_the_series_of_every_statement(influx: InfluxClient) -> None:
    influx.write(["a f=1 1", "b f=2 2"], precision="s")
    series = influx.query('SELECT * FROM "a"; SELECT * FROM "b"', epoch="s")
    assert [(s.name, int(s.columns["time"][0]), float(s.columns["f"][0])) for s in series] == [
        ("a", 1, 1.0),
        ("b", 2, 2.0),
    ]


def test_an_empty_write_sends_nothing(influx: InfluxClient) -> None:
    influx.write([])
    assert influx.query("SHOW MEASUREMENTS") == []


@pytest.mark.slow
def test_a_query_of_many_chunks_is_merged_into_one_series(influx: InfluxClient) -> None:
    rows = 120_000  # twelve chunks of 10,000 rows
    with BatchWriter(influx, batch_lines=10_000) as writer:
        writer.add_many(f"r,st=A p={i}.5 {T0_NS + i}" for i in range(rows))

    (series,) = influx.query(f'SELECT "p" FROM "r" WHERE time >= {T0_NS}')

    assert len(series) == rows
    assert series.columns["time"][-1] == T0_NS + rows - 1
    np.testing.assert_array_equal(series.columns["p"], np.arange(rows) + 0.5)


# -- the batch writer ---------------------------------------------------------------------------


def test_batch_writer_sends_everything_in_batches(influx: InfluxClient) -> None:
    lines = 50_000
    with BatchWriter(influx, batch_lines=5000, max_pending_batches=2) as writer:
        for i in range(lines - 1):
            writer.add(f'r,st=S{i % 7} p={i}.0,s="v{i}" {T0_NS + i}')
        writer.add_many([f"r,st=S0 p=0.0 {T0_NS + lines}"])
        writer.flush()
        assert writer.lines_written == lines
        assert writer.batches_written == 10
        assert writer.retries == 0
        assert writer.bytes_sent > 0

    counts = _select(influx, f'SELECT count("p") FROM "r" WHERE time >= {T0_NS}')
    assert counts["count"][0] == lines


def test_gzip_sends_fewer_bytes(influx: InfluxClient, influxd: LocalInfluxd) -> None:
    lines = [f"r,st=S1 p={i}.0 {T0_NS + i}" for i in range(5000)]
    sent = {}
    for gzip in (True, False):
        with InfluxClient(url=influxd.url, database=influx.database, gzip=gzip) as client:
            with BatchWriter(client) as writer:
                writer.add_many(lines)
            sent[gzip] = writer.bytes_sent
    assert sent[True] * 4 < sent[False]


def test_a_background_error_is_raised_by_flush_and_every_later_call(influxd: LocalInfluxd) -> None:
    with InfluxClient(url=influxd.url, database="no_such_database") as client:
        writer = BatchWriter(client, batch_lines=2)
        writer.add_many(["r f=1 1", "r f=2 2", "r f=3 3"])
        with pytest.raises(InfluxNotFoundError, match="no_such_database"):
            writer.flush()
        with pytest.raises(InfluxNotFoundError):
            writer.add("r f=4 4")
        with pytest.raises(InfluxNotFoundError):
            writer.close()
        assert writer.lines_written == 0
        with pytest.raises(InfluxError, match="closed"):
            writer.add("r f=5 5")


def test_a_failing_with_block_keeps_its_own_error_and_notes_the_writers(
    influxd: LocalInfluxd,
) -> None:
    with (
        InfluxClient(url=influxd.url, database="no_such_database") as client,
        pytest.raises(KeyError) as caught,
        BatchWriter(client) as writer,
    ):
        writer.add("r f=1 1")
        raise KeyError("the caller's own failure")
    assert any("BatchWriter failed too" in note for note in caught.value.__notes__)


# -- errors from the real server ----------------------------------------------------------------


def test_a_bad_line_is_rejected_naming_it(influx: InfluxClient) -> None:
    with pytest.raises(InfluxRequestError, match="unable to parse 'r f=oops 3'"):
        influx.write(["r f=1 1", "r f=oops 3", "r f=2 2"])
    # InfluxDB keeps the good lines of the batch.
    assert len(influx.query('SELECT * FROM "r"')[0]) == 2


def test_writing_to_a_missing_database_is_not_found(influxd: LocalInfluxd) -> None:
    with InfluxClient(url=influxd.url, database="no_such_database") as client:
        with pytest.raises(InfluxNotFoundError, match="no_such_database"):
            client.write(["r f=1 1"])
        with pytest.raises(InfluxNotFoundError, match="no_such_database"):
            client.query('SELECT * FROM "r"')


def test_bad_influxql_is_a_request_error(influx: InfluxClient) -> None:
    with pytest.raises(InfluxRequestError, match="error parsing query"):
        influx.query("SELEKT 1")
    with pytest.raises(InfluxRequestError, match="statement 0"):
        influx.query('SELECT * FROM "r" GROUP BY time(1h)')  # needs an aggregate


@pytest.mark.parametrize(
    ("username", "password"),
    [(ADMIN, "wrong"), ("nobody", ADMIN_PASSWORD), (None, None)],
    ids=["wrong-password", "unknown-user", "no-credentials"],
)
def test_wrong_credentials_are_an_auth_error(
    influxd_auth: LocalInfluxd, username: str | None, password: str | None
) -> None:
    with InfluxClient(
        url=influxd_auth.url, database="db", username=username, password=password
    ) as client:
        with pytest.raises(InfluxAuthError) as caught:
            client.write(["r f=1 1"])
        with pytest.raises(InfluxAuthError):
            client.query("SHOW DATABASES")
    assert "wrong" not in str(caught.value)  # the password never appears


def test_right_credentials_work(influxd_auth: LocalInfluxd) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        influx_url=influxd_auth.url,
        influx_database="authed",
        influx_username=ADMIN,
        influx_password=SecretStr(ADMIN_PASSWORD),
    )
    with InfluxClient.from_settings(settings) as client:
        client.create_database()
        client.write(["r f=1 1"])
        assert len(client.query('SELECT * FROM "r"')[0]) == 1


def test_a_closed_port_is_a_connection_error_after_the_retries() -> None:
    delays: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    with InfluxClient(url=url, database="db", max_retries=3, sleep=delays.append) as client:
        with pytest.raises(InfluxConnectionError, match=f"cannot reach InfluxDB at {url}"):
            client.write(["r f=1 1"])
        with pytest.raises(InfluxConnectionError, match="after 4 attempt"):
            client.ping()
    assert len(delays) == 6


# -- the retry policy, on a fake server ---------------------------------------------------------


Reply = Callable[[httpx.Request], httpx.Response]


def _status(code: int, *, retry_after: str | None = None, error: str = "boom") -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda request: httpx.Response(code, headers=headers, json={"error": error})


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


OK = _status(204)

# (replies in order, error expected or None, delay bounds (low, high) for each retry)
RETRY_CASES = {
    "503 honours Retry-After": ([_status(503, retry_after="7"), OK], None, [(7.0, 7.0)]),
    "Retry-After above the cap is honoured": (
        [_status(503, retry_after="30"), OK],
        None,
        [(30.0, 30.0)],
    ),
    "Retry-After is cut at 60 s": (
        [_status(429, retry_after="3600"), OK],
        None,
        [(MAX_RETRY_AFTER_S, MAX_RETRY_AFTER_S)],
    ),
    "429 without Retry-After backs off": (
        [_status(429), _status(429), OK],
        None,
        [(0.0, 0.2), (0.0, 0.4)],
    ),
    "Retry-After as a date falls back to backoff": (
        [_status(503, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), OK],
        None,
        [(0.0, 0.2)],
    ),
    "a timeout is retried": ([_timeout, OK], None, [(0.0, 0.2)]),
    "502 and 504 are retried": ([_status(502), _status(504), OK], None, [(0.0, 0.2), (0.0, 0.4)]),
    "Retry-After 0 means at once": ([_status(503, retry_after="0"), OK], None, [(0.0, 0.0)]),
    "a 500 storm gives up": (
        [_status(500)] * 7,
        InfluxServerError,
        [(0.0, 0.2), (0.0, 0.4), (0.0, 0.8), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0)],
    ),
    "400 is not retried": ([_status(400, error="unable to parse 'x'")], InfluxRequestError, []),
    "401 is not retried": ([_status(401, error="authorization failed")], InfluxAuthError, []),
    "403 is not retried": ([_status(403)], InfluxAuthError, []),
    "404 is not retried": ([_status(404, error="database not found")], InfluxNotFoundError, []),
    "413 is not retried": ([_status(413)], InfluxRequestError, []),
    "501 is not retried": ([_status(501)], InfluxServerError, []),
}


@pytest.mark.parametrize(
    ("replies", "error", "delay_bounds"), RETRY_CASES.values(), ids=RETRY_CASES.keys()
)
def test_retry_policy(
    replies: list[Reply], error: type[Exception] | None, delay_bounds: list[tuple[float, float]]
) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return replies[len(requests) - 1](request)

    delays: list[float] = []
    client = InfluxClient(
        url="http://influx.test:8086",
        database="db",
        backoff_base_s=0.2,
        backoff_cap_s=1.0,
        transport=httpx.MockTransport(handler),
        sleep=delays.append,
    )
    with client:
        if error is None:
            client.write(["r f=1 1"])
        else:
            with pytest.raises(error):
                client.write(["r f=1 1"])

    assert len(requests) == len(replies)
    assert len(delays) == len(delay_bounds)
    for delay, (low, high) in zip(delays, delay_bounds, strict=True):
        assert low <= delay <= high


def test_a_500_storm_says_how_many_attempts_failed() -> None:
    client = InfluxClient(
        url="http://influx.test:8086",
        database="db",
        max_retries=4,
        transport=httpx.MockTransport(_status(500, error="engine: cache full")),
        sleep=lambda _: None,
    )
    with client, pytest.raises(InfluxServerError, match=r"500 to 5 attempt.*cache full"):
        client.write(["r f=1 1"])


def test_batch_writer_counts_retries() -> None:
    answers = iter([_status(503, retry_after="0"), OK, OK])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)(request)

    client = InfluxClient(
        url="http://influx.test:8086",
        database="db",
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
    )
    with client, BatchWriter(client, batch_lines=1) as writer:
        writer.add_many(["r f=1 1", "r f=2 2"])
        writer.flush()
        assert (writer.lines_written, writer.batches_written, writer.retries) == (2, 2, 1)


def test_no_payload_or_password_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    attempts = iter([_status(503, retry_after="0"), OK])
    client = InfluxClient(
        url="http://influx.test:8086",
        database="db",
        username="u",
        password="hunter2",
        transport=httpx.MockTransport(lambda request: next(attempts)(request)),
        sleep=lambda _: None,
    )
    with client, caplog.at_level("DEBUG"):
        client.write(['r secret="payload" 1'])
    assert caplog.records  # the retry was logged
    assert "payload" not in caplog.text
    assert "hunter2" not in caplog.text


def test_an_answer_that_is_not_influxdb_json_is_an_error() -> None:
    proxy_page = httpx.Response(200, text="<html>Sign in to the proxy</html>")
    client = InfluxClient(
        url="http://influx.test:8086",
        database="db",
        transport=httpx.MockTransport(lambda request: proxy_page),
    )
    with client, pytest.raises(InfluxRequestError, match="not JSON"):
        client.query("SHOW DATABASES")


def test_a_url_without_scheme_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="http://"):
        InfluxClient(url="influx.test:8086", database="db")
