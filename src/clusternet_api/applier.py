"""Applying a Description to a child cluster, by whichever side deploys it (hub push or agent pull).

Both sides use the same code and field manager, so switching a cluster between push and pull changes
who applies, not what is applied: nothing is redeployed or deleted by the switch.

Ownership is explicit: every object created from a Description carries
`apps.clusternet.io/owned-by-description: <namespace>.<name>`. Pruning and cleanup delete only objects
carrying *this* Description's mark, never objects someone else created; an object that already existed
unmarked is adopted (marked `adopted-by-description`, with an `Adopted` event: as Clusternet does, the
Description's content overwrites what it held) and left in place on cleanup, only our mark removed
(ownership.py). An object another Description holds is refused (two Subscriptions deploying one object) until
that one lets go of it, which hands it over (ownership.py).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from clusternet_api import known, prunedfields
from clusternet_api.apierrors import explain
from clusternet_api.cascadeguard import DEFAULTS as NAMESPACE_DEFAULTS
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import error_text
from clusternet_api.ownership import (
    ANNOTATION_ADOPTED,
    ANNOTATION_OWNED,
    NOT_LET_GO,
    UNREADABLE,
    Claimants,
    Released,
    ReleaseDeferred,
    adoption_is_owed,
    adoption_made,
    describe,
    ident_key,
    identity,
    marks,
    object_key,
    owe_adoption,
    owner_key,
    release_each,
    status_ident,
)
from clusternet_api.pendingprunes import PRUNE_PENDING, read_object
from clusternet_api.rawobjects import decode_raw
from clusternet_api.timefmt import now_rfc3339

log = logging.getLogger(__name__)

FIELD_MANAGER = "clusternet-deployer"
ANNOTATION_DRIFT_CORRECTION = known.ANNOTATION_DRIFT_CORRECTION
DESC_API = known.APPS_API_VERSION
# Why a Pull agent keeps the child's objects of a deleting Description or HelmRelease whose Base is missing
# (clusternet_agent.stillwanted, "hub decides"). The hub does not write its own "cluster offline" reason over it
# while it holds (awaits_hub; clusternet_hub.controller.pusher.agents_reason_stands): the two used to overwrite
# each other, each write the other's watch event (review s33, finding 1).
AWAITING_HUB = ("its Base is gone and the hub, which marks what its Subscriptions no longer want, has not marked it: "
                "the child's objects stay until the hub writes the Base back or marks it")


def awaits_hub(obj: Obj) -> bool:
    """Whether the status of `obj` gives a Pull agent's AWAITING_HUB and that still holds: the hub has not marked it
    (known.ANNOTATION_NO_LONGER_WANTED with its Subscription's uid; once marked, the hub's own reason is the true
    one: re-review s33, finding 1)."""
    status, meta = obj.get("status") or {}, obj["metadata"]
    said = str(status.get("reason") or status.get("description") or "")
    mark = (meta.get("annotations") or {}).get(known.ANNOTATION_NO_LONGER_WANTED)
    return AWAITING_HUB in said and not (mark and mark == (meta.get("labels") or {}).get(known.LABEL_SUBS_UID))


_STRIP_META = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink",
               "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences")


def prepare(obj: Obj, key: str, adopted: bool) -> Obj:
    """The object as applied: system metadata stripped, our ownership mark set (a template's own marks, copied
    from a child with `kubectl get -o yaml` say, dropped: they would name a Description as owner that is not)."""
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.setdefault("metadata", {})
    for name in _STRIP_META:
        meta.pop(name, None)
    annotations = dict(meta.get("annotations") or {})
    for name in ("kubectl.kubernetes.io/last-applied-configuration", ANNOTATION_OWNED, ANNOTATION_ADOPTED):
        annotations.pop(name, None)
    annotations[ANNOTATION_ADOPTED if adopted else ANNOTATION_OWNED] = key
    meta["annotations"] = annotations
    _default_port_protocols(out)
    return out


def _default_port_protocols(obj: Obj) -> None:
    """Fill `protocol: TCP` where it is part of a list key: older apiservers reject server-side apply of
    port lists that omit it ("associative list ... omits key field protocol")."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if obj.get("kind") == "Service":
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
    pod = spec.get("template", {}).get("spec") if isinstance(spec.get("template"), dict) else None
    if obj.get("kind") == "Pod":
        pod = spec
    if isinstance(pod, dict):
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for port in container.get("ports") or []:
                port.setdefault("protocol", "TCP")


