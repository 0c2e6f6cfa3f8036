"""Description.spec.raw: objects as base64-encoded JSON, as Go marshals [][]byte.

Shared by the hub (which renders Descriptions) and both deployers (which apply them).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]


def _canonical_json(obj: Obj) -> bytes:
    # Sorted keys and no spaces: the same objects always give the same bytes, so re-rendering an unchanged
    # Subscription never rewrites its Descriptions (and never triggers a needless re-apply).
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_raw(objects: Iterable[Obj]) -> list[str]:
    """Objects as Description.spec.raw: base64 of each object's JSON, as Go marshals [][]byte."""
    return [base64.b64encode(_canonical_json(o)).decode("ascii") for o in objects]


def decode_raw(raw: Iterable[str]) -> list[dict[str, Any]]:
    """Description.spec.raw back to objects. Raises ValueError naming the bad entry."""
    objects: list[dict[str, Any]] = []
    for i, entry in enumerate(raw):
        try:
            obj = json.loads(base64.b64decode(entry, validate=True))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ValueError(f"spec.raw[{i}] is not base64-encoded JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"spec.raw[{i}] is not a JSON object")
        objects.append(obj)
    return objects
