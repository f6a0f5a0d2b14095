"""Is a platform answering us at all? One warning when every answer has been an error.

A first run with a missing token, a proxy that is not set, or a base_url that points at the
wrong service looks, from outside, like a monitor that does nothing: every account stays
``unknown`` until staleness makes it blind, ten minutes later. :class:`PlatformHealth` sees
the pattern after a minute and says once, in the log, what kind of error it is and what
usually fixes it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from monitor.model import ErrorKind, Observation, Result

ALL_ERRORS_FOR = 60.0  # seconds of nothing but errors before the warning

HINTS: dict[str, str] = {
    ErrorKind.CONNECTION: "cannot connect: check the network, DNS, the proxy "
                          "(HTTPS_PROXY) or a firewall, and the platform's base_url",
    ErrorKind.TIMEOUT: "no answer in time: check the network, the proxy and the platform's "
                       "timeout",
    ErrorKind.AUTH: "our credentials are refused: check the platform's token "
                    "(its ${ENV} variable or *_file)",
    ErrorKind.RATE_LIMITED: "rate limited: lower rate_per_second, lengthen the interval or "
                            "use a token with a larger budget",
    ErrorKind.BLOCKED: "a login wall or bot challenge answers instead of the site: it blocks "
                       "anonymous checks from this network",
    ErrorKind.SERVER_ERROR: "the platform answers 5xx: probably its own outage (check its "
                            "status page)",
    ErrorKind.REDIRECT: "answers redirect to another host: base_url points at the wrong "
                        "service, or a proxy or captive portal is in the way",
    ErrorKind.PARSE: "answers are not in the documented shape: base_url points at the wrong "
                     "service, or a proxy rewrites answers",
    ErrorKind.UNEXPECTED: "answers match no known shape: base_url points at the wrong "
                          "service, or the platform changed its API",
    ErrorKind.TOO_LARGE: "answers are larger than max_body_bytes: base_url points at the "
                         "wrong service, or raise the cap",
    ErrorKind.INTERNAL: "an internal error of account-monitor (its traceback is logged): "
                        "please report it",
}


@dataclass(slots=True)
class PlatformHealth:
    """Tracks one platform's current run of error-only answers."""

    errors_since: float | None = None  # first error of the current all-error run
    kinds: Counter[str] = field(default_factory=Counter)
    warned: bool = False

    def saw(self, obs: Observation) -> bool:
        """Record one answer; True when it ends a run that was warned about."""
        if obs.result is not Result.ERROR:
            ended = self.warned
            self.errors_since, self.warned = None, False
            self.kinds.clear()
            return ended
        if self.errors_since is None:
            self.errors_since = obs.at
        self.kinds[str(obs.error)] += 1
        return False

    def due_warning(self, now: float) -> tuple[str, int, str] | None:
        """(main error kind, errors seen, hint) once the run is a minute old; then None."""
        if self.warned or self.errors_since is None or now - self.errors_since < ALL_ERRORS_FOR:
            return None
        self.warned = True
        kind = self.kinds.most_common(1)[0][0]
        return kind, sum(self.kinds.values()), HINTS.get(kind, "see the probe's evidence")
