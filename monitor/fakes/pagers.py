"""Fake pagers: loopback receivers that check the real payload schemas and keep what they took.

Each fake answers like its vendor's documentation says it does (the limits and error answers
are cited where they are checked): it refuses a malformed body with the vendor's own error
answer and records every accepted payload, so a test fails when our notifier drifts from the
documented shape rather than when a human is not paged. Every
fake also takes a script of the next answers — ``fake.script(500, 500, 429)``,
``fake.script(Scripted(429, retry_after=7))``, ``fake.script("hang")`` — served in order
before normal service resumes, plus a ``latency`` for every answer.

- :class:`FakePagerDuty` -- Events API v2 ``/v2/enqueue`` (incidents by dedup key) and
  Change Events ``/v2/change/enqueue``
- :class:`FakeOpsgenie` -- ``/v2/alerts`` and ``/v2/alerts/{alias}/acknowledge|close``;
  alerts by alias
- :class:`FakeSlack` -- an incoming webhook (any path, or one secret path)
- :class:`FakeWebhook` -- checks our HMAC and/or Standard Webhooks signature
- :class:`FakeAlertmanager` -- API v2 ``/api/v2/alerts``; alerts by label set
- :class:`FakeNtfy` -- the JSON publish form (``POST /``); messages by topic
- :class:`CaptureServer` -- records any JSON POSTed (Alertmanager webhook receivers)

All serve with ``async with fake.running() as base_url``, like
:class:`monitor.fakes.server.FakeServer`. :data:`RECEIVERS` says, for every notifier type in
the registry, which fake receives it and how to point the notifier at it: the shared
notifier contract (``tests/test_notifier_contract.py``) walks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from monitor.fakes.server import serve
from monitor.notify.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_ID,
    verify_signature,
    verify_standard,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- the shared shell


@dataclass(frozen=True, slots=True)
class Scripted:
    """One scripted answer. ``status=None`` serves normally (after ``latency``)."""

    status: int | None = None
    retry_after: float | None = None  # sent as a Retry-After header
    latency: float = 0.0
    hang: bool = False  # never answer (until the client gives up or the fake stops)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived, and the status it got."""

    method: str
    path: str  # raw, still percent-encoded, with the query string
    headers: Mapping[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class FakePager:
    """Scripted answers, request log, acceptance log and ``running()``; subclasses add routes."""

    hang_seconds = 30.0

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[Received] = []  # everything, refused and scripted ones included
        self.accepted: list[Any] = []  # payloads that passed validation, in order
        self._script: deque[Scripted] = deque()
        self._closing = asyncio.Event()
        self._runners: list[web.AppRunner] = []

    # ------------------------------------------------------------------ Python control

    def open_connections(self) -> int:
        """Connections still open, each until its last request was answered (or its handler
        ended): 0 once a killed client's requests, even those still in the socket buffer
        when it died, have all been taken."""
        return sum(len(r.server.connections) for r in self._runners if r.server is not None)

    async def drained(self, timeout: float = 10.0) -> None:
        """Wait until no connection is open, seen twice with the loop run in between (a
        connection still in the listen backlog is accepted meanwhile, and counted)."""
        deadline = time.monotonic() + timeout
        closed_before = False
        while time.monotonic() < deadline:
            closed = self.open_connections() == 0
            if closed and closed_before:
                return
            closed_before = closed
            await asyncio.sleep(0.02)
        raise TimeoutError(f"{self.open_connections()} connection(s) still open after "
                           f"{timeout}s")

    def script(self, *answers: int | str | Scripted, retry_after: float | None = None) -> None:
        """Queue the next answers: a status, ``"hang"``, ``"ok"`` or a :class:`Scripted`.

        ``retry_after`` applies to the plain statuses given in this call.
        """
        for answer in answers:
            if isinstance(answer, Scripted):
                self._script.append(answer)
            elif answer == "hang":
                self._script.append(Scripted(hang=True))
            elif answer == "ok":
                self._script.append(Scripted())
            elif isinstance(answer, int):
                self._script.append(Scripted(answer, retry_after=retry_after))
            else:
                raise ValueError(f"unknown scripted answer {answer!r}")

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Wait until at least ``count`` payloads were accepted; returns them."""
        deadline = time.monotonic() + timeout
        while len(self.accepted) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.accepted)} of {count} payloads after {timeout}s")
            await asyncio.sleep(0.01)
        return self.accepted

    # ------------------------------------------------------------------ subclass hooks

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_answer(self, status: int) -> web.Response:
        """The vendor's answer for a scripted failure status."""
        return web.json_response({"message": f"scripted {status}"}, status=status)

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._scripted])
        self.add_routes(app)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: any free port); yields the base URL."""
        self._closing = asyncio.Event()
        async with serve(self.app(), self._closing, host, port, runners=self._runners) as url:
            yield url

    @web.middleware
    async def _scripted(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()  # cached: the handler reads it again for free
        step = self._script.popleft() if self._script else Scripted()
        status = 0  # recorded for a request whose client gave up first
        try:
            pause = self.latency + step.latency + (self.hang_seconds if step.hang else 0.0)
            if pause:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):  # not wait_for: it can eat a cancel
                        await self._closing.wait()
            if step.status is not None:
                response: web.StreamResponse = self.error_answer(step.status)
            else:
                response = await handler(request)
            if step.retry_after is not None:
                response.headers["Retry-After"] = f"{step.retry_after:g}"
            status = response.status
            return response
        finally:
            self.requests.append(Received(request.method, request.raw_path,
                                          dict(request.headers), body, status))


def _request_id() -> str:
    return str(uuid.uuid4())


async def _json_body(request: web.Request) -> Any:
    """The decoded body, or raise ValueError (JSONDecodeError is one)."""
    return json.loads(await request.read())


def _is_iso8601(value: Any) -> bool:
    return _ts(value) is not None


def _ts(value: Any) -> float | None:
    """An RFC 3339 time as epoch seconds; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


