"""Who may read and who may change things over HTTP: the API's bearer tokens.

Two tokens, each optional:

* the **write token** guards every mutating request (silences, acks, watchlist changes,
  ``/-/reload``). Without one configured, writes over HTTP are off (403), so a monitor
  listening on ``0.0.0.0`` is never writable by accident;
* the **read token**, when configured, guards the JSON API's reads (``/api/v1/...``); the
  write token reads too. ``/metrics``, ``/healthz`` and ``/readyz`` stay open: scrapers
  and orchestrators probe them, and they change nothing.

The built-in web UI (:mod:`monitor.ui`) decides who sees what itself (full view, public
view, or a login prompt), from the same tokens: a browser cannot send a Bearer header, so
there either token is also taken as the password of HTTP Basic (any user name), which makes
the browser's own login prompt the way in (:func:`viewer_grant`).

Each token comes from, in this order: ``ACCMON_WRITE_TOKEN`` / ``ACCMON_READ_TOKEN``; the
file named by ``ACCMON_WRITE_TOKEN_FILE`` / ``ACCMON_READ_TOKEN_FILE`` (a Docker or
Kubernetes secret); ``monitor.api.write_token`` / ``read_token`` in the config (which may
itself be ``*_file``). They are resolved again whenever the config object changes (every
reload), so a rotated secret file is picked up by SIGHUP or ``/-/reload``.

Tokens are compared in constant time and never appear in a log line, an error or a
response: only the names of the variables and files they come from do.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from monitor import yamlsafe
from monitor.config_types import MAX_SECRET_FILE_BYTES, has_control

log = structlog.get_logger("monitor")

WRITE_ENV, READ_ENV = "ACCMON_WRITE_TOKEN", "ACCMON_READ_TOKEN"
RELOAD_ENV = "ACCMON_RELOAD_TOKEN"
PEER_ENV = "ACCMON_PEER_TOKEN"  # what other vantages present to POST /api/v1/probe
PEER_PATH = "/api/v1/probe"
REALM = "account-monitor"
# The UI's challenge (RFC 7617): the browser shows its login prompt for this realm.
BASIC_CHALLENGE = f'Basic realm="{REALM}"'
BEARER_FORMAT = "send exactly 'Authorization: Bearer <token>'"
# The paths a read token guards when one is configured. Health and metrics stay open.
GUARDED_READS = ("/api/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenError(Exception):
    """A token source that is set but unusable (unreadable file, control characters).

    The message names the variable or file, never the token.
    """


class Grant(enum.Enum):
    """What a request's credentials allow."""

    NONE = "none"  # no Authorization header at all
    INVALID = "invalid"  # a header that is not exactly a known bearer token
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True, slots=True)
class Tokens:
    """The configured tokens (None: not configured), and why a set one is unusable (the
    problem names the variable or file, never the token). ``repr`` hides the tokens."""

    write: str | None = None
    read: str | None = None
    write_problem: str | None = None
    read_problem: str | None = None

    def __repr__(self) -> str:
        return (f"Tokens(write={'set' if self.write else None}, "
                f"read={'set' if self.read else None}, write_problem={self.write_problem!r}, "
                f"read_problem={self.read_problem!r})")

    @property
    def problems(self) -> list[str]:
        return [p for p in (self.write_problem, self.read_problem) if p]


# ----------------------------------------------------------------- resolution


def resolve_tokens(config: Any, env: Mapping[str, str] | None = None) -> Tokens:
    """The write and read tokens from ``env`` (default: the process environment), then the
    ``*_FILE`` variables, then ``config.monitor.api``.

    A source that is set but unusable is a ``*_problem``, not an exception: what that token
    guards is then refused (fail closed), while the other token keeps working. ``run`` can
    refuse to start on :attr:`Tokens.problems`.
    """
    env = os.environ if env is None else env
    write, write_problem = _resolve(WRITE_ENV, "write_token", config, env)
    read, read_problem = _resolve(READ_ENV, "read_token", config, env)
    return Tokens(write, read, write_problem, read_problem)


def _resolve(var: str, field: str, config: Any, env: Mapping[str, str]
             ) -> tuple[str | None, str | None]:
    try:
        direct = env.get(var)
        if direct:
            return _checked(direct, var), None
        file_var = f"{var}_FILE"
        path = env.get(file_var)
        if path:
            return _read_token_file(file_var, path), None
        return _config_token(config, field), None
    except TokenError as exc:
        return None, str(exc)


