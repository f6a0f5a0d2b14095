"""Config primitives every config model shares, wherever the model lives.

Durations, sizes, secret files and :class:`Strict`, the base of every model. This module
imports nothing of ours but :mod:`monitor.yamlsafe`, so a notifier module can define its own
config model without importing :mod:`monitor.config` (which builds its provider
union from the notifier registry: importing it back would be a cycle).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, model_validator
from pydantic_core import PydanticCustomError

from monitor import yamlsafe

# --------------------------------------------------------------------------- scalar types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# No timing in this monitor needs more than a year; a larger value is a typo (or an
# overflow: 99999999999999999999999d) that would make a timer never fire.
MAX_DURATION = 366 * 86400.0
_MAX_SCALAR_TEXT = 64  # a duration or size longer than this is not one (and costs regexes)


def shown(value: Any) -> str:
    """A value quoted in a problem, cut short: the input may be megabytes."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_duration(value: Any) -> float:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a bare number of seconds -> seconds.

    Finite, greater than zero and at most :data:`MAX_DURATION` (YAML reads ``.nan`` and
    ``.inf`` as floats: a NaN interval would schedule nothing, ever).
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_SCALAR_TEXT:
            raise ValueError(f"invalid duration {shown(value)}: use e.g. 30s, 5m, 1h30m "
                             "or 250ms")
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if not text or pos != len(text):
            raise ValueError(f"invalid duration {shown(value)}: use e.g. 30s, 5m, 1h30m "
                             "or 250ms")
    else:
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if math.isnan(seconds):
        raise ValueError("a duration must be a number, not NaN: use e.g. 30s")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > MAX_DURATION:
        raise ValueError(f"{shown(value)} is longer than 366 days: use at most 366d")
    return seconds


_SIZE = re.compile(r"^(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
               "KB": 1000, "MB": 1000**2, "GB": 1000**3}
# Sizes cap what one answer may cost in memory (times concurrency); answers are kilobytes.
MAX_SIZE = 64 * 1024**2


def parse_size(value: Any) -> int:
    """``"1MiB"``, ``"512KiB"`` or a bare number of bytes -> bytes, at most :data:`MAX_SIZE`."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"invalid size {shown(value)}: use e.g. 512KiB or 1MiB")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.match(value.strip()) if len(value) <= _MAX_SCALAR_TEXT else None
        if not match:
            raise ValueError(f"invalid size {shown(value)}: use e.g. 512KiB or 1MiB")
        size = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if size <= 0:
        raise ValueError("a size must be greater than zero: use e.g. 512KiB or 1MiB")
    if size > MAX_SIZE:
        raise ValueError(f"{shown(value)} is more than 64MiB: use at most 64MiB (answers "
                         "are kilobytes; the default is 1MiB)")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
# A duration where 0 (written 0, "0" or "0s") means "none": a wait that can be switched off.
DurationOrZero = Annotated[float, BeforeValidator(
    lambda v: 0.0 if v in (0, "0", "0s") else parse_duration(v))]
Size = Annotated[int, BeforeValidator(parse_size)]


MAX_SECRET_FILE_BYTES = 4096  # a token, key or URL; anything bigger is the wrong file


def field_problem(field: str, reason: str) -> PydanticCustomError:
    """A problem with ``field`` found by a validator of the model holding it, so the
    reported path names the field itself (``platforms.x.token_file``), not the model."""
    return PydanticCustomError("field_problem", "{field}: {reason}",
                               {"field": field, "reason": reason})


def read_secret_file(file_key: str, value: Any) -> str:
    """The one-line secret in the file ``value``: a regular file of at most 4 KiB of UTF-8.

    ``token_file: /dev/zero`` must not read forever, and a directory, FIFO or binary file is
    a mistake to name, not to read.
    """
    if not isinstance(value, str) or not value.strip():
        raise field_problem(file_key, "expected the path of a file, e.g. /run/secrets/token")
    try:
        data = yamlsafe.read_bounded(value, MAX_SECRET_FILE_BYTES)
    except yamlsafe.YamlProblem as exc:
        raise field_problem(file_key, exc.reason) from None
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise field_problem(file_key, f"{value} is not UTF-8 text; write the secret as "
                                      "text") from None
    if not secret:
        raise field_problem(file_key, f"{value} is empty; put the secret in it")
    if has_control(secret):
        raise field_problem(file_key, f"{value} holds more than one line or a control "
                                      "character; keep only the secret, on one line")
    return secret


def has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors; ``x_file`` fills secret ``x``.

    Floats must be finite: YAML reads ``.nan`` and ``.inf`` as numbers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, field in cls.model_fields.items():
            if field.annotation not in (SecretStr, SecretStr | None):
                continue
            file_key = f"{name}_file"
            if file_key in data:
                if data.get(name) is not None:
                    raise ValueError(f"give either {name} or {file_key}, not both")
                data[name] = read_secret_file(file_key, data.pop(file_key))
            elif isinstance(data.get(name), str) and has_control(data[name]):
                # a header value with a line break would be refused on every request
                raise field_problem(name, "contains a line break or control character; "
                                          "check the environment variable or file it came from")
        return data
