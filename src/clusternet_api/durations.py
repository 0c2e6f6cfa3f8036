"""Go-style durations ("20s", "3m", "1h30m") as used by Clusternet's flags."""

import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; a bare number means seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use forms like 20s, 3m or 1h30m")
    return sum(float(n) * _UNITS[u] for n, u in parts)
