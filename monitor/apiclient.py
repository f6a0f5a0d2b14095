"""The HTTP client the on-call commands use to talk to a running monitor.

Blocking on purpose (``urllib``): each command makes one or a few requests and exits. It
never uses a proxy (the monitor is reached directly, usually on loopback, and a proxy
variable meant for the internet must not carry a bearer token elsewhere) and never follows
a redirect (a redirect to another host would get the token too).

Two kinds of failure, kept apart because they mean different things at 3 a.m.:
:class:`BadInput` (the command line or the local config is wrong: exit 2) and
:class:`Refused` (the monitor said no, or could not be reached: exit 1), each one line
with what to do.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor import auth, yamlsafe
from monitor.config import MAX_CONFIG_BYTES

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 9464  # MonitorSettings' defaults
URL_ENV = "ACCMON_URL"
TIMEOUT = 10.0  # seconds per request: an ack during an incident must not hang
ANSWER_MAX = 64 * 1024**2  # bytes of an answer read (a 100k-account watchlist is ~30 MB)
ERROR_MAX = 64 * 1024  # bytes of an error answer read


class BadInput(Exception):
    """The command line, the environment or the local config is wrong (exit 2)."""


class Refused(Exception):
    """The monitor refused the request or could not be reached (exit 1)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------- where and who


def base_url(url: str | None, config_path: str | None,
             env: Mapping[str, str] | None = None) -> str:
    """The monitor's base URL: ``--url``, else ``$ACCMON_URL``, else the config file's
    ``monitor.listen_host``/``listen_port`` (a wildcard address means this machine)."""
    env = _env(env)
    given = url or env.get(URL_ENV)
    if given:
        return _checked_url(given, "--url" if url else URL_ENV)
    if not config_path:
        raise BadInput("give --url http://HOST:PORT (or set ACCMON_URL, or --config)")
    host, port = listen_address(config_path)
    if port == 0:
        raise BadInput(f"{config_path}: monitor.listen_port is 0 (any free port), so the "
                       "address is unknown; give --url http://HOST:PORT")
    return f"http://{_connectable(host)}:{port}"


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    import os

    return os.environ if env is None else env


def _checked_url(url: str, where: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadInput(f"{where}: {url[:100]!r} is not an http:// or https:// URL; give e.g. "
                       "http://127.0.0.1:9464")
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise BadInput(f"{where}: {url[:100]!r} has an invalid port") from None
    return url.rstrip("/")


def listen_address(config_path: str) -> tuple[str, int]:
    """``monitor.listen_host`` and ``listen_port`` read from the config file alone.

    Only those two keys are read: the rest of the file may name secrets (``${X_TOKEN}``)
    that an on-call laptop does not have, and need not be valid for this.
    """
    try:
        data = yamlsafe.read_bounded(config_path, MAX_CONFIG_BYTES)
    except yamlsafe.YamlProblem as exc:  # its reason names the file
        raise BadInput(f"{exc.reason}; or give --url") from None
    try:
        text = yamlsafe.decode_utf8(data)
        root, loader = yamlsafe.compose(text)
        raw = yamlsafe.construct(loader, root) if root is not None else None
    except yamlsafe.YamlProblems as exc:
        raise BadInput(f"{config_path}: {exc.problems[0].reason}; or give --url") from None
    except yamlsafe.YamlProblem as exc:
        raise BadInput(f"{config_path}: {exc.reason}; or give --url") from None
    settings = raw.get("monitor") if isinstance(raw, dict) else None
    settings = settings if isinstance(settings, dict) else {}
    host = settings.get("listen_host", DEFAULT_HOST)
    port = settings.get("listen_port", DEFAULT_PORT)
    if not isinstance(host, str) or not host:
        raise BadInput(f"{config_path}: monitor.listen_host is not an address; give --url")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadInput(f"{config_path}: monitor.listen_port is not a port; give --url")
    return host, port


def _connectable(host: str) -> str:
    """Where to connect for a listen address: the wildcard means this machine."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def tokens(env: Mapping[str, str] | None = None) -> auth.Tokens:
    """The tokens from the same variables the monitor reads (the config's are not read:
    they may name files only the monitor's host has)."""
    found = auth.resolve_tokens(None, _env(env))
    if found.problems:
        raise BadInput(found.problems[0])
    return found


# ----------------------------------------------------------------- requests


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx is then raised as an HTTPError, reported as a refusal


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


@dataclass
class Client:
    """Requests to one monitor; ``read_token`` for reads, ``write_token`` for changes."""

    base: str
    write_token: str | None = None
    read_token: str | None = None
    timeout: float = TIMEOUT
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, url: str | None, config_path: str | None,
                  env: Mapping[str, str] | None = None) -> Client:
        found = tokens(env)
        return cls(base_url(url, config_path, env), found.write, found.read)

    def get(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        return self._json(self._send("GET", path, query, None))

    def get_text(self, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
        return self._send("GET", path, query, None).decode("utf-8", "replace")

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        return self._json(self._send("POST", path, (), body))

    def delete(self, path: str, query: Sequence[tuple[str, str]] = ()) -> Any:
        return self._json(self._send("DELETE", path, query, None))

    def _json(self, raw: bytes) -> Any:
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise Refused(f"{self.base} answered something that is not JSON: is it the "
                          "monitor's address?") from None

    def _send(self, method: str, path: str, query: Sequence[tuple[str, str]],
              body: Mapping[str, Any] | None) -> bytes:
        url = self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        writing = method != "GET"
        token = self.write_token if writing else (self.read_token or self.write_token)
        headers = {"Accept": "application/json", "User-Agent": "account-monitor-cli",
                   **self.headers}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with _OPENER.open(request, timeout=self.timeout) as answer:
                raw: bytes = answer.read(ANSWER_MAX + 1)
        except urllib.error.HTTPError as exc:
            raise self._refusal(exc, writing, token is not None) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Refused(f"cannot reach the monitor at {self.base}: {_reason(exc)}") from None
        if len(raw) > ANSWER_MAX:
            raise Refused(f"the answer from {self.base} is larger than {ANSWER_MAX} bytes")
        return raw

    def _refusal(self, exc: urllib.error.HTTPError, writing: bool, sent_token: bool
                 ) -> Refused:
        try:
            raw = exc.read(ERROR_MAX)
        except OSError:
            raw = b""
        message = _error_message(raw) or exc.reason or "no reason given"
        hint = ""
        if exc.code in (401, 403) and not sent_token:
            variable = auth.WRITE_ENV if writing else auth.READ_ENV
            hint = f" (no token sent: set {variable})"
        elif 300 <= exc.code < 400:
            hint = f" (a redirect to {exc.headers.get('Location', '?')[:100]}: give that --url)"
        return Refused(f"monitor refused (HTTP {exc.code}): {message}{hint}", exc.code)


def _error_message(raw: bytes) -> str:
    """The server's ``error`` (and ``problems``) from a JSON error body, else its text."""
    text = raw.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if not isinstance(body, dict):
        return text[:300]
    message = str(body.get("error") or body.get("status") or text[:300])
    problems = body.get("problems")
    if isinstance(problems, list) and problems and "; ".join(map(str, problems)) != message:
        message += ": " + "; ".join(str(p) for p in problems)
    return message


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, socket.timeout | TimeoutError):
        return "no answer in time (is it overloaded, or the address wrong?)"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused (is it running? is the port right?)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def quote(segment: str) -> str:
    """One path segment, every reserved character escaped."""
    return urllib.parse.quote(segment, safe="")
