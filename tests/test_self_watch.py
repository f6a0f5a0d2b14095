"""The pure parts of self-watch: own-blindness verdicts, error-only platforms, scheduler lag
on a virtual clock, and which store errors are retried."""

from __future__ import annotations

import sqlite3

import pytest

from monitor import blindness
from monitor.config import OwnBlindnessConfig
from monitor.health import PlatformHealth
from monitor.model import AbsentReason, AccountState, ErrorKind, Observation, State
from monitor.scheduler import Scheduler
from monitor.store import retryable
from tests.conftest import wait_for

SPEC = OwnBlindnessConfig(min_accounts=3, fraction=0.5)


def account(platform: str, blind: bool, why: str | None = "connection",
            decisive: float = 100.0) -> blindness.BlindAccount:
    st = AccountState(State.UP, blind=blind, last_decisive_at=decisive)
    return blindness.BlindAccount(platform, st, why)


def test_most_accounts_blind_across_platforms_is_our_own_blindness() -> None:
    accounts = ([account("x", True, "auth", 90.0)] * 3 + [account("masto", True)] * 3
                + [account("masto", False)] * 4)
    verdict = blindness.evaluate(accounts, 10, SPEC)
    assert verdict.active and verdict.blind == 6 and verdict.threshold == 5
    assert verdict.platforms == {"x": 3, "masto": 3}
    assert verdict.kinds == {"auth": 3, "connection": 3}
    assert verdict.since == 90.0  # the earliest blind account's last decisive answer
    assert "6 of 10 accounts blind" in verdict.summary


@pytest.mark.parametrize(("blind", "total", "active"), [
    (4, 10, False),  # under half
    (5, 10, True),  # half
    (2, 2, False),  # under min_accounts, however large the fraction
    (3, 3, True),
])
def test_threshold_is_the_larger_of_min_accounts_and_the_fraction(
        blind: int, total: int, active: bool) -> None:
    accounts = [account("x", True)] * blind + [account("x", False)] * (total - blind)
    assert blindness.evaluate(accounts, total, SPEC).active is active


def test_disabled_never_trips_and_small_watchlists_need_no_grace() -> None:
    off = OwnBlindnessConfig(enabled=False)
    assert not blindness.evaluate([account("x", True)] * 5, 5, off).active
    assert not blindness.could_trip(2, SPEC)
    assert blindness.could_trip(3, SPEC)


def test_a_platform_answering_only_errors_warns_once_after_a_minute() -> None:
    health = PlatformHealth()
    health.saw(Observation.failed(0.0, ErrorKind.AUTH, "HTTP 401"))
    health.saw(Observation.failed(30.0, ErrorKind.AUTH, "HTTP 401"))
    assert health.due_warning(59.0) is None
    kind, count, hint = health.due_warning(61.0) or ("", 0, "")
    assert (kind, count) == ("auth", 2)
    assert "token" in hint
    assert health.due_warning(120.0) is None  # once
    assert health.saw(Observation.present(121.0))  # a decisive answer ends the run
    health.saw(Observation.failed(130.0, ErrorKind.CONNECTION))
    assert health.due_warning(180.0) is None  # a new run starts its own minute
    assert health.due_warning(191.0) is not None


def test_one_decisive_answer_in_the_minute_means_no_warning() -> None:
    health = PlatformHealth()
    health.saw(Observation.failed(0.0, ErrorKind.TIMEOUT))
    health.saw(Observation.absent(10.0, AbsentReason.SUSPENDED))
    health.saw(Observation.failed(20.0, ErrorKind.TIMEOUT))
    assert health.due_warning(70.0) is None


async def test_lag_counts_what_waits_for_budget_on_a_virtual_clock() -> None:
    now = [1000.0]
    probed: list[str] = []

    async def probe(key: object) -> float:
        probed.append(str(key))
        return 3600.0

    sched = Scheduler(probe, jitter=0.0, clock=lambda: now[0])
    sched.add_lane("p", concurrency=1, rate=0.001, burst=1)  # one request, then nothing
    for i in range(5):
        sched.add(f"a{i}", "p", spread=0.0)
    await sched.start()
    try:
        # The worker has spent the one request and holds the next account for budget.
        await wait_for(lambda: len(probed) == 1 and len(sched.lanes["p"].held) == 1,
                       what="one probed, the next held for budget")
        assert sched.lag() == {"p": (0.0, 0)}  # just due: within the slack
        now[0] += 30.0
        worst, overdue = sched.lag()["p"]
        # one probed; one held by the worker for budget, three queued
        assert worst == pytest.approx(30.0) and overdue == 4
        assert sched.waiting() == {f"a{i}" for i in range(5)} - set(probed)
    finally:
        await sched.stop(grace=0.1)


@pytest.mark.parametrize(("exc", "retry"), [
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("database or disk is full"), True),
    (sqlite3.DatabaseError("file is not a database"), True),
    (OSError(5, "Input/output error"), True),
    (sqlite3.IntegrityError("UNIQUE constraint failed"), False),
    (TypeError("Object of type bytes is not JSON serializable"), False),
])
def test_only_the_files_own_errors_are_retried(exc: BaseException, retry: bool) -> None:
    assert retryable(exc) is retry
