"""Identity: ids learned and persisted, renames are events (not outages), a re-registered
handle is never taken for the original, Mastodon moves are events."""

from __future__ import annotations

from pathlib import Path

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.reddit import FakeReddit
from monitor.fakes.x import FakeX
from monitor.model import AccountKey, State
from monitor.store import Store
from monitor.views import account_json
from tests.conftest import FAST_DEFAULTS, probed_again, running_monitor, state_of, wait_for


def config(platform: str, probe: str, base: str, handle: str, state: str, extra: str = "",
           token: str = "") -> str:
    return f"""
monitor: {{listen_port: 0, state_path: "{state}"}}
{FAST_DEFAULTS}
platforms:
  {platform}:
    probe: {probe}
    base_url: {base}
    rate_per_second: 1000
    burst: 100
{token}
accounts:
  - {{platform: {platform}, handle: {handle}, protected: true}}
{extra}"""


def events(monitor, kind: str) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    assert monitor.store is not None
    return [t for t in monitor.store.transitions() if t["kind"] == kind]


async def test_rename_is_an_event_and_the_id_is_still_followed(tmp_path: Path) -> None:
    x = FakeX({"realDonaldTrump": ("25073877", "present")}, token="t0k")
    async with x.running() as base:
        text = config("x", "x", base, "realDonaldTrump", str(tmp_path / "s.db"),
                      token="    token: t0k")
        async with running_monitor(text) as mon:
            key = AccountKey("x", "realDonaldTrump")
            await wait_for(lambda: state_of(mon, "x", "realDonaldTrump") is State.UP, what="up")
            assert mon.accounts[key].account_id == "25073877"  # learned on first sight
            x.rename("realDonaldTrump", "TheRealDonald")
            await wait_for(lambda: events(mon, "renamed"), what="renamed event")
            # A stranger takes the freed handle: we follow the id, not the handle.
            x.set_state("realDonaldTrump", "present")
            await probed_again(mon, ["realDonaldTrump"], platform="x", times=3)
            assert state_of(mon, "x", "realDonaldTrump") is State.UP
            (renamed,) = events(mon, "renamed")
            assert renamed["details"]["new_handle"] == "TheRealDonald"
            assert account_json(mon.accounts[key])["current_handle"] == "TheRealDonald"
            rows = mon.store.outbox_rows() if mon.store else []
            assert [r.payload["kind"] for r in rows] == ["renamed"]  # to chat, never a page
            assert rows[0].notifier == "log"
    store = Store(tmp_path / "s.db")  # persisted: a restart still follows id and new handle
    saved = store.load_accounts()[AccountKey("x", "realDonaldTrump")]
    assert (saved.identity.account_id, saved.identity.current_handle) == ("25073877",
                                                                          "TheRealDonald")


async def test_a_re_registered_handle_is_never_taken_for_the_original(tmp_path: Path) -> None:
    reddit = FakeReddit({"spez": ("abc12", "present")})
    async with reddit.running() as base:
        text = config("reddit", "reddit", base, "spez", str(tmp_path / "s.db"))
        async with running_monitor(text) as mon:
            await wait_for(lambda: state_of(mon, "reddit", "spez") is State.UP, what="up")
            reddit.rename("spez", "spez_old")
            reddit.set_state("spez", "present")  # someone else, a new id, the old name
            await wait_for(lambda: state_of(mon, "reddit", "spez") is State.DOWN,
                           what="down: the handle is not our account any more")
            watched = mon.accounts[AccountKey("reddit", "spez")]
            assert watched.account_id == "abc12"
            assert watched.state.reason is not None
            assert watched.state.reason.value == "renamed"


async def test_mastodon_move_is_an_event_not_an_outage(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base:
        text = config("masto", "mastodon", base, "alice", str(tmp_path / "s.db"))
        async with running_monitor(text) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("alice", "moved", moved_to="alice@new.example")
            await wait_for(lambda: events(mon, "moved"), what="moved event")
            await probed_again(mon, ["alice"], platform="masto", times=3)
            assert len(events(mon, "moved")) == 1  # once, not on every probe
            assert state_of(mon, "masto", "alice") is State.UP
            assert mon.accounts[AccountKey("masto", "alice")].moved_to == "alice@new.example"
