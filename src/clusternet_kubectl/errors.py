"""How the CLI reports a problem: one line, no traceback (unless --debug), in kubectl's words where kubectl has
some; the command then exits with code 1."""

from __future__ import annotations

import errno
import json
import os
import re
import ssl
import sys
from typing import Any

import aiohttp

from clusternet_api.kube import ApiException, CredentialsError, ResourceNotFound
from clusternet_api.redaction import redact_url


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


def _reason_and_message(exc: ApiException) -> tuple[str, str]:
    reason, message = "", str(exc.reason or "")
    if exc.body:
        try:
            status = json.loads(exc.body)
            reason, message = str(status.get("reason") or ""), str(status.get("message") or message)
        except (ValueError, AttributeError):
            message = server_message(exc.body)
    return reason, message


def api_error(exc: ApiException) -> str:
    """kubectl's `Error from server (Reason): message` for an API error."""
    reason, message = _reason_and_message(exc)
    return f"Error from server ({reason or exc.status}): {message}"


NOT_DECLARED = re.compile(r"(?:^|\s)\.(\S+): field not declared in schema")


def unknown_fields(exc: ApiException) -> str | None:
    """kubectl's `unknown field "spec.subscriber"` for a server-side apply the parent refused because the
    object has fields its kind's schema does not declare, else None. kube-apiserver 1.20 answers that with
    HTTP 500 `failed to create typed patch object: .spec.subscriber: field not declared in schema` (later ones
    with 400), which read as a failure of the server (the sixth audit); kubectl, validating first, says
    `unknown field`."""
    _, message = _reason_and_message(exc)
    if "failed to create typed patch object" not in message:
        return None
    fields = NOT_DECLARED.findall(message)
    return ", ".join(f'unknown field "{f}"' for f in fields) or None


def _os_reason(exc: BaseException) -> str:
    """"connection refused", "no route to host"... for a connection error (its errno, else its text)."""
    os_error = getattr(exc, "os_error", None) or exc
    code = getattr(os_error, "errno", None)
    if code in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ECONNRESET):
        return os.strerror(code).lower()
    return str(getattr(os_error, "strerror", None) or os_error or type(exc).__name__)


def error_line(exc: BaseException, server: str, proxy: str | None = None) -> str:
    """The one line that tells a person what went wrong talking to `server` (the parent's URL). A password in
    the kubeconfig's URLs (a proxy-url's `user:password@`), or in an exception's text quoting one, is printed
    as kubectl prints it: `user:xxxxx@`."""
    return redact_url(_error_line(exc, server, proxy))


def _error_line(exc: BaseException, server: str, proxy: str | None) -> str:
    if isinstance(exc, PluginError | CredentialsError | ResourceNotFound):
        return f"error: {exc}"
    if isinstance(exc, ApiException):
        if exc.status == 401:
            return f"error: the server at {server} rejected the credentials (401 Unauthorized)"
        return api_error(exc)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        why = getattr(cert_error, "verify_message", None) or getattr(cert_error, "reason", None) or cert_error
        return f"error: cannot verify the certificate of {server}: {why} (check the kubeconfig's certificate-authority)"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"error: TLS with {server} failed: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"error: cannot reach the proxy {proxy or ''} for {server}: {_os_reason(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"error: cannot reach {server}: its host name does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"error: cannot reach {server}: {_os_reason(exc)}"
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return f"error: {server} did not answer in time"
    if isinstance(exc, aiohttp.ClientError):
        return f"error: the connection to {server} failed: {_os_reason(exc) if isinstance(exc, OSError) else exc}"
    if isinstance(exc, ssl.SSLError):
        return f"error: cannot use the kubeconfig's TLS settings: {exc.reason or exc}"
    return f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"


def stdout_closed() -> int:
    """What a command ends with when its reader went away (`kubectl clusternet render ... | head`): nothing
    said, exit code 1. kubectl (Go) is killed by SIGPIPE instead (141 in a shell); we exit with 1 as Python's
    documented pattern does, and as click already does when its own output (--help) meets a closed pipe, so
    both ways out look the same, and a shell's `pipefail` sees a failure either way. stdout is pointed at
    /dev/null first: the text still buffered for it would otherwise fail again when Python flushes it at exit,
    and print `Exception ignored ... BrokenPipeError` (with exit code 120)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 1
