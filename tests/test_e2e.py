"""End to end on loopback: a fake Mastodon, the real monitor, its HTTP surface and its store."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from monitor.fakes.mastodon import FakeMastodon
from monitor.model import AccountKey, State
from tests.conftest import (
    free_port,
    mastodon_config,
    probed_again,
    running_monitor,
    scrape,
    state_of,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            return float(value)
    return None


async def test_account_vanishes_pages_state_down_then_returns_with_an_honest_outage(
        state_file: str) -> None:
    fake = FakeMastodon({"alice": "present", "bob": "present"})
    async with fake.running() as base:
        config = mastodon_config(base, ["alice", "bob"], state_path=state_file)
        config = config.replace("interval: 100ms", "interval: 200ms")
        async with running_monitor(config) as monitor:
            await wait_for(lambda: state_of(monitor, "masto", "alice") is State.UP, what="up")
            policy = monitor.accounts[AccountKey("masto", "alice")].policy

            gone_at = time.time()
            fake.set_state("alice", "suspended")
            await wait_for(lambda: state_of(monitor, "masto", "alice") is State.DOWN,
                           what="alice down")
            accounts = json.loads(await scrape(monitor.port or 0, "/api/v1/accounts?state=down"))
            (row,) = accounts["accounts"]
            assert (row["account"], row["reason"], row["protected"]) == ("alice", "suspended", True)
            assert row["outage_id"] is not None

            text = await scrape(monitor.port or 0)
            assert metric(text, "accmon_account_up", account="alice", protected="true") == 0.0
            assert metric(text, "accmon_account_up", account="bob") == 1.0
            assert metric(text, "accmon_account_state", account="alice", state="down") == 1.0
            # Only the current state's sample (issue 13: per-account series Prometheus affords).
            assert metric(text, "accmon_account_state", account="alice", state="up") is None
            assert metric(text, "accmon_outages_total", platform="masto", reason="suspended") == 1
            assert (metric(text, "accmon_account_outage_seconds", account="alice") or 0) > 0
            assert metric(text, "accmon_build_info") == 1.0

            # The outage lasts five more absent answers (about a second), not a timer's worth.
            await probed_again(monitor, ["alice"], times=5)
            assert state_of(monitor, "masto", "alice") is State.DOWN
            back_at = time.time()
            fake.set_state("alice", "present")
            await wait_for(lambda: state_of(monitor, "masto", "alice") is State.UP, what="back up")

            outages = json.loads(await scrape(monitor.port or 0, "/api/v1/outages"))["outages"]
            (outage,) = outages
            truth = back_at - gone_at
            one_interval = policy.interval * (1 + monitor.config.defaults.jitter) + 0.05
            assert outage["reason"] == "suspended" and not outage["open"]
            assert abs(outage["duration_seconds"] - truth) <= one_interval, (outage, truth)
            lo, hi = outage["duration_bounds_seconds"]
            assert lo <= outage["duration_seconds"] <= hi
            assert state_of(monitor, "masto", "bob") is State.UP

            text = await scrape(monitor.port or 0)
            assert metric(text, "accmon_outage_duration_seconds_count", platform="masto") == 1
            assert metric(text, "accmon_account_outage_seconds", account="alice") is None


@pytest.mark.slow
async def test_a_flaky_platform_never_takes_an_account_down(state_file: str) -> None:
    handles = [f"user{i}" for i in range(20)]
    # A budget big enough for the test's pace: what is measured here is the faults.
    fake = FakeMastodon(dict.fromkeys(handles, "present"), rate_limit=10**6)
    async with fake.running() as base:
        config = mastodon_config(base, handles, state_path=state_file)
        config = config.replace("timeout: 500ms", "timeout: 150ms").replace(
            "interval: 100ms", "interval: 50ms")  # twice the answers per second
        # The fake's 429s say "wait until the next 5-minute boundary"; cap that so the test
        # sees thousands of answers rather than one pause.
        config = config.replace("    concurrency: 8", "    concurrency: 8\n"
                                "    max_rate_limit_pause: 50ms")
        async with running_monitor(config) as monitor:
            await wait_for(lambda: all(state_of(monitor, "masto", h) is State.UP for h in handles),
                           what="all up")
            # 30% of answers: 5xx, 429 or a hang past our timeout, for thousands of probes.
            fake.set_faults(server_error_rate=0.1, rate_limit_rate=0.1, timeout_rate=0.1,
                            hang_seconds=1.0, seed=42)
            # However fast this machine answers: until well over 600 probes have met the
            # faults, at least 30 of each kind (not a fixed 8 s that a busy machine fills
            # with fewer).
            registry = monitor.metrics.registry

            def sample(name: str, **labels: str) -> float:
                return registry.get_sample_value(name, {"platform": "masto", **labels}) or 0.0

            def exposed_enough() -> bool:
                answers = sum(sample("accmon_probes_total", result=r)
                              for r in ("present", "absent", "error"))
                return answers > 700 and all(
                    sample("accmon_probe_errors_total", kind=k) > 40
                    for k in ("server_error", "rate_limited", "timeout"))

            await wait_for(exposed_enough, timeout=60, what="700 probes through the faults")
            fake.set_faults()
            text = await scrape(monitor.port or 0)
        errors = {kind: metric(text, "accmon_probe_errors_total", kind=kind)
                  for kind in ("server_error", "rate_limited", "timeout")}
        probes = sum(metric(text, "accmon_probes_total", result=r) or 0
                     for r in ("present", "absent", "error"))
        assert probes > 600, probes
        assert all((n or 0) > 30 for n in errors.values()), errors
        assert metric(text, "accmon_probes_total", result="absent") is None
        assert (metric(text, "accmon_ratelimit_throttled_seconds_total", platform="masto")
                or 0) > 0  # the 429s were honoured, not hammered
        assert all(state_of(monitor, "masto", h) is State.UP for h in handles)
        assert not [line for line in text.splitlines()
                    if line.startswith("accmon_transitions_total") and 'to_state="suspect"' in line]


async def test_only_errors_beyond_the_staleness_bound_is_blind_not_down(state_file: str) -> None:
    fake = FakeMastodon({"alice": "present"})
    async with fake.running() as base:
        config = mastodon_config(base, ["alice"], state_path=state_file)
        config = config.replace("staleness: 1h", "staleness: 500ms")
        async with running_monitor(config) as monitor:
            await wait_for(lambda: state_of(monitor, "masto", "alice") is State.UP, what="up")
            fake.set_faults(server_error_rate=1.0)
            view = monitor.accounts[AccountKey("masto", "alice")]
            await wait_for(lambda: view.state.blind, what="blind")
            text = await scrape(monitor.port or 0)
            assert metric(text, "accmon_account_blind", account="alice") == 1.0
            assert view.state.state is State.UP
            fake.set_faults()
            await wait_for(lambda: not view.state.blind, what="sighted again")


async def test_health_readiness_and_account_filters(state_file: str) -> None:
    fake = FakeMastodon({"alice": "present", "carol": "gone"})
    async with fake.running() as base:
        config = mastodon_config(base, ["alice", "carol"], state_path=state_file)
        async with running_monitor(config) as monitor:
            port = monitor.port or 0
            assert json.loads(await scrape(port, "/healthz"))["status"] == "ok"
            ready = json.loads(await scrape(port, "/readyz"))
            assert ready == {"status": "ok", "checks": {"config": True, "store": True,
                                                        "scheduler": True}}
            await wait_for(lambda: state_of(monitor, "masto", "carol") is State.DOWN,
                           what="carol down")
            rows = json.loads(await scrape(port, "/api/v1/accounts?platform=masto&state=down"))
            assert [r["account"] for r in rows["accounts"]] == ["carol"]
            assert rows["accounts"][0]["reason"] == "not_found"
            opened = json.loads(await scrape(port, "/api/v1/outages?open=true"))["outages"]
            assert [o["account"] for o in opened] == ["carol"]
            async with aiohttp.ClientSession() as s, \
                    s.get(f"http://127.0.0.1:{port}/api/v1/outages?limit=x") as resp:
                assert resp.status == 400


# ------------------------------------------------------------------ a real process, killed


def _start(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, MASTO_TOKEN="tok-SECRET-123")
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config), "--port", str(port),
         "--log-format", "json"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _api(port: int, path: str) -> dict | None:  # type: ignore[type-arg]
    try:
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{path}") as r:
            return await r.json() if r.status == 200 else None
    except aiohttp.ClientError:
        return None


async def _account(port: int, handle: str) -> dict | None:  # type: ignore[type-arg]
    body = await _api(port, "/api/v1/accounts")
    rows = [r for r in (body or {}).get("accounts", []) if r["account"] == handle]
    return rows[0] if rows else None


async def _wait_account(port: int, handle: str, state: str, timeout: float = 15) -> dict:  # type: ignore[type-arg]
    async def in_state() -> dict | None:  # type: ignore[type-arg]
        row = await _account(port, handle)
        return row if row and row["state"] == state else None

    return await wait_for(in_state, timeout=timeout, what=f"{handle} {state}")  # type: ignore[no-any-return]


def port_bindable(port: int) -> bool:
    """Whether a server could listen on ``port`` now (the one a killed process held)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.mark.slow
