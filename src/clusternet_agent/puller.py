"""Pull mode: the agent applies the Descriptions of its own dedicated namespace itself.

The agent applies a Description exactly when the hub would not push it (`deployable_by_hub` is false
for this cluster's ManagedCluster), so one side, and only one, deploys at any time. It lists the
Descriptions of its namespace on the parent once and follows them with a watch (clusternet_api.listwatch);
every resync period it re-applies all of them, from that cache, which puts back objects changed or deleted
by hand in the child (drift), unless the Subscription opted out. The ManagedCluster (who deploys) is read only
when some Description may need work (`idle`): a resync with no Descriptions, or only Helm or opted-out ones, and
a change to a deployed one between resyncs (a status report, say) ask the parent nothing.

A Description being deleted is cleaned up in the child only when its cluster is not being removed: deleting the
namespace on the parent, or only the ManagedCluster, removes the cluster and keeps its workloads, whatever order
things are deleted in (clusternet_api.namespaceguard, which reads both afresh: never the heartbeats' copy of the
ManagedCluster, which outlives its deletion by up to a report period and a half); Clusternet's agent cleans up all
the same. Nor is it cleaned up while its Base still wants it (stillwanted.py: deleted by the garbage collector or a
person, not the hub, which re-creates it).

An object a Description lets go of (cleanup, or dropped from its feeds) that another Description of the namespace
wants is handed over to that one, applied right after (clusternet_api.ownership), as the hub does when it pushes.

It also hands the hub push credentials when, and only when, the AppPusher gate allows pushes: a token of
the child's `clusternet-app-deployer` ServiceAccount in Secret `child-cluster-deployer` of the dedicated
namespace; with the gate off that Secret is removed (the child's veto).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time

from clusternet_agent import probes, stillwanted
from clusternet_agent.clusterview import ClusterView
from clusternet_api import applier, known, namespaceguard, pendingprunes
from clusternet_api.carried import CarriedOver
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.listwatch import ListWatch
from clusternet_api.ownership import Claimants, Released, ReleaseDeferred, owner_key

log = logging.getLogger(__name__)
DEPLOYER_SA = "clusternet-app-deployer"
RBAC = "rbac.authorization.k8s.io/v1"


async def deployer_credentials(child: Kube, namespace: str, lifetime: int = 3600) -> Credentials:
    """Credentials of the child's app-deployer ServiceAccount, creating it when this agent may.

    Falls back to the agent's own credentials when the deployer account cannot be had (the deploy
    manifests create it with its RBAC; the agent itself needs no rights to create workloads then).
    """
    try:
        if await child.get("v1", "ServiceAccount", DEPLOYER_SA, namespace) is None:
            await child.create_or_get({"apiVersion": "v1", "kind": "ServiceAccount",
                                       "metadata": {"name": DEPLOYER_SA, "namespace": namespace}})
            await child.apply({"apiVersion": RBAC, "kind": "ClusterRoleBinding",
                               # per namespace: agents of two registrations in one child never share it
                               "metadata": {"name": f"{DEPLOYER_SA}:{namespace}:cluster-admin"},
                               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                           "name": "cluster-admin"},
                               "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER_SA,
                                             "namespace": namespace}]}, known.CREATED_BY_AGENT)
        status, body = await child.raw(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{DEPLOYER_SA}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": lifetime}}, content_type="application/json")
        if status == 201 and isinstance(body, dict):
            return child.creds.with_token(str(body["status"]["token"]))
        log.warning("no token for %s/%s (HTTP %s); deploying with the agent's own identity",
                    namespace, DEPLOYER_SA, status)
    except ApiException as e:
        log.warning("cannot set up %s/%s (HTTP %s); deploying with the agent's own identity",
                    namespace, DEPLOYER_SA, e.status)
    return child.creds


async def publish_push_credentials(parent: Kube, namespace: str, creds: Credentials, apiserver_url: str,
                                   allow: bool) -> None:
    """Give the hub push credentials only while AppPusher allows it; take them back otherwise."""
    if not allow:
        with contextlib.suppress(ApiException):
            await parent.delete("v1", "Secret", known.DEPLOYER_SECRET, namespace)
        return
    data = {"token": creds.token or "", "apiserver-advertise-url": apiserver_url,
            "service-account.name": DEPLOYER_SA}
    if creds.ca_pem:
        data["ca.crt"] = creds.ca_pem.decode()
    await parent.apply({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": known.DEPLOYER_SECRET, "namespace": namespace,
                     "annotations": {known.ANNOTATION_AUTO_UPDATE: "true"}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}, known.CREATED_BY_AGENT)


class Puller:
    def __init__(self, parent: Kube, child: Kube, namespace: str, cluster_name: str,
                 resync_seconds: float, view: ClusterView | None = None) -> None:
        self.parent = parent
        self.child = child
        self.namespace = namespace
        self.resync_seconds = resync_seconds
        # the ManagedCluster: the heartbeats' copy while fresh (clusterview.py), else read here
        self.view = view or ClusterView(parent, namespace, cluster_name, max_age=0.0)
        self.watch: ListWatch | None = None  # its cache: the namespace's Descriptions, as of the last event
        self.carried = CarriedOver()  # what released Descriptions had deployed, for their successors' first apply
        self.grace = stillwanted.BaseGrace()  # deleting Descriptions whose Base is gone, given time to come back
        # ... or, under a hub that marks its unbindings, waiting for its verdict
        self.undecided = stillwanted.Undecided(stillwanted.UNDECIDED_RESYNCS * resync_seconds)

    def _descriptions(self) -> list[Obj]:
        """The namespace's Descriptions as the watch last saw them."""
        return self.watch.objects() if self.watch is not None else []

    def _claimants(self, desc: Obj) -> Claimants:
        return Claimants(desc, self._descriptions)

    async def process(self, desc: Obj, mc: Obj | None, resync: bool) -> None:
        if mc is None or applier.deployable_by_hub(mc) or idle(desc, resync):
            return
        meta = desc["metadata"]
        if meta.get("deletionTimestamp"):
            if not (resync and self.undecided.resting(desc)):
                await self._clean_up(desc, mc)
            return
        started = time.monotonic()
        outcome = await applier.apply_description(self.child, desc, self._claimants(desc), self.carried.previous(desc),
                                                  prune_only=applier.prune_only(desc))
        probes.pull_apply_seconds.observe(time.monotonic() - started)
        if outcome.phase != "Success":
            probes.pull_apply_errors.inc()
        await applier.report(self.parent, desc, outcome, known.CREATED_BY_AGENT)
        await self._hand_over(desc, outcome.released, mc)

    async def _clean_up(self, desc: Obj, mc: Obj) -> None:
        """Delete what the Description deployed, unless the cluster is being removed (its namespace or ManagedCluster
        being deleted or gone, by a fresh read: its workloads stay, namespaceguard) or we cannot tell (an older hub's
        RBAC: nothing is deleted, the status says why, and the next resync asks again; any other failed read raises,
        and the next resync tries again), or its Base still wants it (stillwanted: the hub re-creates it), or the
        Base is missing and the hub, which marks its unbindings, has not marked it (the status says so)."""
        try:
            if await namespaceguard.release_if_removed(self.parent, desc, self.view.name):
                return
        except namespaceguard.NamespaceUnknown as e:
            if await applier.mark_pending(self.parent, desc, f"cleanup pending: {e}"):
                log.warning("Description %s: cleanup pending: %s", desc["metadata"]["name"], e)
            return
        verdict = await stillwanted.judge(self.parent, desc, mc)
        if verdict != "no base":
            self.grace.forget(desc)
        if verdict != "hub decides":
            self.undecided.forget(desc)
        if verdict == "wanted":  # deleted by the garbage collector or by hand
            self.carried.keep(desc)
            await applier.remove_finalizer(self.parent, desc)
            return
        if verdict == "hub decides":  # the mark's watch event looks again, and resyncs now and then (Undecided)
            await self.undecided.wait(desc, lambda said: applier.mark_pending(self.parent, desc, said), "cleanup")
            return
        if verdict == "no base" and self.grace.waiting(desc, lambda: self._recheck(desc["metadata"]["name"])):
            return
        try:
            released = await applier.cleanup(self.child, desc, self._claimants(desc))
        except ReleaseDeferred as e:  # the finalizer stays, and the status says why (review s39-b, finding 3)
            if applier.pending_worth_saying(desc, str(e)):
                await applier.mark_pending(self.parent, desc, f"cleanup pending: {e}")
            raise
        log.info("cleaned up Description %s: %s", desc["metadata"]["name"], released)
        await self._hand_over(desc, released, mc)
        self.carried.forget(desc)
        await applier.remove_finalizer(self.parent, desc)

    async def _hand_over(self, desc: Obj, released: Released, mc: Obj) -> None:
        """Apply at once the Descriptions that want what `desc` let go of (their refusal is over), and tell those
        it was handed to, and what was kept."""
        if not released.claimants and not released.kept:
            return
        cached = {owner_key(d): d for d in self._descriptions()}
        await applier.announce_released(self.parent, released, desc, cached.get, known.CREATED_BY_AGENT)
        for claimant in sorted(released.claimants):
            if claimant in cached:
                await self._safely(cached[claimant], mc, resync=False)

    async def _recheck(self, name: str) -> None:
        """Look again at a deleting Description, as the watch holds it now (gone: nothing to do), in turn with the
        watch's handlers (ListWatch.revisit: a cleanup racing a successor's apply would hand nothing over)."""
        async def handle(desc: Obj) -> None:
            await self._safely(desc, await self.view.get(), resync=False)

        if self.watch is not None:
            await self.watch.revisit(name, handle)

    async def _safely(self, desc: Obj, mc: Obj | None, resync: bool) -> None:
        try:
            await self.process(desc, mc, resync)
        except Exception as e:
            probes.pull_apply_errors.inc()
            log.warning("deploying Description %s failed: %s", desc["metadata"]["name"], e)

    async def run(self) -> None:
        """Apply every Description each resync period (from the cache: no request) and each change in between
        (clusternet_api.listwatch: one list, then a watch that resumes, it does not re-list). Cancel to stop."""
        async def on_list(items: list[Obj]) -> None:
            work = [desc for desc in items if not idle(desc, resync=True)]
            if not work:
                return  # nothing to do, whoever deploys: no need to ask the parent about the cluster
            mc = await self.view.get()
            for desc in work:
                await self._safely(desc, mc, resync=True)

        async def on_event(event: Obj) -> None:
            if event["type"] in ("ADDED", "MODIFIED") and not idle(event["object"], resync=False):
                await self._safely(event["object"], await self.view.get(), resync=False)

        self.watch = ListWatch(self.parent, applier.DESC_API, "Description", self.namespace,
                               max(1.0, self.resync_seconds), on_list, on_event)
        try:
            await self.watch.run()
        finally:
            self.grace.cancel()


def idle(desc: Obj, resync: bool) -> bool:
    """Nothing for this agent to do about the Description, whatever its ManagedCluster says: a Helm one (deployed
    through its HelmReleases, helmpuller.py), one being deleted without our finalizer, or one whose generation is
    deployed already, unless this is a resync and it did not opt out of drift correction or still owes a prune."""
    meta = desc["metadata"]
    if (desc.get("spec") or {}).get("deployer") == "Helm":
        return True
    if meta.get("deletionTimestamp"):
        return known.FINALIZER_APPS not in (meta.get("finalizers") or [])
    owed = applier.drift_corrected(desc) or pendingprunes.prunes_pending(desc)
    return applier.deployed(desc) and not (resync and owed)
