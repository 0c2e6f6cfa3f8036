"""Whether a Description or HelmRelease being deleted is still wanted, as far as a Pull agent can tell.

Descriptions are owned by their Base and HelmReleases by their Description, so the garbage collector deletes them
when someone edits their ownerReferences, after a restore that re-created the parent's objects with new UIDs, and
people delete them by hand. The agent used to take every deletionTimestamp as intent: it deleted the child's
objects (uninstalled the releases), and the hub re-created everything with new UIDs, the workloads down in between.

The hub answers this from the Subscription (clusternet_hub.controller.wanted), which the agent may not read: its
Role covers its own namespace. What it may read there is the Base, which the hub writes from the Subscription
before anything else and deletes when it no longer wants anything of that Subscription in this cluster (unbound,
or the Subscription deleted). So a deleting object is still wanted when the Base of its name exists, is not being
deleted, carries the same Subscription uid label, and its feeds still feed the object's deployer under that name:
a Generic Description while some feed is not a HelmChart, a Helm one and the HelmRelease of each fed chart while
HelmCharts are fed (the hub writes the Base's new feeds before it deletes what they no longer feed). Then the agent
releases the finalizer without touching the child; the hub re-creates the object under the same name and the agent
re-adopts the child's objects (marked with the Description's name) or finds the release installed.

A Base deleted by hand is not told apart from an unbinding: its Description goes with it, and the agent cleans up
unless the hub has already written the Base again when the agent reads it (the hub's pushers can tell: they read
the Subscription). The Base is read by a direct GET; a failed read raises, and nothing is deleted.

The names are Clusternet's (clusternet_core.rendering.description_name, helmrender.release_name), spelt out here:
the agent does not import the hub's pipeline; tests hold the two to the same answer.
"""

from __future__ import annotations

import logging

from clusternet_api import known
from clusternet_api.kube import Obj
from clusternet_api.kubeapi import KubeApi

log = logging.getLogger(__name__)

GENERIC, HELM = "-generic", "-helm"


def _is_chart(feed: Obj) -> bool:
    return feed.get("kind") == "HelmChart" and str(feed.get("apiVersion", "")).split("/")[0] == known.APPS_GROUP


def wanted_names(base: Obj) -> set[str]:
    """The Descriptions and HelmReleases the Base's feeds want, by name."""
    name = base["metadata"]["name"]
    feeds = (base.get("spec") or {}).get("feeds") or []
    charts = [f for f in feeds if _is_chart(f)]
    names = set()
    if len(charts) < len(feeds):
        names.add(name + GENERIC)
    if charts:
        names.add(name + HELM)
        names.update(f"{name}{HELM}-{f.get('namespace') or ''}-{f.get('name')}" for f in charts)
    return names


def base_name_of(obj: Obj) -> str | None:
    """The Base a Description (by its name) or HelmRelease (by its owning Helm Description) comes from."""
    meta = obj["metadata"]
    if obj.get("kind") == "Description":
        names = [str(meta["name"])]
    else:
        names = [str(o.get("name")) for o in meta.get("ownerReferences") or [] if o.get("kind") == "Description"]
    for name in names:
        for suffix in (GENERIC, HELM):
            if name.endswith(suffix) and (obj.get("kind") == "Description" or suffix == HELM):
                return name[:-len(suffix)]
    return None


async def base_still_wants(parent: KubeApi, obj: Obj) -> bool:
    """Whether the Base of `obj` (a Description or HelmRelease being deleted) still wants it; False when the agent
    should clean up as usual. Raises when the Base cannot be read."""
    meta = obj["metadata"]
    uid = (meta.get("labels") or {}).get(known.LABEL_SUBS_UID)
    base_name = base_name_of(obj)
    if not uid or base_name is None:
        return False
    base = await parent.get(known.APPS_API_VERSION, "Base", base_name, meta["namespace"])
    if base is None or base["metadata"].get("deletionTimestamp") or (
            base["metadata"].get("labels") or {}).get(known.LABEL_SUBS_UID) != uid:
        return False
    if meta["name"] not in wanted_names(base):
        return False
    log.info("%s %s was deleted while its Base %s still wants it: released without touching the child; it comes "
             "back under the same name and keeps what it deployed", obj.get("kind"), meta["name"], base_name)
    return True
