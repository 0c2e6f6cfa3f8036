"""Agent options, with Clusternet's flag names and the checks that give a clear error up front."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from clusternet_api import compatflags, dnsnames, known
from clusternet_api.leaderelection import LeaderElectionConfig
from clusternet_api.redaction import redact_url

SYNC_MODES = ("Push", "Pull", "Dual")
CLUSTER_TYPES = ("StandardCluster", "EdgeCluster")
KNOWN_GATES = compatflags.CLUSTERNET_FEATURE_GATES
"""Only AppPusher and SocketConnection change what the agent does; the others are accepted so that
Clusternet's manifests and charts start it."""
_BOOTSTRAP_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
CLUSTER_NAME_MAX_LENGTH = 30  # spec.clusterName of ClusterRegistrationRequest (crds/): maxLength 30
NAMESPACE_MAX_LENGTH = 63
RANDOM_SUFFIX_LENGTH = 5  # registration.default_cluster_name: <prefix>-<5 random characters>
_DNS_LABEL_RULE = "lowercase letters, digits and '-', starting and ending with a letter or digit"


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
    parent_ca_pem: bytes | None = None  # parentCA of the bootstrap Secret; --parent-ca-file wins over it
    parent_insecure_skip_tls_verify: bool = False
    cluster_id: str | None = None  # override, for simulated agents in benchmarks only
    apiserver_url: str | None = None  # what the child's apiserver is called in status (default: as reached)
    namespace: str = known.SYSTEM_NAMESPACE
    tunnel_url: str | None = None  # default: the parent URL (the hub behind the aggregation layer)
    tunnel_ca_file: str | None = None  # default: the parent CA
    tunnel_allowed: tuple[str, ...] = ()  # host:port targets besides this cluster's API server
    resync_frequency: float = 30.0  # re-apply pulled Descriptions (drift correction)
    deploys: bool = True  # False: registration and heartbeats only (lightweight simulated agents in benchmarks)
    leader_election: LeaderElectionConfig | None = None  # None: no election (the CLI's default is to elect)
    kube_api_qps: float = 0.0  # client-side limit towards the child and the parent; 0: none (CLI: 50)
    kube_api_burst: int = 0
    predictor_addr: str | None = None  # an external predictor (--predictor-addr); None: the built-in one
    predictor_direct_access: bool = False  # the hub asks predictor_addr directly, not through the tunnel

    def gate(self, name: str) -> bool:
        return self.feature_gates.get(name, False)

    def check_ca_files(self) -> None:
        """--parent-ca-file and --tunnel-ca-file can be read and hold PEM certificates. A path mistyped in a mount,
        or a DER file, crashed the agent at every start with a traceback naming neither flag (audit s35)."""
        for flag, path in (("--parent-ca-file", self.parent_ca_file), ("--tunnel-ca-file", self.tunnel_ca_file)):
            if not path:
                continue
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                raise OptionsError(f"{flag}={path}: cannot be read: {e.strerror or e}") from e
            try:
                ssl.create_default_context(cadata=data.decode("ascii"))
            except (UnicodeDecodeError, ssl.SSLError, ValueError) as e:
                raise OptionsError(f"{flag}={path}: holds no PEM certificate (BEGIN CERTIFICATE) that TLS can use")\
                    from e

    def validate(self) -> None:
        """Raise OptionsError for anything that would only fail later, obscurely."""
        if not self.parent_url:
            raise OptionsError("--cluster-reg-parent-url is required (or parentURL in the "
                               f"{known.SYSTEM_NAMESPACE}/{known.AGENT_BOOTSTRAP_SECRET} Secret)")
        url = urlparse(self.parent_url)
        if url.scheme != "https" or not url.hostname:
            raise OptionsError(f"--cluster-reg-parent-url must be an https:// URL, got "
                               f"{redact_url(self.parent_url)!r}: credentials are never sent over plain HTTP")
        if self.reg_token is not None and not (_BOOTSTRAP_TOKEN.match(self.reg_token)
                                               or _JWT.match(self.reg_token)):
            raise OptionsError("--cluster-reg-token is neither a bootstrap token (abcdef.0123456789abcdef) "
                               "nor a ServiceAccount token (JWT)")
        if self.tunnel_url is not None:
            tunnel = urlparse(self.tunnel_url)
            if tunnel.scheme not in ("https", "wss") or not tunnel.hostname:
                raise OptionsError(f"--tunnel-url must be an https:// (or wss://) URL, got "
                                   f"{redact_url(self.tunnel_url)!r}: the agent sends its parent token there, and "
                                   "credentials are never sent over plain HTTP")
        self.validate_flags()

    def check_parent_ca(self) -> None:
        """Registration verifies the parent's certificate, so it needs a CA: the one given (--parent-ca-file, parentCA
        of the bootstrap Secret), or for a bootstrap token the one the parent publishes and signs with it
        (kube-public/cluster-info, discovery.py). A ServiceAccount token has no such way: stop, saying so."""
        if self.parent_ca_file or self.parent_ca_pem is not None or self.parent_insecure_skip_tls_verify:
            return
        if self.reg_token is None or _BOOTSTRAP_TOKEN.match(self.reg_token):
            return  # no token: only stored credentials (with their CA) can be used; bootstrap: discovered
        raise OptionsError(
            "the parent's CA is unknown and a ServiceAccount token cannot discover it: give --parent-ca-file or "
            f"parentCA in the {self.namespace}/{known.AGENT_BOOTSTRAP_SECRET} Secret, or register with a "
            "bootstrap token")

    def validate_flags(self) -> None:
        """The checks that need nothing from the bootstrap Secret, so they can run before the agent starts."""
        if self.sync_mode not in SYNC_MODES:
            raise OptionsError(f"--cluster-sync-mode must be one of {', '.join(SYNC_MODES)}")
        if self.sync_mode == "Push" and not self.gate(known.GATE_APP_PUSHER):
            raise OptionsError("--cluster-sync-mode=Push needs --feature-gates=AppPusher=true: without it "
                               "the hub may not push to this cluster and nothing would be deployed")
        if self.cluster_type not in CLUSTER_TYPES:
            raise OptionsError(f"--cluster-reg-type must be one of {', '.join(CLUSTER_TYPES)}")
        if self.predictor_addr:
            predictor = urlparse(self.predictor_addr)
            if predictor.scheme not in ("http", "https") or not predictor.hostname:
                raise OptionsError(f"--predictor-addr must be an http:// or https:// URL, got {self.predictor_addr!r}")
            if predictor.scheme == "https" and not self.predictor_direct_access:
                raise OptionsError("--predictor-addr: the hub reaches an https:// predictor only directly; add "
                                   "--predictor-direct-access=true, or give an http:// address for the tunnel")
        if self.cluster_name:
            check_cluster_name(self.cluster_name)
        else:  # the prefix only matters when no name is given
            check_cluster_name_prefix(self.cluster_name_prefix)
        if self.cluster_namespace:
            check_cluster_namespace(self.cluster_namespace)
        for key, value in self.cluster_labels.items():
            check_label(key, value)
        if self.collect_frequency <= 0 or self.update_frequency <= 0:
            raise OptionsError("status frequencies must be positive")


