"""Approving ClusterRegistrationRequests: what each child gets on the parent.

Pure functions compute the desired objects (deterministic names, so a hub killed mid-approval converges
on restart without duplicates); `approve()` applies them idempotently.

Least privilege, compared with Clusternet: the child's ServiceAccount may read only its own CRR, its own
socket, and objects in its own dedicated namespace (no cluster-wide `secrets get`, no `*` in the
namespace), and may refresh only its own token. Of its ManagedCluster it may write only the status: its
labels decide which Subscriptions bind it, so a label change goes through its own CRR's
`spec.clusterLabels` and the hub's policy (clusterlabels.py). Having to let the child patch its CRR, the hub
trusts nothing of an approved request but its name and the status it wrote itself (`pinned`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from clusternet_api import dnsnames, known, prunedfields
from clusternet_api.kube import ApiException, Kube, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.preconditions import Deleted, delete_as_read
from clusternet_api.sealing import SealingError, seal, sealed_with
from clusternet_api.timefmt import now_rfc3339
from clusternet_hub import tokens
from clusternet_hub.clusterlabels import initial_from_request

log = logging.getLogger(__name__)

AGENT_SERVICE_ACCOUNT = "clusternet-agent"
NAMESPACE_ROLE = "clusternet-managedcluster-role"
_UUID = re.compile(known.CLUSTER_ID_PATTERN)


@dataclass(frozen=True)
class ApprovalSettings:
    token_ttl_seconds: int = 24 * 3600
    allow_unsealed_tokens: bool = False
    parent_ca_pem: bytes | None = None


def crr_name(cluster_id: str) -> str:
    return f"clusternet-{cluster_id}"


def validate(crr: Obj, allow_unsealed: bool) -> str | None:
    """A message a person understands when the request must be denied, else None."""
    spec = crr.get("spec") or {}
    name = crr["metadata"]["name"]
    cluster_id = spec.get("clusterId", "")
    if not _UUID.match(cluster_id):
        return f"spec.clusterId {cluster_id!r} is not a UUID"
    if name != crr_name(cluster_id):
        return (f"the request name {name!r} does not match its clusterId: expected "
                f"{crr_name(cluster_id)!r}")
    if not (dnsnames.is_dns_subdomain(named := cluster_name(crr)) and dnsnames.is_label_name(named)):
        # what the ManagedCluster's name and its cluster-name label take: the create's 422 was retried every 2 s
        # for good, with no word (audit s36); the rule is looser than Clusternet's agent's (a DNS label), so that
        # a cluster approved before is never refused now
        return (f"cluster name {named!r} (spec.clusterName, else its {known.LABEL_CLUSTER_NAME} label) cannot name "
                "a ManagedCluster: lowercase letters, digits, '-' and '.', starting and ending with a letter or "
                "digit, at most 63 characters")
    ns = spec.get("clusterNamespace")
    if ns and not dnsnames.is_dns_label(ns):
        return f"spec.clusterNamespace {ns!r} is not a valid namespace name"
    if (ns and ns.startswith("kube-")) or ns in {"default", known.SYSTEM_NAMESPACE, known.RESERVED_NAMESPACE}:
        return f"spec.clusterNamespace {ns!r} is reserved and cannot be a cluster's dedicated namespace"
    return tokens.key_problem(crr, allow_unsealed)


def admin_verdict(crr: Obj) -> tuple[str | None, str | None]:
    """Manual approval: ("Approved", None), ("Denied", message), or (None, why an approval was ignored, or None)
    while nobody decided.

    The verdict is an annotation an admin sets (`kubectl clusternet approve|deny`, or kubectl annotate), so it
    needs no write access to the request's status, which stays the hub's. An approval counts only with the request's
    uid beside it (known.ANNOTATION_APPROVED_UID): the registration token may create a request carrying any
    annotation, and a request created already "Approved" was approved by its requester (the sixth audit did so with
    the bootstrap token alone). The uid is the server's, given at creation, so only someone who read the created
    request can name it; the registration token cannot write the request after creating it. A denial needs no uid:
    a requester denying itself harms nobody."""
    annotations = crr["metadata"].get("annotations") or {}
    verdict = str(annotations.get(known.ANNOTATION_APPROVAL) or "").strip().lower()
    if verdict == "approved":
        uid = str(crr["metadata"].get("uid") or "")
        if uid and str(annotations.get(known.ANNOTATION_APPROVED_UID) or "").strip() == uid:
            return "Approved", None
        return None, (f"its {known.ANNOTATION_APPROVAL} annotation is ignored: it does not name this request's uid "
                      f"in {known.ANNOTATION_APPROVED_UID}, so its own requester may have written it at creation")
    if verdict == "denied":
        reason = str(annotations.get(known.ANNOTATION_DENIAL_REASON) or "").strip()
        return "Denied", "denied by a parent cluster administrator" + (f": {reason}" if reason else "")
    return None, None


def awaiting_message(crr: Obj) -> str:
    name = crr["metadata"]["name"]
    spec = crr.get("spec") or {}
    return (f"cluster {spec.get('clusterName') or '?'} ({spec.get('clusterId')}) asks to register and waits for an "
            f"administrator: kubectl clusternet approve {name} (or: kubectl clusternet deny {name} --reason ...)")


LONG_DIGITS = 12  # the derived name's form when its 5-digit form is taken by another cluster


def dedicated_namespace_name(crr: Obj, digits: int = 5) -> str:
    """The requested namespace, else a stable `clusternet-xxxxx` derived from the cluster ID."""
    spec = crr["spec"]
    if spec.get("clusterNamespace"):
        return str(spec["clusterNamespace"])
    digest = hashlib.sha256(spec["clusterId"].encode()).hexdigest()
    return f"clusternet-{digest[:digits]}"


def cluster_name(crr: Obj) -> str:
    spec = crr["spec"]
    labels = crr["metadata"].get("labels") or {}
    return str(spec.get("clusterName") or labels.get(known.LABEL_CLUSTER_NAME) or
               f"{known.DEFAULT_CLUSTER_NAME_PREFIX}-{spec['clusterId'][:5]}")


def identity_labels(cluster_id: str, name: str) -> dict[str, str]:
    return {known.LABEL_CREATED_BY: known.CREATED_BY_HUB, known.LABEL_CLUSTER_ID: cluster_id,
            known.LABEL_CLUSTER_NAME: name}


def namespace_manifest(ns: str, cluster_id: str, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": identity_labels(cluster_id, name)}}


def managed_cluster_manifest(crr: Obj, ns: str) -> Obj:
    """Labels from the request (as Clusternet), recorded as such so later requests may remove only those."""
    spec = crr["spec"]
    name = cluster_name(crr)
    from_request = initial_from_request(spec.get("clusterLabels"), crr["metadata"]["name"])
    labels = {**from_request, **identity_labels(spec["clusterId"], name)}
    return {
        "apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {
            known.ANNOTATION_LABELS_FROM_REQUEST: json.dumps(from_request, sort_keys=True),
            known.ANNOTATION_HUB_MARKS_UNBINDINGS: "true"}},  # controller.wanted.promise_marks
        "spec": {"clusterId": spec["clusterId"], "clusterType": spec.get("clusterType") or "StandardCluster",
                 "syncMode": spec.get("syncMode") or "Pull"},
    }


def service_account_manifest(ns: str, cluster_id: str, name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": AGENT_SERVICE_ACCOUNT, "namespace": ns,
                         "labels": identity_labels(cluster_id, name)}}


def cluster_role_name(cluster_id: str) -> str:
    """The ClusterRole and ClusterRoleBinding of one cluster's agent (removal.mark_removed deletes them)."""
    return f"clusternet-{cluster_id}"


