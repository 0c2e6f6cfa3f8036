"""Kubernetes resource quantities ("500m", "8Gi", "1.5"), for summing node capacity."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_SUFFIXES = {
    "Ki": Decimal(1024), "Mi": Decimal(1024**2), "Gi": Decimal(1024**3), "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5), "Ei": Decimal(1024**6),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "k": Decimal(1000),
    "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
}


def parse_quantity(value: str | int | float) -> Decimal:
    text = str(value).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if text.endswith(suffix) and not text.endswith("e" + suffix):
            try:
                return Decimal(text[: -len(suffix)]) * _SUFFIXES[suffix]
            except InvalidOperation as e:
                raise ValueError(f"invalid quantity {value!r}") from e
    try:
        return Decimal(text)
    except InvalidOperation as e:
        raise ValueError(f"invalid quantity {value!r}") from e


def format_quantity(value: Decimal) -> str:
    """Canonical-ish form: whole numbers plainly (bytes as Ki when exact), fractions in milli-units."""
    if value == value.to_integral_value():
        n = int(value)
        return f"{n // 1024}Ki" if n >= 1024 and n % 1024 == 0 else str(n)
    return f"{int((value * 1000).to_integral_value())}m"
