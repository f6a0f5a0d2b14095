#!/usr/bin/env python3
"""Soak: the real monitor process against faulty platforms for ten minutes (issue 8).

    .venv/bin/python bench/soak.py [--seconds 600] [--accounts 2000]

1. Serves, in this process, loopback fakes of Mastodon, X and GitHub (half, a quarter and a
   quarter of the accounts) with about 20 % of requests faulty: 5xx, 429, hangs, TCP resets,
   truncated JSON and oversized bodies (``FAULTS``), plus a PagerDuty fake that keeps every
   event by dedup key. Their request budgets are raised so the only 429s are the injected
   ones.
2. Runs ``account-monitor run`` as a child process on a generated config (10 s interval,
   2 s confirm interval, failure threshold 2, 5 min staleness) and a fresh state file, with
   every secret (PagerDuty routing key, X and GitHub tokens) passed through the environment.
3. Ten accounts (half of them protected) vanish for ``--vanish`` seconds and come back for
   ``--back`` seconds, over and over, flipped over the fakes' HTTP control endpoints.
4. Every ``--every`` seconds samples the monitor's RSS (``/proc/PID/status`` VmRSS), open
   fds, CPU, probes/s and error ratio (``/metrics``), and prints a line.
5. At the end restores every account, waits for the last resolves, stops the monitor with
   SIGTERM and prints a summary: RSS and fds, probes, errors, false absences, pages
   expected against received, the RSS slope over the second half, the exit code, the state
   file's ``PRAGMA integrity_check``, and the monitor's output searched for secrets and
   tracebacks.

Exits 1 when an account that never vanished went suspect or down, a page was lost or
duplicated, the monitor did not exit 0, the state file is damaged, a secret leaked, or RSS
grew faster than ``--max-slope`` MB/min over the second half. A benchmark, not a test: it
needs minutes and a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.fakes.github import FakeGitHub  # noqa: E402
from monitor.fakes.mastodon import FakeMastodon  # noqa: E402
from monitor.fakes.pagers import FakePagerDuty  # noqa: E402
from monitor.fakes.server import FakeServer  # noqa: E402
from monitor.fakes.x import FakeX  # noqa: E402

# About one request in five is a fault. The fakes' defaults are kept for hang_seconds (30 s:
# longer than the monitor's timeout) and shrunk for the oversized body (2 MiB is already
# over the 1 MiB cap, and cheaper to send 3 times a second). Few resets end as
# error(connection): aiohttp (3.10+) resends an idempotent request once when a reused
# keep-alive connection drops before the answer (RFC 9112 9.3.1), so most get a real answer.
FAULTS: dict[str, Any] = {
    "server_error_rate": 0.06, "rate_limit_rate": 0.04, "timeout_rate": 0.03,
    "reset_rate": 0.03, "malformed_rate": 0.02, "huge_body_rate": 0.02,
    "huge_body_bytes": 2 * 1024 * 1024,
}
# platform name in the config -> (probe, handle prefix, share of the accounts, vanish states)
PLATFORMS = {
    "masto": ("mastodon", "m", 0.5, ("suspended", "gone")),
    "x": ("x", "x", 0.25, ("suspended", "deactivated")),
    "gh": ("github", "g", 0.25, ("suspended", "deleted")),
}
FLIPPED_PER_PLATFORM = {"masto": 4, "x": 3, "gh": 3}
UNLIMITED = 10**9  # the fakes' request budgets: only injected faults say 429
OUTAGE_KEY = re.compile(r"^accmon/(?P<platform>[^/]+)/(?P<handle>[^/]+)/outage-(?P<id>\d+)$")


# ----------------------------------------------------------------------- the world


@dataclass(slots=True)
class Account:
    platform: str
    handle: str
    protected: bool
    flipped: bool
    account_id: str | None = None


@dataclass(slots=True)
class Vanish:
    """One period the bench kept an account gone: [start, end] in wall-clock seconds."""

    account: Account
    state: str
    start: float
    end: float | None = None


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the monitor was ready
    rss_mb: float
    fds: int
    cpu_s: float
    probes: float
    errors: float
    blind: int
    lag_s: float


@dataclass(slots=True)
class Soak:
    """Everything one run sets up and observes."""

    args: argparse.Namespace
    workdir: Path
    accounts: list[Account]
    fakes: dict[str, FakeServer]
    urls: dict[str, str] = field(default_factory=dict)
    pd: FakePagerDuty = field(default_factory=FakePagerDuty)
    pd_url: str = ""
    routing_key: str = field(default_factory=lambda: secrets.token_hex(16))  # 32 characters
    x_token: str = field(default_factory=lambda: "soak-x-" + secrets.token_hex(12))
    gh_token: str = field(default_factory=lambda: "ghp_soak" + secrets.token_hex(16))
    vanishes: list[Vanish] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    port: int = 0

    @property
    def secret_values(self) -> dict[str, str]:
        return {"PD_ROUTING_KEY": self.routing_key, "X_BEARER_TOKEN": self.x_token,
                "GITHUB_TOKEN": self.gh_token}


def make_accounts(total: int) -> list[Account]:
    """The watchlist: per platform its share; the first few flip, every other one of those
    and one in ten of the rest are protected (so a false page would reach PagerDuty)."""
    accounts = []
    for name, (_probe, prefix, share, _states) in PLATFORMS.items():
        count = max(FLIPPED_PER_PLATFORM[name] + 1, round(total * share))
        for i in range(count):
            flipped = i < FLIPPED_PER_PLATFORM[name]
            protected = i % 2 == 0 if flipped else i % 10 == 0
            accounts.append(Account(name, f"{prefix}{i:04d}", protected, flipped))
    return accounts


def make_fakes(accounts: list[Account], soak_tokens: tuple[str, str]) -> dict[str, FakeServer]:
    x_token, gh_token = soak_tokens
    by_platform: dict[str, dict[str, str]] = {name: {} for name in PLATFORMS}
    for account in accounts:
        by_platform[account.platform][account.handle] = "present"
    masto = FakeMastodon(by_platform["masto"], rate_limit=UNLIMITED, seed=1)
    x = FakeX(by_platform["x"], token=x_token, seed=2)
    gh = FakeGitHub(by_platform["gh"], token=gh_token, seed=3)
    for fake in (x, gh):
        fake.budget_limit = UNLIMITED  # type: ignore[misc]  # per instance, not per class
    for account in accounts:  # X is probed by id, 100 per batch request, as in production
        if account.platform == "x":
            account.account_id = x.account_id(account.handle)
    return {"masto": masto, "x": x, "gh": gh}


def config_text(soak: Soak) -> str:
    args = soak.args
    platforms = []
    for name, (probe, _prefix, _share, _states) in PLATFORMS.items():
        token = {"x": "    token: ${X_BEARER_TOKEN}\n",
                 "gh": "    token: ${GITHUB_TOKEN}\n"}.get(name, "")
        # A 429 pauses the whole platform until its reset (minutes away on these fakes);
        # at 4 % of requests that would stop it for good, so the pause is capped short.
        # Concurrency 64: start-up's capacity estimate assumes ~0.5 s per request.
        platforms.append(f"""  {name}:
    probe: {probe}
    base_url: {soak.urls[name]}
{token}    concurrency: 64
    rate_per_second: 500
    burst: 50
    max_rate_limit_pause: 100ms