def rbac_manifests(cluster_id: str, ns: str, name: str) -> list[Obj]:
    """ClusterRole/Binding for the child's own cluster-scoped objects, Role/Binding for its namespace.

    `patch` on its own CRR lets the agent ask for other labels (spec.clusterLabels); the ManagedCluster
    itself is read-only to it except for its status (heartbeats). `get` on its own Namespace
    (clusternet_api.namespaceguard; existing clusters get it at hub start, refresh_rbac) tells it a deletion
    comes from the cluster's removal, which keeps the child's workloads; Clusternet's agent never asks."""
    subject = [{"kind": "ServiceAccount", "name": AGENT_SERVICE_ACCOUNT, "namespace": ns}]
    labels = identity_labels(cluster_id, name)
    rbac = "rbac.authorization.k8s.io/v1"
    cluster_role = cluster_role_name(cluster_id)
    return [
        {"apiVersion": rbac, "kind": "ClusterRole", "metadata": {"name": cluster_role, "labels": labels},
         "rules": [
             {"apiGroups": [known.CLUSTERS_GROUP], "resources": ["clusterregistrationrequests"],
              "resourceNames": [crr_name(cluster_id)], "verbs": ["get", "patch"]},
             {"apiGroups": [known.PROXIES_GROUP], "resources": ["sockets", "sockets/proxy"],
              "resourceNames": [cluster_id], "verbs": ["get", "create", "update", "patch", "delete"]},
             # whether its namespace is being deleted, before it cleans up a deletion (namespaceguard): here, not
             # in the Role, which the namespace's deletion may take away first
             {"apiGroups": [""], "resources": ["namespaces"], "resourceNames": [ns], "verbs": ["get"]},
         ]},
        {"apiVersion": rbac, "kind": "ClusterRoleBinding", "metadata": {"name": cluster_role, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
         "subjects": subject},
        {"apiVersion": rbac, "kind": "Role",
         "metadata": {"name": NAMESPACE_ROLE, "namespace": ns, "labels": labels},
         "rules": [
             {"apiGroups": [known.CLUSTERS_GROUP], "resources": ["managedclusters"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": [known.CLUSTERS_GROUP], "resources": ["managedclusters/status"],
              "verbs": ["get", "patch", "update"]},
             {"apiGroups": [known.APPS_GROUP], "resources": ["descriptions", "helmreleases"],
              "verbs": ["get", "list", "watch", "patch", "update"]},
             {"apiGroups": [known.APPS_GROUP], "resources": ["bases"],  # read to tell an unbinding (stillwanted)
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": [known.APPS_GROUP],
              "resources": ["descriptions/status", "helmreleases/status"],
              "verbs": ["get", "patch", "update"]},
             {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch", "update"]},
             {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
             {"apiGroups": [""], "resources": ["serviceaccounts/token"],
              "resourceNames": [AGENT_SERVICE_ACCOUNT], "verbs": ["create"]},
             # push credentials the agent hands the hub (only with AppPusher); nothing else of Secrets
             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
             {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [known.DEPLOYER_SECRET],
              "verbs": ["get", "patch", "update", "delete"]},
             # chart repository credentials the hub copies for Pull mode (controller/helmpusher.py)
             {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [known.CHART_PULL_SECRET],
              "verbs": ["get"]},
         ]},
        {"apiVersion": rbac, "kind": "RoleBinding",
         "metadata": {"name": NAMESPACE_ROLE, "namespace": ns, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAMESPACE_ROLE},
         "subjects": subject},
    ]


def pinned(crr: Obj) -> Obj:
    """An approved request as the hub approved it, whatever its agent wrote into it since.

    The agent may patch its own CRR (to ask for labels), so after approval the hub takes the cluster ID from
    the immutable name and the namespace and cluster name from the status only the hub writes: a changed
    clusterId, clusterName or clusterNamespace moves nothing and denies nothing. clusterLabels are dropped:
    after registration they go through the label policy (clusterlabels.sync). syncMode and clusterType are
    read only if the ManagedCluster must be created again (an admin deleted it); an existing one keeps its
    spec. Clusternet skips approved requests altogether; we revisit them to refresh tokens."""
    status = crr.get("status") or {}
    if status.get("result") != "Approved":
        return crr
    name = crr["metadata"]["name"]
    spec = {k: v for k, v in (crr.get("spec") or {}).items() if k in ("clusterType", "syncMode")}
    spec["clusterId"] = name.removeprefix("clusternet-")
    if status.get("dedicatedNamespace"):
        spec["clusterNamespace"] = status["dedicatedNamespace"]
    if status.get("managedClusterName"):
        spec["clusterName"] = status["managedClusterName"]
    return {**crr, "spec": spec}


async def refresh_rbac(kube: Kube, crr: Obj) -> None:
    """Re-apply an approved child's RBAC as this hub version writes it, so a hub upgrade that narrows it takes
    effect at hub start, not only at the next token refresh; and drop token Secrets its agent could read
    (drop_token_secrets).

    Only when the RBAC this hub writes differs from what was last applied (status.rbacDigest): kopf resumes every
    approved request when a leader starts, and doing all of it each time cost ~10 requests per cluster at every
    leader change (1,070 at 100 clusters in bench/scale.py's restart, where they slowed the new leader's first
    rollout 3.4 times; 10,000 at 1,000). A Role edited by hand and a token Secret created since are then dealt
    with at the cluster's next token refresh (half the token lifetime), which does all of it again regardless.

    At most APPROVALS_AT_ONCE at a time, with the approvals: a thousand resumed clusters queued 6,000 requests in
    the client's limiter in front of every approval and tunnel authorisation (review 6)."""
    status = crr.get("status") or {}
    ns, mc_name = status.get("dedicatedNamespace"), status.get("managedClusterName")
    if status.get("result") != "Approved" or not ns or not mc_name:
        return
    cluster_id = crr["metadata"]["name"].removeprefix("clusternet-")
    manifests = rbac_manifests(cluster_id, ns, mc_name)
    digest = rbac_digest(manifests)
    if status.get("rbacDigest") == digest:
        return
    async with _approvals:
        await asyncio.gather(apply_rbac(kube, manifests), drop_token_secrets(kube, ns))
        await kube.patch(CRR_API, "ClusterRegistrationRequest", crr["metadata"]["name"],
                         {"status": {"rbacDigest": digest}}, subresource="status")


def rbac_digest(manifests: list[Obj]) -> str:
    """What status.rbacDigest records of the RBAC applied (16 hex digits of a SHA-256 of it)."""
    return hashlib.sha256(json.dumps(manifests, sort_keys=True).encode()).hexdigest()[:16]


async def drop_token_secrets(kube: KubeApi, ns: str) -> None:
    """Delete each Secret the agent may read (known.AGENT_READABLE_SECRETS) that is a ServiceAccount token Secret.

    The agent may create any Secret in its namespace (RBAC cannot restrict `create` by name): deleting its push
    credentials and creating them again as a `kubernetes.io/service-account-token` Secret for its own
    ServiceAccount, it would read a token the token controller never lets expire, outliving the short-lived
    tokens the hub issues. Deleting the Secret revokes that token (the API server's service-account lookup
    checks that the Secret still exists). Run at every token refresh (and at hub start when the RBAC it writes
    changed: refresh_rbac), so such a token lives at most about as long as the ones we issue; the
    ValidatingAdmissionPolicy in manifests/ refuses the Secret outright where the parent has that API. Clusternet
    does neither.

    Only the Secret that was read is deleted (drop_token_secret); one created again meanwhile is read and judged
    again, up to TOKEN_SECRET_LOOKS times, then left to the next token refresh."""
    async def drop(name: str) -> None:
        for _ in range(TOKEN_SECRET_LOOKS):
            secret = await kube.get("v1", "Secret", name, ns)
            if secret is None or await drop_token_secret(kube, secret) is not Deleted.CHANGED:
                return
        log.info("Secret %s/%s kept being created again while being dropped: left for the next look", ns, name)

    await asyncio.gather(*(drop(name) for name in known.AGENT_READABLE_SECRETS))


TOKEN_SECRET_LOOKS = 3


async def drop_token_secret(kube: KubeApi, secret: Obj) -> Deleted | None:
    """Delete `secret`, as read, if it is a ServiceAccount token Secret (see drop_token_secrets); None if it is not.

    The DELETE names its uid (review F8): a Secret of that name created since is not deleted unseen, it is
    Deleted.CHANGED, for the caller to read again. Not its resourceVersion: the type judged is immutable, and
    the token controller filling in the token just after creation would make every such DELETE a conflict."""
    if secret.get("type") != known.SERVICE_ACCOUNT_TOKEN_TYPE:
        return None
    meta = secret["metadata"]
    log.warning("deleting Secret %s/%s: a ServiceAccount token Secret its agent could read", meta.get("namespace"),
                meta["name"])
    return await delete_as_read(kube, "v1", "Secret", secret, unchanged=False, then="not deleted unseen")


BINDING_RETRIES = 20
BINDING_RETRY_SECONDS = 0.1


async def apply_rbac(kube: Kube, objects: list[Obj]) -> None:
    """Roles first, then their bindings. Without `bind` (02-rbac.yaml), the apiserver lets the hub bind a role only
    after checking it holds the role's rules, and answers 404 (role not found) while the role it just wrote has not
    reached its RBAC cache: a binding is retried for up to 2 s then. An admin identity skips that check."""
    roles = [o for o in objects if not o["kind"].endswith("Binding")]
    await asyncio.gather(*(kube.apply(o, field_manager=known.CREATED_BY_HUB) for o in roles))

    async def bind(obj: Obj) -> None:
        for attempt in range(BINDING_RETRIES):
            try:
                await kube.apply(obj, field_manager=known.CREATED_BY_HUB)
                return
            except ApiException as e:
                if e.status != 404 or attempt == BINDING_RETRIES - 1:
                    raise
            await asyncio.sleep(BINDING_RETRY_SECONDS)

    await asyncio.gather(*(bind(o) for o in objects if o["kind"].endswith("Binding")))


CRR_API = known.CLUSTERS_API_VERSION
# The status fields of ours a parent with older CRDs drops, and what is lost then (prunedfields)
STATUS_LOST = {
    "rbacDigest": "every agent's RBAC is applied again (about 10 requests a cluster) whenever a hub starts leading",
    "tokenIssuedAt": "an agent can put off its token refresh by rewriting the token-issued-at annotation",
    "sealedTo": "an agent's key is judged at each token refresh as it is now, not against the key its token was "
                "sealed to"}


async def deny(kube: Kube, crr: Obj, message: str) -> None:
    log.warning("denying registration %s: %s", crr["metadata"]["name"], message)
    await kube.patch(CRR_API, "ClusterRegistrationRequest", crr["metadata"]["name"],
                     {"status": {"result": "Denied", "errorMessage": message, "token": None, "tokenIssuedAt": None,
                                 "sealedTo": None, "caCertificate": None, "dedicatedNamespace": None}},
                     subresource="status")


async def issue_token(kube: Kube, ns: str, ttl_seconds: int) -> str:
    """A short-lived TokenRequest token for the child's ServiceAccount."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": ttl_seconds}}
    status, result = await kube.raw(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{AGENT_SERVICE_ACCOUNT}/token", body,
        content_type="application/json")
    if status != 201 or not isinstance(result, dict):
        raise RuntimeError(f"TokenRequest for {ns}/{AGENT_SERVICE_ACCOUNT} failed with HTTP {status}")
    return str(result["status"]["token"])


# Approvals in progress at once. The hub's requests share a client-side token bucket that serves them in arrival
# order: with a thousand approvals at once, each one's second round trip queued behind every other's first, and
# none finished before nearly all were done (the first of 1,000 after minutes, bench/scale.py). Taken a few at a
# time they finish one after the other at the same total rate, and tunnel authorisations are not stuck behind
# them. 20 at once is more than a burst of 20 registrations needs. The RBAC refreshes of a leader's start
# (refresh_rbac) take the same slots.
APPROVALS_AT_ONCE = 20
_approvals = asyncio.Semaphore(APPROVALS_AT_ONCE)


async def approve(kube: Kube, crr: Obj, settings: ApprovalSettings) -> dict[str, Any]:
    """Create (or find) everything the child needs and write an Approved status. Idempotent.

    Independent calls go out together (four round trips instead of fourteen; the token is issued while the
    RBAC is bound), so a burst of agents registering at once is approved in a fraction of a second each; at
    most APPROVALS_AT_ONCE at a time.
    """
    async with _approvals:
        return await _approve(kube, crr, settings)


async def _drop_created_namespace(kube: Kube, created: Obj) -> None:
    """Delete the namespace this approval just created, an earlier registration's namespace winning: only that
    one (its uid, review F8), not one of that name created again since by someone else (another approval of
    the same cluster, say), which is left as it is."""
    await delete_as_read(kube, "v1", "Namespace", created, unchanged=False, then="left in place")


async def _approve(kube: Kube, crr: Obj, settings: ApprovalSettings) -> dict[str, Any]:
    name = crr["metadata"]["name"]
    agent_key = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_AGENT_PUBLIC_KEY)
    unsealed = tokens.key_problem(crr, settings.allow_unsealed_tokens)
    if unsealed and not agent_key:
        await deny(kube, crr, unsealed)  # callers validate first: a plain-text token must never be issued unasked
        return {"result": "Denied"}
    cluster_id = crr["spec"]["clusterId"]
    by_id = f"{known.LABEL_CLUSTER_ID}={cluster_id}"
    wanted = dedicated_namespace_name(crr)
    # the namespace is created (or found) while we look for this cluster's ManagedCluster: one registered
    # before lives in the namespace it was given then. An approved request names that namespace already
    # (pinned), so only a request approved never, or deleted and made again, gets here with another name.
    # No LIST of namespaces: at 20 registrations at once that was 20 of the 160 requests queued in the
    # client's rate limiter (bench/registration.py); Clusternet reads its namespace informer instead. The
    # ManagedClusters come from the API server's watch cache (Clusternet: its informer): from etcd, each approval
    # decoded every ManagedCluster to match one label. An earlier registration's is there long since; one this
    # request's own earlier attempt made is in the namespace it names, found by name if the cache trails.
    (wanted_ns, created), clusters = await asyncio.gather(
        kube.create_or_get(namespace_manifest(wanted, cluster_id, cluster_name(crr))),
        kube.list(CRR_API, "ManagedCluster", label_selector=by_id, cached=True))
    earlier = sorted({mc["metadata"]["namespace"] for mc in clusters} - {wanted})
    existing_ns = wanted_ns
    if earlier:  # the namespace of the cluster's earlier registration wins over the one the request names now
        found = await kube.get("v1", "Namespace", earlier[0])
        if found is not None:
            existing_ns = found
            if created:
                await _drop_created_namespace(kube, wanted_ns)
    owner = (existing_ns["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID)
    if owner != cluster_id and not earlier and not crr["spec"].get("clusterNamespace"):
        # the derived name is another cluster's: 5 hex digits collide among 1,000 clusters with a chance of
        # ~40 % (a denial in bench/scale.py); such a cluster gets the longer form instead
        existing_ns, _ = await kube.create_or_get(
            namespace_manifest(dedicated_namespace_name(crr, LONG_DIGITS), cluster_id, cluster_name(crr)))
        owner = (existing_ns["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID)
    ns = existing_ns["metadata"]["name"]
    mc_name = next((mc["metadata"]["name"] for mc in clusters if mc["metadata"]["namespace"] == ns),
                   cluster_name(crr))
    if owner != cluster_id:
        await deny(kube, crr, f"namespace {ns!r} already exists and does not belong to cluster {cluster_id}")
        return {"result": "Denied"}

    async def account_and_token() -> str:  # the token is issued while the RBAC is bound: one round trip less
        await kube.create_or_get(service_account_manifest(ns, cluster_id, mc_name))
        return await issue_token(kube, ns, settings.token_ttl_seconds)

    async def cluster() -> None:
        if not any(mc["metadata"]["namespace"] == ns for mc in clusters):
            await kube.create_or_get(managed_cluster_manifest(crr, ns))

    # a token refresh (see drop_token_secrets), or a request approved before and Denied since for a reason of the
    # hub's (known.denied_for_the_hub), whose agent kept its right to create Secrets meanwhile
    before = crr.get("status") or {}
    refreshing = before.get("result") == "Approved" or bool(before.get("result") == "Denied" and before.get(
        "managedClusterName"))
    manifests = rbac_manifests(cluster_id, ns, mc_name)
    token, *_ = await asyncio.gather(account_and_token(), cluster(), apply_rbac(kube, manifests),
                                     drop_token_secrets(kube, ns) if refreshing else asyncio.sleep(0))
    if agent_key:
        try:
            token_bytes = seal(token, agent_key)
        except SealingError as e:
            await deny(kube, crr, str(e))
            return {"result": "Denied"}
        sealing = sealed_with(token_bytes)
    else:
        token_bytes, sealing = token.encode(), None
    issued = now_rfc3339()
    status = {
        "result": "Approved", "errorMessage": None, "dedicatedNamespace": ns, "managedClusterName": mc_name,
        "token": base64.b64encode(token_bytes).decode(), "tokenIssuedAt": issued,
        "caCertificate": base64.b64encode(settings.parent_ca_pem).decode() if settings.parent_ca_pem else None,
        "rbacDigest": rbac_digest(manifests), "sealedTo": tokens.key_digest(agent_key) if agent_key else None,
    }
    # The issue time lands first: every version of the request that shows the new token carries it. Written
    # together, a handler or the token refresh (refresh_tokens, which reads the watched copy) could see the
    # status without it, take the token for one never issued and approve again, a dozen rate-limited requests
    # (bench/scale.py counted 1,875 approvals for 1,002 requests at 1,000 clusters; agents that gave up
    # waiting after 300 s and asked again account for some of them).
    await kube.patch(CRR_API, "ClusterRegistrationRequest", name, {"metadata": {"annotations": {
        known.ANNOTATION_TOKEN_SEALING: sealing, known.ANNOTATION_TOKEN_ISSUED_AT: issued}}})
    stored = await kube.patch(CRR_API, "ClusterRegistrationRequest", name, {"status": status}, subresource="status")
    prunedfields.warn_if_pruned("ClusterRegistrationRequest", status, stored, STATUS_LOST)
    log.info("approved registration %s: cluster %s in namespace %s", name, mc_name, ns)
    return {"result": "Approved", "dedicatedNamespace": ns, "managedClusterName": mc_name}
