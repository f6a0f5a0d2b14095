"""The quorum verdict: page, disagree or hold, from one vantage's vote and its peers'."""

from __future__ import annotations

import pytest

from monitor.quorum import Vote, decide, disagreeing_pairs

EU = Vote("eu", "absent", reason="suspended", evidence="HTTP 403 suspended")


def gone(name: str) -> Vote:
    return Vote(name, "absent", reason="suspended")


def here(name: str) -> Vote:
    return Vote(name, "present", evidence="HTTP 200")


def mute(name: str) -> Vote:
    return Vote(name, "error", error="timeout after 2s")


@pytest.mark.parametrize(("peers", "required", "policy", "outcome", "too_few"), [
    ([gone("us"), gone("ap")], 2, "page", "page", False),  # all agree
    ([gone("us"), here("ap")], 2, "page", "page", False),  # quorum despite one dissent
    ([gone("us"), mute("ap")], 2, "hold", "page", False),  # quorum; the silent one no matter
    ([here("us"), here("ap")], 2, "page", "disagree", False),  # a rewriting path: no page
    ([here("us"), mute("ap")], 2, "page", "disagree", False),
    ([mute("us"), mute("ap")], 2, "page", "page", True),  # too few: the policy pages...
    ([mute("us"), mute("ap")], 2, "hold", "hold", False),  # ...or holds
    ([gone("us"), mute("ap")], 3, "page", "page", True),
    ([gone("us"), mute("ap")], 3, "hold", "hold", False),
    ([], 1, "hold", "page", False),  # a quorum of one is the single-vantage monitor
])
def test_verdicts(peers: list[Vote], required: int, policy: str, outcome: str,
                  too_few: bool) -> None:
    verdict = decide(EU, peers, required, policy)  # type: ignore[arg-type]
    assert verdict.outcome == outcome
    assert verdict.too_few is too_few


def test_a_silent_peer_never_counts_as_present_or_absent() -> None:
    verdict = decide(EU, [mute("us"), gone("ap")], 3, "hold")
    assert verdict.absent == ["eu", "ap"] and verdict.present == [] and verdict.silent == ["us"]


def test_summaries_say_who_saw_what() -> None:
    assert decide(EU, [gone("us"), mute("ap")], 2, "page").summary() == (
        "seen gone from 2 of 3 vantages (eu, us); ap did not answer")
    assert decide(EU, [mute("us")], 2, "page").summary() == (
        "single vantage: seen gone from 1 of 2 vantages (eu); us did not answer")
    assert decide(EU, [gone("us"), mute("ap"), mute("sa")], 3, "page").summary().startswith(
        "only 2 of 3 required vantages: ")
    assert decide(EU, [here("us")], 2, "page").summary() == (
        "seen gone from 1 of 2 vantages (eu); present from us")


def test_disagreeing_pairs_are_the_metric_labels() -> None:
    verdict = decide(EU, [here("us"), gone("ap"), here("sa")], 3, "page")
    assert verdict.outcome == "disagree"
    assert disagreeing_pairs(verdict) == [("eu", "us"), ("eu", "sa"), ("ap", "us"),
                                          ("ap", "sa")]


def test_json_keeps_each_vantages_evidence() -> None:
    out = decide(EU, [here("us")], 2, "page").to_json()
    assert out["votes"] == [
        {"vantage": "eu", "result": "absent", "reason": "suspended",
         "evidence": "HTTP 403 suspended"},
        {"vantage": "us", "result": "present", "evidence": "HTTP 200"}]
    assert out["outcome"] == "disagree" and out["required"] == 2


def test_the_leader_is_the_first_vantage_by_name_that_saw_it_gone() -> None:
    assert decide(Vote("us", "absent"), [gone("eu"), gone("ap")], 2, "page").leader == "ap"
    assert decide(Vote("us", "absent"), [gone("eu"), mute("ap")], 2, "page").leader == "eu"
    assert decide(Vote("us", "absent"), [mute("eu")], 2, "page").leader == "us"  # policy
    assert decide(Vote("us", "absent"), [here("eu")], 2, "page").leader is None


def test_a_peer_not_waited_for_is_not_said_to_be_silent() -> None:
    from monitor.quorum import NOT_WAITED
    verdict = decide(EU, [gone("us"), Vote("zz", "error", error=NOT_WAITED)], 2, "page")
    assert verdict.summary() == "seen gone from 2 of 3 vantages (eu, us); zz not waited for"
