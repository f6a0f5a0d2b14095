"""Which replica watches which account: rendezvous hashing over a stable hash.

``--shard i/N`` (or ``ACCMON_SHARD``, or ``monitor.shard``) makes a monitor watch only the
accounts it *owns*: those for which shard ``i`` has the highest weight among shards
``0..N-1``. The weight of a shard for an account is a keyed BLAKE2b digest of the account's
platform and handle and the shard's index (rendezvous, or highest-random-weight, hashing):

- every account is owned by exactly one shard, and shards get nearly equal shares;
- the weight of shard ``i`` does not depend on ``N``, so growing ``N`` to ``N + 1`` moves an
  account only when the new shard outweighs its old owner: about ``1/(N + 1)`` of the
  accounts move, all of them to the new shard, and no account moves between old shards;
- the hash is BLAKE2b, never Python's ``hash()`` (salted per process by PYTHONHASHSEED), so
  every replica, every restart and every Python version agrees on the assignment.

Changing the hash would reshuffle every deployed shard at once: ``tests/test_sharding.py``
pins known assignments so that cannot happen by accident.

Cost: deciding ownership takes ``N`` small hashes per account (under 1 µs each: 100k
accounts across 16 shards take about a second), paid when the config is loaded or reloaded,
never on the probe path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.model import AccountKey

MAX_SHARDS = 1024

_SHARD = re.compile(r"^\s*([+-]?\d+)\s*/\s*([+-]?\d+)\s*$")
_PERSON = b"accmon-shard"  # BLAKE2b personalisation: these digests are for sharding only
_INDEX_BYTES = [i.to_bytes(2, "big") for i in range(MAX_SHARDS)]


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` (0-based) of ``count``; written ``"index/count"``, e.g. ``0/3``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        _check(self.index, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def _check(index: int, count: int) -> None:
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"the shard count must be between 1 and {MAX_SHARDS}, got {count}: "
                         "use e.g. 0/1 for a single replica or 0/3 for the first of three")
    if not 0 <= index < count:
        last = f"{count - 1}/{count}"
        raise ValueError(f"shard index {index} is out of range for {count} shard(s): use "
                         f"0/{count} to {last} (the index is 0-based, so N shards are "
                         f"0/N to {{N-1}}/N)")


def parse_shard(text: str) -> Shard:
    """``"i/N"`` -> :class:`Shard`; a :class:`ValueError` says what is wrong and the fix."""
    match = _SHARD.match(text)
    if match is None:
        raise ValueError(f"invalid shard {text!r}: use I/N with whole numbers, "
                         "e.g. 0/3 for the first of three shards (I is 0-based)")
    index, count = int(match.group(1)), int(match.group(2))
    _check(index, count)
    return Shard(index, count)


def _key_bytes(key: AccountKey) -> bytes:
    return f"{key.platform}\0{key.handle}".encode()


def weight(key: AccountKey, index: int) -> int:
    """The rendezvous weight of shard ``index`` for ``key``: a stable 64-bit number."""
    digest = hashlib.blake2b(_key_bytes(key) + b"\0" + _INDEX_BYTES[index], digest_size=8,
                             person=_PERSON).digest()
    return int.from_bytes(digest, "big")


def owner(key: AccountKey, count: int) -> int:
    """The index of the shard (of ``count``) that owns ``key``."""
    _check(0, count)
    if count == 1:
        return 0
    prefix = hashlib.blake2b(_key_bytes(key) + b"\0", digest_size=8, person=_PERSON)
    best, best_weight = 0, -1
    for index in range(count):
        h = prefix.copy()
        h.update(_INDEX_BYTES[index])
        w = int.from_bytes(h.digest(), "big")
        if w > best_weight:  # ties (2**-64) go to the lower index
            best, best_weight = index, w
    return best


def owns(shard: Shard, key: AccountKey) -> bool:
    """Whether ``shard`` watches ``key``."""
    return owner(key, shard.count) == shard.index


def assign(keys: Iterable[AccountKey], count: int) -> dict[AccountKey, int]:
    """Every key's owning shard index, for ``count`` shards."""
    _check(0, count)
    return {key: owner(key, count) for key in keys}