@dataclass
class ApplyOutcome:
    phase: str
    reason: str | None
    statuses: list[Obj] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    """Objects that existed unmarked and were taken over by this apply (not those adopted earlier)."""
    released: Released = field(default_factory=Released)
    """What the feeds no longer name: deleted when ours, handed over to a Description that wants it, unadopted."""
    new_namespaces: set[str] = field(default_factory=set)
    """Namespaces this apply created: nothing of anyone else's can be in them yet."""

    def status_patch(self, generation: int | None) -> Obj:
        return {"phase": self.phase, "reason": self.reason, "manifestStatuses": self.statuses,
                "observedGeneration": generation}


def deployed(desc: Obj) -> bool:
    """Is the Description's current generation deployed (its status says Success for it)?"""
    status = desc.get("status") or {}
    return status.get("phase") == "Success" and status.get("observedGeneration") is not None and str(
        status["observedGeneration"]) == str(desc["metadata"].get("generation"))


def drift_corrected(desc: Obj) -> bool:
    """Is the Description re-applied at resyncs (its Subscription did not opt out of drift correction)?"""
    return (desc["metadata"].get("annotations") or {}).get(ANNOTATION_DRIFT_CORRECTION) != "false"


def prune_only(desc: Obj) -> bool:
    """Deployed with drift correction off: a push or pull does only a prune it owes (pendingprunes), reading what
    the Description names instead of applying it (review s36 for the hub; review s39-a, F3 for the agent, which
    skipped such a Description at every resync until the next spec change)."""
    return not drift_corrected(desc) and deployed(desc)


async def apply_description(child: KubeApi, desc: Obj, claimants: Claimants | None = None,
                            previous: list[Obj] | None = None, prune_waits: str | None = None,
                            prune_only: bool = False) -> ApplyOutcome:
    """Server-side apply every object of the Description, prune what dropped out, report statuses.

    `claimants`: the cluster namespace's other Descriptions, to hand pruned objects to one that wants them.
    `previous`: what counts as deployed before (its `status.manifestStatuses` when None; carried.py).
    `prune_waits`: why nothing may be deleted in the cluster now (silent, or not heard from since the hub
    started): what dropped out then stays listed, and is pruned by the first apply after (audit s36: only a
    Description's deletion waited, so removing a feed deleted its objects in a cluster whose agent was dead).

    A previously deployed object whose apply fails this time stays listed too (with its previous status): dropped,
    it would have been neither pruned nor cleaned up once its feed went, and its owner mark would have refused
    every other Subscription deploying it for good (audit s36).
    `prune_only`: only let go of what dropped out, reading (not applying) what is named: a Description whose user
    turned drift correction off is not re-applied for a prune owed (review s36)."""
    key = owner_key(desc)
    objects = decode_raw((desc.get("spec") or {}).get("raw") or [])
    if previous is None:
        previous = list((desc.get("status") or {}).get("manifestStatuses") or [])
    same_generation = deployed(desc)
    previously = {ident_key(status_ident(s)) for s in previous}
    outcome = ApplyOutcome("Success", None)
    current = {object_key(identity(obj)) for obj in objects}  # objects, whatever apiVersion names them
    results: dict[int, tuple[str | None, Obj | None]] = {}
    limit = asyncio.Semaphore(8)

    async def apply_one(index: int, obj: Obj) -> None:
        async with limit:
            if prune_only:
                results[index] = await read_object(child, obj)
            else:
                results[index] = await _apply_object(child, obj, key, previously, same_generation, outcome)

    # Namespaces, then CRDs, then everything else (rendering ordered them); each group concurrently.
    ranks = [_rank(obj) for obj in objects]
    for rank in sorted(set(ranks)):
        await asyncio.gather(*(apply_one(i, o) for i, o in enumerate(objects) if ranks[i] == rank))
    errors = [err for i in range(len(objects)) if (err := results[i][0])]
    if prune_only and errors:  # no failure (nothing was applied); nothing deleted without every UID to guard
        prune_waits, errors = "what the Description names could not all be read now: " + "; ".join(errors), []
    outcome.statuses = [manifest_status(objects[i], applied) for i in range(len(objects))
                        if (applied := results[i][1]) is not None and not prune_only]
    failed = {object_key(identity(objects[i])) for i in range(len(objects)) if results[i][1] is None or prune_only}
    outcome.statuses += [s for s in previous if object_key(status_ident(s)) in failed]
    claimants = claimants or Claimants(desc)
    # the same objects under names object_key cannot tell apart (an alias it does not know): never pruned
    uids = frozenset(str(uid) for _, obj in results.values() if (uid := ((obj or {}).get("metadata") or {}).get("uid")))
    dropped = [s for s in previous if object_key(status_ident(s)) not in current]
    await release_each(child, [status_ident(s) for s in dropped], key, claimants.of, outcome.released, uids,
                       may_delete=prune_waits is None)
    # what could not be let go of now stays listed, so the next apply looks at it again. A refusal is said in the
    # reason but is no Failure of what is deployed: a Failure is not deployed, and a Description whose user turned
    # drift correction off would be re-applied in full at every push, putting back hand edits (review s39)
    outcome.statuses += [s for s in previous if status_ident(s) in outcome.released.deferred]
    refused = outcome.released.refusals() if outcome.released.errors else None
    if errors:
        outcome.phase, outcome.reason = "Failure", "; ".join(errors + ([refused] if refused else []))
    elif outcome.released.deferred:
        why = prune_waits or refused or "changed while being deleted, or unreadable now"
        outcome.reason = f"{PRUNE_PENDING} ({why}): " + listing(outcome.released.deferred)
    return outcome