async def test_killed_mid_outage_and_restarted_it_is_still_one_outage(tmp_path: Path) -> None:
    fake = FakeMastodon({"alice": "present"})
    db = tmp_path / "state.db"
    log = tmp_path / "monitor.log"
    async with fake.running() as base:
        cfg = tmp_path / "monitor.yaml"
        text = mastodon_config(base, ["alice"], state_path=str(db))
        cfg.write_text(text.replace("    concurrency: 8", "    concurrency: 8\n"
                                    "    token: ${MASTO_TOKEN}"))
        port = free_port()
        proc = _start(cfg, port, log)
        try:
            await _wait_account(port, "alice", "up")
            gone_at = time.time()
            fake.set_state("alice", "suspended")
            first = await _wait_account(port, "alice", "down")
            proc.send_signal(signal.SIGKILL)  # no goodbye: nothing flushed on the way out
            proc.wait(timeout=5)
            killed_at = time.time()
            await wait_for(lambda: port_bindable(port), what="the killed process's port free")

            proc = _start(cfg, port, log)
            again = await _wait_account(port, "alice", "down")
            assert again["outage_id"] == first["outage_id"]
            back_at = time.time()
            fake.set_state("alice", "present")
            await _wait_account(port, "alice", "up")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=8)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        assert code == 0, "SIGTERM is a clean exit"

    history = subprocess.run([sys.executable, "-m", "monitor", "history", "--state", str(db),
                              "--json"], capture_output=True, text=True, cwd=ROOT, check=True)
    (outage,) = json.loads(history.stdout)
    assert outage["id"] == first["outage_id"]
    assert outage["first_seen_absent_at"] < killed_at < outage["recovered_at"]
    assert abs(outage["duration_seconds"] - (back_at - gone_at)) < 0.5

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    vanished = [e for e in lines if e.get("event") == "account vanished"]
    assert len(vanished) == 1 and vanished[0]["outage_id"] == first["outage_id"]
    assert vanished[0]["platform"] == "masto" and vanished[0]["account"] == "alice"
    assert [e["outage_id"] for e in lines if e.get("event") == "account recovered"] == \
        [first["outage_id"]]
    assert "tok-SECRET-123" not in log.read_text()
    human = subprocess.run([sys.executable, "-m", "monitor", "history", "--state", str(db)],
                           capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "masto/alice" in human and "suspended" in human