# --------------------------------------------------------------------------- PagerDuty

PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(slots=True)
class Incident:
    """What PagerDuty keeps per dedup key."""

    dedup_key: str
    status: str  # triggered | acknowledged | resolved
    summary: str
    severity: str
    triggers: int = 0  # trigger events seen for this key, collapsed ones included
    opened: int = 0  # how often an incident was opened (again) under this key
    events: list[dict[str, Any]] = field(default_factory=list)


class FakePagerDuty(FakePager):
    """Events API v2: validates events, keeps incidents by dedup key; Change Events apart.

    As PagerDuty documents (02-Trigger-Events.md, "Alert De-duplication"), an acknowledge or
    resolve is accepted (202) whether or not an alert is open under its key, and dropped
    when none is: :attr:`dropped` keeps those. A trigger of an acknowledged incident leaves
    it acknowledged ("it won't generate any additional notifications").
    """

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.incidents: dict[str, Incident] = {}
        self.trigger_counts: Counter[str] = Counter()
        self.changes: list[dict[str, Any]] = []  # accepted Change Events, in order
        self.dropped: list[dict[str, Any]] = []  # acknowledge/resolve with no open alert

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_post("/v2/change/enqueue", self._change)

    def error_answer(self, status: int) -> web.Response:
        if status == 400:
            return _pd_invalid(["scripted failure"])
        if status == 429:
            return web.json_response({"status": "throttled", "message": "Too many requests"},
                                     status=429)
        return web.Response(status=status, text="Internal Server Error")

    def open_incidents(self) -> list[Incident]:
        return [i for i in self.incidents.values() if i.status != "resolved"]

    def trigger_count(self, dedup_key: str) -> int:
        return self.trigger_counts[dedup_key]

    async def _change(self, request: web.Request) -> web.Response:
        try:
            event = await _json_body(request)
        except ValueError:
            return _pd_invalid(["Request body is not valid JSON"])
        errors = validate_pagerduty_change(event)
        if errors:
            return _pd_invalid(errors)
        self.accepted.append(event)
        self.changes.append(event)
        return web.json_response({"status": "success", "message": "Event processed"},
                                 status=202)

    async def _enqueue(self, request: web.Request) -> web.Response:
        try:
            event = await _json_body(request)
        except ValueError:
            return _pd_invalid(["Request body is not valid JSON"])
        errors = validate_pagerduty(event)
        if errors:
            return _pd_invalid(errors)
        self.accepted.append(event)
        key = event.get("dedup_key") or uuid.uuid4().hex
        self._apply(event, key)
        return web.json_response({"status": "success", "message": "Event processed",
                                  "dedup_key": key}, status=202)

    def _apply(self, event: dict[str, Any], key: str) -> None:
        action = event["event_action"]
        incident = self.incidents.get(key)
        if action == "trigger":
            self.trigger_counts[key] += 1
            payload = event["payload"]
            if incident is None or incident.status == "resolved":
                incident = Incident(key, "triggered", payload["summary"], payload["severity"],
                                    opened=(incident.opened if incident else 0) + 1)
                self.incidents[key] = incident
            incident.triggers += 1
        elif incident is not None and incident.status != "resolved":
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
        else:
            self.dropped.append(event)
            return
        if incident is not None:
            incident.events.append(event)