def listing(idents: list[dict[str, str]], limit: int = 10) -> str:
    """`Kind namespace/name` of each object, at most `limit` of them and how many more."""
    more = len(idents) - limit
    return ", ".join(describe(i) for i in idents[:limit]) + (f" and {more} more" if more > 0 else "")


def manifest_status(obj: Obj, applied: Obj) -> Obj:
    """What the parent learns of one applied object: its `.status` and (ours) the `metadata.generation` that
    status belongs with, so a status whose observedGeneration is behind it is not taken as the new spec's."""
    entry: dict[str, object] = {**identity(obj), "observedStatus": applied.get("status") or {}}
    generation = (applied.get("metadata") or {}).get("generation")
    if isinstance(generation, int):
        entry["generation"] = generation
    return entry


def _in_new_namespace(ident: dict[str, str], new_namespaces: set[str]) -> bool:
    """In a namespace this apply created, so nothing can be there yet; except what controllers put into every
    new namespace at once (a feed may still name those)."""
    ns = ident.get("namespace")
    return bool(ns) and ns in new_namespaces and (ident["kind"], ident["name"]) not in NAMESPACE_DEFAULTS


def _rank(obj: Obj) -> int:
    kind = obj.get("kind")
    return 0 if kind == "Namespace" else 1 if kind == "CustomResourceDefinition" else 2