""")
    rows = []
    for a in soak.accounts:
        ident = f", id: '{a.account_id}'" if a.account_id else ""
        rows.append(f"  - {{platform: {a.platform}, handle: {a.handle}, "
                    f"protected: {str(a.protected).lower()}{ident}}}\n")
    return f"""# generated by bench/soak.py
monitor:
  listen_host: 127.0.0.1
  listen_port: 0
  state_path: {soak.workdir / 'monitor.db'}
  log_level: info
  log_format: json
  shutdown_grace: 5s
defaults:
  interval: {args.interval:g}s
  confirm_interval: 2s
  failure_threshold: 2
  recovery_threshold: 1
  staleness: 5m
  timeout: 3s
  jitter: 0.1
platforms:
{''.join(platforms)}notifiers:
  pd:
    type: pagerduty
    routing_key: ${{PD_ROUTING_KEY}}
    url: {soak.pd_url}/v2/enqueue
    timeout: 5s
routing:
  reminder_interval: null
  retry_initial: 200ms
  retry_max: 5s
accounts:
{''.join(rows)}"""


# ----------------------------------------------------------------------- the monitor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_monitor(soak: Soak, config: Path, log: Path) -> subprocess.Popen[bytes]:
    exe = ROOT / ".venv" / "bin" / "account-monitor"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "monitor"]
    env = {**os.environ, **soak.secret_values}
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "run", "--config", str(config), "--state",
             str(soak.workdir / "monitor.db"), "--port", str(soak.port), "--log-format", "json"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_ready(session: aiohttp.ClientSession, soak: Soak,
                     proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the monitor exited with {proc.returncode} before it was ready")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"http://127.0.0.1:{soak.port}/readyz") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.5)
    raise SystemExit(f"the monitor was not ready after {timeout:g}s")


def proc_status(pid: int) -> tuple[float, int, float]:
    """(RSS in MB, open fds, CPU seconds) of a live process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    # utime and stime are fields 14 and 15; the command name (field 2) may hold spaces.
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, fds, cpu


