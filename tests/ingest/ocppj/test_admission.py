"""Admission of station connections: ids, subprotocols, credentials, and slowing down guessers."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from ingest.ocppj.admission import Admission, Admit, FailureThrottle, Refusal

PASSWORD = "a-long-station-password"
BOTH = ["ocpp1.6", "ocpp2.0.1"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Passwords:
    """The state database's check, counting its calls; ``delay_s`` makes each one slow."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.fail = fail
        self.threads: set[int] = set()  # where the checks ran

    def __call__(self, station_id: str, password: str) -> bool:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.fail:
            raise RuntimeError(f"database down (station {station_id}, password {password})")
        time.sleep(self.delay_s)
        return station_id == "CP-1" and password == PASSWORD


def admit_all(
    admission: Admission, attempts: Sequence[tuple[str, str, tuple[str, str] | None]]
) -> list[Admit]:
    """Run the attempts (station, address, credentials) at once."""

    async def main() -> list[Admit]:
        return list(await asyncio.gather(*(admission.admit(s, a, BOTH, c) for s, a, c in attempts)))

    return asyncio.run(main())


# -- the throttle, on virtual time -------------------------------------------------------------

THROTTLE_CASES: dict[str, tuple[list[tuple[str, float]], float, float]] = {
    # name: ([("fail"|"ok", at)], asked at, blocked for)
    "five failures are free": ([("fail", 0)] * 5, 0, 0.0),
    "the sixth blocks a second": ([("fail", 0)] * 6, 0, 1.0),
    "each further one doubles it": ([("fail", 0)] * 8, 0, 4.0),
    "up to the cap": ([("fail", 0)] * 30, 0, 60.0),
    "the block runs out": ([("fail", 0)] * 6, 1.5, 0.0),
    "a success forgets": ([("fail", 0.0)] * 6 + [("ok", 0.0)], 0, 0.0),
    "a quiet quarter of an hour forgets": ([("fail", 0)] * 30, 901, 0.0),
    "old failures do not count": ([("fail", 0.0)] * 5 + [("fail", 1000.0)], 1000, 0.0),
}


@pytest.mark.parametrize(
    ("history", "asked_at", "blocked_s"), THROTTLE_CASES.values(), ids=THROTTLE_CASES.keys()
)
def test_failure_throttle(
    history: list[tuple[str, float]], asked_at: float, blocked_s: float
) -> None:
    throttle = FailureThrottle()
    for what, at in history:
        if what == "fail":
            throttle.failed("station CP-1", at)
        else:
            throttle.succeeded("station CP-1")
    assert throttle.blocked_for("station CP-1", asked_at) == pytest.approx(blocked_s)
    assert throttle.blocked_for("station CP-2", asked_at) == 0.0


def test_failure_throttle_remembers_a_bounded_number_of_keys() -> None:
    throttle = FailureThrottle(free_failures=0, max_keys=3)
    for i in range(5):
        throttle.failed(f"address 10.0.0.{i}", 0.0)
    assert [throttle.blocked_for(f"address 10.0.0.{i}", 0.0) for i in range(5)] == [
        0.0,
        0.0,
        1.0,
        1.0,
        1.0,
    ]


# -- the verdicts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["ocpp1.6"], "ocpp1.6"), (BOTH, "ocpp2.0.1"), (["ocpp2.0.1", "x"], "ocpp2.0.1")],
)
def test_the_preferred_offered_subprotocol_is_chosen(offered: list[str], chosen: str) -> None:
    admission = Admission(None, Counter())
    assert asyncio.run(admission.admit("CP-1", "10.0.0.1", offered, None)) == Admit(chosen)


