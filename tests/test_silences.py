"""The pure rules of silences: Alertmanager's shapes, states, and what suppression means."""

from __future__ import annotations

import pytest

from monitor.matchers import Matcher, subject_labels
from monitor.silences import Silence, silence_from_json, suppression, verdict

NOW = 1_800_000_000.0
POTUS = subject_labels("x", "potus", "comms", True, {"tier": "1"})
OTHER = subject_labels("x", "someone", None, False, {})


def body(**over: object) -> dict[str, object]:
    return {"matchers": [{"name": "account", "value": "potus", "isRegex": False,
                          "isEqual": True}],
            "startsAt": "2027-01-15T08:00:00Z", "endsAt": "2027-01-15T10:00:00Z",
            "createdBy": "alice", "comment": "planned deactivation", **over}


def test_a_silence_from_alertmanagers_postable_shape() -> None:
    s = silence_from_json(body(), NOW)
    assert s.matchers == (Matcher("account", "potus"),)
    assert s.created_by == "alice" and s.comment == "planned deactivation"
    assert s.ends_at - s.starts_at == 7200
    out = s.to_json(s.starts_at)
    assert out["status"] == {"state": "active"}
    assert out["startsAt"] == "2027-01-15T08:00:00.000Z"
    assert out["matchers"] == [{"name": "account", "value": "potus", "isRegex": False,
                                "isEqual": True}]
    assert set(out) == {"id", "matchers", "startsAt", "endsAt", "createdBy", "comment",
                        "status", "updatedAt"}


def test_states_pending_active_expired() -> None:
    s = silence_from_json(body(), NOW)
    assert s.state(s.starts_at - 1) == "pending"
    assert s.state(s.starts_at) == "active"
    assert s.state(s.ends_at) == "expired"


def test_a_start_in_the_past_is_now_and_the_author_can_come_from_the_api() -> None:
    from datetime import UTC, datetime
    nine_utc = datetime(2027, 1, 15, 9, 0, tzinfo=UTC).timestamp()
    s = silence_from_json(body(startsAt="2020-01-01T00:00:00Z",
                               endsAt="2027-01-15T10:00:00+01:00", createdBy=None), NOW,
                          created_by="write-token")
    assert s.starts_at == NOW and s.created_by == "write-token"
    assert s.ends_at == nine_utc  # the offset is honoured


@pytest.mark.parametrize(("change", "problem"), [
    ({"matchers": []}, "matchers: a non-empty list"),
    ({"matchers": [{"name": "team", "value": ".*", "isRegex": True, "isEqual": True}]},
     "matchers:"),
    ({"matchers": [{"name": "9bad", "value": "x"}]}, "matchers[0]:"),
    ({"endsAt": "2027-01-15T07:00:00Z"}, "endsAt: must be after startsAt"),
    ({"endsAt": "tomorrow"}, "endsAt: 'tomorrow' is not an RFC 3339 time"),
    ({"endsAt": "2027-01-15T10:00:00"}, "endsAt: give a time zone offset"),
    ({"comment": ""}, "comment: why"),
    ({"createdBy": " "}, "createdBy:"),
])
def test_bad_silences_name_every_problem(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        silence_from_json(body(**change), NOW)
    assert problem in str(err.value)


def test_not_an_object() -> None:
    with pytest.raises(ValueError, match="expected a JSON object"):
        silence_from_json(["x"], NOW)


def test_expiring_ends_an_active_silence_now_and_a_pending_one_before_it_starts() -> None:
    s = silence_from_json(body(), NOW)
    active = s.expired_at(s.starts_at + 60)
    assert active.ends_at == s.starts_at + 60 and active.state(s.starts_at + 60) == "expired"
    pending = s.expired_at(s.starts_at - 60)
    assert pending.ends_at == pending.starts_at == s.starts_at - 60
    assert pending.state(s.starts_at - 60) == "expired"


def _silence(*matchers: Matcher, start: float = NOW, end: float = NOW + 3600) -> Silence:
    return Silence("id-" + str(end), matchers, start, end, "alice", "why", NOW, NOW)


def test_suppression_is_the_longest_covering_silence_and_only_while_active() -> None:
    short = _silence(Matcher("platform", "x"), end=NOW + 60)
    long = _silence(Matcher("team", "comms"), Matcher("protected", "true"), end=NOW + 600)
    other = _silence(Matcher("account", "nobody"), end=NOW + 6000)
    got = suppression(POTUS, [short, long, other], [], NOW + 1)
    assert got is not None and got.by == long.id and got.until == NOW + 600
    assert got.reason == "silence"
    assert suppression(OTHER, [long, other], [], NOW + 1) is None
    assert suppression(POTUS, [long], [], NOW - 1) is None  # pending
    assert suppression(POTUS, [long], [], NOW + 600) is None  # expired


def test_regex_and_negative_matchers_and_labels() -> None:
    s = _silence(Matcher("tier", "1|2", is_regex=True), Matcher("account", "someone",
                                                                  is_equal=False))
    assert suppression(POTUS, [s], [], NOW) is not None
    assert suppression(OTHER, [s], [], NOW) is None


@pytest.mark.parametrize(("kind", "action", "expected"), [
    ("vanished", "trigger", "defer"),
    ("blind", "trigger", "defer"),
    ("reminder", "trigger", "drop"),
    ("renamed", "notify", "drop"),
    ("brief_outage", "notify", "drop"),
    ("recovered", "resolve", "send"),
    ("sighted", "resolve", "send"),
    ("acknowledged", "acknowledge", "send"),
])
def test_what_suppression_does_to_each_kind(kind: str, action: str, expected: str) -> None:
    assert verdict(kind, action) == expected