def _checked(token: str, where: str) -> str:
    token = token.strip()
    if not token or has_control(token):
        # A header cannot carry it: every request would be refused with no hint why.
        raise TokenError(f"{where}: the token is empty or contains a line break or control "
                         "character; keep only the token, on one line")
    return token


def _read_token_file(file_var: str, path: str) -> str:
    try:
        data = yamlsafe.read_bounded(path, MAX_SECRET_FILE_BYTES)
        text = data.decode("utf-8")
    except yamlsafe.YamlProblem as exc:
        raise TokenError(f"{file_var}: {exc.reason}") from None
    except UnicodeDecodeError:
        raise TokenError(f"{file_var}: {path} is not UTF-8 text; write the token as "
                         "text") from None
    return _checked(text, f"{file_var} ({path})")


def _config_token(config: Any, field: str) -> str | None:
    """``config.monitor.api.<field>`` (a SecretStr or None), when the config has one."""
    api = getattr(getattr(config, "monitor", None), "api", None)
    secret = getattr(api, field, None)
    if secret is None:
        return None
    value = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
    return _checked(value, f"monitor.api.{field}") if value else None


# ----------------------------------------------------------------- checking


def _digest(value: bytes) -> bytes:
    # Hashing first makes the comparison independent of the tokens' lengths too.
    return hashlib.sha256(value).digest()


def presented_token(request: web.Request) -> bytes | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 section 2.1), exactly: one
    header, the scheme spelt ``Bearer``, one space, a token. ``b""`` for any other header
    (never matches); None when there is no Authorization header."""
    values = request.headers.getall("Authorization", [])
    if not values:
        return None
    if len(values) != 1 or not values[0].startswith("Bearer "):
        return b""
    try:  # aiohttp keeps undecodable bytes as surrogates; they can never match
        return values[0].removeprefix("Bearer ").encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b""


def token_matches(given: bytes | None, token: str | None) -> bool:
    """Constant time in the given and the configured token alike."""
    if not given or not token:
        return False
    return hmac.compare_digest(_digest(given), _digest(token.encode()))


def presented_credential(request: web.Request) -> bytes | None:
    """What a browser or a script presents to the UI: a Bearer token as
    :func:`presented_token` reads it, or the password of ``Authorization: Basic`` (RFC 7617
    section 2: base64 of ``user-id ":" password``; the user id cannot contain a colon, so
    the password is everything after the first one, whatever the user name).

    ``b""`` for anything else (never matches); None when there is no Authorization header.
    """
    values = request.headers.getall("Authorization", [])
    if len(values) == 1 and not values[0].startswith("Bearer "):
        scheme, _, encoded = values[0].partition(" ")
        if scheme.lower() != "basic":  # auth schemes are case-insensitive (RFC 9110 11.1)
            return b""
        try:
            decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            return b""
        _, colon, password = decoded.partition(b":")
        return password if colon else b""
    return presented_token(request)


def grant(request: web.Request, tokens: Tokens) -> Grant:
    """What the request's Bearer token allows (the API's reading of credentials)."""
    return _grant_for(presented_token(request), tokens)


def viewer_grant(request: web.Request, tokens: Tokens) -> Grant:
    """What the request's Bearer token or Basic password allows (the UI's reading)."""
    return _grant_for(presented_credential(request), tokens)


def _grant_for(given: bytes | None, tokens: Tokens) -> Grant:
    """Both comparisons always run, so the timing does not say which token (if any) a
    guess was close to."""
    if given is None:
        return Grant.NONE
    is_write = token_matches(given, tokens.write)
    is_read = token_matches(given, tokens.read)
    if is_write:
        return Grant.WRITE
    return Grant.READ if is_read else Grant.INVALID


# ----------------------------------------------------------------- answers


def _json(status: int, body: dict[str, str], headers: dict[str, str] | None = None
          ) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers=headers)


def unauthorized(error: str = "invalid_token") -> web.Response:
    """401: no credentials (RFC 6750 section 3: then no error code) or unknown ones."""
    challenge = f'Bearer realm="{REALM}"' + (f', error="{error}"' if error else "")
    return _json(401, {"status": "unauthorized", "error": BEARER_FORMAT},
                 {"WWW-Authenticate": challenge})


def forbidden_read_only() -> web.Response:
    return _json(403, {"status": "forbidden", "error": "this token may only read; changes "
                       "need the write token (ACCMON_WRITE_TOKEN)"},
                 {"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope"'})


def writes_disabled() -> web.Response:
    return _json(403, {"status": "disabled", "error": "disabled: set ACCMON_WRITE_TOKEN (or "
                       "ACCMON_WRITE_TOKEN_FILE, or monitor.api.write_token) to allow changes "
                       "over HTTP"})


def tokens_unusable(problem: str) -> web.Response:
    return _json(503, {"status": "unavailable", "error": f"the API token is unusable: "
                       f"{problem}"})


def check_write(request: web.Request, tokens: Tokens) -> web.Response | None:
    """None when ``request`` may change things; else the refusal to send."""
    if tokens.write_problem:
        return tokens_unusable(tokens.write_problem)
    if not tokens.write:
        return writes_disabled()
    got = grant(request, tokens)
    if got is Grant.WRITE:
        return None
    if got is Grant.READ:
        return forbidden_read_only()
    return unauthorized("" if got is Grant.NONE else "invalid_token")


def check_read(request: web.Request, tokens: Tokens) -> web.Response | None:
    """None when ``request`` may read: always, unless a read token is configured (or set
    but unusable: then reads are refused rather than opened)."""
    if tokens.read_problem:
        return tokens_unusable(tokens.read_problem)
    if not tokens.read:
        return None
    got = grant(request, tokens)
    if got in (Grant.READ, Grant.WRITE):
        return None
    return unauthorized("" if got is Grant.NONE else "invalid_token")


# ----------------------------------------------------------------- the middleware


class Guard:
    """The tokens of a running monitor, resolved again whenever its config object changes
    (start, and every reload). A problem is logged once per config, without the token."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self._env = env
        self._config: object = None
        self._tokens = Tokens()

    def tokens(self, config: object) -> Tokens:
        if config is not self._config:
            self._config = config
            self._tokens = resolve_tokens(config, self._env)
            for problem in self._tokens.problems:
                log.error("API token unusable; refusing what it guards", problem=problem)
        return self._tokens


