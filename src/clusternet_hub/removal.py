"""A registered cluster that an admin removed on the parent: noticed by the hub, said to its agent.

Clusternet users remove a cluster by deleting its dedicated namespace, and expect its Subscriptions and
Descriptions to let go of it then (clusternet#505, #530, #538); deleting only its ManagedCluster does the same
here (the controller releases its Descriptions at once, the child's workloads stay). Clusternet's approver
skips every request that has a result, so its agent goes on reading the dead token of the still-Approved
request. Here the hub marks such a request `Denied`, saying that the cluster was removed and how to add it
back (delete the request: the agent then registers again), and deletes the agent's ServiceAccount, since
that token could otherwise be refreshed for ever by a cluster that no longer belongs, and the agent's
ClusterRole and ClusterRoleBinding, which would otherwise stay behind for ever, binding whoever creates that
ServiceAccount again. It never re-creates what an admin deleted; approving the cluster again writes them anew.

An approved request whose agent removed or broke the public key its token was sealed to is revoked the same way at
its next token refresh (`refuse`, `revoke`), with its own reason: Denied while its agent kept its credentials would
be a status that lies.

A ServiceAccount deleted on its own (namespace and ManagedCluster still there) removes nothing: the request is
approved again, which creates the ServiceAccount anew and issues a fresh token that the waiting agent picks up.

What makes the hub look (`HubContext.suspects`, checked by the background pass): a ManagedCluster deleted,
an approved request whose ManagedCluster the watch does not know, a cluster whose heartbeats stopped, a
resumed request whose namespace is gone, and every token refresh. Each look is three GETs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from clusternet_api import known
from clusternet_api.kube import ApiException, Kube, Obj
from clusternet_api.namespaceguard import namespace_removed
from clusternet_api.preconditions import delete_as_read
from clusternet_hub import registration, tokens

log = logging.getLogger(__name__)
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


@dataclass(frozen=True)
class Finding:
    """What became of an approved request's cluster: "intact", "removed" or "reissue", and why."""

    verdict: str
    what: str = ""


INTACT = Finding("intact")


def deleting(obj: Obj | None) -> bool:
    return obj is None or bool(obj["metadata"].get("deletionTimestamp"))


async def inspect(kube: Kube, crr: Obj) -> Finding:
    """Read the namespace, ManagedCluster and ServiceAccount an approved request names."""
    status = crr.get("status") or {}
    ns, name = status.get("dedicatedNamespace"), status.get("managedClusterName")
    if status.get("result") != "Approved" or not ns or not name:
        return INTACT
    if await namespace_removed(kube, ns):
        return Finding("removed", f"its dedicated namespace {ns} was deleted")
    if deleting(await kube.get(known.CLUSTERS_API_VERSION, "ManagedCluster", name, ns)):
        return Finding("removed", f"its ManagedCluster {ns}/{name} was deleted")
    if await kube.get("v1", "ServiceAccount", registration.AGENT_SERVICE_ACCOUNT, ns) is None:
        return Finding("reissue", f"its ServiceAccount {ns}/{registration.AGENT_SERVICE_ACCOUNT} was deleted")
    return INTACT