async def _apply_object(child: KubeApi, obj: Obj, key: str, previously: set[str], same_generation: bool,
                        outcome: ApplyOutcome) -> tuple[str | None, Obj | None]:
    """Apply one object: (error or None, the applied object or None)."""
    ident = identity(obj)
    what = describe(ident)
    try:
        unread = _in_new_namespace(ident, outcome.new_namespaces)
        if unread:
            # saves a GET per object on a first deployment. What a controller that fills new namespaces put there
            # in between (Kyverno `generate` rules, OpenShift project templates, istiod's root certificate) shows
            # in the apply's answer: 200, not 201 Created. Its managedFields cannot tell: a forced apply that takes
            # over every field another manager set drops that manager's entry. A failure of the adopting apply
            # that follows leaves our "owned" mark on it: the adoption is owed (ownership.adoption_owed). A write
            # whose answer is lost tells nothing: taken as ours (as every write an API server restart interrupts
            # mid-push; owing those adopted, never deleted, the objects we had created: test_faults).
            existing = None
        else:
            existing = await child.get(ident["apiVersion"], ident["kind"], ident["name"], ident.get("namespace"))
        if refusal := _held_by_another(existing, key):
            return f"{what}: {refusal}; two subscriptions deploy the same object", None
        owner, adopter = marks(existing)
        adopted = existing is not None and (owner is None or adoption_is_owed(key, ident))
        desired = prepare(obj, key, adopted)
        created = True
        try:
            if unread:
                applied, created = await child.apply_created(desired, FIELD_MANAGER)
            else:
                applied = await child.apply(desired, FIELD_MANAGER)
        except ApiException as e:
            if e.status != 500 or "typed patch" not in str(e.reason):
                raise
            # the child's apiserver cannot server-side apply this kind: create or merge-patch instead
            applied = await (child.create(desired) if existing is None else child.patch(
                ident["apiVersion"], ident["kind"], ident["name"], desired, ident.get("namespace")))
            created = True  # a create that found the object there failed (409)
        if not created:  # unread, and it was there before us: ours to adopt, never to delete (review F7)
            adopted = True
            owe_adoption(key, ident)  # until this adopting write lands: its failure leaves our "owned" mark
            applied = await child.apply(prepare(obj, key, adopted), FIELD_MANAGER)
            outcome.adopted.append(what)
        if adopted or existing is None:  # adopted, or created by us (an owed object its maker deleted meanwhile)
            adoption_made(key, ident)
    except ApiException as e:
        return explain(e, what), None
    except Exception as e:  # discovery of an unknown kind, malformed object
        return f"{what}: {error_text(e)}", None
    if existing is None and ident["kind"] == "Namespace" and ident["apiVersion"] == "v1":
        outcome.new_namespaces.add(ident["name"])
    if existing is not None and adopted and adopter is None:
        outcome.adopted.append(what)
    if ident_key(ident) in previously and same_generation and (existing is None or changed(existing, applied)):
        outcome.drifted.append(what + (" (deleted)" if existing is None else " (changed)"))
    return None, applied


def _held_by_another(existing: Obj | None, key: str) -> str | None:
    """Why the object is not ours to apply: another Description created it, or adopted it (taking it over
    from that one would make an object someone made by hand ours, and deleted with us)."""
    owner, adopter = marks(existing)
    if owner and owner != key:
        return f"already deployed by Description {owner}"
    if not owner and adopter and adopter != key:
        return f"already adopted by Description {adopter}"
    return None


def changed(existing: Obj, applied: Obj) -> bool:
    """Did our apply change the object, i.e. put back what someone else had changed (drift)?

    Not a resourceVersion comparison alone: the API server also writes (a new resourceVersion) when an apply
    changes no field but only the object's managedFields. kube-apiserver 1.20 does so on the apply after the one
    that took fields over from another manager (adopting an object `kubectl create` made): it rewrites that
    manager's entry, and a drift was reported on every adoption. Status is not ours to apply either; its
    controller may write it between our read and our apply. (Clusternet's ResourceNeedResync ignores the same
    fields when it compares.)"""
    if existing["metadata"].get("resourceVersion") == applied["metadata"].get("resourceVersion"):
        return False
    return _content(existing) != _content(applied)


def _content(obj: Obj) -> Obj:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


async def cleanup(child: KubeApi, desc: Obj, claimants: Claimants | None = None) -> Released:
    """Let go of everything this Description deployed in the child (CRDs, then Namespaces last): delete what it created
    (or hand it over to one of `claimants`), unadopt what it adopted (ownership.release).

    Raises ReleaseDeferred when an object of ours kept changing under its DELETE, or could not be read for a passing
    reason (apierrors.is_passing: a child restarting): the caller's finalizer is then not removed, and the next
    resync tries again (removing it would leave the object behind for ever, untracked; an unreadable object counted
    as let go of until 2026-12-06, audit s35)."""
    key = owner_key(desc)
    idents: dict[str, dict[str, str]] = {}  # one per object: the spec's apiVersion first, then the status's
    listed = [status_ident(s) for s in (desc.get("status") or {}).get("manifestStatuses") or []]
    for ident in [identity(o) for o in decode_raw((desc.get("spec") or {}).get("raw") or [])] + listed:
        idents.setdefault(object_key(ident), ident)
    claimants = claimants or Claimants(desc)
    released = Released()
    await release_each(child, list(idents.values()), key, claimants.of, released,
                       unlisted=frozenset(idents) - {object_key(i) for i in listed})
    if released.deferred:  # the same words at each pass while nothing changes: the status is written once
        log.info("cleanup of Description %s: to look at again: %s", key, listing(released.deferred))
        raise ReleaseDeferred(released.refusals() if released.errors else CLEANUP_RETRIED)
    return released


