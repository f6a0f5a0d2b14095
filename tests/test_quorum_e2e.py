"""Multi-vantage quorum for real: three monitor processes, each reaching the platform fake
through its own loopback path that can rewrite answers, peering each other over HTTP.

- one path rewriting every answer to Mastodon's "not found": no page, one disagreement
  notice in chat;
- every path seeing the account gone: exactly one page, after quorum, naming the vantages;
- a peer killed mid-check: the documented policy's result (``page``: "only 2 of 3");
- a peer with a wrong token: refused, and logged without its token.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty, FakeWebhook
from monitor.fakes.proxy import VantagePath, mastodon_not_found
from tests.conftest import FAST_DEFAULTS, free_port, scrape, wait_for
from tests.test_e2e import _account, _wait_account, metric

ROOT = Path(__file__).resolve().parent.parent
PEER_TOKEN = "peer-" + "5" * 27
ROUTING_KEY = "R0UT1NGK3Y0123456789abcdef012345"
NAMES = ("a", "b", "c")
pytestmark = pytest.mark.slow


@dataclass
class Vantage:
    name: str
    port: int
    path: VantagePath
    path_url: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None


def config(v: Vantage, others: list[Vantage], pd: str, chat: str, tmp: Path, *,
           required: int, when_too_few: str = "page", peer_token: str = PEER_TOKEN) -> str:
    peers = "".join(f"  - url: http://127.0.0.1:{o.port}\n    name: {o.name}\n"
                    f"    token: {peer_token if o.name != 'wrong' else 'nope'}\n"
                    "    timeout: 1500ms\n" for o in others)
    return f"""
monitor:
  vantage: {v.name}
  listen_port: {v.port}
  state_path: {tmp / (v.name + '.db')}
  shutdown_grace: 2s
  api:
    peer_token: {PEER_TOKEN}
{FAST_DEFAULTS}
platforms:
  masto:
    probe: mastodon
    base_url: {v.path_url}
    rate_per_second: 1000
    burst: 100
    concurrency: 8
accounts:
  - platform: masto
    handle: alice
    protected: true
notifiers:
  pd:
    type: pagerduty
    routing_key: {ROUTING_KEY}
    url: {pd}/v2/enqueue
    timeout: 1s
  chat:
    type: webhook
    url: {chat}/hook
routing:
  retry_initial: 50ms
  retry_max: 200ms
  reminder_interval: null
peers:
{peers}quorum:
  required: {required}
  when_too_few: {when_too_few}
  ask_again: 300ms
