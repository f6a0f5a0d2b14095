"""The shell of multi-vantage quorum: ask the peers, then page, notice or wait.

The rule is :mod:`monitor.quorum`. Here, the outbox asks :meth:`QuorumKeeper.gate` before
a vanish trigger's first attempt: without a settled verdict the row is kept back (outbox
status ``quorum``) and one check per outage asks every peer at once (``POST
/api/v1/probe``, each within its timeout). The verdict is written through the writer, in
order with the decisions:

* page: the kept-back rows go out, their payload carrying the votes (``details.quorum``)
  and the summary saying how many vantages saw it;
* disagree: a ``vantage_disagreement`` notice to chat (once per outage), the
  ``accmon_vantage_disagreement`` gauge, and another check after ``quorum.ask_again``;
* hold: another check after ``quorum.ask_again``;
* page, but another vantage leads (:attr:`monitor.quorum.Verdict.leader`): this one's page
  stays back and it asks again after ``quorum.ask_again``, paging itself only if the leader
  stops answering while the account is still gone.

An outage that ends meanwhile drops its kept-back rows (they are unsent triggers, see
:mod:`monitor.pages`), so nothing pages after the fact. Rows kept back when the monitor
stopped are checked again at start. A peer's token is never logged or shown.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog

from monitor import quorum, routing
from monitor.config import Config, Peer
from monitor.metrics import Metrics
from monitor.model import AccountKey, State
from monitor.notify.base import Notification
from monitor.store import OutboxItem, Store
from monitor.watchlist import Watchlist
from monitor.writer import StoreWriter, Write

log = structlog.get_logger("quorum")

MAX_ANSWER = 64 * 1024  # bytes of a peer's answer: a vote is a few hundred
QUORUM_KINDS = frozenset({"vanished"})


def quorum_on(config: Config) -> bool:
    return bool(config.peers) and config.quorum.required > 1


def settled(n: Notification) -> bool:
    return "quorum" in n.details


async def ask(session: aiohttp.ClientSession, peer: Peer, key: AccountKey,
              account_id: str | None) -> quorum.Vote:
    """One peer's fresh probe of ``key``; any failure is a vote not cast, never a
    "present"."""
    name = peer.name or peer.url
    headers = {}
    if peer.token is not None:
        headers["Authorization"] = f"Bearer {peer.token.get_secret_value()}"
    body = {"platform": key.platform, "account": key.handle, "id": account_id}
    try:
        async with asyncio.timeout(peer.timeout):
            async with session.post(peer.url.rstrip("/") + "/api/v1/probe", json=body,
                                    headers=headers, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_ANSWER + 1)
                if resp.status != 200:
                    return quorum.Vote(name, "error", error=f"peer answered HTTP {resp.status}")
    except TimeoutError:
        return quorum.Vote(name, "error", error=f"no answer within {peer.timeout:g}s")
    except aiohttp.ClientError as exc:
        return quorum.Vote(name, "error", error=f"unreachable: {type(exc).__name__}")
    if len(raw) > MAX_ANSWER:
        return quorum.Vote(name, "error", error="answer too large")
    try:
        answer = json.loads(raw)
        vantage, result = str(answer["vantage"])[:64], answer["result"]
    except (ValueError, KeyError, TypeError):
        return quorum.Vote(name, "error", error="answer is not a vote")
    if result not in ("absent", "present", "error"):
        return quorum.Vote(vantage, "error", error="answer is not a vote")
    return quorum.Vote(vantage, result, reason=_text(answer.get("reason")),
                       evidence=_text(answer.get("evidence")), error=_text(answer.get("error")))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)[:500]


async def _votes(own: quorum.Vote, asks: list[tuple[str, Coroutine[Any, Any, quorum.Vote]]],
                 required: int) -> list[quorum.Vote]:
    """Every peer's vote, in peer order; once ``required`` vantages (``own`` included) see
    the account gone, the slower peers are not waited for: a hanging peer then costs no
    time."""
    tasks = [asyncio.ensure_future(a) for _, a in asks]
    absent = 1 if own.result == "absent" else 0
    try:
        for done in asyncio.as_completed(tasks):
            vote = await done
            absent += vote.result == "absent"
            if absent >= required:
                break
    finally:
        for task in tasks:
            task.cancel()
    return [t.result() if t.done() and not t.cancelled() else
            quorum.Vote(name, "error", error=quorum.NOT_WAITED)
            for (name, _), t in zip(asks, tasks, strict=True)]


@dataclass(slots=True)
class Disagreement:
    pairs: list[tuple[str, str]]
    noticed: bool = False


class QuorumKeeper:
    """Kept-back vanish pages and the checks that settle them, one per outage."""

    def __init__(self, config: Callable[[], Config], watchlist: Watchlist,
                 store: Callable[[], Store | None], writer: Callable[[], StoreWriter | None],
                 session: Callable[[], aiohttp.ClientSession | None], metrics: Metrics,
                 wake_outbox: Callable[[], None], clock: Callable[[], float] = time.time):
        self.config, self.watchlist, self.store, self.writer = config, watchlist, store, writer
        self.session, self.metrics, self.wake_outbox, self.clock = (session, metrics,
                                                                    wake_outbox, clock)
        self.checks: dict[str, asyncio.Task[None]] = {}  # dedup key -> its check
        self.disagreements: dict[str, Disagreement] = {}  # dedup key -> pairs now

    # ----------------------------------------------------------------- the outbox's side

    def gate(self, n: Notification) -> bool:
        """True when ``n`` may go out now; False: keep it back and settle it first."""
        if n.kind not in QUORUM_KINDS or n.action != "trigger" or settled(n) or \
                not quorum_on(self.config()):
            return True
        self.check(n)
        return False

    def check(self, n: Notification) -> None:
        """Start the outage's check unless one runs (several notifiers, one check)."""
        task = self.checks.get(n.dedup_key)
        if task is None or task.done():
            self.checks[n.dedup_key] = asyncio.create_task(
                self._settle(n), name=f"quorum {n.dedup_key}")

    def resume(self, store: Store) -> None:
        """At start: the rows kept back when the monitor stopped are checked again."""
        for row in store.quorum_rows():
            self.check(Notification.from_json(row.payload))

    async def stop(self) -> None:
        for task in self.checks.values():
            task.cancel()
        await asyncio.gather(*self.checks.values(), return_exceptions=True)
        self.checks.clear()

    # ----------------------------------------------------------------- one check

    async def _settle(self, n: Notification) -> None:
        key = AccountKey(n.platform, n.account)
        while True:
            try:
                verdict = await self._ask_all(key, n)
                if verdict is None:
                    self._clear(n.dedup_key, key.platform)
                    return  # the account is back (or gone from the watchlist): no page
                self.metrics.quorum_checks.labels(key.platform, verdict.outcome).inc()
                if verdict.outcome == "page" and verdict.leader != verdict.votes[0].vantage:
                    self._clear(n.dedup_key, key.platform)  # they agree; another one pages
                    log.info("quorum reached; the leading vantage pages", leader=verdict.leader,
                             platform=key.platform, account=key.handle)
                elif verdict.outcome == "page":
                    self._page(n, verdict)
                    self._clear(n.dedup_key, key.platform)
                    return
                if verdict.outcome == "disagree":
                    self._disagree(n, verdict)
                else:
                    log.warning("quorum: too few vantages answered; holding the page",
                                platform=key.platform, account=key.handle,
                                summary=verdict.summary())
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one check must not lose the page: ask again
                log.exception("quorum check failed; asking again", dedup_key=n.dedup_key)
            await asyncio.sleep(self.config().quorum.ask_again)

    async def _ask_all(self, key: AccountKey, n: Notification) -> quorum.Verdict | None:
        watched = self.watchlist.accounts.get(key)
        session = self.session()
        if watched is None or session is None or watched.state.state is not State.DOWN \
                or watched.state.outage_id != n.outage_id:
            return None
        config = self.config()
        st = watched.state
        own = quorum.Vote(config.monitor.vantage, "absent",
                          reason=st.reason.value if st.reason else None,
                          evidence=str(n.details.get("evidence") or "") or None)
        # Waiting for every peer is what lets every vantage name the same leader; only the
        # vantage that would lead anyway (its name first) may stop at quorum.
        leads = all(p.name is not None and p.name > own.vantage for p in config.peers)
        votes = await _votes(own, [(peer.name or peer.url, ask(session, peer, key,
                                                                watched.account_id))
                                   for peer in config.peers],
                             config.quorum.required if leads else len(config.peers) + 2)
        for peer, vote in zip(config.peers, votes, strict=True):
            outcome = "error" if vote.result == "error" else "vote"
            self.metrics.peer_requests.labels(peer.name or peer.url, outcome).inc()
            if vote.result == "error":
                log.warning("peer cast no vote", peer=peer.name or peer.url,
                            platform=key.platform, account=key.handle, error=vote.error)
        return quorum.decide(own, votes, config.quorum.required, config.quorum.when_too_few)

    def _page(self, n: Notification, verdict: quorum.Verdict) -> None:
        details = {**n.details, "quorum": verdict.to_json()}
        payload = replace(n, details=details, summary=f"{n.summary}; {verdict.summary()}")
        log.warning("quorum reached: paging" if not verdict.too_few else
                    "too few vantages answered: paging anyway (policy page)",
                    platform=n.platform, account=n.account, summary=verdict.summary())
        self._submit(f"quorum page {n.dedup_key}", lambda store: store.release_quorum(
            n.dedup_key, payload.to_json(), self.clock()))

    def _disagree(self, n: Notification, verdict: quorum.Verdict) -> None:
        key = n.dedup_key
        before = self.disagreements.get(key)
        pairs = quorum.disagreeing_pairs(verdict)
        self._count(n.platform, before.pairs if before else [], -1)
        self._count(n.platform, pairs, +1)
        state = Disagreement(pairs, noticed=before.noticed if before else False)
        self.disagreements[key] = state
        if state.noticed:
            return
        state.noticed = True
        log.warning("vantages disagree: not paging", platform=n.platform, account=n.account,
                    summary=verdict.summary())
        watched = self.watchlist.accounts.get(AccountKey(n.platform, n.account))
        if watched is None:
            return
        notice = routing.disagreement_for(n, verdict, self.clock())
        items: list[OutboxItem] = routing.outbox_items(notice, watched.config, self.config())
        self._submit(f"disagreement {key}", lambda store: store.enqueue(items, self.clock()))

    def _clear(self, key: str, platform: str) -> None:
        state = self.disagreements.pop(key, None)
        if state is not None:
            self._count(platform, state.pairs, -1)
            log.info("vantages agree again", dedup_key=key)

    def _count(self, platform: str, pairs: list[tuple[str, str]], step: int) -> None:
        for absent, present in pairs:
            self.metrics.vantage_disagreement.labels(platform, absent, present).inc(step)

    def _submit(self, what: str, apply: Callable[[Store], Any]) -> None:
        writer = self.writer()
        if writer is None:
            return
        writer.submit(Write(what, apply, lambda _: self.wake_outbox()))

    def disagreeing(self) -> Mapping[str, Disagreement]:
        return self.disagreements
