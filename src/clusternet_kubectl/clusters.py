"""Finding one ManagedCluster on the parent from what a person types: `render --cluster` and `--cluster-id`.

Kept apart from `commands.render`, whose pipeline import costs ~0.2 s, so that `--cluster-id` routing (every
kubectl verb on a child) does not pay for it.
"""

from __future__ import annotations

from clusternet_api import known
from clusternet_api.kube import Obj
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.resources import MANAGED_CLUSTER, namespaced_name
from clusternet_kubectl.session import Session


async def find_cluster(session: Session, cluster: str) -> Obj:
    """A ManagedCluster by `namespace/name`, or by cluster id (label, then spec.clusterId), or by name."""
    if "/" in cluster:
        ns, _, name = cluster.partition("/")
        status, body = await session.kube.raw("GET", MANAGED_CLUSTER.path(ns, name))
        if status != 200 or not isinstance(body, dict):
            raise PluginError(f"ManagedCluster {cluster} not found")
        return body
    found = await session.list(MANAGED_CLUSTER, selector=f"{known.LABEL_CLUSTER_ID}={cluster}")
    if not found:
        found = [mc for mc in await session.list(MANAGED_CLUSTER)
                 if cluster in ((mc.get("spec") or {}).get("clusterId"), mc["metadata"]["name"])]
    if not found:
        raise PluginError(f"no ManagedCluster with cluster id or name {cluster!r}")
    if len(found) > 1:
        raise PluginError(f"{cluster!r} matches several ManagedClusters ({', '.join(map(namespaced_name, found))}); "
                          "use namespace/name")
    return found[0]


def cluster_id_of(cluster: Obj) -> str:
    """The cluster id the hub's proxy knows the cluster by: spec.clusterId, else its label."""
    spec_id = (cluster.get("spec") or {}).get("clusterId")
    label_id = ((cluster.get("metadata") or {}).get("labels") or {}).get(known.LABEL_CLUSTER_ID)
    value = spec_id or label_id
    if not value:
        raise PluginError(f"ManagedCluster {namespaced_name(cluster)} has no cluster id (spec.clusterId)")
    return str(value)
