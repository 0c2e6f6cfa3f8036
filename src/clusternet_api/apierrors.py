"""Errors of the Kubernetes API as our clients see them (clusternet_api.kube raises them; every side reads them).

Kept apart from the client so the question "what did the server say" has one answer: a non-2xx status with
the Status message, and whether a 404 is about the object or about the path (is_object_answer).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from clusternet_api.tunnel.mux import StreamOpenError


class ApiException(Exception):
    """A non-2xx answer from an API server: HTTP `status`, `reason` (the Status message) and raw `body`."""

    def __init__(self, status: int = 0, reason: str | None = None, body: bytes | None = None) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.body = body

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.reason}"


class ResourceNotFound(LookupError):
    """The server serves no resource for this apiVersion and kind (kubectl: "no matches for kind")."""


def is_object_answer(body: bytes | None) -> bool:
    """Is this error body a JSON object (a Status: what an API server sends for an object it does not have), not
    the text of a path it does not serve? Any JSON object counts, "kind": "Status" or not, as aggregated servers
    may leave it out."""
    try:
        return isinstance(json.loads(body or b""), dict)
    except ValueError:
        return False


def status_error(status: int, result: Any) -> ApiException:
    """An ApiException carrying the server's Status message and body."""
    reason = result.get("message") if isinstance(result, dict) else str(result)[:200]
    body = (result if isinstance(result, str) else json.dumps(result)).encode()
    return ApiException(status=status, reason=reason, body=body)


def is_status(e: BaseException, *codes: int) -> bool:
    """True when `e` is an API error with one of the given HTTP status codes."""
    return isinstance(e, ApiException) and e.status in codes


PASSING_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Answers that say the server could not answer now (overloaded, restarting, a proxy in between), not that the
request was wrong."""


def is_passing(e: BaseException) -> bool:
    """Will asking again later most likely get an answer: a connection refused, reset, dropped or timed out, a
    tunnel that could not open a stream to the child (down, or its agent's dial refused), or one of the
    PASSING_STATUSES? (A 404 for a kind the server does not serve is not: its CRD may be gone for good.) The tunnel's
    StreamOpenError was left out: a cleanup through a tunnel whose child was restarting took what it could not read
    for nothing of ours there, and let its Description go with the objects left in the child (re-review s37)."""
    if isinstance(e, ApiException):
        return e.status in PASSING_STATUSES
    return isinstance(e, (OSError, TimeoutError, aiohttp.ClientError, StreamOpenError))


def explain(e: ApiException, what: str) -> str:
    if e.status == 403:
        return f"{what}: the child cluster's RBAC refused it (HTTP 403 Forbidden: {e.reason})"
    if e.status == 413 or "too large" in str(e.reason).lower():
        return f"{what}: the object is too large for the child's etcd ({e.reason})"
    if e.status == 404:
        return f"{what}: the child does not serve this kind or its namespace is missing ({e.reason})"
    return f"{what}: HTTP {e.status}: {e.reason}"
