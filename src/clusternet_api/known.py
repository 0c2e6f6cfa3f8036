"""Well-known names shared by hub, agent and users' YAML.

They match Clusternet's `pkg/known` so that objects written by either implementation are recognised by
the other; names that Clusternet does not have are marked "ours".
"""

from collections.abc import Mapping
from typing import Any, Final

# API groups and versions
CLUSTERS_GROUP: Final = "clusters.clusternet.io"
CLUSTERS_VERSION: Final = "v1beta1"
APPS_GROUP: Final = "apps.clusternet.io"
APPS_VERSION: Final = "v1alpha1"
CLUSTERS_API_VERSION: Final = f"{CLUSTERS_GROUP}/{CLUSTERS_VERSION}"
APPS_API_VERSION: Final = f"{APPS_GROUP}/{APPS_VERSION}"
PROXIES_GROUP: Final = "proxies.clusternet.io"
PROXIES_VERSION: Final = "v1alpha1"
CATEGORY: Final = "clusternet"
SHADOW_GROUP: Final = "shadow"  # the hub's shadow API: templates of every kind, stored as Manifests
SHADOW_VERSION: Final = "v1alpha1"
TEMPLATE_FIELD_MANAGER: Final = "kubectl-clusternet"  # who writes Manifests: the plugin and the shadow API alike

# Namespaces
SYSTEM_NAMESPACE: Final = "clusternet-system"
RESERVED_NAMESPACE: Final = "clusternet-reserved"

# Cluster identity labels
LABEL_CLUSTER_ID: Final = "clusters.clusternet.io/cluster-id"
LABEL_CLUSTER_NAME: Final = "clusters.clusternet.io/cluster-name"
LABEL_REGISTERED_BY: Final = "clusters.clusternet.io/registered-by"
LABEL_BOOTSTRAPPING: Final = "clusters.clusternet.io/bootstrapping"
LABEL_CREATED_BY: Final = "clusternet.io/created-by"
CREDENTIALS_AUTO: Final = "credentials-auto"
RBAC_DEFAULTS: Final = "rbac-defaults"
CREATED_BY_AGENT: Final = "clusternet-agent"
CREATED_BY_HUB: Final = "clusternet-hub"

# Feed-source labels
LABEL_CONFIG_GROUP: Final = "apps.clusternet.io/config.group"
LABEL_CONFIG_VERSION: Final = "apps.clusternet.io/config.version"
LABEL_CONFIG_KIND: Final = "apps.clusternet.io/config.kind"
LABEL_CONFIG_NAME: Final = "apps.clusternet.io/config.name"
LABEL_CONFIG_NAMESPACE: Final = "apps.clusternet.io/config.namespace"
LABEL_CONFIG_UID: Final = "apps.clusternet.io/config.uid"
LABEL_SUBS_UID: Final = "apps.clusternet.io/subs.uid"
LABEL_SUBS_NAME: Final = "apps.clusternet.io/subs.name"
LABEL_SUBS_NAMESPACE: Final = "apps.clusternet.io/subs.namespace"

