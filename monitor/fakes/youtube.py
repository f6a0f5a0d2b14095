"""A fake YouTube Data API v3 (``channels.list`` only), in Google's shapes.

Serves ``GET /youtube/v3/channels?part=…&forHandle=@h|id=UC…&key=…``, pretty-printed as
Google's APIs answer, plus faults, overrides and control endpoints
(:class:`~monitor.fakes.accounts.FakePlatform`). A gone channel is a 200 listing without
``items`` [I] (``empty_items=True`` sends ``"items": []`` instead). Override ``quota``
answers 403 ``quotaExceeded``. Run it alone with
``python -m monitor.fakes.youtube --port 8087 --account MrBeast=present``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from monitor.fakes.accounts import AccountSpec, FakeAccount, FakePlatform, account_specs
from monitor.fakes.faults import Canned, Faults
from monitor.fakes.server import fake_arguments, serve_main

STATES = ("present", "terminated", "deleted")
API_KEY = "test-youtube-key"


def _dumps(doc: Any) -> str:
    """Google's APIs pretty-print with two-space indents."""
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="UTF-8")


def _google_error(code: int, message: str, reason: str, domain: str = "global", *,
                  status: str | None = None, **extra: Any) -> str:
    error: dict[str, Any] = {"code": code, "message": message,
                             "errors": [{"message": message, "domain": domain,
                                         "reason": reason}]}
    if status is not None:
        error["status"] = status
    return _dumps({"error": {**error, **extra}})


QUOTA_MESSAGE = ("The request cannot be completed because you have exceeded your "
                 '<a href="/youtube/v3/getting-started#quota">quota</a>.')
QUOTA_EXCEEDED = Canned(403, _google_error(403, QUOTA_MESSAGE, "quotaExceeded", "youtube.quota"))
KEY_INVALID = _google_error(
    400, "API key not valid. Please pass a valid API key.", "badRequest",
    status="INVALID_ARGUMENT",
    details=[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
              "domain": "googleapis.com", "metadata": {"service": "youtube.googleapis.com"}}])
UNREGISTERED = _google_error(
    403, "Method doesn't allow unregistered callers (callers without established identity). "
         "Please use API Key or other form of API consumer identity to call this API.",
    "forbidden", status="PERMISSION_DENIED")


class FakeYouTube(FakePlatform):
    """``channels.list``. ``accounts`` maps handle (no ``@``) -> state or ``(UC… id, state)``.

    States: ``present``; ``terminated`` and ``deleted`` (listed without items). ``api_key``
    is the key the fake accepts (``None``: any non-empty key).
    """

    states = STATES
    server_error_answer = Canned(503, _google_error(
        503, "The service is currently unavailable.", "backendError", status="UNAVAILABLE"))
    rate_limited_answer = QUOTA_EXCEEDED
    overrides = {"quota": QUOTA_EXCEEDED}

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 api_key: str | None = API_KEY, empty_items: bool = False,
                 faults: Faults | None = None, seed: int = 0) -> None:
        self.api_key = api_key
        self.empty_items = empty_items
        super().__init__(accounts, faults=faults, seed=seed)

    def new_id(self, seed: str) -> str:
        digest = hashlib.sha256(f"youtube:{seed}".encode()).digest()
        return "UC" + base64.urlsafe_b64encode(digest).decode()[:22]

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/youtube/v3/channels", self.guard(self._channels))

    def handle_of(self, request: web.Request) -> str | None:
        handle = request.query.get("forHandle")
        if handle is not None:
            found = self.account(handle.removeprefix("@"))
            return found.handle if found else handle
        channel_id = request.query.get("id", "")
        found = self.account_by_id(channel_id)
        return found.handle if found else channel_id or None

    def refuse(self, request: web.Request) -> web.Response | None:
        key = request.query.get("key", "")
        if not key:
            return web.Response(status=403, text=UNREGISTERED, content_type="application/json",
                                charset="UTF-8")
        if self.api_key is not None and key != self.api_key:
            return web.Response(status=400, text=KEY_INVALID, content_type="application/json",
                                charset="UTF-8")
        return None

    async def _channels(self, request: web.Request) -> web.Response:
        query = request.query
        if "part" not in query:
            return web.Response(status=400, text=_google_error(
                400, "No filter selected. Expected one of: forHandle, id, mine, forUsername, "
                     "managedByMe", "missingRequiredParameter", "youtube.parameter"),
                content_type="application/json", charset="UTF-8")
        if "forHandle" in query:
            account = self.account(query["forHandle"].removeprefix("@"))
            found = [account] if account is not None else []
        else:
            found = [a for i in query.get("id", "").split(",")
                     if (a := self.account_by_id(i)) is not None]
        items = [_channel(a) for a in found if a.state == "present"]
        doc: dict[str, Any] = {"kind": "youtube#channelListResponse",
                               "etag": _etag(",".join(a.id for a in found) or "none"),
                               "pageInfo": {"totalResults": len(items), "resultsPerPage": 5}}
        if items or self.empty_items:
            doc["items"] = items
        return _json(doc)


def _etag(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode()[:27]


def _channel(account: FakeAccount) -> dict[str, Any]:
    thumbs = f"https://yt3.ggpht.com/{account.id}"
    return {
        "kind": "youtube#channel",
        "etag": _etag(account.id),
        "id": account.id,
        "snippet": {
            "title": account.handle,
            "description": f"The official channel of {account.handle}.",
            "customUrl": "@" + account.handle.lower(),
            "publishedAt": "2012-02-20T00:43:50Z",
            "thumbnails": {"default": {"url": f"{thumbs}=s88", "width": 88, "height": 88}},
            "localized": {"title": account.handle,
                          "description": f"The official channel of {account.handle}."},
            "country": "US",
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.youtube --port N [--account HANDLE=[ID:]STATE ...]``."""
    parser = fake_arguments("A fake YouTube Data API (channels.list only).")
    parser.add_argument("--api-key", default=API_KEY, help="the API key to accept")
    return serve_main(lambda args: FakeYouTube(account_specs(args.account),
                                               api_key=args.api_key, seed=args.seed),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
