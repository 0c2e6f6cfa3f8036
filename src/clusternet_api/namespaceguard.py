"""Whether a Description or HelmRelease being deleted goes because its cluster is being removed.

Deleting a cluster's dedicated namespace on the parent, or only its ManagedCluster, removes the cluster and keeps
its workloads in the child (README, "Remove or re-add a cluster"; the project's rule: never delete what a silent or
removed cluster runs). This is the one answer every deployer (the hub's pushers, Generic and Helm, and the agent's
pullers) asks for before it touches the child: the cluster is being removed when its namespace is terminating or
gone, or its ManagedCluster is gone or has a deletionTimestamp (held by someone's finalizer: a backup or GitOps
tool's, or a foreground deletion, while the hub unbinds the cluster and deletes its Bases).

For the namespace: its controller deletes the namespace's content in no fixed order: Descriptions and HelmReleases
get their deletionTimestamp while the ManagedCluster, the agent's token and the hub's push credentials may still
work, so their deployer (the hub's pusher, or the agent's pullers) would take it for an ordinary deletion and
delete the child's objects or uninstall its releases. So every deployer asks here first, and a deletion of a
terminating (or gone) namespace's content is released without touching the child. Clusternet's deployers do not
look: there deleting the namespace of a cluster whose agent still runs may delete its workloads.

The Namespace and the ManagedCluster are read by a direct GET, never from a watch's copy or the agent's heartbeat
copy (clusterview.py: trusted for a report period and a half, it still held the ManagedCluster an admin had just
deleted, and the agent deleted the workloads the deletion was to keep). For the Namespace: the namespace
controller marks the namespace terminating before it deletes anything in it, so a fresh read made after seeing a
deletionTimestamp that the namespace's deletion caused always sees the namespace terminating; a lagging copy might
not. Cleanups are rare, two GETs each cost nothing.

Uncertainty never deletes: an answer other than the Namespace or 404 (a 403 from an agent whose parent identity
an older hub set up without `get` on its namespace, say) raises, and the deployer keeps the finalizer and tries
again later. The same holds for the ManagedCluster's read.
"""

from __future__ import annotations

import logging

from clusternet_api import applier, known
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi

log = logging.getLogger(__name__)


class NamespaceUnknown(Exception):
    """The deployer may not read its cluster's namespace (HTTP 403): it cannot tell whether the cluster is being
    removed, so it cleans up nothing. The message is what the Description's status says meanwhile."""

    def __init__(self, namespace: str, error: ApiException) -> None:
        self.namespace, self.status = namespace, error.status
        super().__init__(
            f"cannot tell whether cluster namespace {namespace} is being deleted (HTTP {error.status}: "
            f"{(error.reason or 'Forbidden')[:200]}); a hub that grants `get` on it (registration.rbac_manifests) "
            "does so for every cluster at its start: update the hub before the agents")


class ClusterUnknown(NamespaceUnknown):
    """The deployer may not read its cluster's ManagedCluster (HTTP 403): as for the namespace, nothing is cleaned
    up meanwhile."""

    def __init__(self, namespace: str, name: str, error: ApiException) -> None:
        Exception.__init__(
            self, f"cannot tell whether ManagedCluster {namespace}/{name} is being deleted (HTTP {error.status}: "
                  f"{(error.reason or 'Forbidden')[:200]})")
        self.namespace, self.status = namespace, error.status


def removed_message(namespace: str) -> str:
    return (f"cluster namespace {namespace} is being deleted: the cluster is being removed; its workloads in the "
            "child stay")


async def namespace_removed(parent: KubeApi, namespace: str) -> bool:
    """True when the cluster's namespace is terminating or gone. Raises NamespaceUnknown on 403, and any other
    failure as it comes: the caller must not clean up then."""
    try:
        found = await parent.get("v1", "Namespace", namespace)
    except ApiException as e:
        if e.status == 403:
            raise NamespaceUnknown(namespace, e) from e
        raise
    return found is None or bool(found["metadata"].get("deletionTimestamp"))


def cluster_removed_message(namespace: str, name: str) -> str:
    return (f"ManagedCluster {namespace}/{name} is gone or being deleted: the cluster is being removed; its "
            "workloads in the child stay")


async def managed_cluster_removed(parent: KubeApi, namespace: str, name: str) -> bool:
    """True when the ManagedCluster is gone or has a deletionTimestamp, by a fresh GET. Raises ClusterUnknown on
    403, any other failure as it comes."""
    try:
        found = await parent.get(known.CLUSTERS_API_VERSION, "ManagedCluster", name, namespace)
    except ApiException as e:
        if e.status == 403:
            raise ClusterUnknown(namespace, name, e) from e
        raise
    return found is None or bool(found["metadata"].get("deletionTimestamp"))


async def removal_reason(parent: KubeApi, namespace: str, cluster: str) -> str | None:
    """Why the cluster `cluster` (its ManagedCluster's name) of `namespace` is being removed, or None when it is not
    (the deployer may clean up). Raises when it cannot tell: the caller must not clean up then."""
    if await namespace_removed(parent, namespace):
        return removed_message(namespace)
    if await managed_cluster_removed(parent, namespace, cluster):
        return cluster_removed_message(namespace, cluster)
    return None


async def release_if_removed(parent: KubeApi, obj: Obj, cluster: str) -> bool:
    """Remove our finalizer from `obj` (being deleted) without cleaning up, when its cluster (`cluster`: the name of
    the ManagedCluster in obj's namespace) is being removed (removal_reason); True then, False when the deployer
    should clean up as usual.

    An agent's Role in the namespace may be gone already, so the finalizer's removal may be refused (403) or find
    nothing (404): the hub releases what its agent cannot (it checks the same way, in every sync mode)."""
    meta = obj["metadata"]
    why = await removal_reason(parent, meta["namespace"], cluster)
    if why is None:
        return False
    log.info("%s (%s %s released without cleanup)", why, obj.get("kind"), meta["name"])
    try:
        await applier.remove_finalizer(parent, obj)
    except ApiException as e:
        if e.status not in (403, 404):
            raise
        log.info("%s %s/%s: not allowed to remove its finalizer (HTTP %s); the hub releases it", obj.get("kind"),
                 meta["namespace"], meta["name"], e.status)
    return True
