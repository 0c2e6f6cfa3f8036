"""JSON logs: kopf's per-object log records serialise (the Deployments run with --log-format=json)."""

from __future__ import annotations

import json
import logging
import queue
from dataclasses import dataclass, field

from clusternet_api.logs import json_formatter


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