def pending_worth_saying(desc: Obj, why: str) -> bool:
    """Is a cleanup's ReleaseDeferred (`why`) worth writing to the Description's status: not CLEANUP_RETRIED over a
    cleanup pending said already (refusals, say): with a refusal standing and a flaky read, the text alternated
    from pass to pass, and each write's watch event ran the cleanup again past its backoff (re-review s39)."""
    said = str((desc.get("status") or {}).get("reason") or "")
    return not (why == CLEANUP_RETRIED and said.startswith("cleanup pending: ") and (
        NOT_LET_GO in said or UNREADABLE in said))


CLEANUP_RETRIED = "some objects kept changing while being deleted, or could not be read now; tried again"
"""Why a cleanup waits when nothing was refused: not the objects of each pass, which a flaky child changes from
pass to pass, so that each new text, written to the Description's status, came back as a watch event and ran
the cleanup again at once, past its backoff (review s39)."""


# What a parent whose Description CRD predates observedGeneration (or is Clusternet's) loses (prunedfields)
STATUS_LOST = {"observedGeneration": "a Success cannot be told from one for an older generation, so a Subscription "
                                     "may show Ready before its clusters applied its latest change, and every "
                                     "resync writes each status again"}


async def _write_status(parent: KubeApi, meta: Obj, status: Obj) -> None:
    stored = await parent.patch(DESC_API, "Description", meta["name"], {"status": status}, meta["namespace"],
                                subresource="status")
    prunedfields.warn_if_pruned("Description", status, stored, STATUS_LOST)


async def report(parent: KubeApi, desc: Obj, outcome: ApplyOutcome, reporter: str) -> None:
    """Write the outcome, for the generation it applied, to the Description's status; post an event.

    A status the Description already holds is not written again: a resync re-applies every Description every
    30 s (drift), and rewriting unchanged statuses cost the parent 2 writes per cluster per minute, the
    hub's whole 50-QPS budget at 1,500 clusters (bench/scale.py)."""
    meta = desc["metadata"]
    status = outcome.status_patch(meta.get("generation"))
    writes: list[Awaitable[object]] = []
    if not same_status(desc.get("status") or {}, status):
        writes.append(_write_status(parent, meta, status))
    if outcome.adopted:
        writes.append(post_event(parent, desc, "Normal", "Adopted", ADOPTED_MESSAGE + ", ".join(outcome.adopted),
                                 reporter))
    if outcome.drifted:
        writes.append(post_event(parent, desc, "Warning", "DriftCorrected",
                                 "re-applied objects changed in the child: " + ", ".join(outcome.drifted),
                                 reporter))
    previous_phase = (desc.get("status") or {}).get("phase")
    if outcome.released.errors and outcome.phase == "Success" and outcome.released.refusals() not in str(
            (desc.get("status") or {}).get("reason") or ""):  # said once: the Subscription stays Ready (review s39)
        writes.append(post_event(parent, desc, "Warning", "PruneRefused", outcome.released.refusals(), reporter))
    if outcome.phase != previous_phase or (outcome.phase == "Failure" and
                                           outcome.reason != (desc.get("status") or {}).get("reason")):
        if outcome.phase == "Success":
            writes.append(post_event(parent, desc, "Normal", "SuccessfullyDeployed",
                                     "Description successfully deployed", reporter))
        else:
            writes.append(post_event(parent, desc, "Warning", "UnSuccessfullyDeployed", outcome.reason or "",
                                     reporter))
    await asyncio.gather(*writes)  # independent of each other; the status is what users wait for


