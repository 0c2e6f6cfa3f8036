"""Output that looks like kubectl's: plain tables, ages, the server's printer columns.

We format tables ourselves instead of asking for kubectl's printers: templates are Manifests, whose server
columns would describe the Manifest, not the object it holds (see commands/get.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def human_duration(seconds: float) -> str:
    """kubectl's age format (apimachinery's HumanDuration): 71s, 6m4s, 5d22h, 2y3d."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return _two_units(minutes, "m", s % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return _two_units(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _two_units(hours // 24, "d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _two_units(hours // 24 // 365, "y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _two_units(major: int, major_unit: str, minor: int, minor_unit: str) -> str:
    """`6m4s`, or `6m` when the minor part is zero."""
    return f"{major}{major_unit}{minor}{minor_unit}" if minor else f"{major}{major_unit}"


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """Age of an RFC 3339 timestamp, `<unknown>` when absent or unparsable."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration(((now or datetime.now(UTC)) - then).total_seconds())


def cell_text(value: Any) -> str:
    """One table cell as kubectl prints it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], upper: bool = True) -> str:
    """kubectl's plain table: upper-case headers (`upper`), columns padded and separated by 3 spaces, no
    borders."""
    lines = [[h.upper() if upper else h for h in headers]] + [[cell_text(c) for c in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for line in lines:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(line[:-1])] + [line[-1]]
        out.append("   ".join(padded).rstrip())
    return "\n".join(out)


def indented_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A table as lines indented by two spaces, as `kubectl describe` nests them (Events:, Clusters:)."""
    return ["  " + line for line in format_table(headers, rows).splitlines()]


def server_table(table: Mapping[str, Any], *, wide: bool = False, with_namespace: bool = False) -> str:
    """Render a meta.k8s.io Table (columnDefinitions + rows) like kubectl; priority>0 columns only if wide."""
    columns = table.get("columnDefinitions") or []
    keep = [i for i, c in enumerate(columns) if wide or not c.get("priority")]
    headers = [str(columns[i].get("name", "")) for i in keep]
    rows = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        values = [cells[i] if i < len(cells) else None for i in keep]
        if with_namespace:
            values.insert(0, ((row.get("object") or {}).get("metadata") or {}).get("namespace", ""))
        rows.append(values)
    if with_namespace:
        headers.insert(0, "Namespace")
    return format_table(headers, rows)
