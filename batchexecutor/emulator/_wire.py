"""Small helpers shared by the emulator's handlers: clocks, IDs, ETags, durations."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

from ._errors import invalid_property, missing_property

_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_DURATION_RE = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
#: Batch's "unbounded" duration (TimeSpan.MaxValue), as the service returns it.
UNBOUNDED = "P10675199DT2H48M5.4775807S"

_clock_lock = threading.Lock()
_last_time = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utcnow() -> datetime:
    """Strictly increasing UTC time, so state transition times order events."""
    global _last_time
    with _clock_lock:
        now = datetime.now(timezone.utc)
        if now <= _last_time:
            now = _last_time + timedelta(microseconds=1)
        _last_time = now
        return now


def iso(moment: datetime) -> str:
    """RFC 3339 with fixed-width microseconds: lexical order is time order."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_etag() -> str:
    """Batch's ETags look like ``0x8D3D62350711C55`` (unquoted, in bodies and headers)."""
    return f"0x{uuid.uuid4().hex[:15].upper()}"


def check_id(value: Any, prop: str = "id") -> str:
    """Batch IDs: 1-64 letters, digits, hyphens and underscores."""
    if value is None:
        raise missing_property(prop)
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise invalid_property(
            prop,
            value,
            "The ID can contain any combination of alphanumeric characters including hyphens "
            "and underscores, and cannot contain more than 64 characters.",
        )
    return value


def parse_duration(value: Any, prop: str) -> timedelta | None:
    """An ISO 8601 duration as Batch sends it (``PT1H30M``); ``None`` for unbounded."""
    if value is None:
        return None
    if not isinstance(value, str) or value == UNBOUNDED:
        if value == UNBOUNDED:
            return None
        raise invalid_property(prop, value, "Expected an ISO 8601 duration such as PT1H.")
    match = _DURATION_RE.match(value)
    if not match or value in ("P", "PT"):
        raise invalid_property(prop, value, "Expected an ISO 8601 duration such as PT1H.")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    try:
        return timedelta(**parts)
    except OverflowError:
        return None


def name_value_list(items: Any, prop: str) -> list[dict[str, Any]]:
    """Validate a list of ``{"name": ..., "value": ...}`` (metadata, environment settings)."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise invalid_property(prop, items, "Expected an array.")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise missing_property(f"{prop}[{i}].name")
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise invalid_property(f"{prop}[{i}].value", value, "Expected a string.")
    return list(items)