def parse_labels(text: str) -> dict[str, str]:
    """`k=v,k2=v2` as Clusternet's --cluster-labels, with label syntax checked."""
    labels: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise OptionsError(f"--cluster-labels: {item!r} is not a key=value label")
        check_label(key.strip(), value.strip())
        labels[key.strip()] = value.strip()
    return labels


def _check_dns_label(flag: str, value: str, longest: int, what: str, why_longest: str = "",
                     show_regex: bool = False) -> None:
    """A DNS-1123 label of at most `longest` characters; the messages name the flag, the value and the rule."""
    if len(value) > longest:
        raise OptionsError(f"{flag} {value!r} is {len(value)} characters long; at most {longest} are "
                           f"allowed{why_longest}")
    if not dnsnames.is_dns_label(value, longest):
        regex = f" (regex ^{dnsnames.DNS_LABEL.pattern}$)" if show_regex else ""
        raise OptionsError(f"{flag} {value!r} is not a valid {what}: it may contain only {_DNS_LABEL_RULE}{regex}")


def check_cluster_name(name: str, flag: str = "--cluster-reg-name") -> None:
    """Clusternet's rule for a cluster (ManagedCluster) name: a DNS-1123 label of at most 30 characters."""
    _check_dns_label(flag, name, CLUSTER_NAME_MAX_LENGTH, "cluster name", show_regex=True)


def check_cluster_name_prefix(prefix: str) -> None:
    """The prefix must leave a valid name once `-<5 random characters>` is appended."""
    _check_dns_label("--cluster-reg-name-prefix", prefix, CLUSTER_NAME_MAX_LENGTH - RANDOM_SUFFIX_LENGTH - 1,
                     "cluster name prefix", f", as '-' and {RANDOM_SUFFIX_LENGTH} random characters are appended "
                     f"to make a name of at most {CLUSTER_NAME_MAX_LENGTH}")


def check_cluster_namespace(namespace: str) -> None:
    """A DNS-1123 label the hub accepts as a dedicated namespace (it refuses system namespaces)."""
    _check_dns_label("--cluster-reg-namespace", namespace, NAMESPACE_MAX_LENGTH, "namespace name")
    if namespace.startswith("kube-") or namespace in ("default", known.SYSTEM_NAMESPACE, known.RESERVED_NAMESPACE):
        raise OptionsError(f"--cluster-reg-namespace {namespace!r} is reserved on the parent and cannot be a "
                           "cluster's dedicated namespace; choose another name or leave it unset")


def check_label(key: str, value: str) -> None:
    """Kubernetes label syntax: key `[prefix/]name` (prefix a DNS-1123 subdomain of at most 253 characters,
    name at most 63 of alphanumerics, '-', '_', '.'), value empty or a name."""
    prefix, slash, name = key.rpartition("/")
    where = f"--cluster-labels: {key}={value}:"
    if slash and not dnsnames.is_dns_subdomain(prefix):
        raise OptionsError(f"{where} the key prefix {prefix!r} must be a DNS subdomain of at most 253 "
                           "characters (lowercase letters, digits, '-' and '.'), e.g. example.com/")
    if not dnsnames.is_label_name(name):
        raise OptionsError(f"{where} the key name {name!r} must be 1 to 63 characters: letters, digits, "
                           "'-', '_' and '.', starting and ending with a letter or digit")
    if value and not dnsnames.is_label_name(value):
        raise OptionsError(f"{where} the value {value!r} must be empty or at most 63 characters: letters, "
                           "digits, '-', '_' and '.', starting and ending with a letter or digit")


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`AppPusher=true,SocketConnection=false` (clusternet_api.compatflags knows every Clusternet gate)."""
    try:
        return compatflags.parse_feature_gates(text)
    except ValueError as e:
        raise OptionsError(str(e)) from e
