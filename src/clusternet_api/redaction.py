"""What must never be printed or logged: tokens, and the passwords of URLs.

A module of its own, importing only `re`: the kubectl plugin prints URLs from kubeconfigs in its error lines, and
its start-up, paid on every command, should not grow by the logging set-up (python-json-logger) to redact one.
"""

from __future__ import annotations

import re

# JWTs (three base64url parts), bootstrap tokens (6.16) and "Bearer ..." values.
_TOKEN_RE = re.compile(
    r"(eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,})"
    r"|(\b[a-z0-9]{6}\.[a-z0-9]{16}\b)"
    r"|((?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,})"
)

# The password of a URL's userinfo (`scheme://user:password@host`): a kubeconfig's proxy-url may carry one, and
# an error naming the proxy or server would print it. The userinfo ends at the last "@" before the path, as in
# Go's url.Parse; whitespace ends a URL inside a longer text (an error message).
_URL_PASSWORD_RE = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:\s]*):[^/?#\s]*@")
# What Go's url.URL.Redacted (and so kubectl) prints in place of a password.
URL_PASSWORD_MARK = "xxxxx"


def redact_url(text: str) -> str:
    """A URL (or a text holding URLs) with every password replaced, `http://user:xxxxx@host:port`, as kubectl
    prints a proxy-url; the user name stays, it says which account. For every URL from a kubeconfig or a flag
    that is printed or logged."""
    return _URL_PASSWORD_RE.sub(rf"\1:{URL_PASSWORD_MARK}@", text)


def redact(text: str) -> str:
    """Replace anything that looks like a token with a fixed marker, and URL passwords as redact_url does."""
    return redact_url(_TOKEN_RE.sub("[REDACTED]", text))
