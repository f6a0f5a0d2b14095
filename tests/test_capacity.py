"""Capacity: what each platform's watchlist needs against its budget, and the fix when short."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from monitor import capacity
from monitor.cli import main
from monitor.config import Config, load_config, parse_config
from monitor.probes.bluesky import BlueskyProbe
from monitor.probes.x import XProbe
from monitor.sharding import Shard

ROOT = Path(__file__).resolve().parent.parent


def watchlist(accounts: int, *, probe: str = "mastodon", interval: str = "30s",
              platform: str = "", extra: str = "") -> str:
    with_id = probe in ("x", "bluesky")  # batched lookups need the id
    rows = "".join(f"  - {{platform: p, handle: u{i}" + (f", id: '{i}'" if with_id else "")
                   + "}\n" for i in range(accounts))
    return f"""
defaults:
  interval: {interval}
  confirm_interval: 10s
platforms:
  p:
    probe: {probe}
    base_url: https://example.test
{platform}
{extra}
accounts:
{rows}"""


def one(config: Config, shard: Shard | None = None) -> capacity.PlatformLoad:
    (load,) = capacity.estimate(config, shard)
    return load


def test_the_issue_case_ten_thousand_accounts_at_thirty_seconds_cannot_keep_up() -> None:
    # 10,000 accounts every 30 s, one per request, on the default 5 req/s budget.
    load = one(parse_config(watchlist(10_000), env={}))
    assert (load.accounts, load.batch_size, load.rate_per_second) == (10_000, 1, 5.0)
    assert load.poll_rps == pytest.approx(10_000 / 30)
    # 0.1 % of the accounts (10) confirming every 10 s.
    assert load.confirm_rps == pytest.approx(1.0)
    assert load.capacity_rps == 5.0 and load.limited_by == "rate_per_second"
    assert not load.ok and load.utilisation > 60
    text = load.render()
    assert "10000 account(s) need 334 req/s" in text and "can make 5 req/s" in text
    assert "raise platforms.p.rate_per_second to ≥ 418" in text
    assert "lengthen the interval to ≥ 56m" in text
    assert "shard the watchlist over ≥ 84 replicas" in text


def test_batch_sizes_come_from_the_probe_classes() -> None:
    x = one(parse_config(watchlist(1000, probe="x"), env={}))
    bsky = one(parse_config(watchlist(1000, probe="bluesky"), env={}))
    assert x.batch_size == XProbe.batch_size and bsky.batch_size == BlueskyProbe.batch_size
    assert x.poll_rps == pytest.approx(1000 / 30 / XProbe.batch_size)
    assert bsky.poll_rps == pytest.approx(1000 / 30 / BlueskyProbe.batch_size)
    # A lone suspect still costs a whole request per confirm_interval.
    assert x.confirm_rps == pytest.approx(1 / 10)
    assert x.ok and "in batches of 100" in x.render()


def test_each_suggested_fix_makes_the_estimate_ok() -> None:
    load = one(parse_config(watchlist(3000, platform="    concurrency: 2"), env={}))
    assert not load.ok
    rate = float(load.fixes()[0].split("rate_per_second to ≥ ")[1].split()[0])
    workers = int(load.fixes()[0].split("concurrency to ≥ ")[1].split()[0])
    raised = parse_config(watchlist(3000, platform=f"    rate_per_second: {rate}\n"
                                    f"    concurrency: {workers}"), env={})
    assert one(raised).ok
    longer = load.fixes()[1].split("interval to ≥ ")[1]
    assert one(parse_config(watchlist(3000, interval=longer,
                                      platform="    concurrency: 2"), env={})).ok
    shards = int(load.fixes()[2].split("over ≥ ")[1].split()[0])
    assert load.needed_rps / shards <= capacity.MAX_UTILISATION * load.capacity_rps
    assert shards == math.ceil(load.needed_rps / (capacity.MAX_UTILISATION
                                                  * load.capacity_rps))


def test_concurrency_bound_lanes_say_so() -> None:
    # A generous rate budget but a single worker at ~0.5 s a request: 2 req/s at most.
    config = parse_config(watchlist(600, platform="    rate_per_second: 100\n"
                                    "    concurrency: 1"), env={})
    load = one(config)
    assert load.limited_by == "concurrency" and load.capacity_rps == pytest.approx(2.0)
    assert not load.ok and "platforms.p.concurrency to ≥" in load.render()
    assert "rate_per_second to" not in load.render()


def test_a_short_timeout_bounds_the_assumed_latency() -> None:
    text = watchlist(10).replace("confirm_interval: 10s", "confirm_interval: 10s\n"
                                 "  timeout: 100ms")
    config = parse_config(text, env={})
    assert one(config).latency == pytest.approx(0.1)


def test_per_account_intervals_and_shards_are_counted() -> None:
    text = watchlist(0).replace("accounts:\n", "accounts:\n"
                                "  - {platform: p, handle: a, interval: 1s}\n"
                                "  - {platform: p, handle: b, interval: 1h}\n")
    load = one(parse_config(text, env={}))
    assert load.poll_rps == pytest.approx(1 + 1 / 3600)
    config = parse_config(watchlist(500), env={})
    per_shard = [one(config, Shard(i, 4)) for i in range(4)]
    assert sum(s.accounts for s in per_shard) == 500
    assert all(0 < s.accounts < 500 for s in per_shard)
    assert "(shard 1/4)" in per_shard[1].render()
    # ~125 accounts a shard still need more than 5 req/s: the fix counts replicas in all.
    short = per_shard[0]
    more = math.ceil(short.needed_rps / (capacity.MAX_UTILISATION * short.capacity_rps))
    assert not short.ok and f"(--shard I/{4 * more})" in short.fixes()[-1]


def test_a_platform_without_accounts_needs_nothing() -> None:
    text = watchlist(0).replace("accounts:\n", "accounts: []\n")
    load = one(parse_config(text, env={}))
    assert (load.accounts, load.needed_rps, load.ok) == (0, 0.0, True)


def test_the_bundled_config_keeps_up() -> None:
    loads = capacity.estimate(load_config(ROOT / "config" / "monitor.yaml"))
    assert {load.platform for load in loads} >= {"x", "bluesky", "github"}
    assert all(load.ok for load in loads), [load.render() for load in loads]


def test_check_config_prints_the_table_and_warns_but_exits_zero(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "big.yaml"
    cfg.write_text(watchlist(10_000))
    assert main(["check-config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert "OK — 1 platform(s), 10000 account(s)" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("p "))
    assert row.split()[1:5] == ["10000", "1", "334", "5"] and row.endswith("SHORT")
    assert err.startswith("WARNING: 1 platform(s) cannot keep up")
    assert "rate_per_second to ≥ 418" in err

    cfg.write_text(watchlist(10))
    assert main(["check-config", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.splitlines()[-1].endswith("ok")
    # Per shard: 10,000 accounts over 100 replicas is about 100 each, and fits.
    cfg.write_text(watchlist(10_000))
    assert main(["check-config", str(cfg), "--shard", "3/100"]) == 0
    out, err = capsys.readouterr()
    assert "capacity of shard 3/100" in out and err == ""