"""


def start(v: Vantage, cfg: Path) -> None:
    env = {k: val for k, val in os.environ.items() if not k.startswith("ACCMON_")}
    v.proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(cfg),
                               "--log-format", "json"], cwd=ROOT, env=env,
                              stdout=v.log.open("ab"), stderr=subprocess.STDOUT)


def stop(v: Vantage, sig: int = signal.SIGTERM) -> None:
    if v.proc is not None and v.proc.poll() is None:
        v.proc.send_signal(sig)
        v.proc.wait(timeout=15)


@asynccontextmanager
async def vantages(tmp: Path, masto_url: str, pd: str, chat: str, *, required: int,
                   when_too_few: str = "page") -> AsyncIterator[dict[str, Vantage]]:
    async with AsyncExitStack() as stack:
        found: dict[str, Vantage] = {}
        for name in NAMES:
            path = VantagePath(masto_url, mastodon_not_found())
            url = await stack.enter_async_context(path.running())
            found[name] = Vantage(name, free_port(), path, url, tmp / f"{name}.log")
        try:
            for v in found.values():
                cfg = tmp / f"{v.name}.yaml"
                cfg.write_text(config(v, [o for o in found.values() if o is not v], pd, chat,
                                      tmp, required=required, when_too_few=when_too_few))
                start(v, cfg)
            for v in found.values():
                await _wait_account(v.port, "alice", "up")
            yield found
        finally:
            for v in found.values():
                stop(v)


def triggers(pd: FakePagerDuty) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in pd.accepted if e["event_action"] == "trigger"]


def disagreements(chat: FakeWebhook) -> list[dict]:  # type: ignore[type-arg]
    return [d for d in chat.accepted if d.get("kind") == "vantage_disagreement"]


async def settle(vs: dict[str, Vantage], checks: int = 4) -> None:
    """Every vantage decided alice ``checks`` more times: anything due has been sent."""
    for _ in range(checks):
        mark = time.time()
        for v in vs.values():
            if v.proc is None or v.proc.poll() is not None:
                continue

            async def answered(port: int = v.port, mark: float = mark) -> bool:
                row = await _account(port, "alice")
                return row is not None and (row["last_probe_at"] or 0) > mark
            await wait_for(answered, what=f"{v.name} probed again")


async def test_one_rewriting_path_gives_no_page_and_one_disagreement(tmp_path: Path) -> None:
    masto, pd, chat = FakeMastodon({"alice": "present"}), FakePagerDuty(), FakeWebhook()
    async with masto.running() as m_url, pd.running() as pd_url, chat.running() as c_url, \
            vantages(tmp_path, m_url, pd_url, c_url, required=2) as vs:
            vs["a"].path.set_mode("not_found")  # a CDN edge serving a stale 404 to "a"
            await _wait_account(vs["a"].port, "alice", "down")
            await wait_for(lambda: disagreements(chat), timeout=15, what="disagreement")
            await settle(vs)
            assert triggers(pd) == []
            notice = disagreements(chat)
            assert len(notice) == 1
            votes = {v["vantage"]: v["result"] for v in notice[0]["details"]["quorum"]["votes"]}
            assert votes == {"a": "absent", "b": "present", "c": "present"}
            text = await scrape(vs["a"].port)
            assert metric(text, "accmon_vantage_disagreement", platform="masto",
                          gone_from="a", present_from="b") == 1
            for name in ("b", "c"):
                assert (await _account(vs[name].port, "alice") or {})["state"] == "up"
            # The path heals: the vantages agree again and nothing pages after the fact.
            vs["a"].path.set_mode("pass")
            await _wait_account(vs["a"].port, "alice", "up")
            await settle(vs)
            text = await scrape(vs["a"].port)
            assert metric(text, "accmon_vantage_disagreement", platform="masto",
                          gone_from="a", present_from="b") == 0
            assert triggers(pd) == []


async def test_every_path_seeing_it_gone_pages_once_after_quorum(tmp_path: Path) -> None:
    masto, pd, chat = FakeMastodon({"alice": "present"}), FakePagerDuty(), FakeWebhook()
    async with masto.running() as m_url, pd.running() as pd_url, chat.running() as c_url, \
            vantages(tmp_path, m_url, pd_url, c_url, required=2) as vs:
            started = time.monotonic()
            masto.set_state("alice", "suspended")
            await pd.wait_for(1, timeout=15)
            took = time.monotonic() - started
            await settle(vs)
            assert len(triggers(pd)) == 1, pd.accepted
            page = triggers(pd)[0]
            # a leads (first by name) and pages as soon as one peer agrees.
            summary = page["payload"]["summary"]
            assert "seen gone from 3 of 3 vantages (a, b, c)" in summary or \
                "seen gone from 2 of 3 vantages (a, " in summary, summary
            assert disagreements(chat) == []
            print(f"time to page with quorum: {took:.2f}s")
            masto.set_state("alice", "present")
            await wait_for(lambda: [e for e in pd.accepted if e["event_action"] == "resolve"],
                           timeout=15, what="resolve")
            assert pd.open_incidents() == []


async def test_a_peer_killed_mid_check_gives_the_policys_page(tmp_path: Path) -> None:
    masto, pd, chat = FakeMastodon({"alice": "present"}), FakePagerDuty(), FakeWebhook()
    async with masto.running() as m_url, pd.running() as pd_url, chat.running() as c_url, \
            vantages(tmp_path, m_url, pd_url, c_url, required=3) as vs:
            vs["c"].path.set_mode("hang")  # c's own probes hang: its check never ends...
            masto.set_state("alice", "suspended")
            await _wait_account(vs["a"].port, "alice", "down")
            stop(vs["c"], signal.SIGKILL)  # ...and then c dies mid-check
            await pd.wait_for(1, timeout=20)
            await settle(vs)
            assert len(triggers(pd)) == 1, pd.accepted
            summary = triggers(pd)[0]["payload"]["summary"]
            assert "only 2 of 3 required vantages" in summary and "c did not answer" in summary


async def test_a_peer_with_a_wrong_token_is_refused_and_not_logged(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as m_url:
        port, log = free_port(), tmp_path / "a.log"
        path = VantagePath(m_url, mastodon_not_found())
        async with path.running() as url:
            v = Vantage("a", port, path, url, log)
            cfg = tmp_path / "a.yaml"
            cfg.write_text(config(v, [], "http://127.0.0.1:9", "http://127.0.0.1:9",
                                  tmp_path, required=1).replace("peers:\n", "peers: []\n"))
            start(v, cfg)
            try:
                await _wait_account(port, "alice", "up")
                wrong = "wrong-" + "9" * 26
                async with aiohttp.ClientSession() as session:
                    for token in (wrong, None):
                        headers = {"Authorization": f"Bearer {token}"} if token else {}
                        async with session.post(f"http://127.0.0.1:{port}/api/v1/probe",
                                                json={"platform": "masto", "account": "alice"},
                                                headers=headers) as resp:
                            assert resp.status == 401
                    async with session.post(
                            f"http://127.0.0.1:{port}/api/v1/probe",
                            json={"platform": "masto", "account": "alice"},
                            headers={"Authorization": f"Bearer {PEER_TOKEN}"}) as resp:
                        assert resp.status == 200
                        vote = await resp.json()
                    assert vote["vantage"] == "a" and vote["result"] == "present"
                    async with session.post(
                            f"http://127.0.0.1:{port}/api/v1/probe",
                            json={"platform": "masto", "account": "nobody"},
                            headers={"Authorization": f"Bearer {PEER_TOKEN}"}) as resp:
                        assert resp.status == 404  # only accounts watched here
                    statuses = []
                    for _ in range(12):  # quorum.serve_rate is 5 per second by default
                        async with session.post(
                                f"http://127.0.0.1:{port}/api/v1/probe",
                                json={"platform": "masto", "account": "alice"},
                                headers={"Authorization": f"Bearer {PEER_TOKEN}"}) as resp:
                            statuses.append(resp.status)
                            if resp.status == 429:
                                assert int(resp.headers["Retry-After"]) >= 1
                    assert 429 in statuses
                await wait_for(lambda: "peer probe refused" in log.read_text(), what="logged")
                await asyncio.sleep(0)
            finally:
                stop(v)
        logged = log.read_text()
        assert "wrong-999" not in logged and PEER_TOKEN not in logged
