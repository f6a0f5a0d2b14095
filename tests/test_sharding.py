"""Sharding: every account has exactly one owner, shares are even, growth moves little."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from monitor.model import AccountKey
from monitor.sharding import MAX_SHARDS, Shard, assign, owner, owns, parse_shard, weight

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ("x", "mastodon.social", "bluesky", "github", "youtube")
KEYS = [AccountKey(PLATFORMS[i % len(PLATFORMS)], f"user_{i:05d}") for i in range(5000)]


@pytest.fixture(scope="module")
def assignments() -> dict[int, dict[AccountKey, int]]:
    return {n: assign(KEYS, n) for n in range(1, 18)}


@pytest.mark.parametrize("n", range(1, 17))
def test_every_account_is_owned_by_exactly_one_shard(n: int) -> None:
    for key in KEYS[:400]:
        owners = [i for i in range(n) if owns(Shard(i, n), key)]
        assert len(owners) == 1, (key, owners)
        assert owners[0] == owner(key, n)


@pytest.mark.parametrize("n", range(1, 17))
def test_shares_are_within_30_percent_of_the_mean(
        n: int, assignments: dict[int, dict[AccountKey, int]]) -> None:
    counts = Counter(assignments[n].values())
    assert set(counts) == set(range(n)), "every shard owns something"
    mean = len(KEYS) / n
    for index, count in counts.items():
        assert abs(count - mean) <= 0.3 * mean, f"shard {index}/{n} owns {count}, mean {mean}"


@pytest.mark.parametrize("n", range(1, 17))
def test_growing_by_one_shard_moves_few_accounts_and_only_to_the_new_shard(
        n: int, assignments: dict[int, dict[AccountKey, int]]) -> None:
    before, after = assignments[n], assignments[n + 1]
    moved = [key for key in KEYS if before[key] != after[key]]
    assert len(moved) / len(KEYS) <= 1 / (n + 1) + 0.05
    assert len(moved) > 0
    assert all(after[key] == n for key in moved), "an account moved between old shards"


def test_assign_agrees_with_owns() -> None:
    for key, index in assign(KEYS[:500], 7).items():
        assert owns(Shard(index, 7), key)


def test_the_hash_is_pinned() -> None:
    """A changed hash would reshuffle every deployed shard: make that a deliberate act."""
    keys = [AccountKey("x", "realDonaldTrump"), AccountKey("x", "POTUS"),
            AccountKey("mastodon.social", "Gargron"), AccountKey("bluesky", "bsky.app"),
            AccountKey("github", "torvalds")]
    assert [owner(k, 3) for k in keys] == PINNED_3
    assert [owner(k, 16) for k in keys] == PINNED_16
    assert weight(keys[0], 0) == PINNED_WEIGHT


PINNED_3 = [2, 1, 1, 1, 2]
PINNED_16 = [11, 14, 4, 14, 10]
PINNED_WEIGHT = 5710049178247834470


@pytest.mark.slow
def test_assignments_are_the_same_in_another_process() -> None:
    """Python's hash() is salted per process; the assignment must not be."""
    script = (
        "import json, sys\n"
        "from monitor.model import AccountKey\n"
        "from monitor.sharding import assign\n"
        "keys = [AccountKey(p, h) for p, h in json.load(sys.stdin)]\n"
        "print(json.dumps([assign(keys, n)[k] for n in (2, 5, 13) for k in keys]))\n"
    )
    keys = KEYS[:300]
    env = dict(os.environ, PYTHONHASHSEED="12345")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True,
                            input=json.dumps([[k.platform, k.handle] for k in keys]),
                            capture_output=True, text=True, timeout=60)
    here = [assign(keys, n)[k] for n in (2, 5, 13) for k in keys]
    assert json.loads(result.stdout) == here


def test_platform_and_handle_are_separated() -> None:
    """"a" + "bc" and "ab" + "c" are different accounts with independent owners."""
    pairs = [(AccountKey("a", f"b{i}"), AccountKey(f"ab{i}", "")) for i in range(200)]
    assert any(owner(x, 16) != owner(y, 16) for x, y in pairs)


@pytest.mark.parametrize(("text", "shard"), [
    ("0/1", Shard(0, 1)), ("2/3", Shard(2, 3)), (" 1 / 4 ", Shard(1, 4)),
    ("1023/1024", Shard(1023, 1024)),
])
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(("text", "fix"), [
    ("3/3", "use 0/3 to 2/3"),
    ("a/b", "use I/N with whole numbers"),
    ("0/0", "between 1 and 1024"),
    ("-1/2", "use 0/2 to 1/2"),
    ("1/1025", "between 1 and 1024"),
    ("1", "use I/N"),
    ("", "use I/N"),
    ("1/2/3", "use I/N"),
    ("1.5/2", "use I/N"),
])
def test_bad_shards_say_how_to_fix_them(text: str, fix: str) -> None:
    with pytest.raises(ValueError, match=r"use|between") as info:
        parse_shard(text)
    assert fix in str(info.value)
    assert "e.g." in str(info.value) or "0-based" in str(info.value)


def test_shard_validates_itself() -> None:
    with pytest.raises(ValueError, match="0-based"):
        Shard(2, 2)
    with pytest.raises(ValueError, match=f"between 1 and {MAX_SHARDS}"):
        Shard(0, MAX_SHARDS + 1)
    with pytest.raises(ValueError):
        assign(KEYS[:1], 0)