# Annotations
ANNOTATION_AUTO_UPDATE: Final = "clusternet.io/autoupdate"
ANNOTATION_FEED_PROTECTION: Final = "apps.clusternet.io/feed-protection"
ANNOTATION_SKIP_VALIDATING: Final = "apps.clusternet.io/skip-validating"
ANNOTATION_OWNED_BY_DESCRIPTION: Final = "apps.clusternet.io/owned-by-description"
ANNOTATION_LAST_APPLIED: Final = "clusternet.io/last-applied-configuration"
# ours: the agent's public key on a ClusterRegistrationRequest, so the hub can seal the token to it
ANNOTATION_AGENT_PUBLIC_KEY: Final = "clusters.clusternet.io/agent-public-key"
# ours: how CRR status.token is sealed ("x25519-hkdf-fernet", or "rsa-oaep-fernet" for an older agent's RSA key;
# clusternet_api.sealing); absent means plaintext as in Clusternet
ANNOTATION_TOKEN_SEALING: Final = "clusters.clusternet.io/token-sealing"
# ours: when the hub last issued the sealed token (RFC 3339)
ANNOTATION_TOKEN_ISSUED_AT: Final = "clusters.clusternet.io/token-issued-at"
# ours: "false" on a Subscription (copied to its Descriptions) leaves deployed objects as people changed them
ANNOTATION_DRIFT_CORRECTION: Final = "apps.clusternet.io/drift-correction"
# Manual approval (hub --cluster-approval=Manual): an admin's verdict on a ClusterRegistrationRequest.
ANNOTATION_APPROVAL: Final = "clusters.clusternet.io/approval"  # Approved | Denied
ANNOTATION_DENIAL_REASON: Final = "clusters.clusternet.io/denial-reason"
# ours: the uid of the request an Approved verdict is for. The registration token may create a request with any
# annotation, the verdict included; only someone who read the created request knows the uid the server gave it.
ANNOTATION_APPROVED_UID: Final = "clusters.clusternet.io/approved-uid"
# Why a hub without --allow-unsealed-tokens denies a request without ANNOTATION_AGENT_PUBLIC_KEY (Clusternet's
# agent). The one denial the hub looks at again (a hub with the flag, or the agent sending a key now), so the one
# on which `kubectl clusternet approve|deny` still records a verdict.
DENIED_FOR_NO_KEY: Final = (
    f"the request carries no {ANNOTATION_AGENT_PUBLIC_KEY} annotation, so its token could only be returned in plain "
    "text, readable by every bootstrap-token holder; use a clusternet-py agent or start the hub with "
    "--allow-unsealed-tokens")
# What hubs before 2026-12-07 wrote when they denied a request for its X25519 key, which they could not seal to:
# a denial for the hub's age, not the cluster's key, so looked at again as DENIED_FOR_NO_KEY is (a key such a hub
# refused for good, RSA-1024 say, is refused again by the hub that looks).
DENIED_FOR_OLD_KEY_RULE: Final = "the agent public key must be an RSA key of at least 2048 bits"
# The denials the hub looks at again, because they were for its settings or its age, not a verdict on the cluster.
REOPENABLE_DENIALS: Final = frozenset({DENIED_FOR_NO_KEY, DENIED_FOR_OLD_KEY_RULE})


def denied_for_the_hub(crr: Mapping[str, Any]) -> bool:
    """Whether a registration request was Denied only for a reason of the hub's (REOPENABLE_DENIALS): it carries no
    key and the hub then lacked --allow-unsealed-tokens (Clusternet's agent), or a hub older than 2026-12-07 could
    not seal to its X25519 key. Neither was a verdict on the cluster: a hub that no longer refuses the request (the
    flag back, the agent sending a key now, the hub upgraded) looks at it again at its start, and `kubectl
    clusternet approve|deny` still records a verdict on it. Before, it stayed Denied, the cluster offline once its
    last token expired (or never registered, its agent upgraded before the hub), until someone deleted the
    request. Here, not in the hub, because the plugin asks it too."""
    status = crr.get("status") or {}
    return status.get("result") == "Denied" and status.get("errorMessage") in REOPENABLE_DENIALS
# ours: on a ManagedCluster, the labels the hub applied from the registration request (JSON object), so a
# later request removes only those and never an administrator's
ANNOTATION_LABELS_FROM_REQUEST: Final = "clusters.clusternet.io/labels-from-request"
# ours: on a ClusterRegistrationRequest, the hub's verdict on its spec.clusterLabels (JSON: observedGeneration,
# refused[], message), for the agent to read and log
ANNOTATION_LABELS_VERDICT: Final = "clusters.clusternet.io/cluster-labels-verdict"

# ours: on a deleting Description or HelmRelease of a cluster whose agent deploys (Pull), the hub's verdict that
# its Subscription (the uid, the value) no longer wants it: the agent cleans up at once, without waiting for the
# Base to come back (clusternet_agent.stillwanted)
ANNOTATION_NO_LONGER_WANTED: Final = "apps.clusternet.io/no-longer-wanted"
# ours: "true" on a ManagedCluster when its hub writes ANNOTATION_NO_LONGER_WANTED on every unbinding, so its Pull
# agent never takes a missing Base without that mark for an unbinding (clusternet_agent.stillwanted)
ANNOTATION_HUB_MARKS_UNBINDINGS: Final = "clusters.clusternet.io/hub-marks-unbindings"

