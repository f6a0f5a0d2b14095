"""Real answers, recorded by public client libraries, served by the fakes on demand.

A fixture (``tests/fixtures/recorded/<platform>/<name>.json``) is one HTTP answer a real
platform gave, cut from a client library's test recordings (tweepy cassettes, PyGithub
ReplayData, PRAW cassettes, Mastodon.py cassettes, atproto test data) or an issue thread:
status, the headers that matter, the body exactly as sent (decompressed), and where it came
from (repository, path, commit). Tokens and cookies are never kept. Its ``expected`` block
says what the answer means, decided from the platform's documentation.

:class:`RecordedAnswers` lets a fake answer requests about one account with such a fixture
instead of its own shape, so the real probe can be run against what the platform really
said. The answer is sent as recorded, headers included: the fake's own rate-limit headers
are not laid over it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

# Transport headers that describe the recording's bytes on the wire, not the answer.
_TRANSPORT = frozenset({"content-length", "transfer-encoding", "content-encoding",
                        "connection", "keep-alive"})


@dataclass(frozen=True, slots=True)
class Recording:
    """One recorded answer and what it means."""

    path: Path
    platform: str
    status: int
    headers: Mapping[str, str]
    body: str
    source: Mapping[str, Any]
    expected: Mapping[str, Any]
    lookup: str = "single"  # "single" or "batch" (X /2/users?ids=, Bluesky getProfiles)
    request: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.platform}/{self.path.stem}"

    def response_headers(self) -> CIMultiDict[str]:
        return CIMultiDict((k, v) for k, v in self.headers.items()
                           if k.lower() not in _TRANSPORT)


def load(path: Path) -> Recording:
    """Read one fixture file; ValueError names the file when it is not in the format."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        response = doc["response"]
        return Recording(path=path, platform=str(doc["platform"]),
                         status=int(response["status"]),
                         headers={str(k): str(v) for k, v in response["headers"].items()},
                         body=str(response["body"]), source=dict(doc["source"]),
                         expected=dict(doc["expected"]), lookup=str(doc.get("lookup", "single")),
                         request=dict(doc.get("request") or {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a recorded-answer fixture ({exc})") from None


def load_all(root: Path, platform: str | None = None) -> list[Recording]:
    """Every fixture under ``root`` (one folder per platform), sorted by name."""
    folders: Iterable[Path] = [root / platform] if platform else sorted(root.iterdir())
    return [load(p) for folder in folders if folder.is_dir()
            for p in sorted(folder.glob("*.json"))]


class RecordedAnswers:
    """Mixin for a fake: ``serve_recorded(key, recording)`` makes every request about
    ``key`` (a handle or an id, case-insensitive) get that recorded answer."""

    def serve_recorded(self, key: str, recording: Recording | None) -> None:
        """Answer requests about ``key`` with ``recording``; None goes back to normal."""
        table = self._recordings()
        if recording is None:
            table.pop(key.lower(), None)
        else:
            table[key.lower()] = recording

    def recorded_for(self, *keys: str | None) -> Recording | None:
        """The recording set for the first of ``keys`` that has one."""
        table = self._recordings()
        for key in keys:
            if key is not None and key.lower() in table:
                return table[key.lower()]
        return None

    async def send_recorded(self, request: web.Request,
                            recording: Recording) -> web.StreamResponse:
        """Send the recording as it was: prepared here, so no fake header is laid over it."""
        response = web.Response(status=recording.status, body=recording.body.encode(),
                                headers=recording.response_headers())
        await response.prepare(request)
        await response.write_eof()
        return response

    def _recordings(self) -> dict[str, Recording]:
        table: dict[str, Recording] | None = getattr(self, "_recorded_answers", None)
        if table is None:
            table = {}
            self._recorded_answers = table
        return table
