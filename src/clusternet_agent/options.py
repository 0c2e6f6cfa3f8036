"""Agent options, with Clusternet's flag names and the checks that give a clear error up front."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlparse

from clusternet_api import known

SYNC_MODES = ("Push", "Pull", "Dual")
CLUSTER_TYPES = ("StandardCluster", "EdgeCluster")
KNOWN_GATES = (known.GATE_APP_PUSHER, known.GATE_SOCKET_CONNECTION, "Recovery", "Predictor",
               "MultiClusterService")
_BOOTSTRAP_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class OptionsError(ValueError):
    """A flag value the agent cannot work with; the message names the flag."""


@dataclass
class AgentOptions:
    kubeconfig: str | None = None
    parent_url: str | None = None
    reg_token: str | None = None
    cluster_name: str | None = None
    cluster_name_prefix: str = known.DEFAULT_CLUSTER_NAME_PREFIX
    cluster_namespace: str | None = None
    cluster_type: str = "StandardCluster"
    sync_mode: str = "Pull"
    cluster_labels: dict[str, str] = field(default_factory=dict)
    collect_frequency: float = 20.0
    update_frequency: float = 180.0
    feature_gates: dict[str, bool] = field(default_factory=dict)
    parent_ca_file: str | None = None
    parent_insecure_skip_tls_verify: bool = False
    cluster_id: str | None = None  # override, for simulated agents in benchmarks only
    apiserver_url: str | None = None  # what the child's apiserver is called in status (default: as reached)
    namespace: str = known.SYSTEM_NAMESPACE
    tunnel_url: str | None = None  # default: the parent URL (the hub behind the aggregation layer)
    tunnel_ca_file: str | None = None  # default: the parent CA
    tunnel_allowed: tuple[str, ...] = ()  # host:port targets besides this cluster's API server
    resync_frequency: float = 30.0  # re-apply pulled Descriptions (drift correction)

    def gate(self, name: str) -> bool:
        return self.feature_gates.get(name, False)

    def validate(self) -> None:
        """Raise OptionsError for anything that would only fail later, obscurely."""
        if not self.parent_url:
            raise OptionsError("--cluster-reg-parent-url is required (or parentURL in the "
                               f"{known.SYSTEM_NAMESPACE}/{known.AGENT_BOOTSTRAP_SECRET} Secret)")
        url = urlparse(self.parent_url)
        if url.scheme != "https" or not url.hostname:
            raise OptionsError(f"--cluster-reg-parent-url must be an https:// URL, got {self.parent_url!r}: "
                               "credentials are never sent over plain HTTP")
        if self.reg_token is not None and not (_BOOTSTRAP_TOKEN.match(self.reg_token)
                                               or _JWT.match(self.reg_token)):
            raise OptionsError("--cluster-reg-token is neither a bootstrap token (abcdef.0123456789abcdef) "
                               "nor a ServiceAccount token (JWT)")
        if self.sync_mode not in SYNC_MODES:
            raise OptionsError(f"--cluster-sync-mode must be one of {', '.join(SYNC_MODES)}")
        if self.sync_mode == "Push" and not self.gate(known.GATE_APP_PUSHER):
            raise OptionsError("--cluster-sync-mode=Push needs --feature-gates=AppPusher=true: without it "
                               "the hub may not push to this cluster and nothing would be deployed")
        if self.cluster_type not in CLUSTER_TYPES:
            raise OptionsError(f"--cluster-reg-type must be one of {', '.join(CLUSTER_TYPES)}")
        if self.cluster_name and len(self.cluster_name) > 30:
            raise OptionsError("--cluster-reg-name must be at most 30 characters")
        if self.collect_frequency <= 0 or self.update_frequency <= 0:
            raise OptionsError("status frequencies must be positive")


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` as Clusternet's --cluster-labels, with label syntax checked."""
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY.match(key) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise OptionsError(f"--cluster-labels: {item!r} is not a valid key=value label")
        labels[key] = value
    return labels


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`AppPusher=true,SocketConnection=false`."""
    gates: dict[str, bool] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise OptionsError(f"--feature-gates: {item!r} must be Name=true or Name=false")
        if name not in KNOWN_GATES:
            raise OptionsError(f"--feature-gates: unknown gate {name!r} (known: {', '.join(KNOWN_GATES)})")
        gates[name] = value.lower() == "true"
    return gates
