"""JSON logs: kopf's per-object log records serialise (the Deployments run with --log-format=json); tokens are
redacted from messages and tracebacks alike."""

from __future__ import annotations

import io
import json
import logging
import queue
from dataclasses import dataclass, field

import pytest

from clusternet_api.logs import RedactingFilter, json_formatter
from clusternet_api.redaction import redact, redact_url


@dataclass
class Settings:  # like kopf's OperatorSettings: a dataclass holding something that cannot be copied
    q: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue)


def test_kopf_object_log_records_serialise() -> None:
    record = logging.LogRecord("kopf.objects", logging.ERROR, __file__, 1, "Handler %r failed", ("x",), None)
    record.settings = Settings()
    record.k8s_skip = False
    record.k8s_ref = {"kind": "ClusterRegistrationRequest", "name": "clusternet-x"}
    out = json.loads(json_formatter("clusternet-hub").format(record))
    assert out["message"] == "Handler 'x' failed" and out["level"] == "ERROR"
    assert out["k8s_ref"]["name"] == "clusternet-x"
    assert "settings" not in out and "k8s_skip" not in out


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlc2lnbmF0dXJl"


def _log_failure(formatter: logging.Formatter) -> str:
    """What one `log.exception` about an error quoting a bearer header and a token looks like in a sink."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_logs.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise RuntimeError(f"upstream said: Authorization: Bearer xyzxyzxyz0123456789 (token {JWT})")
        except RuntimeError:
            logger.exception("handler failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


@pytest.mark.parametrize("formatter", [logging.Formatter("%(levelname)s %(message)s"), json_formatter("x")],
                         ids=["text", "json"])
def test_tracebacks_are_redacted(formatter: logging.Formatter) -> None:
    out = _log_failure(formatter)
    assert "xyzxyzxyz0123456789" not in out and JWT not in out
    assert "RuntimeError: upstream said: Authorization: [REDACTED] (token [REDACTED])" in out.replace("\\n", "\n")
    assert "Traceback (most recent call last)" in out  # still useful: the traceback is there, only redacted


@pytest.mark.parametrize(("text", "shown"), [
    ("http://alice:s3cr3t@proxy:3128", "http://alice:xxxxx@proxy:3128"),
    ("https://:s3cr3t@h/p?q=a@b", "https://:xxxxx@h/p?q=a@b"),  # Go's url.Redacted keeps the empty user too
    ("http://proxy:3128", "http://proxy:3128"),
    ("https://alice@h", "https://alice@h"),  # no password, nothing to hide
    ("via http://a:s3cr3t@p:1 to https://kube:6443: user@host",
     "via http://a:xxxxx@p:1 to https://kube:6443: user@host"),
])
def test_url_passwords(text: str, shown: str) -> None:
    assert redact_url(text) == shown
    assert redact(text) == shown  # and so in every log line
