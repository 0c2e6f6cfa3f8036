"""Helm Descriptions -> one HelmRelease per chart, and the Description's status from its HelmReleases.

The hub writes the HelmReleases whoever deploys them (itself in Push mode, the agent in Pull mode), as
Clusternet does; they are owned by their Description and carry the apps finalizer, so a release is only
forgotten once whoever deploys has uninstalled it (an offline cluster keeps it until it returns, as Generic
objects are kept). A deleted Helm Description waits until its HelmReleases are gone.
"""

from __future__ import annotations

import logging

from clusternet_api import applier, known
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.preconditions import Deleted, delete_as_read
from clusternet_core import helmrender
from clusternet_core.basenames import same_subscription
from clusternet_core.plan import Key, key_of, needs_apply
from clusternet_hub.controller.store import Store, write_back

log = logging.getLogger(__name__)

REVISIT_SECONDS = 5.0
"""How long after a HelmRelease DELETE found the release changed since it was cached its Description is synced
again: time for the watch to bring the newer copy (usually well under a second) that the next look judges."""


def owned_releases(store: Store, desc: Obj) -> list[Obj]:
    uid = desc["metadata"].get("uid")
    return [hr for (ns, _), hr in store.caches.helmreleases.items() if ns == desc["metadata"]["namespace"] and any(
        ref.get("uid") == uid for ref in hr["metadata"].get("ownerReferences") or [])]


class HelmDescriptions:
    def __init__(self, kube: KubeApi, store: Store) -> None:
        self.kube, self.store = kube, store

    async def sync(self, key: Key) -> None:
        desc = self.store.caches.descriptions.get(key)
        if desc is None or (desc.get("spec") or {}).get("deployer") != "Helm":
            return
        if desc["metadata"].get("deletionTimestamp"):
            await self._delete(desc)
            return
        wanted = helmrender.release_bodies(desc)
        names = {b["metadata"]["name"] for b in wanted}
        for body in wanted:
            cached = self.store.caches.helmreleases.get(key_of(body))
            if cached is None or needs_apply(cached, body) or _annotations_differ(cached, body):
                await write_back(self.store.caches.helmreleases, key_of(body), self._write_release(body),
                                 self.store.on_helmrelease, creates=True)
        for hr in owned_releases(self.store, desc):
            if hr["metadata"]["name"] in names or hr["metadata"].get("deletionTimestamp"):
                continue
            if (owner := _subscription_of(desc)) and not same_subscription(owner, hr["metadata"].get("labels") or {}):
                # written while a hub before basenames.py let two Subscriptions share this Description: the
                # release is the other one's, and removing it would uninstall their chart
                log.warning("%s/%s: release of another Subscription under this Description; left in place",
                            *key_of(hr))
                continue
            log.info("%s/%s: chart no longer in its Description; removing its release", *key_of(hr))
            await self._delete_release(key, hr)
        await self._write_status(desc)

    async def _write_release(self, body: Obj) -> Obj:
        applied = await self.kube.apply(body, known.CREATED_BY_HUB)
        if stray := stray_fields(applied, body):
            applied = await self.kube.patch(known.APPS_API_VERSION, "HelmRelease", body["metadata"]["name"],
                                            {"spec": dict.fromkeys(stray)}, body["metadata"]["namespace"])
        return applied

    async def _write_status(self, desc: Obj) -> None:
        status = helmrender.description_status(desc, owned_releases(self.store, desc))
        current = desc.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        meta = desc["metadata"]
        try:
            await self.kube.patch(known.APPS_API_VERSION, "Description", meta["name"], {"status": status},
                                  meta["namespace"], subresource="status")
        except ApiException as e:
            if e.status != 404:
                raise
        if status["phase"] == "Failure" and current.get("reason") != status["reason"]:
            await applier.post_event(self.kube, desc, "Warning", "HelmReleaseFailed", status["reason"],
                                     known.CREATED_BY_HUB)

    async def _delete(self, desc: Obj) -> None:
        """Delete its HelmReleases; once their deployers have removed them, let the Description go."""
        releases = owned_releases(self.store, desc)
        for hr in releases:
            if not hr["metadata"].get("deletionTimestamp"):
                await self._delete_release(key_of(desc), hr)
        if not releases and known.FINALIZER_APPS in (desc["metadata"].get("finalizers") or []):
            await applier.remove_finalizer(self.kube, desc)

    async def _delete_release(self, key: Key, hr: Obj) -> None:
        """Delete a HelmRelease of Description `key` as the cache held it when it was judged (owned by the
        Description, the Subscription its labels name, not being deleted yet): its uid and resourceVersion
        (review F8). One created again or written since (its owner or labels by a new hub leader, say) is not
        judged on the old copy: the Description is looked at again after REVISIT_SECONDS, from the copy the
        watch brought by then. That revisit is scheduled here because nothing else is sure to come: a HelmRelease
        event brings its Description back only for a change of status, annotations or spec, and the periodic
        resync does not sync Helm Descriptions. A Description being deleted keeps its finalizer meanwhile."""
        then = "{}/{} looks at it again in {:.0f}s".format(*key, REVISIT_SECONDS)
        if await delete_as_read(self.kube, known.APPS_API_VERSION, "HelmRelease", hr, unchanged=True,
                                then=then) is Deleted.CHANGED:
            self.store.queue.add_after(("helm", *key), REVISIT_SECONDS)


SERVER_DEFAULTED = frozenset({"createNamespace", "timeoutSeconds"})
"""HelmRelease spec fields the CRD defaults: present without anyone writing them."""


def stray_fields(hr: Obj, body: Obj) -> list[str]:
    """Spec fields of a HelmRelease the hub did not write (an agent may patch its HelmReleases).

    A server-side apply re-asserts only the fields it sends, so one the hub leaves out (a chartPullSecret of a
    chart without one) would stay as the agent wrote it; the hub takes such fields out with a merge patch.
    Nothing reads them with the hub's privileges either way (chartcredentials); this keeps the release as the
    hub meant it for whoever deploys it. Clusternet's hub updates the whole object instead."""
    wanted = body.get("spec") or {}
    return sorted(k for k in (hr.get("spec") or {}) if k not in wanted and k not in SERVER_DEFAULTED)


def _subscription_of(desc: Obj) -> dict[str, str]:
    """The Subscription a Description's labels name, as metadata (namespace, name, uid); empty without them."""
    labels = desc["metadata"].get("labels") or {}
    found = {"namespace": labels.get(known.LABEL_SUBS_NAMESPACE), "name": labels.get(known.LABEL_SUBS_NAME),
             "uid": labels.get(known.LABEL_SUBS_UID)}
    return {k: str(v) for k, v in found.items() if v} if found["name"] or found["uid"] else {}


def _annotations_differ(cached: Obj, body: Obj) -> bool:
    have = cached["metadata"].get("annotations") or {}
    return any(have.get(k) != v for k, v in (body["metadata"].get("annotations") or {}).items())
