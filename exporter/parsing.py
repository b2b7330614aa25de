"""Tolerant building blocks for upstream response models.

Vendors document one type and send another (UUID vs int ids, ISO strings vs epoch milliseconds, JSON
inside a string). These types accept every shape seen and turn the rest into a clear validation error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

# Epoch values above this are milliseconds: 1e11 seconds is the year 5138.
_MS_THRESHOLD = 1e11


class Lenient(BaseModel):
    """A response model that ignores fields it does not know, so a vendor adding one breaks nothing."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def epoch_seconds(value: Any) -> float | None:
    """Seconds since the epoch from epoch s/ms (number or digits) or an ISO-like date string; None if empty."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        number = float(value.strip())
    elif isinstance(value, str):
        return _parse_date(value.strip())
    else:
        raise ValueError(f"not a time: {type(value).__name__}")
    if number <= 0:
        return None
    return number / 1000.0 if number > _MS_THRESHOLD else number


def _parse_date(text: str) -> float:
    normalized = text.replace(" ", "T", 1) if "T" not in text and " " in text else text
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError:
        raise ValueError(f"not a recognised date: {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _as_id(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an id")
    return str(value) if isinstance(value, int) else value


def _json_in_string(value: Any) -> Any:
    """Documents that arrive as a JSON string are parsed; an already-parsed object passes."""
    if isinstance(value, str):
        if not value.strip():
            return None
        return json.loads(value)
    return value


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, str) and value.strip():
        return float(value)
    return value


EpochSeconds = Annotated[float | None, BeforeValidator(epoch_seconds)]
"""A time as seconds since the epoch, whatever shape the vendor sent."""

Id = Annotated[str, BeforeValidator(_as_id)]
"""An identifier that may arrive as a number or a string; always a string here."""

JsonInString = BeforeValidator(_json_in_string)
"""Marks a field whose JSON document is wrapped in a string."""

Number = Annotated[float, BeforeValidator(_number)]
"""A count or rate sent as a number or as digits in a string."""
