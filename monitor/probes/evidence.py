"""Evidence: the short, secret-free text an observation carries, and the platform messages
it quotes.

Every probe quotes something of the answer (a status, an error name, the platform's own
message) so that a page or ``account-monitor probe`` says *why*. What it quotes comes from
a server and may be any length: it is cut to :data:`TEXT_CHARS` here, in one way for all.
The URL is never quoted (some platforms carry keys in the query string).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitor.probes.base import Answer, ProbeError

TEXT_CHARS = 80  # a quoted server message, kept to one readable line


def short(text: object, chars: int = TEXT_CHARS) -> str:
    """``text`` as a string of at most ``chars`` characters, "…" marking a cut."""
    shown = str(text)
    return shown if len(shown) <= chars else shown[:chars] + "…"


def with_detail(evidence: str, detail: object) -> str:
    """``"<evidence>: <detail, shortened>"``, or ``evidence`` alone when ``detail`` is not a
    non-empty string (a body without the platform's message field)."""
    if not isinstance(detail, str) or not detail:
        return evidence
    return f"{evidence}: {short(detail)}"


def json_object(answer: Answer) -> dict[str, Any]:
    """The body as a JSON object, or ``{}`` when it is not one (a proxy's HTML page, an
    empty body): error bodies are read for evidence, never trusted to have a shape."""
    try:
        body = answer.json()
    except ProbeError:
        return {}
    return body if isinstance(body, dict) else {}


def text_at(doc: Mapping[str, Any], key: str) -> str | None:
    """``doc[key]`` when it is a string, else None."""
    value = doc.get(key)
    return value if isinstance(value, str) else None


def json_text(answer: Answer, key: str) -> str | None:
    """The string at ``key`` of a JSON-object body (GitHub's ``message``, Mastodon's
    ``error``), or None when the body is not that shape."""
    return text_at(json_object(answer), key)
