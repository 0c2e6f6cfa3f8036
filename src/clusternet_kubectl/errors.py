"""How the CLI reports a problem: one line, no traceback, in kubectl's words where kubectl has some."""

from __future__ import annotations

import json
from typing import Any

from clusternet_api.kube import ApiException


class PluginError(Exception):
    """A problem to report to the user as one line (without a traceback)."""


def server_message(body: Any) -> str:
    """The message of an API server's answer: a Status's `message`, else the (shortened) text."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        text: str = body
        try:
            body = json.loads(text)
        except ValueError:
            return text.strip()[:500]
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body)


def api_error(exc: ApiException) -> str:
    """kubectl's `Error from server (Reason): message` for an API error."""
    reason, message = "", str(exc.reason or "")
    if exc.body:
        try:
            status = json.loads(exc.body)
            reason, message = str(status.get("reason") or ""), str(status.get("message") or message)
        except (ValueError, AttributeError):
            message = server_message(exc.body)
    return f"Error from server ({reason or exc.status}): {message}"