def _pd_invalid(errors: list[str]) -> web.Response:
    return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                              "errors": errors}, status=400)


def validate_pagerduty(event: Any) -> list[str]:
    """Problems with an Events API v2 body, in PagerDuty's words where we know them."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    action = event.get("event_action")
    if action not in PD_ACTIONS:
        errors.append(f"'event_action' must be one of {', '.join(PD_ACTIONS)}")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup_key:
        errors.append(f"'dedup_key' is required for {action}")
    if action == "trigger":
        errors += _validate_pd_payload(event.get("payload"))
    for link in event.get("links") or []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errors.append("'links' entries need an 'href'")
    return errors


def validate_pagerduty_change(event: Any) -> list[str]:
    """Problems with a Change Events body (03-Change-Events.md: ``routing_key`` and
    ``payload.summary`` of at most 1,024 characters required; ``source``, ``timestamp``,
    ``custom_details`` and ``links`` optional)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32 character integration key")
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*errors, "'payload' is required"]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is required")
    elif len(summary) > 1024:
        errors.append("'payload.summary' must be at most 1024 characters")
    if "source" in payload and not isinstance(payload["source"], str):
        errors.append("'payload.source' must be a string")
    if "timestamp" in payload and not _is_iso8601(payload["timestamp"]):
        errors.append("'payload.timestamp' must be ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        errors.append("'payload.custom_details' must be an object")
    for link in event.get("links") or []:
        if not isinstance(link, dict) or not isinstance(link.get("href"), str):
            errors.append("'links' entries need an 'href'")
    return errors


def _validate_pd_payload(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is required for trigger"]
    errors: list[str] = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is required")
    elif len(summary) > 1024:
        errors.append("'payload.summary' must be at most 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload.get("source"):
        errors.append("'payload.source' is required")
    if payload.get("severity") not in PD_SEVERITIES:
        errors.append(f"'payload.severity' must be one of {', '.join(PD_SEVERITIES)}")
    if "timestamp" in payload and not _is_iso8601(payload["timestamp"]):
        errors.append("'payload.timestamp' must be ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict | str):
        errors.append("'payload.custom_details' must be an object")
    return errors


# --------------------------------------------------------------------------- Opsgenie

OG_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
OG_LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512,
             "source": 100, "user": 100, "note": 25000}
OG_DETAILS_MAX = 8000  # "details ... 8 000 characters total": keys and values counted


@dataclass(slots=True)
class OpsgenieAlert:
    """What Opsgenie keeps per alias."""

    alias: str
    status: str  # open | closed
    message: str
    priority: str
    count: int = 1  # creates collapsed into this open alert
    body: dict[str, Any] = field(default_factory=dict)
    close_note: str | None = None
    acknowledged: bool = False
    ack_user: str | None = None
    ack_note: str | None = None


class FakeOpsgenie(FakePager):
    """Alert API: create (deduplicated by alias), acknowledge and close by alias; checks the
    GenieKey. Like Opsgenie, an action on an alias with no open alert is still 202 (the
    request is processed, and fails, asynchronously)."""

    def __init__(self, api_key: str, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.api_key = api_key
        self.alerts: dict[str, OpsgenieAlert] = {}
        self.closes: list[tuple[str, dict[str, Any]]] = []  # (alias, body) per accepted close
        self.acks: list[tuple[str, dict[str, Any]]] = []  # (alias, body) per accepted ack

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/alerts", self._create)
        app.router.add_post("/v2/alerts/{alias}/close", self._close)
        app.router.add_post("/v2/alerts/{alias}/acknowledge", self._acknowledge)

    def error_answer(self, status: int) -> web.Response:
        return _og_answer({"message": f"scripted {status}"}, status)

    def open_alerts(self) -> list[OpsgenieAlert]:
        return [a for a in self.alerts.values() if a.status == "open"]

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := self._refuse(request)) is not None:
            return refused
        try:
            body = await _json_body(request)
        except ValueError:
            return _og_unprocessable({"body": "not valid JSON"})
        errors = validate_opsgenie_alert(body)
        if errors:
            return _og_unprocessable(errors)
        self.accepted.append(body)
        alias = body.get("alias") or body["message"]
        alert = self.alerts.get(alias)
        if alert is not None and alert.status == "open":
            alert.count += 1  # Opsgenie's de-duplication: same alias, still open
        else:
            self.alerts[alias] = OpsgenieAlert(alias, "open", body["message"],
                                               body.get("priority", "P3"), body=body)
        return _og_answer({"result": "Request will be processed"}, 202)

    async def _close(self, request: web.Request) -> web.Response:
        alias, body, refused = await self._alert_action(request)
        if refused is not None:
            return refused
        self.accepted.append({"close": alias, **body})
        self.closes.append((alias, body))
        alert = self.alerts.get(alias)
        if alert is not None and alert.status == "open":
            alert.status = "closed"
            alert.close_note = body.get("note")
        return _og_answer({"result": "Request will be processed"}, 202)

    async def _acknowledge(self, request: web.Request) -> web.Response:
        alias, body, refused = await self._alert_action(request)
        if refused is not None:
            return refused
        self.accepted.append({"acknowledge": alias, **body})
        self.acks.append((alias, body))
        alert = self.alerts.get(alias)
        if alert is not None and alert.status == "open":
            alert.acknowledged = True
            alert.ack_user, alert.ack_note = body.get("user"), body.get("note")
        return _og_answer({"result": "Request will be processed"}, 202)

    async def _alert_action(self, request: web.Request
                            ) -> tuple[str, dict[str, Any], web.Response | None]:
        """An alert action by alias (AlertActionPayload: optional user, source, note)."""
        if (refused := self._refuse(request)) is not None:
            return "", {}, refused
        if request.query.get("identifierType") != "alias":
            # Without it Opsgenie reads the path as an alert *id*: an alias would match nothing.
            return "", {}, _og_unprocessable({"identifierType": "this fake only knows alias"})
        try:
            body = await _json_body(request) if request.body_exists else {}
        except ValueError:
            return "", {}, _og_unprocessable({"body": "not valid JSON"})
        errors = _check_lengths(body, ("source", "user", "note")) if isinstance(body, dict) \
            else {"body": "must be a JSON object"}
        if errors:
            return "", {}, _og_unprocessable(errors)
        return request.match_info["alias"], body, None

    def _refuse(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            return _og_answer({"message": "Could not authenticate"}, 401)
        return None


def _og_answer(doc: dict[str, Any], status: int) -> web.Response:
    return web.json_response({**doc, "took": 0.1, "requestId": _request_id()}, status=status)


def _og_unprocessable(errors: dict[str, str]) -> web.Response:
    return _og_answer({"message": "Request body is not processable. Please check the errors.",
                       "errors": errors}, 422)


def _check_lengths(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            errors[name] = "must be a string"
        elif len(value) > OG_LIMITS[name]:
            errors[name] = f"must be at most {OG_LIMITS[name]} characters"
    return errors


def validate_opsgenie_alert(body: Any) -> dict[str, str]:
    """Problems with a create-alert body, by field."""
    if not isinstance(body, dict):
        return {"body": "must be a JSON object"}
    errors = _check_lengths(body, ("message", "alias", "description", "entity", "source"))
    if not body.get("message"):
        errors["message"] = "Message can not be empty."
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 20 or any(
            not isinstance(t, str) or not t or len(t) > 50 for t in tags):
        errors["tags"] = "at most 20 tags of 1 to 50 characters"
    details = body.get("details", {})
    if not isinstance(details, dict) or any(not isinstance(v, str) for v in details.values()):
        errors["details"] = "must map strings to strings"
    elif sum(len(k) + len(v) for k, v in details.items()) > OG_DETAILS_MAX:
        errors["details"] = f"must be at most {OG_DETAILS_MAX} characters in total"
    if body.get("priority", "P3") not in OG_PRIORITIES:
        errors["priority"] = f"must be one of {', '.join(OG_PRIORITIES)}"
    responders = body.get("responders", [])
    if not isinstance(responders, list) or any(
            not isinstance(r, dict) or r.get("type") not in ("team", "user", "escalation",
                                                              "schedule")
            or not ({"id", "name", "username"} & set(r)) for r in responders):
        errors["responders"] = "each needs a type and an id, name or username"
    return errors


# --------------------------------------------------------------------------- Slack

SLACK_ERRORS = {400: "invalid_payload", 403: "action_prohibited", 404: "no_service",
                410: "channel_is_archived", 429: "rate_limited"}
SLACK_BLOCKS = ("header", "section", "context", "divider", "actions", "image", "rich_text")


class FakeSlack(FakePager):
    """An incoming webhook. With ``path`` set, only that (secret) path exists."""

    def __init__(self, *, path: str | None = None, archived: bool = False,
                 latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.path = path
        self.archived = archived

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._post)

    def error_answer(self, status: int) -> web.Response:
        return web.Response(status=status, text=SLACK_ERRORS.get(status, "internal_error"))

    async def _post(self, request: web.Request) -> web.Response:
        if self.path is not None and request.path != self.path:
            return web.Response(status=404, text="no_service")
        if self.archived:
            return web.Response(status=410, text="channel_is_archived")
        try:
            body = await _json_body(request)
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=400, text="no_text")
        if validate_slack_blocks(body.get("blocks", [])):
            return web.Response(status=400, text="invalid_blocks")
        self.accepted.append(body)
        return web.Response(text="ok")


def validate_slack_blocks(blocks: Any) -> list[str]:
    """Block Kit limits we rely on (header 150, section 3000, 10 fields of 2000, 50 blocks)."""
    if not isinstance(blocks, list) or len(blocks) > 50:
        return ["blocks must be a list of at most 50"]
    errors: list[str] = []
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in SLACK_BLOCKS:
            errors.append(f"blocks[{i}]: unknown type {kind!r}")
        elif kind == "header":
            errors += _text_errors(f"blocks[{i}].text", block.get("text"), 150, plain=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                errors.append(f"blocks[{i}]: a section needs text or fields")
            if "text" in block:
                errors += _text_errors(f"blocks[{i}].text", block["text"], 3000)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                errors.append(f"blocks[{i}].fields: at most 10")
            else:
                for j, item in enumerate(fields):
                    errors += _text_errors(f"blocks[{i}].fields[{j}]", item, 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                errors.append(f"blocks[{i}].elements: 1 to 10")
            else:
                for j, item in enumerate(elements):
                    errors += _text_errors(f"blocks[{i}].elements[{j}]", item, 3000)
    return errors


def _text_errors(where: str, obj: Any, limit: int, *, plain: bool = False) -> list[str]:
    kinds = ("plain_text",) if plain else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in kinds:
        return [f"{where}: a text object of type {' or '.join(kinds)}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text or len(text) > limit:
        return [f"{where}: text of 1 to {limit} characters"]
    return []


# --------------------------------------------------------------------------- generic webhook


class FakeWebhook(FakePager):
    """A receiver that checks our signature (when given the secret) before accepting.

    ``signing`` says which: ``hmac`` (``X-Accmon-Signature``), ``standard-webhooks`` (the
    ``webhook-*`` headers, with a ``whsec_`` secret) or ``both``. Like the receiver the
    Standard Webhooks spec describes, it counts each ``webhook-id`` (:attr:`ids`) as an
    idempotency key: a redelivery is answered 200 but accepted only once.
    """

    def __init__(self, secret: str | None = None, *, signing: str = "hmac",
                 tolerance: float = 300.0, clock: Callable[[], float] = time.time,
                 latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.secret = secret
        self.signing = signing
        self.tolerance = tolerance
        self.clock = clock
        self.headers: list[Mapping[str, str]] = []  # of each accepted request
        self.ids: Counter[str] = Counter()  # webhook-id -> deliveries

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._post)

    def _signed(self, request: web.Request, body: bytes) -> bool:
        if self.secret is None:
            return True
        now = self.clock()
        if self.signing in ("hmac", "both") and not verify_signature(
                self.secret, request.headers.get(TIMESTAMP_HEADER), body,
                request.headers.get(SIGNATURE_HEADER), now, self.tolerance):
            return False
        return self.signing == "hmac" or verify_standard(self.secret, request.headers, body,
                                                        now, self.tolerance)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._signed(request, body):
            return web.json_response({"error": "bad signature"}, status=401)
        if request.content_type != "application/json":
            return web.json_response({"error": "expected application/json"}, status=415)
        try:
            doc = json.loads(body)
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        msg_id = request.headers.get(WEBHOOK_ID)
        if msg_id is not None:
            self.ids[msg_id] += 1
            if self.ids[msg_id] > 1:
                return web.json_response({"ok": True, "duplicate": True})
        self.accepted.append(doc)
        self.headers.append(dict(request.headers))
        return web.json_response({"ok": True})


class CaptureServer(FakePager):
    """Records any JSON POSTed to any path as ``(path, document)``; answers 200."""

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.posts: list[tuple[str, Any]] = []

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        try:
            doc = await _json_body(request)
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        self.posts.append((request.path, doc))
        self.accepted.append(doc)
        return web.json_response({"status": "ok"})


# --------------------------------------------------------------------------- Alertmanager

_AM_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@dataclass(slots=True)
class FakeAlert:
    """One alert as Alertmanager keeps it: identified by its label set."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float
    posts: int = 1

    def resolved(self, now: float) -> bool:
        return self.ends_at <= now


class FakeAlertmanager(FakePager):
    """API v2 ``POST /api/v2/alerts``: validates postable alerts, merges by label set."""

    def __init__(self, *, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.alerts: dict[tuple[tuple[str, str], ...], FakeAlert] = {}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/alerts", self._post)

    def error_answer(self, status: int) -> web.Response:
        return web.json_response(f"scripted {status}", status=status)

    def firing(self, now: float | None = None) -> list[FakeAlert]:
        now = time.time() if now is None else now
        return [a for a in self.alerts.values() if not a.resolved(now)]

    def alert(self, labels: Mapping[str, str]) -> FakeAlert | None:
        return self.alerts.get(tuple(sorted(labels.items())))

    async def _post(self, request: web.Request) -> web.Response:
        try:
            alerts = await _json_body(request)
        except ValueError:
            return web.json_response("invalid JSON", status=400)
        errors = validate_postable_alerts(alerts)
        if errors:
            return web.json_response("; ".join(errors), status=400)
        self.accepted.append(alerts)
        now = time.time()
        for doc in alerts:
            self._merge(doc, now)
        return web.Response(status=200)

    def _merge(self, doc: dict[str, Any], now: float) -> None:
        # Alertmanager's rules, simplified: the earliest start wins; the latest post's end
        # wins, unless it would extend a resolved alert's already-passed end.
        starts = _ts(doc.get("startsAt")) or now
        ends = _ts(doc.get("endsAt")) or now + 300.0
        key = tuple(sorted(doc["labels"].items()))
        old = self.alerts.get(key)
        if old is None or old.resolved(now):
            self.alerts[key] = FakeAlert(dict(doc["labels"]), dict(doc.get("annotations", {})),
                                         starts, ends)
            return
        old.starts_at = min(old.starts_at, starts)
        old.ends_at = ends
        old.annotations = dict(doc.get("annotations", {}))
        old.posts += 1


def validate_postable_alerts(alerts: Any) -> list[str]:
    """Problems with a ``postableAlerts`` body (Alertmanager's OpenAPI spec)."""
    if not isinstance(alerts, list):
        return ["body must be a JSON list of alerts"]
    errors: list[str] = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            errors.append(f"[{i}]: must be an object")
            continue
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not labels:
            errors.append(f"[{i}].labels: at least one label pair required")
            continue
        if "alertname" not in labels:
            errors.append(f"[{i}].labels: alertname is required")
        for name, value in labels.items():
            if not _AM_LABEL_NAME.match(name):
                errors.append(f"[{i}].labels: invalid label name {name!r}")
            if not isinstance(value, str) or not value:
                errors.append(f"[{i}].labels.{name}: must be a non-empty string")
        annotations = alert.get("annotations", {})
        if not isinstance(annotations, dict) or any(
                not isinstance(v, str) for v in annotations.values()):
            errors.append(f"[{i}].annotations: must map strings to strings")
        for name in ("startsAt", "endsAt"):
            if name in alert and not _is_iso8601(alert[name]):
                errors.append(f"[{i}].{name}: must be RFC 3339")
        starts, ends = _ts(alert.get("startsAt")), _ts(alert.get("endsAt"))
        if starts is not None and ends is not None and ends < starts:
            errors.append(f"[{i}]: start time must be before end time")
        url = alert.get("generatorURL")
        if url is not None and not (isinstance(url, str) and re.match(r"^[a-z]+://", url)):
            errors.append(f"[{i}].generatorURL: must be a URI")
    return errors


# --------------------------------------------------------------------------- ntfy

NTFY_TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")  # server/server.go topicRegex
NTFY_MESSAGE_MAX = 4096  # bytes: DefaultMessageSizeLimit
NTFY_JSON_MAX = 2 * NTFY_MESSAGE_MAX  # transformBodyJSON reads at most twice the message limit
NTFY_ACTIONS_MAX = 3
# server/errors.go: the JSON error every ntfy answer other than 200 carries.
NTFY_ERRORS = {400: (40000, "invalid request"), 401: (40101, "unauthorized"),
               403: (40301, "forbidden"), 413: (41303, "JSON body too large"),
               429: (42901, "limit reached: too many requests"),
               500: (50001, "internal server error")}


class FakeNtfy(FakePager):
    """An ntfy server's JSON publish endpoint (``POST /``), checked like server/server.go does.

    With ``token`` set the topics are protected: no ``Authorization`` is 403, a wrong bearer
    token 401. A message over 4,096 bytes is refused as a server without an attachment cache
    refuses it (40014): the real server would turn it into a file, not a notification text.
    """

    def __init__(self, *, token: str | None = None, latency: float = 0.0) -> None:
        super().__init__(latency=latency)
        self.token = token
        self.messages: dict[str, list[dict[str, Any]]] = {}  # by topic, in order

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._publish)
        app.router.add_put("/", self._publish)

    def error_answer(self, status: int) -> web.Response:
        code, text = NTFY_ERRORS.get(status, (status * 100, "scripted"))
        return _ntfy_error(status, code, text)

    async def _publish(self, request: web.Request) -> web.Response:
        body = await request.read()
        if len(body) > NTFY_JSON_MAX:
            return self.error_answer(413)
        try:
            doc = json.loads(body)
        except ValueError:
            return _ntfy_error(400, 40024, "invalid request: request body must be valid JSON")
        if not isinstance(doc, dict) or not NTFY_TOPIC.match(str(doc.get("topic", ""))):
            return _ntfy_error(400, 40009, "invalid request: topic invalid")
        if (refused := self._refuse(request)) is not None:
            return refused
        problem = validate_ntfy_message(doc)
        if problem is not None:
            return _ntfy_error(400, *problem)
        self.accepted.append(doc)
        self.messages.setdefault(doc["topic"], []).append(doc)
        return web.json_response({"id": uuid.uuid4().hex[:12], "time": int(time.time()),
                                  "event": "message", "topic": doc["topic"],
                                  "message": doc.get("message") or "triggered"})

    def _refuse(self, request: web.Request) -> web.Response | None:
        if self.token is None:
            return None
        given = request.headers.get("Authorization")
        if given is None:
            return self.error_answer(403)
        if given != f"Bearer {self.token}":
            return self.error_answer(401)
        return None


def _ntfy_error(status: int, code: int, text: str) -> web.Response:
    return web.json_response({"code": code, "http": status, "error": text}, status=status)


def validate_ntfy_message(doc: dict[str, Any]) -> tuple[int, str] | None:
    """The first problem with a JSON publish message, as ``(ntfy code, error)``."""
    for name in ("message", "title", "click"):
        if name in doc and not isinstance(doc[name], str):
            return 40017, f"invalid request: {name} must be a string"
    if len(doc.get("message", "").encode()) > NTFY_MESSAGE_MAX:
        return 40014, "invalid request: attachments not allowed"
    priority = doc.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 5:
        return 40007, "invalid priority parameter"
    tags = doc.get("tags", [])
    if not isinstance(tags, list) or any(not isinstance(t, str) or "," in t for t in tags):
        return 40017, "invalid request: tags must be strings (the server joins them with ',')"
    actions = doc.get("actions", [])
    if not isinstance(actions, list) or len(actions) > NTFY_ACTIONS_MAX:
        return 40018, "invalid request: actions invalid (at most 3)"
    for action in actions:
        if not isinstance(action, dict) or action.get("action") not in ("view", "broadcast",
                                                                         "http"):
            return 40018, "invalid request: actions invalid"
        if not action.get("label") or (action["action"] != "broadcast"
                                       and not action.get("url")):
            return 40018, "invalid request: actions invalid (label and url required)"
    return None


# --------------------------------------------------------------------------- the contract

CONTRACT_ROUTING_KEY = "C0ntractR0utingKey0123456789abcd"  # 32 characters, as PagerDuty's are
CONTRACT_GENIE_KEY = "c0ntract-gen1e-key-0000-000000000000"
CONTRACT_SLACK_PATH = "/services/T000/B000/C0NTRACTSECRETPATH"
# A Standard Webhooks secret (32 random bytes in base64), used for both signatures.
CONTRACT_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw2Ao8D0CN1bA="
CONTRACT_NTFY_TOPIC = "accmon-c0ntract-topic-4e1f"
CONTRACT_NTFY_TOKEN = "tk_c0ntract0token0000000000000"


@dataclass(frozen=True, slots=True)
class Receiver:
    """How the shared notifier contract drives one notifier type against its fake."""

    # A fresh fake receiver; None for a provider that needs no network (the log).
    fake: Callable[[], FakePager] | None
    # The fake's base URL -> the ``notifiers:`` entry that delivers to it.
    config: Callable[[str], dict[str, Any]]
    # A 4xx the vendor documents as final: the same body retried cannot succeed.
    permanent: int | None
    # How many incidents the fake holds open, for receivers that keep incidents.
    open_incidents: Callable[[Any], int] | None = None


RECEIVERS: dict[str, Receiver] = {
    # Events API v2: 400 "invalid event".
    "pagerduty": Receiver(
        FakePagerDuty,
        lambda url: {"type": "pagerduty", "routing_key": CONTRACT_ROUTING_KEY,
                     "url": f"{url}/v2/enqueue"},
        400, lambda fake: len(fake.open_incidents())),
    # Alert API: 422 "request body is not processable".
    "opsgenie": Receiver(
        lambda: FakeOpsgenie(CONTRACT_GENIE_KEY),
        lambda url: {"type": "opsgenie", "api_key": CONTRACT_GENIE_KEY, "base_url": url},
        422, lambda fake: len(fake.open_alerts())),
    # Incoming webhooks: 404 no_service (the webhook was removed).
    "slack": Receiver(
        lambda: FakeSlack(path=CONTRACT_SLACK_PATH),
        lambda url: {"type": "slack", "webhook_url": url + CONTRACT_SLACK_PATH}, 404),
    # Our own webhook contract: a receiver's 4xx (400 here) refuses the body for good.
    "webhook": Receiver(
        lambda: FakeWebhook(CONTRACT_WEBHOOK_SECRET, signing="both"),
        lambda url: {"type": "webhook", "url": f"{url}/hooks/accmon",
                     "secret": CONTRACT_WEBHOOK_SECRET, "signing": "both"}, 400),
    # API v2: 400 for alerts that are not valid postable alerts.
    "alertmanager": Receiver(
        FakeAlertmanager, lambda url: {"type": "alertmanager", "urls": [url]}, 400,
        lambda fake: len(fake.firing())),
    "log": Receiver(None, lambda url: {"type": "log"}, None),
    # ntfy: 403 for a protected topic without a token (retrying cannot authorise it).
    "ntfy": Receiver(
        lambda: FakeNtfy(token=CONTRACT_NTFY_TOKEN),
        lambda url: {"type": "ntfy", "server": url, "topic": CONTRACT_NTFY_TOPIC,
                     "token": CONTRACT_NTFY_TOKEN}, 403),
}