ADOPTED_MESSAGE = ("took over objects that already existed in the child (their previous content is overwritten, "
                   "and not restored when the Subscription stops deploying them; they are never deleted): ")


async def announce_released(parent: KubeApi, released: Released, leaving: Obj, claimant: Callable[[str], Obj | None],
                            reporter: str) -> None:
    """What letting go did that users need to hear of: a `NamespaceKept` (or `CRDKept`) Warning on the leaving
    Description for each Namespace or CRD it created but did not delete (and why: cascadeguard.py), and a
    `TookOver` event on each Description objects were handed to (`claimant`: its key -> the Description, None
    when no longer known): it deploys them now, in place, where it was refused them before."""
    for what, why in released.kept.items():
        await post_event(parent, leaving, "Warning", "NamespaceKept" if what.startswith("Namespace ") else "CRDKept",
                         f"{what} was not deleted, only our mark removed: {why}; delete it yourself once "
                         "that may go", reporter)
    for key, objects in released.handed_over.items():
        if (desc := claimant(key)) is not None:
            await post_event(parent, desc, "Normal", "TookOver",
                             f"now holds {', '.join(objects)}: handed over in place (not deleted and re-created) "
                             f"by Description {owner_key(leaving)}, which no longer deploys them", reporter)


def same_status(current: Obj, patch: Obj) -> bool:
    """Does `current` already hold every field of this status merge patch (a None field: absent)?"""
    return all(json.dumps(current.get(k), sort_keys=True) == json.dumps(v, sort_keys=True) for k, v in patch.items())


async def post_event(parent: KubeApi, desc: Obj, type_: str, reason: str, message: str, reporter: str) -> None:
    """A best-effort event about a Description, or about any object that carries its apiVersion and kind (the
    events of cluster-scoped objects live in namespace default, as kubectl looks for them)."""
    import uuid

    meta = desc["metadata"]
    now = now_rfc3339()
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:10]}",
                     "namespace": meta.get("namespace") or "default"},
        "involvedObject": {"apiVersion": desc.get("apiVersion") or DESC_API, "kind": desc.get("kind") or "Description",
                           "name": meta["name"],
                           "namespace": meta.get("namespace") or "", "uid": meta.get("uid")},
        "type": type_, "reason": reason, "message": message[:1000], "source": {"component": reporter},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        await parent.create(event)
    except Exception as e:  # events are best effort
        log.info("posting event %s failed: %s", reason, e)


async def mark_pending(parent: KubeApi, desc: Obj, reason: str) -> bool:
    """Say in the Description's status why its deployment or cleanup waits; False when the status says so
    already: each write comes back as a watch event, so it is written once. The phase is kept while it is about
    the current generation (a cleanup waiting: what runs is what it says); a generation not deployed yet is
    Pending, not the Success of the one before (audit 7: `kubectl get desc` said Success while a change waited
    for the cluster's tunnel)."""
    status = desc.get("status") or {}
    meta = desc["metadata"]
    current = status.get("observedGeneration") is not None and str(status["observedGeneration"]) == str(
        meta.get("generation"))
    phase = status.get("phase") if current or meta.get("deletionTimestamp") else None
    if status.get("reason") == reason and status.get("phase") == (phase or "Pending"):
        return False
    await parent.patch(DESC_API, "Description", meta["name"], {"status": {
        "phase": phase or "Pending", "reason": reason}}, meta["namespace"], subresource="status")
    return True


def deployable_by_hub(mc: Obj) -> bool:
    """Clusternet's rule: the hub pushes when the mode is not Pull and the agent allows pushes."""
    return bool((mc.get("spec") or {}).get("syncMode") != "Pull" and (mc.get("status") or {}).get("appPusher"))


async def remove_finalizer(parent: KubeApi, desc: Obj) -> None:
    """Drop the apps finalizer from a Description (or a HelmRelease: any object of ours with its kind set)."""
    meta = desc["metadata"]
    finalizers = [f for f in meta.get("finalizers") or [] if f != known.FINALIZER_APPS]
    try:
        await parent.patch(DESC_API, desc.get("kind") or "Description", meta["name"], {"metadata": {
            "finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}}, meta["namespace"])
    except ApiException as e:
        if e.status not in (404, 409):
            raise
