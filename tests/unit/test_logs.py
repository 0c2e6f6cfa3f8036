"""JSON logs: kopf's per-object log records serialise (the Deployments run with --log-format=json); tokens are
redacted from messages and tracebacks alike."""

from __future__ import annotations

import io
import json
import logging
import queue
from dataclasses import dataclass, field

import pytest

from clusternet_api.logs import KopfRetryFilter, RedactingFilter, Repeats, json_formatter
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


SEALED = "eyJzY2hlbWUiOiJyc2Etb2FlcC1mZXJuZXQiLCJrZXkiOiJBQUFBIn0="  # base64 JSON, no dots: no JWT


def _kopf_debug_line(body: object) -> str:
    """kopf's DEBUG line about an object (`-v=5`), through the filter and a text sink."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test_logs.kopf")
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.DEBUG
    try:
        logger.debug("Resuming is in progress: %r", body)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_kopf_debug_line_with_a_registration_request_carries_no_token() -> None:
    crr = {"apiVersion": "clusters.clusternet.io/v1beta1", "kind": "ClusterRegistrationRequest",
           "metadata": {"name": "clusternet-abc", "annotations": {"clusters.clusternet.io/token-issued-at": "t"}},
           "status": {"result": "Approved", "token": SEALED, "caCertificate": "Q0E=", "dedicatedNamespace": "ns"}}
    out = _kopf_debug_line(crr)
    assert SEALED not in out
    assert "'token': '[REDACTED]'" in out and "'dedicatedNamespace': 'ns'" in out and "token-issued-at" in out
    plain = _kopf_debug_line({**crr, "status": {"token": "c2hvcnQtbGl2ZWQtYmVhcmVyLXRva2Vu"}})  # unsealed
    assert "c2hvcnQtbGl2ZWQtYmVhcmVyLXRva2Vu" not in plain


@pytest.mark.parametrize("text", [
    '{"status": {"token": "c2VhbGVk\\"quoted", "result": "Approved"}}',
    "{'users': [{'user': {'client-key-data': 'LS0tLS1CRUdJTg==', 'client-certificate-data': 'Q0VSVA=='}}]}",
    "{'auth': {'password': \"it's S3cret\", 'username': 'teamb'}}",
    '{"spec": {"bearerToken": "abcdefgh"}, "app.password": "S3cret"}',
    "{'data': {'x.password': b'S3cret'}}",
])
def test_token_and_password_fields_are_redacted_in_dict_reprs_and_json(text: str) -> None:
    cleaned = redact(text)
    for secret in ("c2VhbGVk", "quoted", "LS0tLS1CRUdJTg", "S3cret", "abcdefgh"):
        assert secret not in cleaned
    assert "[REDACTED]" in cleaned
    assert ("teamb" in cleaned) == ("teamb" in text) and ("Q0VSVA==" in cleaned) == ("Q0VSVA==" in text)


def test_every_value_of_a_secrets_data_is_redacted_and_other_objects_data_is_not() -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "teamb-repo"},
              "data": {"username": "dGVhbWI=", "ca.crt": "Q0E=", "config": "c2VjcmV0"}, "type": "Opaque",
              "stringData": {"conf.json": '{"user": "x", "pw": "pl41n"}'}}
    for text in (repr(secret), json.dumps(secret)):
        cleaned = redact(text)
        assert not any(v in cleaned for v in ("dGVhbWI=", "Q0E=", "c2VjcmV0", "pl41n")), cleaned
        assert "teamb-repo" in cleaned and "username" in cleaned
    config_map = {"kind": "ConfigMap", "data": {"k": "v1"}}
    assert redact(repr(config_map)) == repr(config_map)


def test_kopfs_retried_requests_are_warnings_and_its_last_attempt_an_error() -> None:
    """Audit 7: 66 ERROR lines per 10 s of a parent restart both operators ride out by themselves."""
    def level(msg: str, name: str = "kopf._cogs.clients.api") -> str:
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)
        KopfRetryFilter().filter(record)
        return record.levelname

    assert level("Request attempt #2/9 failed; will retry: GET /apis -> ClientConnectorError()") == "WARNING"
    assert level("Request attempt #9/9 failed; escalating: GET /apis -> ClientConnectorError()") == "ERROR"
    assert level("Request attempt #2/9 failed; will retry: ...", name="clusternet_hub.operator") == "ERROR"


def test_a_failure_that_lasts_is_warned_about_once_then_every_ten_minutes() -> None:
    """A cleanup the hub cannot judge is re-judged at each resync for as long as it waits: one warning while the
    same failure lasts (again every REWARN_SECONDS), a changed one or one after success warned at once."""
    now = [0.0]
    said = Repeats(every=600.0, kept=2, clock=lambda: now[0])
    assert said.level("a", "HTTP 500") == logging.WARNING
    now[0] = 30.0
    assert said.level("a", "HTTP 500") == logging.DEBUG
    assert said.level("a", "HTTP 422") == logging.WARNING  # changed
    assert said.level("b", "HTTP 500", logging.INFO) == logging.INFO  # another key; its own level
    now[0] = 629.0
    assert said.level("a", "HTTP 422") == logging.DEBUG
    now[0] = 630.0
    assert said.level("a", "HTTP 422") == logging.WARNING  # ten minutes on: said again
    said.forget("a")
    assert said.level("a", "HTTP 422") == logging.WARNING  # it had stopped: a new failure
    assert said.level("c", "x") == logging.WARNING  # a third key: the oldest ("b") goes
    assert said.level("b", "HTTP 500") == logging.WARNING
