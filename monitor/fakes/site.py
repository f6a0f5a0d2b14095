"""A scriptable generic website, for the declarative ``http`` probe (``probes/http.py``).

``GET /{handle}`` answers with the handle's state: a profile page (``present``), a 404
(``absent``), a redirect to a login wall (``login_wall``, as Instagram and Threads do), a
bot challenge (``captcha``), or any scripted status/body/headers. Handles never set get
``default_state`` (``present``: every profile exists, as benchmarks want). Faults and
control endpoints come from :class:`~monitor.fakes.server.FakeServer`. Run it alone with
``python -m monitor.fakes.site --port 8082 --account alice=present``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web

from monitor.fakes.faults import LOGIN_PATH, Canned, Faults
from monitor.fakes.server import FakeServer, fake_arguments, serve_main

STATES = ("present", "absent", "login_wall", "captcha")

PRESENT_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{handle} (@{handle}) • FakeSite</title></head>
<body><main class="profile" data-handle="{handle}">
<h1 class="profile-name">{handle}</h1><p class="profile-bio">Posts, photos and more.</p>
</main></body></html>
"""
ABSENT_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Page not found • FakeSite</title></head>
<body><h2>Sorry, this page isn't available.</h2>
<p>The link you followed may be broken, or the page may have been removed.</p></body></html>
"""
CAPTCHA_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Just a moment...</title></head>
<body><div id="challenge" class="captcha-box"><h1>Please verify you are a human</h1>
<noscript>Enable JavaScript and cookies to continue</noscript></div></body></html>
"""


@dataclass(frozen=True, slots=True)
class Scripted:
    """A fixed answer for one handle."""

    status: int
    body: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "text/html"


class FakeSite(FakeServer):
    """A website with profile pages. ``accounts`` maps handle -> state (see :data:`STATES`)."""

    server_error_answer = Canned(
        503, "<html><head><title>503 Service Unavailable</title></head>"
             "<body><h1>503 Service Unavailable</h1></body></html>\n", "text/html")
    rate_limited_answer = Canned(
        429, "<html><head><title>429 Too Many Requests</title></head>"
             "<body><h1>Too Many Requests</h1></body></html>\n", "text/html",
        {"Retry-After": "60"})

    def __init__(self, accounts: Mapping[str, str] | None = None, *,
                 present_template: str = PRESENT_TEMPLATE, default_state: str = "present",
                 faults: Faults | None = None, seed: int = 0) -> None:
        super().__init__(faults=faults, seed=seed)
        _check_state(default_state)
        self.present_template = present_template
        self.default_state = default_state
        self._pages: dict[str, str | Scripted] = {}
        for handle, state in (accounts or {}).items():
            self.set_state(handle, state)

    # ------------------------------------------------------------------ Python control

    def set_state(self, handle: str, state: str) -> None:
        self._pages[handle] = _check_state(state)

    def set_answer(self, handle: str, status: int, body: str = "", *,
                   headers: Mapping[str, str] | None = None,
                   content_type: str = "text/html") -> None:
        """Script an exact answer (e.g. a Telegram-style page, a JSON API body)."""
        self._pages[handle] = Scripted(status, body, dict(headers or {}), content_type)

    def account_states(self) -> dict[str, str]:
        return {h: p if isinstance(p, str) else f"scripted {p.status}"
                for h, p in self._pages.items()}

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        """``{"state": "captcha"}`` or ``{"status": 200, "body": "...", "headers": {...}}``."""
        if not isinstance(data, dict):
            raise ValueError('expected {"state": ...} or {"status": ..., "body": ...}')
        if "state" in data:
            self.set_state(handle, str(data["state"]))
        elif isinstance(data.get("status"), int):
            self.set_answer(handle, data["status"], str(data.get("body", "")),
                            headers=data.get("headers") or {},
                            content_type=str(data.get("content_type", "text/html")))
        else:
            raise ValueError('expected {"state": ...} or {"status": <int>, "body": ...}')
        return {"handle": handle, "state": self.account_states()[handle]}

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        # LOGIN_PATH, the login wall's target, is served by FakeServer for every fake.
        app.router.add_get("/{handle}", self._profile)

    def handle_of(self, request: web.Request) -> str | None:
        return request.match_info.get("handle")

    async def _profile(self, request: web.Request) -> web.Response:
        handle = request.match_info["handle"]
        page = self._pages.get(handle, self.default_state)
        if isinstance(page, Scripted):
            return web.Response(status=page.status, text=page.body, headers=dict(page.headers),
                                content_type=page.content_type, charset="utf-8")
        if page == "present":
            text = self.present_template.format(handle=html.escape(handle))
            return web.Response(text=text, content_type="text/html", charset="utf-8")
        if page == "login_wall":
            location = f"{LOGIN_PATH}?next=/{quote(handle, safe='')}"
            return web.Response(status=302, headers={"Location": location})
        if page == "captcha":
            return web.Response(status=403, text=CAPTCHA_PAGE, content_type="text/html",
                                charset="utf-8")
        return web.Response(status=404, text=ABSENT_PAGE, content_type="text/html",
                            charset="utf-8")


def _check_state(state: str) -> str:
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}; choose one of {', '.join(STATES)}")
    return state


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.site --port N [--account alice=captcha ...]``."""
    parser = fake_arguments("A scriptable fake website (profile pages, login wall, captcha).")
    parser.add_argument("--default-state", default="present", choices=STATES,
                        help="the answer for handles not given with --account")
    return serve_main(lambda args: FakeSite(dict(args.account), seed=args.seed,
                                            default_state=args.default_state), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
