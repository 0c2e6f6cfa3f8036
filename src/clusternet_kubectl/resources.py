"""Resource types as kubectl names them: `deployment.apps`, `deploy`, `subs`, `deployments.apps`.

Discovery itself is `clusternet_api.kube.Kube` (`resource`, `resources`, `preferred_versions`); this module
only adds what a command line needs on top of it: kubectl's alias resolution and type names, and the fixed
resources of Clusternet's own kinds (addressed without discovery, as the hub does).
"""

from __future__ import annotations

from collections.abc import Sequence

from clusternet_api import known
from clusternet_api.apiresource import (
    CLUSTERNET_GROUPS,
    Resource,
    namespaced_name,
    object_type_name,
    split_group,
    type_name,
)

__all__ = ["CLUSTERNET_GROUPS", "Resource", "match_resource", "namespaced_name", "object_type_name", "split_group",
           "type_name"]

def match_resource(resources: Sequence[Resource], name: str) -> Resource | None:
    """kubectl-style alias resolution: plural, singular or kind first, then short names; `name.group` and
    `name.version.group` too. The first match wins, so `resources` come in kubectl's order (core first)."""
    wanted, _, group = name.partition(".")
    wanted = wanted.lower()
    candidates = [r for r in resources if not group or group in (r.group, f"{r.version}.{r.group}")]
    for r in candidates:
        if wanted in r.names():
            return r
    for r in candidates:
        if wanted in r.short_names:
            return r
    return None


def _apps(kind: str, plural: str, namespaced: bool = True) -> Resource:
    return Resource(known.APPS_GROUP, known.APPS_VERSION, kind, plural, namespaced)


MANIFEST = _apps("Manifest", "manifests")
SUBSCRIPTION = _apps("Subscription", "subscriptions")
LOCALIZATION = _apps("Localization", "localizations")
GLOBALIZATION = _apps("Globalization", "globalizations", namespaced=False)
FEED_INVENTORY = _apps("FeedInventory", "feedinventories")
BASE = _apps("Base", "bases")
DESCRIPTION = _apps("Description", "descriptions")
HELM_CHART = _apps("HelmChart", "helmcharts")
MANAGED_CLUSTER = Resource(known.CLUSTERS_GROUP, known.CLUSTERS_VERSION, "ManagedCluster", "managedclusters", True)