def metric_sums(text: str) -> dict[str, float]:
    """Sums of the few series the soak follows, read line by line from /metrics."""
    sums: Counter[str] = Counter()
    lag = 0.0
    for line in text.splitlines():
        if line.startswith("accmon_probes_total{"):
            sums["probes"] += float(line.rsplit(" ", 1)[1])
            if 'result="error"' in line:
                sums["errors"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("accmon_probe_errors_total{"):
            kind = re.search(r'kind="([^"]+)"', line)
            sums[f"kind:{kind.group(1) if kind else '?'}"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("accmon_account_blind{") and line.endswith(" 1.0"):
            sums["blind"] += 1
        elif line.startswith("accmon_scheduler_lag_seconds{"):
            lag = max(lag, float(line.rsplit(" ", 1)[1]))
        elif line.startswith("accmon_notifications_total{"):
            sums["notifications"] += float(line.rsplit(" ", 1)[1])
    sums["lag"] = lag
    return dict(sums)


async def scrape(session: aiohttp.ClientSession, soak: Soak, path: str = "/metrics") -> str:
    async with session.get(f"http://127.0.0.1:{soak.port}{path}",
                           timeout=aiohttp.ClientTimeout(total=30)) as resp:
        return await resp.text()


async def sampler(session: aiohttp.ClientSession, soak: Soak, pid: int, started: float,
                  until: float) -> None:
    previous: Sample | None = None
    print(f"{'t(s)':>6} {'RSS MB':>7} {'fds':>4} {'CPU%':>5} {'probes/s':>8} {'err%':>5} "
          f"{'blind':>5} {'lag s':>5} {'pages':>5}", flush=True)
    while True:
        now = time.monotonic()
        try:
            rss, fds, cpu = proc_status(pid)
            sums = metric_sums(await scrape(session, soak))
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            print(f"{now - started:6.0f} sample failed: {exc!r}", flush=True)
        else:
            sample = Sample(now - started, rss, fds, cpu, sums.get("probes", 0.0),
                            sums.get("errors", 0.0), int(sums.get("blind", 0)), sums["lag"])
            soak.samples.append(sample)
            print_sample(sample, previous, len(soak.pd.accepted))
            previous = sample
        if now >= until:
            return
        await asyncio.sleep(max(0.0, min(soak.args.every, until - time.monotonic())))


def print_sample(s: Sample, previous: Sample | None, pages: int) -> None:
    if previous is None:
        rate = cpu = err = 0.0
    else:
        span = max(s.t - previous.t, 1e-9)
        rate = (s.probes - previous.probes) / span
        cpu = 100 * (s.cpu_s - previous.cpu_s) / span
        done = s.probes - previous.probes
        err = 100 * (s.errors - previous.errors) / done if done else 0.0
    print(f"{s.t:6.0f} {s.rss_mb:7.1f} {s.fds:4d} {cpu:5.1f} {rate:8.1f} {err:5.1f} "
          f"{s.blind:5d} {s.lag_s:5.1f} {pages:5d}", flush=True)


# ----------------------------------------------------------------------- flipping accounts


async def set_state(session: aiohttp.ClientSession, soak: Soak, account: Account,
                    state: str) -> None:
    url = f"{soak.urls[account.platform]}/_control/accounts/{account.handle}"
    async with session.post(url, json={"state": state}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")


async def flipper(session: aiohttp.ClientSession, soak: Soak, started: float,
                  until: float) -> None:
    """Each flipped account: gone for --vanish s, back for --back s, staggered by
    --stagger s, starting after --warmup s; a vanish starts only if it fits before the end,
    so every one of them lasts long enough to page."""
    args = soak.args
    flipped = [a for a in soak.accounts if a.flipped]

    async def cycle(index: int, account: Account) -> None:
        states = PLATFORMS[account.platform][3]
        at, n = started + args.warmup + index * args.stagger, 0
        while at + args.vanish <= until:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            state = states[n % len(states)]
            await set_state(session, soak, account, state)
            vanish = Vanish(account, state, time.time())
            soak.vanishes.append(vanish)
            await asyncio.sleep(args.vanish)
            await set_state(session, soak, account, "present")
            vanish.end = time.time()
            at, n = at + args.vanish + args.back, n + 1

    await asyncio.gather(*(cycle(i, a) for i, a in enumerate(flipped)))


def pages_by_key(pd: FakePagerDuty) -> dict[str, Counter[str]]:
    """dedup key -> how many trigger / resolve events PagerDuty accepted for it."""
    keys: dict[str, Counter[str]] = {}
    for event in pd.accepted:
        keys.setdefault(event.get("dedup_key", "?"), Counter())[event["event_action"]] += 1
    return keys


async def wait_for_resolves(soak: Soak, timeout: float) -> bool:
    """Until every triggered incident is resolved (or ``timeout``): the last vanishes ended
    a moment ago and their accounts need one present answer each."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not soak.pd.open_incidents() and not pending_outages(soak):
            return True
        await asyncio.sleep(1.0)
    return False


def pending_outages(soak: Soak) -> int:
    """Open outages in the state file (read-only; the monitor is still writing)."""
    db = soak.workdir / "monitor.db"
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                timeout=5)) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM outages WHERE recovered_at IS NULL").fetchone()[0])
    except sqlite3.Error:
        return -1


# ----------------------------------------------------------------------- verdict


def rss_slope(samples: list[Sample], since: float) -> float:
    """MB per minute: least-squares slope of RSS over the samples taken after ``since``."""
    points = [(s.t / 60, s.rss_mb) for s in samples if s.t >= since]
    if len(points) < 3:
        return 0.0
    return float(statistics.linear_regression(*zip(*points, strict=True)).slope)


def read_store(db: Path) -> tuple[str, list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(integrity_check, suspect/down/blind transitions, outages) from the stopped state file."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        moves = conn.execute(
            "SELECT platform, handle, new_state FROM transitions "
            "WHERE new_state IN ('suspect', 'down') OR kind = 'blind'").fetchall()
        outages = conn.execute("SELECT platform, handle FROM outages").fetchall()
    return integrity, moves, outages


@dataclass(slots=True)
class Verdict:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def row(self, name: str, value: object, ok: bool | None = None) -> None:
        mark = "" if ok is None else ("  ok" if ok else "  FAIL")
        self.lines.append(f"  {name:<44} {value}{mark}")
        if ok is False:
            self.failures.append(name)


def judge_pages(soak: Soak, v: Verdict, moves: Iterable[tuple[str, str, str]],
                outages: list[tuple[str, str]]) -> None:
    flipped = {(a.platform, a.handle): a for a in soak.accounts if a.flipped}
    protected = {(a.platform, a.handle) for a in soak.accounts if a.protected}
    false_moves = Counter(f"{p}/{h}->{s}" for p, h, s in moves if (p, h) not in flipped)
    v.row("false suspect/down/blind (never vanished)", dict(false_moves) or 0,
          not any(k.split("->")[1] in ("suspect", "down") for k in false_moves))
    expected = Counter((vn.account.platform, vn.account.handle) for vn in soak.vanishes)
    recorded = Counter(o for o in outages if o in flipped)
    missed = {f"{p}/{h}": f"{recorded[(p, h)]}/{n}" for (p, h), n in expected.items()
              if recorded[(p, h)] != n}
    v.row("outages recorded for flipped accounts", f"{sum(recorded.values())} of "
          f"{sum(expected.values())} vanishes" + (f" (off: {missed})" if missed else ""),
          not missed)

    keys = pages_by_key(soak.pd)
    outage_pages: dict[tuple[str, str], list[Counter[str]]] = {}
    other_keys = []
    for key, counts in keys.items():
        m = OUTAGE_KEY.match(key)
        if m is None:
            other_keys.append(key)
            continue
        outage_pages.setdefault((m["platform"], m["handle"]), []).append(counts)
    want = {k: n for k, n in expected.items() if k in protected}
    got = {k: len(outage_pages.get(k, [])) for k in want}
    lost = {f"{p}/{h}": f"{got[(p, h)]}/{n}" for (p, h), n in want.items() if got[(p, h)] < n}
    extra = {f"{p}/{h}": len(c) for (p, h), c in outage_pages.items()
             if len(c) > want.get((p, h), 0)}
    dup = sum(1 for cs in outage_pages.values() for c in cs
              if c["trigger"] > 1 or c["resolve"] > 1)
    unresolved = sum(1 for cs in outage_pages.values() for c in cs if c["resolve"] == 0)
    v.row("pages expected (vanishes of protected)", sum(want.values()))
    v.row("incidents triggered (distinct dedup keys)", sum(got.values()),
          not lost and not extra)
    if lost:
        v.row("  lost (got/expected)", lost, False)
    if extra:
        v.row("  unexpected incidents (per account)", extra, False)
    v.row("trigger events / resolve events", f"{sum(c['trigger'] for c in keys.values())} / "
          f"{sum(c['resolve'] for c in keys.values())}")
    v.row("incidents paged or resolved more than once", dup, dup == 0)
    v.row("incidents never resolved", unresolved, unresolved == 0)
    v.row("other PagerDuty keys (blind, anomaly...)", other_keys or 0, not other_keys)


def judge_output(soak: Soak, v: Verdict, log_text: str, served: dict[str, str]) -> None:
    leaks = [name for name, value in soak.secret_values.items()
             if value in log_text or any(value in body for body in served.values())]
    v.row("secrets in monitor output, /metrics, API", leaks or 0, not leaks)
    v.row("'Traceback' in monitor output (lines)",
          sum("Traceback" in line for line in log_text.splitlines()))
    levels: Counter[str] = Counter()
    for line in log_text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("level") in ("warning", "error",
                                                                   "critical"):
                levels[f"{entry['level']}: {entry.get('event')}"] += 1
    for name, count in levels.most_common(12):
        v.row(f"log {name}"[:44], count)


def summarize(soak: Soak, v: Verdict, final: dict[str, float]) -> None:
    s = soak.samples
    rss = [x.rss_mb for x in s]
    fds = [x.fds for x in s]
    half = soak.args.seconds / 2
    slope = rss_slope(s, half)
    v.row("samples", f"{len(s)} every {soak.args.every:g}s over {s[-1].t:.0f}s")
    v.row("RSS MB start / median / max / end",
          f"{rss[0]:.1f} / {statistics.median(rss):.1f} / {max(rss):.1f} / {rss[-1]:.1f}")
    v.row(f"RSS slope after {half:.0f}s (MB/min)", f"{slope:+.3f}", slope <= soak.args.max_slope)
    v.row("open fds min / max / end", f"{min(fds)} / {max(fds)} / {fds[-1]}")
    span = s[-1].t - s[0].t
    v.row("probes total (rate)", f"{final.get('probes', 0):.0f} "
          f"({(s[-1].probes - s[0].probes) / max(span, 1e-9):.1f}/s)")
    v.row("CPU of the monitor", f"{s[-1].cpu_s:.0f}s "
          f"({100 * (s[-1].cpu_s - s[0].cpu_s) / max(span, 1e-9):.0f}% of a core)")
    errors = final.get("errors", 0.0)
    v.row("error ratio observed (probes)", f"{errors / max(final.get('probes', 1), 1):.3f}")
    kinds = {k[5:]: int(n) for k, n in sorted(final.items()) if k.startswith("kind:")}
    v.row("errors by kind", kinds)
    injected: Counter[str] = Counter()
    requests = 0
    for fake in soak.fakes.values():
        st = fake.stats()
        requests += st["requests_total"]
        injected.update(st["faults_injected"])
    v.row("fake requests / faults injected", f"{requests} / {sum(injected.values())} "
          f"({sum(injected.values()) / max(requests, 1):.3f}) {dict(injected)}")
    v.row("blind accounts (max in a sample)", max(x.blind for x in s), max(x.blind for x in s)
          == 0)
    v.row("scheduler lag max (s)", f"{max(x.lag_s for x in s):.1f}")


# ----------------------------------------------------------------------- driver


async def soak_run(args: argparse.Namespace, workdir: Path) -> int:
    accounts = make_accounts(args.accounts)
    soak = Soak(args, workdir, accounts, {})
    soak.fakes = make_fakes(accounts, (soak.x_token, soak.gh_token))
    soak.port = free_port()
    log = workdir / "monitor.log"
    async with contextlib.AsyncExitStack() as stack:
        for name, fake in soak.fakes.items():
            soak.urls[name] = await stack.enter_async_context(fake.running())
        soak.pd_url = await stack.enter_async_context(soak.pd.running())
        session = await stack.enter_async_context(aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=10)))
        for url in soak.urls.values():  # the profile over HTTP, as another process would
            async with session.post(f"{url}/_control/faults", json=FAULTS) as resp:
                resp.raise_for_status()
        config = workdir / "monitor.yaml"
        config.write_text(config_text(soak))
        flipped = [a for a in accounts if a.flipped]
        print(f"{len(accounts)} accounts ({', '.join(f'{n} {sum(a.platform == n for a in accounts)}' for n in PLATFORMS)}); "  # noqa: E501
              f"{len(flipped)} flip ({sum(a.protected for a in flipped)} protected); faults "
              f"{sum(v for k, v in FAULTS.items() if k.endswith('_rate')):.2f} of requests; "
              f"interval {args.interval:g}s; {args.seconds:g}s; workdir {workdir}", flush=True)
        proc = start_monitor(soak, config, log)
        try:
            await wait_ready(session, soak, proc)
            started = time.monotonic()
            until = started + args.seconds
            print(f"monitor pid {proc.pid} ready on port {soak.port}", flush=True)
            await asyncio.gather(sampler(session, soak, proc.pid, started, until),
                                 flipper(session, soak, started, until))
            for account in flipped:  # whatever is still gone comes back
                await set_state(session, soak, account, "present")
            settled = await wait_for_resolves(soak, args.settle)
            final = metric_sums(await scrape(session, soak))
            served = {path: await scrape(session, soak, path)
                      for path in ("/metrics", "/api/v1/accounts", "/api/v1/outages?limit=1000")}
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(proc.wait, 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = await asyncio.to_thread(proc.wait)
    return report(soak, final, served, settled, code, log)


def report(soak: Soak, final: dict[str, float], served: dict[str, str], settled: bool,
           code: int, log: Path) -> int:
    v = Verdict()
    summarize(soak, v, final)
    integrity, moves, outages = read_store(soak.workdir / "monitor.db")
    judge_pages(soak, v, moves, outages)
    v.row("every incident resolved before the stop", settled, settled)
    v.row("monitor exit code after SIGTERM", code, code == 0)
    v.row("PRAGMA integrity_check", integrity, integrity == "ok")
    judge_output(soak, v, log.read_text(errors="replace"), served)
    print("\nsummary", flush=True)
    print("\n".join(v.lines))
    print("\nRSS MB / fds series (every sample):")
    print("  " + " ".join(f"{s.t:.0f}:{s.rss_mb:.1f}/{s.fds}" for s in soak.samples))
    print(f"\nmonitor log: {log}")
    if v.failures:
        print(f"FAILED: {', '.join(v.failures)}")
        return 1
    print("PASSED")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the soak")
    parser.add_argument("--accounts", type=int, default=2000, help="accounts watched in all")
    parser.add_argument("--interval", type=float, default=10.0, help="probe interval, seconds")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before flipping")
    parser.add_argument("--vanish", type=float, default=60.0, help="seconds each vanish lasts")
    parser.add_argument("--back", type=float, default=60.0, help="seconds back between them")
    parser.add_argument("--stagger", type=float, default=7.0,
                        help="seconds between the flipped accounts' first vanishes")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="seconds to wait for the last resolves after the soak")
    parser.add_argument("--max-slope", type=float, default=5.0,
                        help="fail above this RSS growth over the second half, MB/min")
    args = parser.parse_args()
    # Kept afterwards: the monitor's log, config and state file are the evidence.
    return asyncio.run(soak_run(args, Path(tempfile.mkdtemp(prefix="accmon-soak-"))))


if __name__ == "__main__":
    sys.exit(main())
