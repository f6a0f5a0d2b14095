"""Slack incoming webhook: a short Block Kit message a human reads on a phone at 3 a.m.

Slack answers 200 ``ok``; 400 ``invalid_payload``, 403 ``action_prohibited``, 404
``no_service`` and 410 ``channel_is_archived`` are permanent (the shared status reading
makes every 4xx but 408/429 permanent); 429 carries ``Retry-After``. The webhook URL *is*
the credential, so it never reaches an error message, an answer, a log line or ``repr``.

Every text Slack parses as mrkdwn (the fallback ``text`` too: incoming webhooks format it
unless ``mrkdwn: false``) has ``&``, ``<`` and ``>`` escaped as ``&amp;``, ``&lt;`` and
``&gt;``, exactly these three (api.slack.com/reference/surfaces/formatting#escaping), so an
account name cannot become a link or an ``@channel``. Slack has no acknowledged state; an
acknowledgement is one short line in the channel that got the page, which is what people
there want to know ("someone is on it").
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, SecretStr

from monitor.config_types import Duration
from monitor.notify.base import (
    ELLIPSIS,
    Answer,
    Notification,
    NotifierSettings,
    ack_comment,
    acknowledged_by,
    headline,
    post_json,
    truncate,
    type_field,
)
from monitor.timefmt import iso_ms

HEADER_MAX = 150  # Block Kit limits: header text, section text, one field
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
TEXT_MAX = 4000  # the notification fallback; Slack truncates longer messages anyway
# An entity cut by truncation ("&am…") would show as text: cut before it instead.
_CUT_ENTITY = re.compile(r"&[a-z]{0,3}$")


class SlackConfig(NotifierSettings):
    """A Slack incoming webhook."""

    type: Literal["slack"] = type_field()
    webhook_url: SecretStr = Field(
        description="The incoming webhook URL (the URL itself is the secret).")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class SlackNotifier:
    """Posts to one incoming-webhook URL (one channel)."""

    config_model: ClassVar[type[SlackConfig]] = SlackConfig
    type: ClassVar[str] = "slack"
    pages: ClassVar[bool] = False
    acknowledges: ClassVar[bool] = False

    def __init__(self, name: str, config: SlackConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self.name!r})"

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``(url, headers, body)``; the URL is the secret, so callers must not log it."""
        body = ack_message(n) if n.action == "acknowledge" else message(n)
        return self.config.webhook_url.get_secret_value(), {}, body

    async def send(self, n: Notification) -> Answer:
        url, headers, body = self.build_request(n)
        return await post_json(self.session, url, body, headers=headers,
                               timeout=self.config.timeout, secrets=(url, urlsplit(url).path))


def ack_message(n: Notification) -> dict[str, Any]:
    """One line: who acknowledged which account's page, and their comment."""
    by, comment = escape(acknowledged_by(n)), escape(ack_comment(n))
    who = escape(f"{n.platform}/{n.account}")
    line = f":raised_hand: *Acknowledged* {who} by *{by}*" + (f": {comment}" if comment else "")
    text = f"Acknowledged {who} by {by}" + (f": {comment}" if comment else "")
    return {"text": cut(text, TEXT_MAX), "blocks": [
        _mrkdwn_section(line),
        {"type": "context", "elements": [
            {"type": "mrkdwn", "text": cut(f"account-monitor · `{escape(n.dedup_key)}`",
                                           FIELD_MAX)}]}]}


def message(n: Notification) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}`` for one notification."""
    title = headline(n)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, HEADER_MAX)}},
        _mrkdwn_section(escape(n.summary)),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": cut(text, FIELD_MAX)}
                                       for text in _fields(n)][:FIELDS_MAX]},
    ]
    evidence = n.details.get("evidence")
    if evidence:
        blocks.append(_mrkdwn_section(f"*Evidence*\n{escape(str(evidence))}"))
    context = [f"<{_link_target(link['href'])}|{escape(link.get('text') or 'link')}>"
               for link in n.links if link.get("href")]
    context.append(f"account-monitor · `{escape(n.dedup_key)}`")
    blocks.append({"type": "context",
                   "elements": [{"type": "mrkdwn", "text": cut(" · ".join(context),
                                                                FIELD_MAX)}]})
    return {"text": cut(escape(f"{title}. {n.summary}"), TEXT_MAX), "blocks": blocks}


def _fields(n: Notification) -> list[str]:
    d = n.details
    fields = [f"*Account*\n{escape(n.account)}" + (" (protected)" if n.protected else ""),
              f"*Platform*\n{escape(n.platform)}"]
    if n.reason:
        fields.append(f"*Reason*\n{escape(n.reason)}")
    if n.action == "resolve":
        duration = _number(d.get("duration_seconds"))
        if duration is not None:
            fields.append(f"*Outage duration*\n{human_duration(duration)}")
        if d.get("first_seen_absent_at"):
            fields.append(f"*Gone since*\n{escape(str(d['first_seen_absent_at']))}")
        fields.append(f"*Recovered at*\n{escape(str(d.get('recovered_at') or iso_ms(n.at)))}")
    else:
        since = d.get("first_seen_absent_at") or iso_ms(n.at)
        fields.append(f"*Since*\n{escape(str(since))}")
        down_for = _number(d.get("down_for_seconds"))
        if down_for is not None:
            fields.append(f"*Down for*\n{human_duration(down_for)}")
    if n.team:
        fields.append(f"*Team*\n{escape(n.team)}")
    if n.owner:
        fields.append(f"*Owner*\n{escape(n.owner)}")
    return fields


def _mrkdwn_section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": cut(text, SECTION_MAX)}}


def cut(escaped: str, limit: int) -> str:
    """:func:`truncate` for escaped text: never ends in half an entity (``&am…``)."""
    if len(escaped) <= limit:
        return escaped
    return _CUT_ENTITY.sub("", escaped[: limit - 1]) + ELLIPSIS


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def escape(text: str) -> str:
    """Slack mrkdwn control characters (its documented escaping: &, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_target(href: str) -> str:
    # Inside <href|text>, "|" and ">" would end the URL early.
    return escape(href).replace("|", "%7C")


def human_duration(seconds: float) -> str:
    """``42s``, ``5m 03s``, ``2h 05m``, ``3d 4h``: what a reader takes in at a glance."""
    s = max(0, round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
