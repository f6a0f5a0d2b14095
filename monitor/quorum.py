"""Do enough vantages agree that the account is gone? Pure.

One vantage cannot tell "the account is gone" from "the platform answers us differently":
geo-blocking, a CDN edge serving a stale 404, a regional outage, a proxy rewriting answers.
With peers configured, a vanish page waits for votes: this vantage's own (it confirmed the
account down) and a fresh probe by each peer (``POST /api/v1/probe``). Then:

* at least ``required`` vantages (this one included) see it absent: **page**, naming them;
* fewer, and some vantage sees it present: **disagree** — no page; a
  ``vantage_disagreement`` notice to chat with each vantage's evidence; asked again later,
  so a platform change that reaches the other vantages late still pages;
* fewer, and nobody contradicts (peers errored or timed out: no vote): the policy decides —
  ``page`` (the default: the page says it rests on too few vantages) or ``hold`` (ask again
  until enough answer, or the account comes back and the page is dropped).

A peer that errors casts no vote; it never counts as "present". Recovery needs no quorum:
any vantage seeing the account back resolves as before.

**One page, not one per vantage.** Every vantage that sees the account gone reaches the
same verdict at about the same time, and their outage ids (so their dedup keys) are their
own. So the page is sent by one of them: the *leader*, the first by name among the
vantages that voted absent. The others keep their page back and ask again later; if the
leader stops answering, the next one in line becomes leader and pages. (Vantage names must
be unique across peers.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

VoteResult = Literal["absent", "present", "error"]
NOT_WAITED = "not waited for: quorum already reached"  # the error of a vote left unasked
Outcome = Literal["page", "disagree", "hold"]
TooFew = Literal["page", "hold"]


@dataclass(frozen=True, slots=True)
class Vote:
    """One vantage's view of one account."""

    vantage: str
    result: VoteResult  # "error": this vantage casts no vote
    reason: str | None = None  # the absence reason, for "absent"
    evidence: str | None = None
    error: str | None = None  # why no vote (timeout, refused, not watched there, ...)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in (("vantage", self.vantage), ("result", self.result),
                                  ("reason", self.reason), ("evidence", self.evidence),
                                  ("error", self.error)) if v is not None}


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    required: int
    votes: tuple[Vote, ...]

    @property
    def absent(self) -> list[str]:
        return [v.vantage for v in self.votes if v.result == "absent"]

    @property
    def present(self) -> list[str]:
        return [v.vantage for v in self.votes if v.result == "present"]

    @property
    def silent(self) -> list[str]:
        return [v.vantage for v in self.votes if v.result == "error"]

    @property
    def leader(self) -> str | None:
        """The vantage that sends the page: the first by name that saw the account gone."""
        return min(self.absent) if self.outcome == "page" and self.absent else None

    @property
    def too_few(self) -> bool:
        """Paged although fewer than ``required`` vantages agreed (policy ``page``)."""
        return self.outcome == "page" and len(self.absent) < self.required

    def summary(self) -> str:
        """One line for the page or the notice, e.g. "seen gone from 2 of 3 vantages
        (eu, us); ap did not answer"."""
        seen = (f"seen gone from {len(self.absent)} of {len(self.votes)} vantages "
                f"({', '.join(self.absent)})")
        parts = [seen]
        if self.present:
            parts.append(f"present from {', '.join(self.present)}")
        mute = [v.vantage for v in self.votes if v.result == "error" and v.error != NOT_WAITED]
        skipped = [v.vantage for v in self.votes if v.error == NOT_WAITED]
        if mute:
            parts.append(f"{', '.join(mute)} did not answer")
        if skipped:
            parts.append(f"{', '.join(skipped)} not waited for")
        text = "; ".join(parts)
        if self.too_few:
            text = ("single vantage: " if len(self.absent) == 1 else
                    f"only {len(self.absent)} of {self.required} required vantages: ") + text
        return text

    def to_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "required": self.required,
                "absent": self.absent, "present": self.present, "silent": self.silent,
                "too_few": self.too_few, "summary": self.summary(),
                "votes": [v.to_json() for v in self.votes]}


def decide(own: Vote, peers: Sequence[Vote], required: int, when_too_few: TooFew) -> Verdict:
    """The verdict on this vantage's ``own`` vote (absent: it confirmed the account down)
    and the ``peers``' fresh ones."""
    votes = (own, *peers)
    absent = sum(1 for v in votes if v.result == "absent")
    if absent >= required:
        return Verdict("page", required, votes)
    if any(v.result == "present" for v in votes):
        return Verdict("disagree", required, votes)
    return Verdict("page" if when_too_few == "page" else "hold", required, votes)


def disagreeing_pairs(verdict: Verdict) -> list[tuple[str, str]]:
    """(a vantage seeing it gone, a vantage seeing it present) pairs: the metric's labels."""
    return [(a, p) for a in verdict.absent for p in verdict.present]
