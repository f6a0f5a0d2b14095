"""ntfy (ntfy.sh or self-hosted): a push notification to every phone subscribed to a topic.

Sent in ntfy's JSON publish form (docs.ntfy.sh/publish, "Publish as JSON"): ``POST`` to the
server's *root* URL (not the topic URL) with ``topic``, ``title``, ``message``, ``priority``
(1-5), ``tags``, ``click`` and ``actions``. ntfy answers 200 with the stored message.

Priority follows severity: ``critical`` is 5 ("max": long vibration bursts and a pop-over),
``error`` 4, ``warning`` 3 (the default) and ``info`` 2 (no sound, no vibration). It pages:
a priority-5 push is how a team without a pager service gets woken. There are no incidents:
a resolve is one more message, a redelivery after a crash a second push. An acknowledgement
is one more message too, at priority 2 (no sound): the others who were woken learn that
someone is on it without being woken again.

Limits ("Limitations", "Action buttons"; server/server.go): a message is at most 4,096
bytes (longer ones arrive as an attachment, not as text), so it is cut on a UTF-8 boundary;
the server joins ``tags`` with commas, so a comma inside one becomes a space; at most three
action buttons. Errors are JSON (``{"code": 40101, "http": 401, "error": "unauthorized"}``):
the shared status reading makes 400, 401/403 (a protected topic, a wrong token) and 413
permanent, 429 ("limit reached") and 5xx retryable.

"The topic is essentially a password" on a public server, and the access token is a
credential: both are secrets, blanked from every error message.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field, SecretStr, field_validator

from monitor.config_types import Duration
from monitor.notify.base import (
    Answer,
    Notification,
    NotifierSettings,
    detail_lines,
    headline,
    post_json,
    truncate,
    type_field,
)

MESSAGE_MAX_BYTES = 4096
TITLE_MAX = 250  # not a documented limit: keeps the JSON body well under the server's 8 KiB
ACTIONS_MAX = 3
# ntfy's topic names (server/server.go topicRegex).
TOPIC = re.compile(r"^[-_A-Za-z0-9]{1,64}$")
PRIORITIES = {"critical": 5, "error": 4, "warning": 3, "info": 2}
# Tags that match an emoji short code are shown as that emoji in front of the title.
EMOJI = {"resolve": "white_check_mark", "notify": "information_source",
         "acknowledge": "raised_hand"}
ACK_PRIORITY = 2  # "low": no vibration, no sound


class NtfyConfig(NotifierSettings):
    """An ntfy topic (ntfy.sh or a self-hosted server): a push notification to every phone
    subscribed to it, at a priority that follows the severity."""

    type: Literal["ntfy"] = type_field()
    server: str = Field(default="https://ntfy.sh", pattern=r"^https?://\S+$", description=(
        "The ntfy server's root URL (`https://ntfy.sh` or a self-hosted one)."))
    topic: SecretStr = Field(description=(
        "The topic to publish to (letters, digits, `-`, `_`; at most 64): secret, since on a "
        "public server anyone who knows it can read the pages."))
    token: SecretStr | None = Field(default=None, description=(
        "An access token (`tk_...`) sent as `Authorization: Bearer`, for a protected topic; "
        "unset: anonymous."))
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, value: SecretStr) -> SecretStr:
        if not TOPIC.match(value.get_secret_value()):
            raise ValueError("a topic is 1 to 64 letters, digits, '-' or '_'")
        return value


class NtfyNotifier:
    """Publishes to one topic of one ntfy server."""

    config_model: ClassVar[type[NtfyConfig]] = NtfyConfig
    type: ClassVar[str] = "ntfy"
    pages: ClassVar[bool] = True
    acknowledges: ClassVar[bool] = False

    def __init__(self, name: str, config: NtfyConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session

    def __repr__(self) -> str:
        return f"NtfyNotifier(name={self.name!r})"

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], bytes]:
        """``(url, headers, body bytes)``: the JSON form, posted to the server's root."""
        headers: dict[str, str] = {}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        doc = publish_body(n, self.config.topic.get_secret_value())
        # UTF-8 as is (not \u escapes): the body stays as small as the message it carries.
        body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        return f"{self.config.server.rstrip('/')}/", headers, body

    async def send(self, n: Notification) -> Answer:
        url, headers, body = self.build_request(n)
        token = self.config.token.get_secret_value() if self.config.token else ""
        return await post_json(self.session, url, None, headers=headers, data=body,
                               timeout=self.config.timeout,
                               secrets=(self.config.topic.get_secret_value(), token))


def publish_body(n: Notification, topic: str) -> dict[str, Any]:
    """The JSON publish message for one notification (``topic`` first, as ntfy documents)."""
    body: dict[str, Any] = {
        "topic": topic,
        "title": truncate(headline(n), TITLE_MAX),
        "message": cut_utf8("\n".join([n.summary, *detail_lines(n)]), MESSAGE_MAX_BYTES),
        "priority": ACK_PRIORITY if n.action == "acknowledge" else
        PRIORITIES.get(n.severity, 3),
        "tags": tags(n),
    }
    links = [link for link in n.links if link.get("href")]
    if links:
        body["click"] = links[0]["href"]
        body["actions"] = [{"action": "view", "label": link.get("text") or "link",
                            "url": link["href"]} for link in links[:ACTIONS_MAX]]
    return body


def tags(n: Notification) -> list[str]:
    """An emoji for what happened, then platform, kind and reason (no commas: the server
    joins tags with them)."""
    emoji = EMOJI.get(n.action) or ("rotating_light" if n.severity == "critical" else "warning")
    wanted = [emoji, n.platform, n.kind, n.reason, "protected" if n.protected else None]
    return [tag.replace(",", " ") for tag in wanted if tag]


def cut_utf8(text: str, limit: int) -> str:
    """At most ``limit`` bytes of UTF-8, ending in an ellipsis when cut, never mid-character."""
    data = text.encode()
    if len(data) <= limit:
        return text
    room = limit - len("…".encode())
    return data[:room].decode(errors="ignore") + "…"
