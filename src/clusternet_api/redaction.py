"""What must never be printed or logged: tokens, the passwords of URLs, and secret fields of objects.

Objects reach logs whole: kopf's DEBUG lines (`-v=5`) carry a body as a Python dict repr, e.g. a
ClusterRegistrationRequest whose `status.token` holds a sealed token (a plain bearer token with
`--allow-unsealed-tokens`), which no token pattern recognises. So the value of any field named like a
credential (SECRET_KEYS), in a dict repr or JSON, is replaced too, and every value of a Secret's `data` and
`stringData`.

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


# A quoted key ending in one of these words (case-insensitive): `token`, `bearerToken`, `id-token`,
# `<release>.password`, `client-key-data`; not `token-issued-at` or `client-certificate-data`.
SECRET_KEYS = ("token", "password", "passwd", "bearer", "client-key-data", "client-key")
_QUOTED = r"b?'(?:[^'\\]|\\.)*'" + "|" + r'b?"(?:[^"\\]|\\.)*"'  # a Python or JSON string, escapes kept
_KEY_END = "|".join(re.escape(k) for k in SECRET_KEYS)
_SECRET_FIELD_RE = re.compile(r"""((['"])[^'"\s]*?(?i:""" + _KEY_END + r""")\2\s*:\s*)(""" + _QUOTED + ")")
# A Secret (kind Secret in the same text) and the flat `data`/`stringData` maps whose values are all redacted.
_SECRET_KIND_RE = re.compile(r"""(['"])kind\1\s*:\s*(['"])Secret\2""")
_DATA_MAP_RE = re.compile(r"""((['"])(?:data|stringData)\2\s*:\s*\{)((?:[^{}'"]|""" + _QUOTED + r""")*)(\})""")
_MAP_VALUE_RE = re.compile(r"""((['"])(?:[^'"\\]|\\.)*\2\s*:\s*)(""" + _QUOTED + ")")
MARK = "[REDACTED]"


def _masked(match: re.Match[str]) -> str:
    quote = '"' if match.group(3).lstrip("b").startswith('"') else "'"
    return f"{match.group(1)}{quote}{MARK}{quote}"


def _masked_map(match: re.Match[str]) -> str:
    return match.group(1) + _MAP_VALUE_RE.sub(_masked, match.group(3)) + match.group(4)


def redact_fields(text: str) -> str:
    """Credential-named fields and Secret data of objects printed as a dict repr or JSON (module docstring)."""
    text = _SECRET_FIELD_RE.sub(_masked, text)
    if _SECRET_KIND_RE.search(text):
        text = _DATA_MAP_RE.sub(_masked_map, text)
    return text


def redact_url(text: str) -> str:
    """A URL (or a text holding URLs) with every password replaced, `http://user:xxxxx@host:port`, as kubectl
    prints a proxy-url; the user name stays, it says which account. For every URL from a kubeconfig or a flag
    that is printed or logged."""
    return _URL_PASSWORD_RE.sub(rf"\1:{URL_PASSWORD_MARK}@", text)


def redact(text: str) -> str:
    """Replace anything that looks like a token with a fixed marker, URL passwords as redact_url does, and
    credential fields of printed objects as redact_fields does."""
    return redact_fields(redact_url(_TOKEN_RE.sub(MARK, text)))
