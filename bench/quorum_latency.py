"""Time to page with multi-vantage quorum against the single-vantage monitor.

    python bench/quorum_latency.py [ROUNDS]     # default 5 rounds, interleaved

Real monitor processes on loopback, one fake Mastodon, one fake PagerDuty. Each round
measures, from the moment the fake suspends the account to the moment PagerDuty accepts
the trigger:

- ``single``: one monitor, no peers;
- ``quorum``: three vantages (each through its own loopback path), quorum 2;
- ``quorum, one peer hanging``: the same, with one vantage's answers to its peers never
  coming (its platform path hangs, so its fresh probe cannot finish): the others page
  when that peer's timeout (``PEER_TIMEOUT``) runs out.

The issue's bound: quorum's time stays within one peer timeout of the single-vantage time.
Medians over the rounds, and the difference, are printed; rounds are interleaved so a
noisy machine weighs on every variant alike.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.fakes.proxy import VantagePath, mastodon_not_found

ROOT = Path(__file__).resolve().parent.parent
PEER_TOKEN = "bench-peer-" + "1" * 21
PEER_TIMEOUT = 1.0
NAMES = ("a", "b", "c")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(name: str, port: int, platform_url: str, pd: str, state: Path,
           peers: list[tuple[str, int]]) -> str:
    listed = "".join(f"  - url: http://127.0.0.1:{p}\n    name: {n}\n    token: {PEER_TOKEN}\n"
                     f"    timeout: {PEER_TIMEOUT}s\n" for n, p in peers)
    return f"""
monitor:
  vantage: {name}
  listen_port: {port}
  state_path: {state}
  api: {{peer_token: {PEER_TOKEN}}}
defaults: {{interval: 100ms, confirm_interval: 50ms, failure_threshold: 2,
            recovery_threshold: 1, staleness: 1h, timeout: 2s, jitter: 0.1}}
platforms:
  masto: {{probe: mastodon, base_url: "{platform_url}", rate_per_second: 1000, burst: 100}}
accounts:
  - {{platform: masto, handle: alice, protected: true}}
notifiers:
  pd: {{type: pagerduty, routing_key: R0UT1NGK3Y0123456789abcdef012345,
        url: "{pd}/v2/enqueue"}}
routing: {{reminder_interval: null, retry_initial: 50ms}}
peers:
{listed or '  []'}
quorum: {{required: 2, ask_again: 300ms}}
""".replace("peers:\n  []", "peers: []")


def launch(cfg: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCMON_")}
    return subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/accounts",
                                    timeout=1) as resp:
            return b'"state": "up"' in resp.read()
    except OSError:
        return False


async def wait(predicate: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(0.01)


async def one(variant: str, tmp: Path) -> float:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    procs: list[subprocess.Popen[bytes]] = []
    async with masto.running() as m_url, pd.running() as pd_url:
        names = ("a",) if variant == "single" else NAMES
        paths = {n: VantagePath(m_url, mastodon_not_found()) for n in names}
        urls = {}
        ports = {n: free_port() for n in names}
        contexts = [p.running() for p in paths.values()]
        for n, ctx in zip(names, contexts, strict=True):
            urls[n] = await ctx.__aenter__()
        try:
            for n in names:
                cfg = tmp / f"{variant}-{n}.yaml"
                cfg.write_text(config(n, ports[n], urls[n], pd_url, tmp / f"{variant}-{n}-"
                                      f"{time.time_ns()}.db",
                                      [(o, ports[o]) for o in names if o != n]))
                procs.append(launch(cfg))
            await wait(lambda: all(up(ports[n]) for n in names))
            if variant == "hanging":
                paths["c"].set_mode("hang")
            started = time.monotonic()
            masto.set_state("alice", "suspended")
            await wait(lambda: any(e["event_action"] == "trigger" for e in pd.accepted))
            return time.monotonic() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=15)
            for ctx in contexts:
                await ctx.__aexit__(None, None, None)


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    times: dict[str, list[float]] = {"single": [], "quorum": [], "hanging": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for variant in times:
                times[variant].append(await one(variant, Path(tmp)))
    single = statistics.median(times["single"])
    print(f"time from suspension to the PagerDuty trigger, median of {rounds} rounds "
          f"(peer timeout {PEER_TIMEOUT:g}s):")
    labels = {"single": "single vantage", "quorum": "quorum 2 of 3",
              "hanging": "quorum 2 of 3, one peer hanging"}
    for variant, values in times.items():
        med = statistics.median(values)
        print(f"  {labels[variant]:<34} {med:6.3f} s   (+{med - single:.3f} s; runs "
              f"{', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    asyncio.run(main())
