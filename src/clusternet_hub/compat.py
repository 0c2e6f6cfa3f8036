"""Flags Clusternet's hub, controller-manager and scheduler take (our hub does the work of all three), so
that their manifests and charts start `clusternet-hub` unchanged. None of these changes what the hub does; each
says why in one log line at start (clusternet_api.compatflags). --leader-elect* and --kube-api-* are real
options (clusternet_api.componentflags), and so are
--peer-port, --peer-token and --peer-advertise-address (clusternet_hub.peers) and --threadiness (the deployment
controller's workers).
"""

from __future__ import annotations

import logging

from clusternet_api import compatflags
from clusternet_api.compatflags import InertFlag

log = logging.getLogger(__name__)

INERT_FLAGS = (
    InertFlag("reserved-namespace", "templates always live in clusternet-reserved, as Clusternet's default"),
    # Go bool flags (`--flag` alone or `--flag=true|false`): with a value required, a bare one took the next flag
    # as its value, and `--enable-tunnel-logging --cluster-approval=Manual` auto-approved every cluster (audit s36)
    InertFlag("enable-tunnel-logging", "tunnel events are always logged; use --log-level=DEBUG for more",
              takes_value=False),
    InertFlag("anonymous-auth-supported", "the hub never uses an identity of its own towards a child: the "
              "caller's child token travels with each proxied request", takes_value=False),
    InertFlag("controllers", "every controller of Clusternet's controller-manager runs in the hub"),
    InertFlag("cluster-api-kubeconfig", "Cluster API discovery is not implemented"),
    *compatflags.KLOG_INERT_FLAGS,
)
ACTIVE_GATES = frozenset({"SocketConnection", "Deployer", "FeedInventory", "ShadowAPI"})
"""Gates whose work the hub always does (tunnels, deploying, FeedInventory for Dividing Subscriptions, the
shadow API)."""
ACTED_ON_GATES = frozenset({"FailOver"})
"""Gates the hub acts on either way (FailOver: Dividing replicas of silent clusters, clusternet_core/failover.py)."""


def report_gates(text: str) -> dict[str, bool]:
    """Parse --feature-gates (ValueError on an unknown gate) and say which change nothing here."""
    gates = compatflags.parse_feature_gates(text)
    for name, on in sorted(gates.items()):
        if name in ACTIVE_GATES and not on:
            log.info("--feature-gates %s=false has no effect: the hub always does that work", name)
        elif name not in ACTIVE_GATES | ACTED_ON_GATES:
            log.info("--feature-gates %s=%s is accepted for compatibility with Clusternet and has no effect "
                     "on the hub", name, str(on).lower())
    return gates
