"""The on-call endpoints through a running monitor on loopback: silences in Alertmanager
API v2's shapes, acknowledgements, the watchlist, the audit trail, bounded and checked
bodies, and the SSE replay gap once history has been pruned.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import Monitor
from monitor.config import load_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import State
from tests.conftest import mastodon_config, state_of, wait_for

WRITE = "write-T0ken-oncall-3e9d"
UUID_CHARS = set("0123456789abcdef-")

@dataclass
class Running:
    mon: Monitor
    masto: FakeMastodon
    cfg: Path

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str | None = WRITE, data: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"json": body} if body is not None else {"data": data}
        async with aiohttp.ClientSession() as http, http.request(
                method, f"http://127.0.0.1:{self.mon.port}{path}", headers=sent,
                **kwargs) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()


async def _start(cfg: Path) -> Monitor:
    mon = Monitor(load_config(cfg), config_path=str(cfg))
    await mon.start()
    return mon


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """alice up, carol down (one open outage); dave unlisted until the API adds him."""
    for name in ("ACCMON_READ_TOKEN", "ACCMON_WRITE_TOKEN_FILE", "ACCMON_READ_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    masto = FakeMastodon({"alice": "present", "carol": "gone", "dave": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(mastodon_config(base, ["alice", "carol"],
                                       state_path=str(tmp_path / "state.db")))
        mon = await _start(cfg)
        box = Running(mon, masto, cfg)
        try:
            await wait_for(lambda: state_of(box.mon, "masto", "alice") is State.UP
                           and state_of(box.mon, "masto", "carol") is State.DOWN,
                           what="alice up, carol down")
            yield box
        finally:
            await box.mon.stop()


def silence_body(*matchers: dict[str, Any], minutes: float = 60, **fields: Any
                 ) -> dict[str, Any]:
    now = time.time()
    return {"matchers": list(matchers) or [{"name": "account", "value": "carol",
                                            "isRegex": False, "isEqual": True}],
            "startsAt": _iso(now), "endsAt": _iso(now + minutes * 60),
            "createdBy": "alice@oncall", "comment": "planned deactivation", **fields}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# ----------------------------------------------------------------- silences


async def test_a_silence_round_trips_in_alertmanager_v2_shapes(running: Running) -> None:
    status, created = await running.call("POST", "/api/v1/silences", silence_body())
    assert status == 200 and set(created) == {"silenceID"}
    silence_id = created["silenceID"]
    assert set(silence_id) <= UUID_CHARS and len(silence_id) == 36

    status, listed = await running.call("GET", "/api/v1/silences")
    assert status == 200 and [s["id"] for s in listed] == [silence_id]
    got = listed[0]
    assert set(got) == {"id", "matchers", "startsAt", "endsAt", "createdBy", "comment",
                        "status", "updatedAt"}
    assert got["matchers"] == [{"name": "account", "value": "carol", "isRegex": False,
                                "isEqual": True}]
    assert got["status"] == {"state": "active"} and got["createdBy"] == "alice@oncall"
    assert (await running.call("GET", f"/api/v1/silences/{silence_id}")) == (200, got)

    accounts = {a["account"]: a for a in
                (await running.call("GET", "/api/v1/accounts"))[1]["accounts"]}
    until = accounts["carol"]["silenced"]["until"]
    assert accounts["carol"]["silenced"] == {"reason": "silence", "by": silence_id,
                                             "until": until}
    assert accounts["alice"]["silenced"] is None
    (outage,) = (await running.call("GET", "/api/v1/outages?open=true"))[1]["outages"]
    assert outage["account"] == "carol" and outage["silenced"]["by"] == silence_id

    status, expired = await running.call("DELETE", f"/api/v1/silences/{silence_id}?by=bob")
    assert status == 200 and expired["status"] == {"state": "expired"}
    status, again = await running.call("DELETE", f"/api/v1/silences/{silence_id}")
    assert status == 200 and again["endsAt"] == expired["endsAt"]  # changes nothing more
    status, listed = await running.call("GET", "/api/v1/silences")
    assert [s["status"]["state"] for s in listed] == ["expired"]  # kept, as Alertmanager
    (outage,) = (await running.call("GET", "/api/v1/outages?open=true"))[1]["outages"]
    assert outage["silenced"] is None

    status, body = await running.call("GET", "/api/v1/silences/not-a-silence")
    assert status == 404 and "not found" in body["error"]
    assert (await running.call("DELETE", "/api/v1/silences/not-a-silence"))[0] == 404


async def test_silences_list_in_alertmanager_order_and_filter_by_their_matchers(
        running: Running) -> None:
    def matcher(name: str, value: str, regex: bool = False) -> dict[str, Any]:
        return {"name": name, "value": value, "isRegex": regex, "isEqual": True}

    ids = {}
    for name, body in (
            ("long", silence_body(matcher("account", "carol"), minutes=120)),
            ("short", silence_body(matcher("account", "carol"), minutes=30)),
            ("team", silence_body(matcher("team", "ops|sre", regex=True),
                                  matcher("platform", "masto"), minutes=60)),
            ("pending", silence_body(matcher("account", "alice"), minutes=200,
                                     startsAt=_iso(time.time() + 3600)))):
        status, created = await running.call("POST", "/api/v1/silences", body)
        assert status == 200, created
        ids[name] = created["silenceID"]
    ended = (await running.call("POST", "/api/v1/silences", silence_body()))[1]["silenceID"]
    await running.call("DELETE", f"/api/v1/silences/{ended}")

    status, listed = await running.call("GET", "/api/v1/silences")
    # active ending soonest first, then pending, then expired
    assert [s["id"] for s in listed] == [ids["short"], ids["team"], ids["long"],
                                         ids["pending"], ended]
    assert listed[3]["status"]["state"] == "pending"

    async def filtered(*filters: str) -> list[str]:
        query = "&".join(f"filter={urllib.parse.quote(f, safe='')}" for f in filters)
        status, body = await running.call("GET", f"/api/v1/silences?{query}")
        assert status == 200, body
        return sorted(s["id"] for s in body)

    assert await filtered('account="carol"') == sorted([ids["long"], ids["short"], ended])
    assert await filtered('team=~"ops|sre"', "platform=masto") == [ids["team"]]
    assert await filtered('team="ops"') == []  # what silences say, not what they cover
    status, body = await running.call("GET", "/api/v1/silences?filter=team%3D%22x")
    assert status == 400 and body["parameter"] == "filter", body
    assert (await running.call("GET", "/api/v1/silences?state=active"))[0] == 400


@pytest.mark.parametrize(("body", "words"), [
    ({"matchers": [{"name": "team", "value": ".*", "isRegex": True}]},
     "must not match the empty string"),
    ({"matchers": []}, "matchers: a non-empty list"),
    ({"comment": ""}, "comment"),
    ({"createdBy": ""}, "createdBy"),
    ({"endsAt": "tomorrow"}, "endsAt"),
    ({"endsAt": "2020-01-01T00:00:00Z"}, "endsAt: must be after"),
    ({"matchers": [{"name": "bad-name", "value": "x"}]}, "label name"),
    ({"matchers": [{"name": "account", "value": "(a", "isRegex": True}]},
     "invalid regular expression"),
])
async def test_an_invalid_silence_is_a_400_naming_the_problem(
        running: Running, body: dict[str, Any], words: str) -> None:
    status, answer = await running.call("POST", "/api/v1/silences",
                                        {**silence_body(), **body})
    assert status == 400, answer
    assert answer["error"].startswith("invalid silence: ") and words in answer["error"], answer
    assert (await running.call("GET", "/api/v1/silences"))[1] == []


async def test_posting_an_existing_id_replaces_the_silence(running: Running) -> None:
    first = (await running.call("POST", "/api/v1/silences", silence_body()))[1]["silenceID"]
    status, created = await running.call("POST", "/api/v1/silences",
                                         silence_body(minutes=240, id=first,
                                                      comment="longer than planned"))
    assert status == 200 and created["silenceID"] != first
    states = {s["id"]: s["status"]["state"]
              for s in (await running.call("GET", "/api/v1/silences"))[1]}
    assert states == {first: "expired", created["silenceID"]: "active"}
    status, body = await running.call("POST", "/api/v1/silences",
                                      silence_body(id="0f0e6c1e-0000-4000-8000-000000000000"))
    assert status == 404 and "not found" in body["error"]


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "expected a JSON object"),
    (b'{"endsAt": NaN}', 400, "NaN is not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "JSON"),
    (b"\xff\xfe{}", 400, "not JSON"),
    (b"", 400, "not JSON"),
    (b'{"comment": "' + b"x" * (1024**2) + b'"}', 413, "larger than 1048576 bytes"),
])
async def test_a_bad_or_oversized_body_is_a_clear_json_error(
        running: Running, data: bytes, status: int, words: str) -> None:
    got, body = await running.call("POST", "/api/v1/silences", data=data,
                                   headers={"Content-Type": "application/json"})
    assert got == status, body
    assert words in body["error"], body
    assert (await running.call("GET", "/healthz"))[0] == 200


async def test_silences_and_their_audit_rows_survive_a_restart(running: Running) -> None:
    silence_id = (await running.call("POST", "/api/v1/silences", silence_body())
                  )[1]["silenceID"]
    await running.mon.stop()
    running.mon = await _start(running.cfg)
    status, listed = await running.call("GET", "/api/v1/silences")
    assert status == 200
    assert [(s["id"], s["status"]["state"]) for s in listed] == [(silence_id, "active")]
    entries = (await running.call("GET", "/api/v1/audit"))[1]["entries"]
    assert [(e["action"], e["target"], e["actor"]) for e in entries] == [
        ("silence.create", silence_id, "alice@oncall")]


# ----------------------------------------------------------------- acknowledgements


async def _open_outage(running: Running) -> dict[str, Any]:
    outages = (await running.call("GET", "/api/v1/outages?open=true"))[1]["outages"]
    assert [o["account"] for o in outages] == ["carol"]
    return dict(outages[0])


async def test_acknowledging_an_outage_records_who_and_when_once(running: Running) -> None:
    outage = await _open_outage(running)
    assert outage["acked_at"] is None
    path = f"/api/v1/outages/{outage['id']}/ack"
    before = time.time()
    status, body = await running.call("POST", path, {"by": "bob", "comment": "on it"})
    assert status == 200 and body["status"] == "acknowledged", body
    acked = body["outage"]
    assert (acked["acked_by"], acked["ack_comment"]) == ("bob", "on it")
    assert acked["acked_at"] >= before - 1

    status, body = await running.call("POST", path, {"by": "carla"})
    assert status == 200 and body["status"] == "already"
    assert body["outage"]["acked_by"] == "bob"  # the first acknowledgement is kept
    listed = (await running.call("GET", "/api/v1/outages"))[1]["outages"]
    assert listed[0]["acked_by"] == "bob"

    status, body = await running.call("POST", "/api/v1/outages/99999/ack", {})
    assert status == 404 and "not found" in body["error"]
    for bad in ("abc", "-1", "1.5", "%D9%A1", "9" * 25):
        status, body = await running.call("POST", f"/api/v1/outages/{bad}/ack", {})
        assert status == 400 and "positive integer" in body["error"], bad
    status, body = await running.call("POST", path, {"by": "x", "note": "typo"})
    assert status == 400 and "note" in body["error"]
    status, body = await running.call("POST", path, {"by": 42})
    assert status == 400 and body["error"].startswith("by:")

    entries = (await running.call("GET", "/api/v1/audit"))[1]["entries"]
    assert [(e["action"], e["actor"], e["remote"]) for e in entries] == [
        ("outage.ack", "bob", "127.0.0.1")]


async def test_an_ack_without_a_body_is_recorded_as_the_api(running: Running) -> None:
    outage = await _open_outage(running)
    status, body = await running.call("POST", f"/api/v1/outages/{outage['id']}/ack")
    assert status == 200 and body["outage"]["acked_by"] == "api", body


async def test_an_outage_that_is_over_cannot_be_acknowledged(running: Running) -> None:
    outage = await _open_outage(running)
    running.masto.set_state("carol", "present")
    await wait_for(lambda: state_of(running.mon, "masto", "carol") is State.UP,
                   what="carol back")
    status, body = await running.call("POST", f"/api/v1/outages/{outage['id']}/ack", {})
    assert status == 409 and "is over" in body["error"], body
    assert body["outage"]["open"] is False and body["outage"]["acked_at"] is None


# ----------------------------------------------------------------- the watchlist


async def _accounts(running: Running) -> dict[str, Any]:
    rows = (await running.call("GET", "/api/v1/watchlist"))[1]["accounts"]
    return {r["handle"]: r for r in rows}


async def test_an_account_added_through_the_api_is_probed_at_once_and_marked(
        running: Running) -> None:
    status, body = await running.call("POST", "/api/v1/watchlist", {
        "platform": "masto", "handle": "dave", "protected": True, "team": "comms",
        "labels": {"tier": "1"}, "by": "bob"})
    assert status == 201, body
    assert body["source"] == "api" and body["account"]["labels"] == {"tier": "1"}
    await wait_for(lambda: state_of(running.mon, "masto", "dave") is State.UP,
                   what="dave probed and up")
    accounts = await _accounts(running)
    assert {h: (a["source"], a["state"]) for h, a in accounts.items()} == {
        "alice": ("config", "up"), "carol": ("config", "down"), "dave": ("api", "up")}
    assert accounts["dave"]["team"] == "comms" and accounts["dave"]["protected"] is True
    only_api = (await running.call("GET", "/api/v1/watchlist?source=api"))[1]["accounts"]
    assert [a["handle"] for a in only_api] == ["dave"]

    status, exported = await running.call("GET", "/api/v1/watchlist?format=yaml")
    assert status == 200 and "handle: dave" in exported and "alice" not in exported

    status, body = await running.call("POST", "/api/v1/watchlist",
                                      {"platform": "masto", "handle": "dave"})
    assert status == 409 and "already" in body["error"]
    status, body = await running.call("DELETE", "/api/v1/watchlist/masto/dave?by=bob")
    assert status == 200 and body == {"removed": {"platform": "masto", "handle": "dave"}}
    await wait_for(lambda: ("masto", "dave") not in {
        (k.platform, k.handle) for k in running.mon.accounts}, what="dave unwatched")
    entries = (await running.call("GET", "/api/v1/audit"))[1]["entries"]
    assert [(e["action"], e["actor"]) for e in entries] == [("watch.add", "bob"),
                                                             ("watch.remove", "bob")]


async def test_the_config_file_wins_over_the_api(running: Running) -> None:
    status, body = await running.call("POST", "/api/v1/watchlist",
                                      {"platform": "masto", "handle": "alice"})
    assert status == 409 and "config file" in body["error"], body
    status, body = await running.call("DELETE", "/api/v1/watchlist/masto/carol")
    assert status == 409 and "config file" in body["error"], body
    status, body = await running.call("DELETE", "/api/v1/watchlist/masto/nobody")
    assert status == 404, body
    assert (await running.call("GET", "/api/v1/audit"))[1]["entries"] == []


@pytest.mark.parametrize(("account", "words"), [
    ({"platform": "nowhere", "handle": "x"}, "not configured under platforms"),
    ({"platform": "masto"}, "handle"),
    ({"platform": "masto", "handle": "x", "protectd": True}, "unknown key"),
    ({"platform": "masto", "handle": "x", "interval": "soon"}, "interval"),
])
async def test_an_invalid_account_is_a_422_with_the_problems(
        running: Running, account: dict[str, Any], words: str) -> None:
    status, body = await running.call("POST", "/api/v1/watchlist", account)
    assert status == 422, body
    assert words in body["error"] and body["problems"], body


# ----------------------------------------------------------------- the audit trail


async def test_the_audit_trail_pages_and_checks_its_parameters(running: Running) -> None:
    for _ in range(3):
        assert (await running.call("POST", "/api/v1/silences", silence_body()))[0] == 200
    entries = (await running.call("GET", "/api/v1/audit"))[1]["entries"]
    assert len(entries) == 3 and [e["remote"] for e in entries] == ["127.0.0.1"] * 3
    first = entries[0]["id"]
    page = (await running.call("GET", f"/api/v1/audit?limit=1&after_id={first}"))[1]
    assert [e["id"] for e in page["entries"]] == [entries[1]["id"]]
    for bad in ("limit=0", "limit=1001", "after_id=-1", "after=3"):
        status, body = await running.call("GET", f"/api/v1/audit?{bad}")
        assert status == 400, (bad, body)


# ----------------------------------------------------------------- SSE replay gap


async def _first_events(mon: Monitor, last_event_id: int, count: int) -> list[dict[str, str]]:
    """The first ``count`` events of a stream resumed from ``last_event_id``."""
    events: list[dict[str, str]] = []
    url = f"http://127.0.0.1:{mon.port}/api/v1/events"
    async with aiohttp.ClientSession() as http, \
            http.get(url, headers={"Last-Event-ID": str(last_event_id)}) as resp:
        assert resp.status == 200
        fields: dict[str, str] = {}
        async with asyncio.timeout(10):
            while len(events) < count:
                line = (await resp.content.readline()).decode().rstrip("\n")
                if line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                else:  # a blank line ends a message (the retry: line is one of its own)
                    if fields.keys() & {"event", "data"}:
                        events.append(fields)
                    fields = {}
    return events


async def test_replay_from_before_what_is_kept_starts_with_a_gap(running: Running) -> None:
    # Both accounts move on, so each one's newest transition (never pruned) is a late one.
    running.masto.set_state("carol", "present")
    running.masto.set_state("alice", "gone")
    await wait_for(lambda: state_of(running.mon, "masto", "carol") is State.UP
                   and state_of(running.mon, "masto", "alice") is State.DOWN,
                   what="carol back, alice down")
    store = running.mon.store
    assert store is not None
    await wait_for(lambda: not (running.mon.writer and running.mon.writer.backlog),
                   what="decisions written")
    store.prune_transitions(time.time() + 1, 1000)  # what retention does, long after
    oldest = store.oldest_transition_id()
    assert oldest is not None and oldest > 2, oldest

    kept = [row["id"] for row in store.transitions(after_id=1)]
    gap, *replayed = await _first_events(running.mon, 1, 1 + len(kept))
    assert gap == {"event": "gap", "data": json.dumps({"last_event_id": 1,
                                                       "oldest_kept": oldest})}
    assert "id" not in gap  # the client's Last-Event-ID stays where it was
    assert [int(e["id"]) for e in replayed] == kept  # then what is kept, in order

    (resumed,) = await _first_events(running.mon, oldest - 1, 1)  # nothing missed
    assert resumed["id"] == str(oldest) and resumed["event"] != "gap"