async def removed_meanwhile(kube: Kube, crr: Obj) -> tuple[str, str | None] | None:
    """For a request Denied after it was approved (its status still names its ManagedCluster; `deny` clears the
    namespace): what says its cluster was removed since, and the cluster's namespace (None once it is gone); None
    while a ManagedCluster of its cluster id lives in a namespace that is not being deleted. `inspect` judges
    approved requests only, so a cluster removed while its request was Denied for a reason of the hub's
    (known.denied_for_the_hub) was never marked removed; approving it again would re-create what the admin
    deleted (review s34, finding 1)."""
    cluster_id = crr["spec"]["clusterId"]
    selector = f"{known.LABEL_CLUSTER_ID}={cluster_id}"
    clusters = [mc for mc in await kube.list(known.CLUSTERS_API_VERSION, "ManagedCluster", label_selector=selector)
                if (mc["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID) == cluster_id]
    for mc in clusters:
        if not mc["metadata"].get("deletionTimestamp") and not await namespace_removed(kube, mc["metadata"][
                "namespace"]):
            return None
    ns = clusters[0]["metadata"]["namespace"] if clusters else await _labelled_namespace(kube, cluster_id)
    if ns is None or await namespace_removed(kube, ns):
        return (f"its dedicated namespace {ns} was deleted" if ns else "its dedicated namespace was deleted"), ns
    return f"its ManagedCluster {ns}/{(crr.get('status') or {}).get('managedClusterName')} was deleted", ns


async def revoke_removed(kube: Kube, crr: Obj, what: str, ns: str | None) -> bool:
    """`revoke` a Denied request whose cluster removed_meanwhile found removed, as a removal of an approved one
    is: its ServiceAccount (in `ns`, when that is left) and cluster-wide RBAC deleted, the request Denied as
    removed; only while it is the request looked at, still Denied for want of a key (re-review s34, findings 1
    and 2: the status alone left the agent minting tokens, and could land on a request created again)."""
    located = {**crr, "status": {**(crr.get("status") or {}), "dedicatedNamespace": ns}}
    return await revoke(kube, located, removed_message(crr, what), still=known.denied_for_the_hub)


async def _labelled_namespace(kube: Kube, cluster_id: str) -> str | None:
    """The namespace the hub made for a cluster (labelled with its id), if any is left."""
    selector = f"{known.LABEL_CLUSTER_ID}={cluster_id}"
    return next((n["metadata"]["name"] for n in await kube.list("v1", "Namespace", label_selector=selector)
                 if (n["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID) == cluster_id), None)


async def deny_by_admin(kube: Kube, crr: Obj, message: str) -> bool:
    """An admin's denial of a request the hub had Denied only for want of a key: the cluster kept its credentials
    then (the hub's setting is not held against it), so the admin's verdict revokes them, as a removal does (its
    ServiceAccount and cluster-wide RBAC deleted, namespace and ManagedCluster kept). Audit s36, finding 3: only the
    status was written, and the agent went on minting tokens, heartbeating and pulling under "denied by a parent
    cluster administrator". `deny` cleared the namespace from the status; the hub's cluster-id label finds it, by the
    id in the request's name, which its agent cannot change (spec.clusterId it may rewrite: another cluster's
    ServiceAccount was revoked then, review s36)."""
    ns = await _labelled_namespace(kube, crr["metadata"]["name"].removeprefix("clusternet-"))
    located = {**crr, "status": {**(crr.get("status") or {}), "dedicatedNamespace": ns}}
    return await revoke(kube, located, message, still=known.denied_for_the_hub)


def removed_message(crr: Obj, what: str) -> str:
    name = crr["metadata"]["name"]
    return (f"cluster removed from the parent: {what}. Its workloads in the child are kept. To add it again, "
            f"delete this request (kubectl delete clusterregistrationrequest {name}) and the agent registers "
            "anew; to remove it for good, uninstall the agent in the child")


def invalid_message(crr: Obj, problem: str) -> str:
    name = crr["metadata"]["name"]
    return (f"its agent removed or broke the public key the cluster was approved with: {problem}. The agent's "
            f"parent credentials are revoked; its ManagedCluster stays (silent from now on) and its workloads in "
            f"the child are kept. To register it again, fix its agent and delete this request (kubectl delete "
            f"clusterregistrationrequest {name})")


async def refuse(kube: Kube, crr: Obj, problem: str, allow_unsealed: bool) -> str | None:
    """Deny a request that does not validate; an approved one whose agent removed or broke its sealing key
    (tokens.key_dropped) is revoked as well. Every other failure of an approved request (the hub restarted
    without --allow-unsealed-tokens under Clusternet's agent, say) is only denied, as before: that change is the
    hub's and not held against the cluster's credentials. The message written (for the event that says it: the
    sixth audit found a revocation's event without the "revoked; delete this request to re-add" part), None when
    nothing was written (the request was created again meanwhile)."""
    dropped = tokens.key_dropped(crr, allow_unsealed)
    if dropped is None:
        await registration.deny(kube, crr, problem)
        return problem
    message = invalid_message(crr, dropped)
    revoked = await revoke(kube, crr, message,
                           still=lambda fresh: tokens.key_dropped(fresh, allow_unsealed) is not None)
    return message if revoked else None


async def mark_removed(kube: Kube, crr: Obj, what: str) -> None:
    """Revoke the cluster of a request whose namespace or ManagedCluster an admin deleted."""
    await revoke(kube, crr, removed_message(crr, what))


async def revoke(kube: Kube, crr: Obj, message: str, still: Callable[[Obj], bool] | None = None) -> bool:
    """Deny an approved request with `message` (the agent stops and logs it), then revoke the agent's tokens and
    drop its cluster-wide RBAC: a Denied request whose cluster could go on minting tokens (its agent refreshes
    them itself) would be a status that lies. Kept: the namespace, ManagedCluster and the namespace's Role, for
    a re-add into the same namespace. Only the request that was looked at: one deleted by the admin and created
    again by its re-registering agent meanwhile (same name, another uid) is a new registration, not to be denied
    and revoked (the delete review, F10); nor one that `still` (when given) no longer finds wanting it. True when
    revoked.

    The ServiceAccount and RBAC are read before the request is confirmed, and deleted only as read (review F8):
    whatever a registration made after that request (the admin deleting the Denied one, the agent registering
    again) is another object, or one written since, and is left to it."""
    name = crr["metadata"]["name"]
    ns = (crr.get("status") or {}).get("dedicatedNamespace")
    account, rbac = await asyncio.gather(_account(kube, ns), cluster_rbac(kube, name.removeprefix("clusternet-")))
    fresh = await kube.get(known.CLUSTERS_API_VERSION, "ClusterRegistrationRequest", name)
    if fresh is None or fresh["metadata"].get("uid") != crr["metadata"].get("uid"):
        log.info("registration %s was deleted or created again since it was looked at: not revoked", name)
        return False
    if still is not None and not still(fresh):  # judged on a stale copy (the watch's): the request is fine now
        log.info("registration %s changed since it was looked at (denied already, or its key is back): not "
                 "revoked", name)
        return False
    await registration.deny(kube, crr, message)
    await _drop(kube, account, unchanged=False)
    for obj in rbac:
        await _drop(kube, obj, unchanged=True)
    return True


async def _account(kube: Kube, ns: str | None) -> Obj | None:
    """The agent's ServiceAccount in `ns`; None when there is no namespace left to look in."""
    return await _read(kube, "v1", "ServiceAccount", registration.AGENT_SERVICE_ACCOUNT, ns) if ns else None


async def _read(kube: Kube, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
    """The object, None when it is missing or cannot be read (a hub whose RBAC predates this: it stays)."""
    try:
        found = await kube.get(api_version, kind, name, namespace)
    except ApiException as e:
        log.warning("could not read %s %s of the removed cluster (HTTP %s): it stays", kind, name, e.status)
        return None
    return None if found is None else {"apiVersion": api_version, "kind": kind, **found}


async def cluster_rbac(kube: Kube, cluster_id: str) -> list[Obj]:
    """The binding, then the ClusterRole, that the hub wrote for this cluster's agent, each only if its labels say
    so (created by the hub, for this cluster ID): an object of that name someone else made is not ours to
    delete. The Role and RoleBinding go with the namespace, or stay with it for a re-add."""
    name = registration.cluster_role_name(cluster_id)
    found = [await _read(kube, RBAC_API_VERSION, kind, name) for kind in ("ClusterRoleBinding", "ClusterRole")]
    return [o for o in found if o is not None and _labels(o) == (known.CREATED_BY_HUB, cluster_id)]


def _labels(obj: Obj) -> tuple[str | None, str | None]:
    labels = obj["metadata"].get("labels") or {}
    return labels.get(known.LABEL_CREATED_BY), labels.get(known.LABEL_CLUSTER_ID)


async def _drop(kube: Kube, obj: Obj | None, *, unchanged: bool) -> None:
    """Delete `obj` as read: the ServiceAccount if it is the same one (its uid), the RBAC also unchanged since its
    labels were judged (uid and resourceVersion). One created or written again since belongs to whoever did
    that (a new registration of this cluster, an approval writing the RBAC again): it is left, and said so."""
    if obj is None:
        return
    meta = obj["metadata"]
    what = f"{obj['kind']} {'/'.join(filter(None, (meta.get('namespace'), meta['name'])))}"
    try:
        await delete_as_read(kube, obj["apiVersion"], obj["kind"], obj, unchanged=unchanged,
                             then="left in place, whoever wrote it (a new registration of this cluster, say)")
    except ApiException as e:  # a hub whose RBAC predates this (no `delete`): it stays, as it did before
        log.warning("could not delete %s of the removed cluster (HTTP %s)", what, e.status)


async def settle(kube: Kube, crr: Obj, settings: registration.ApprovalSettings) -> str:
    """Act on what `inspect` finds; returns its verdict, except for a re-issue refused because the request no longer
    validates: "refused" (denied or revoked), or "left" (it changed since it was read: the next look decides)."""
    found = await inspect(kube, crr)
    if found.verdict == "removed":
        log.warning("registration %s: %s; marking the cluster removed", crr["metadata"]["name"], found.what)
        await mark_removed(kube, crr, found.what)
    elif found.verdict == "reissue":
        pinned = registration.pinned(crr)
        problem = registration.validate(pinned, settings.allow_unsealed_tokens)
        if problem:  # as any token refresh: never issued to a request that no longer validates (review)
            return "refused" if await refuse(kube, pinned, problem, settings.allow_unsealed_tokens) is not None \
                else "left"
        log.warning("registration %s: %s; approving it again", crr["metadata"]["name"], found.what)
        await registration.approve(kube, pinned, settings)
    return found.verdict


def unknown_to_watch(approved: dict[str, Obj], clusters: dict[tuple[str, str], Obj]) -> set[str]:
    """Approved requests whose ManagedCluster the hub's watch does not hold (or holds being deleted)."""
    out = set()
    for name, crr in approved.items():
        status = crr.get("status") or {}
        key = (status.get("dedicatedNamespace") or "", status.get("managedClusterName") or "")
        if deleting(clusters.get(key)):
            out.add(name)
    return out


def requests_of_cluster(approved: dict[str, Obj], namespace: str, name: str) -> set[str]:
    """The approved requests whose status names this ManagedCluster."""
    return {n for n, crr in approved.items()
            if ((crr.get("status") or {}).get("dedicatedNamespace"),
                (crr.get("status") or {}).get("managedClusterName")) == (namespace, name)}