@pytest.mark.parametrize(
    ("station_id", "offered", "credentials", "refusal"),
    [
        ("CP-1\\", BOTH, ("CP-1\\", PASSWORD), Refusal.BAD_STATION_ID),
        ("CP-1", ["ocpp2.1", "ocpp1.5"], ("CP-1", PASSWORD), Refusal.NO_SUBPROTOCOL),
        ("CP-1", BOTH, None, Refusal.NO_CREDENTIALS),
        ("CP-1", BOTH, ("CP-2", PASSWORD), Refusal.WRONG_PASSWORD),
        ("CP-1", BOTH, ("CP-1", "wrong"), Refusal.WRONG_PASSWORD),
        ("CP-2", BOTH, ("CP-2", PASSWORD), Refusal.WRONG_PASSWORD),
        ("CP-1", BOTH, ("CP-1", PASSWORD), None),
    ],
)
def test_verdicts(
    station_id: str,
    offered: list[str],
    credentials: tuple[str, str] | None,
    refusal: Refusal | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused: Counter[str] = Counter()
    admission = Admission(Passwords(), refused)
    verdict = asyncio.run(admission.admit(station_id, "10.0.0.1", offered, credentials))
    admission.close()
    assert verdict.refusal is refusal
    assert (verdict.subprotocol is None) == (refusal is not None)
    assert refused == (Counter({refusal.value: 1}) if refusal else Counter())
    if refusal is not None:
        (record,) = [r for r in caplog.records if "refused station" in r.getMessage()]
        assert "10.0.0.1" in record.getMessage() and refusal.value in record.getMessage()
    assert PASSWORD not in caplog.text


def test_a_storm_of_wrong_passwords_is_throttled_after_a_few_checks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    passwords, refused, clock = Passwords(delay_s=0.01), Counter[str](), Clock()
    admission = Admission(passwords, refused, clock=clock)
    storm = [("CP-1", "10.0.0.9", ("CP-1", f"guess-{i}")) for i in range(50)]
    verdicts = admit_all(admission, storm)
    assert passwords.calls == 6  # the free failures and one more; the rest never reach the hash
    assert refused == Counter(wrong_password=6, throttled=44)
    assert {v.retry_after_s for v in verdicts if v.refusal is Refusal.THROTTLED} == {1}
    # A guesser from another address gets one check there; then the station's block holds for
    # that address too.
    fresh = [("CP-1", "10.0.0.11", ("CP-1", "guess-x"))]
    again = admit_all(admission, fresh) + admit_all(admission, fresh)
    assert [v.refusal for v in again] == [Refusal.WRONG_PASSWORD, Refusal.THROTTLED]
    assert passwords.calls == 7
    # The station from its own address, which never failed, is checked and admitted at once:
    # a stranger failing on purpose cannot keep it out.
    assert admit_all(admission, [("CP-1", "10.0.0.10", ("CP-1", PASSWORD))])[0].subprotocol
    admission.close()
    assert all("guess-" not in r.getMessage() for r in caplog.records)
    assert sum("refused station CP-1 from 10.0.0.9" in r.getMessage() for r in caplog.records) == 50


def test_password_checks_run_off_the_event_loop() -> None:
    """Eight slow checks run on another thread than the event loop's, which keeps turning
    meanwhile (judged by where they ran, not by a clock: the machine may be busy)."""
    passwords = Passwords(delay_s=0.05)
    admission = Admission(passwords, Counter())
    turns_during_checks: list[int] = []

    async def main() -> int:
        loop_thread = threading.get_ident()
        turns = 0

        async def turning(stop: asyncio.Event) -> None:
            nonlocal turns
            while not stop.is_set():
                await asyncio.sleep(0)
                turns += 1
                if passwords.calls and passwords.calls < 8:
                    turns_during_checks.append(passwords.calls)

        stop = asyncio.Event()
        turner = asyncio.create_task(turning(stop))
        attempts = [
            admission.admit(f"CP-{i}", f"10.0.1.{i}", BOTH, (f"CP-{i}", "x")) for i in range(8)
        ]
        await asyncio.gather(*attempts)
        stop.set()
        await turner
        return loop_thread

    loop_thread = asyncio.run(main())
    admission.close()
    assert passwords.calls == 8
    assert loop_thread not in passwords.threads, "a check ran on the event loop"
    assert turns_during_checks, "the loop did not turn while the checks ran"


@pytest.mark.parametrize(
    "make", [lambda: Passwords(delay_s=1.0), lambda: Passwords(fail=True)], ids=["slow", "failing"]
)
def test_a_check_too_slow_or_failing_refuses_as_busy(
    make: Callable[[], Passwords], caplog: pytest.LogCaptureFixture
) -> None:
    refused: Counter[str] = Counter()
    admission = Admission(make(), refused, timeout_s=0.2)
    verdict = admit_all(admission, [("CP-1", "10.0.0.1", ("CP-1", PASSWORD))])[0]
    admission.close()
    assert (verdict.refusal, verdict.retry_after_s) == (Refusal.BUSY, 10)
    assert refused == Counter(busy=1)
    assert PASSWORD not in caplog.text  # the failing check's message holds it: never logged


def test_checks_beyond_the_waiting_room_are_refused_at_once() -> None:
    release = threading.Event()
    calls: list[str] = []

    def blocked(station_id: str, _password: str) -> bool:
        calls.append(station_id)
        release.wait(5)
        return False

    admission = Admission(blocked, Counter(), timeout_s=5)

    async def main() -> list[Admit]:
        n = Admission.max_waiting + 10
        pending = [
            asyncio.create_task(admission.admit(f"CP-{i}", f"10.1.{i}.1", BOTH, (f"CP-{i}", "x")))
            for i in range(n)
        ]
        await asyncio.sleep(0.2)
        release.set()
        return list(await asyncio.gather(*pending))

    verdicts = asyncio.run(main())
    admission.close()
    busy = [v for v in verdicts if v.refusal is Refusal.BUSY]
    assert len(busy) == 10 and len(calls) == Admission.max_waiting


def test_a_password_found_right_lately_is_taken_without_the_slow_check() -> None:
    passwords, clock = Passwords(delay_s=0.01), Clock()
    admission = Admission(passwords, Counter(), clock=clock, verified_ttl_s=600.0)
    right = [("CP-1", "10.0.0.1", ("CP-1", PASSWORD))]
    assert admit_all(admission, right)[0].subprotocol
    assert passwords.calls == 1
    # reconnecting, from this address or another, within the time: no slow check
    clock.now += 599.0
    both = admit_all(admission, [*right, ("CP-1", "10.0.0.2", ("CP-1", PASSWORD))])
    assert all(v.subprotocol for v in both)
    assert passwords.calls == 1
    # a wrong password is checked the slow way, refused, and leaves the right one remembered
    wrong = admit_all(admission, [("CP-1", "10.0.0.3", ("CP-1", PASSWORD + "x"))])[0]
    assert wrong.refusal is Refusal.WRONG_PASSWORD and passwords.calls == 2
    assert admit_all(admission, right)[0].subprotocol and passwords.calls == 2
    # another station with the same password is its own: checked (and refused: unknown here)
    other = admit_all(admission, [("CP-2", "10.0.0.1", ("CP-2", PASSWORD))])[0]
    assert other.refusal is Refusal.WRONG_PASSWORD and passwords.calls == 3
    # past the time, the slow check again
    clock.now += 2.0
    assert admit_all(admission, right)[0].subprotocol and passwords.calls == 4
    admission.close()


def test_a_station_found_right_is_admitted_while_a_guesser_keeps_the_check_busy() -> None:
    gate = threading.Event()

    class Held(Passwords):
        def __call__(self, station_id: str, password: str) -> bool:
            if password.startswith("guess"):
                gate.wait(10)  # the worker held by a guess until the honest station is in
            return super().__call__(station_id, password)

    passwords = Held()
    admission = Admission(passwords, Counter(), timeout_s=5)
    right = ("CP-1", "10.0.0.1", ("CP-1", PASSWORD))
    assert admit_all(admission, [right])[0].subprotocol

    async def main() -> Admit:
        guess = asyncio.create_task(admission.admit("CP-1", "10.0.0.66", BOTH, ("CP-1", "guess-1")))
        await asyncio.sleep(0.05)  # the guess holds the worker now
        honest = await admission.admit("CP-1", "10.0.0.1", BOTH, ("CP-1", PASSWORD))
        gate.set()
        await guess
        return honest

    assert asyncio.run(main()).subprotocol
    admission.close()