# Finalizers
FINALIZER_APPS: Final = "apps.clusternet.io/finalizer"
FINALIZER_FEED_PROTECTION: Final = "apps.clusternet.io/feed-protection"

# Taints
TAINT_UNSCHEDULABLE: Final = "clusters.clusternet.io/unschedulable"
TAINT_INITIALIZATION: Final = "clusters.clusternet.io/initialization"

# Agent-side objects in the child cluster
AGENT_BOOTSTRAP_SECRET: Final = "clusternet-agent-cluster-registration"
PARENT_CREDENTIALS_SECRET: Final = "parent-cluster"
AGENT_KEY_SECRET: Final = "clusternet-agent-key"  # ours: the agent's private key for sealed tokens

# Push credentials: the agent copies its child's app-deployer ServiceAccount credentials into this Secret
# of its cluster namespace on the parent; the hub reads them to push (and may read nothing else of Secrets)
DEPLOYER_SECRET: Final = "child-cluster-deployer"
# Chart repository credentials for a Pull-mode cluster (ours): the hub copies the chartPullSecret of each
# HelmRelease's HelmChart into this one Secret of the cluster namespace (keys `<HelmRelease>.username` /
# `.password`), the only Secret besides DEPLOYER_SECRET the agent may read there
CHART_PULL_SECRET: Final = "clusternet-chart-pull-secrets"
AGENT_READABLE_SECRETS: Final = (DEPLOYER_SECRET, CHART_PULL_SECRET)
# A Secret of this type naming a ServiceAccount gets a never-expiring token from the token controller: none of
# AGENT_READABLE_SECRETS may be one (the hub deletes it: registration.drop_token_secrets)
SERVICE_ACCOUNT_TOKEN_TYPE: Final = "kubernetes.io/service-account-token"

# RBAC for bootstrapping on the parent
BOOTSTRAP_GROUP: Final = "system:bootstrappers:clusternet:register-cluster-token"
BOOTSTRAP_CLUSTER_ROLE: Final = "clusternet:system:bootstrapping"

# Condition types / reasons on ManagedCluster
CONDITION_READY: Final = "Ready"
CONDITION_SOCKET: Final = "SocketConnected"  # ours: tunnel health
# its message when True, the hub's and the agent's alike: either finds the other's mark shown and writes nothing
SOCKET_CONNECTED_MESSAGE: Final = "agent tunnel connected"
REASON_READY: Final = "ManagedClusterReady"
REASON_NOT_READY: Final = "ManagedClusterNotReady"
REASON_NEVER_UPDATED: Final = "ClusterStatusNeverUpdated"
REASON_STATUS_UNKNOWN: Final = "ClusterStatusUnknown"

# Condition type on HelmRelease (ours): does the child run this generation's spec?
CONDITION_RELEASED: Final = "Released"

# Feature gates
GATE_APP_PUSHER: Final = "AppPusher"
GATE_SOCKET_CONNECTION: Final = "SocketConnection"
GATE_PREDICTOR: Final = "Predictor"

# Defaults
DEFAULT_CLUSTER_NAME_PREFIX: Final = "clusternet-cluster"
DEFAULT_PRIORITY: Final = 500
CLUSTER_ID_PATTERN: Final = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"

# Tunnel: the stream address an agent maps to its own cluster's API server (ours)
TUNNEL_APISERVER_ADDRESS: Final = "apiserver.clusternet.local:443"
# ... and the one it answers in-process with its built-in predictor (clusternet_agent/predictor.py)
TUNNEL_PREDICTOR_ADDRESS: Final = "predictor.clusternet.local:80"
SOCKETS_PATH: Final = f"/apis/{PROXIES_GROUP}/{PROXIES_VERSION}/sockets"
