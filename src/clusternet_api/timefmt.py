"""Timestamps as Kubernetes writes them: RFC 3339 in UTC, whole seconds, `Z` (metav1.Time)."""

from __future__ import annotations

import datetime
from typing import Final

RFC3339: Final = "%Y-%m-%dT%H:%M:%SZ"


def format_rfc3339(value: datetime.datetime) -> str:
    """`value` in UTC, to the second: what API servers store in a metav1.Time field."""
    return value.astimezone(datetime.UTC).strftime(RFC3339)


def now_rfc3339() -> str:
    return format_rfc3339(datetime.datetime.now(datetime.UTC))