# The app's Guard: the API's middleware, /-/reload and the UI all read tokens through it.
GUARD: web.AppKey[Guard] = web.AppKey("guard")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def resolve_peer_token(config: Any, env: Mapping[str, str] | None = None
                       ) -> tuple[str | None, str | None]:
    """The token other vantages present to ask for a fresh probe: ``ACCMON_PEER_TOKEN``,
    the file ``ACCMON_PEER_TOKEN_FILE`` names, or ``monitor.api.peer_token``; (token,
    problem) as for the others."""
    return _resolve(PEER_ENV, "peer_token", config, os.environ if env is None else env)


def check_peer(request: web.Request, tokens: Tokens, config: Any) -> web.Response | None:
    """``POST /api/v1/probe``: the peer token or the write token, nothing else. A refusal
    is logged with the caller's address, never with what it presented."""
    given = presented_token(request)
    peer, problem = resolve_peer_token(config)
    if given is not None and (token_matches(given, peer) or token_matches(given, tokens.write)):
        return None
    log.warning("peer probe refused: missing or wrong token", remote=request.remote,
                problem=problem)
    return unauthorized("" if given is None else "invalid_token")


def middleware(guard: Guard, config: Callable[[web.Request], object],
               exempt: Callable[[web.Request], bool]) -> Any:
    """An aiohttp middleware: every request with an unsafe method needs the write token;
    reads under :data:`GUARDED_READS` need a token when a read token is configured.

    Deciding by method and path, not per handler, means a new endpoint is guarded without
    anyone remembering to. ``exempt`` requests (``/-/reload``, which also takes its own
    token) are left to their handler.
    """

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        if exempt(request):
            return await handler(request)
        if request.path == PEER_PATH:
            refusal = check_peer(request, guard.tokens(config(request)), config(request))
            return refusal if refusal is not None else await handler(request)
        writing = request.method not in SAFE_METHODS
        if not writing and not request.path.startswith(GUARDED_READS):
            return await handler(request)
        tokens = guard.tokens(config(request))
        refusal = check_write(request, tokens) if writing else check_read(request, tokens)
        return refusal if refusal is not None else await handler(request)

    return authorize
