"""Which Description an object in a child belongs to, and how a Description lets go of one.

Two marks, both annotations set by the applier (applier.py):
- `apps.clusternet.io/owned-by-description: <namespace>.<name>`: we created the object; it is deleted when its
  Description no longer deploys it;
- `apps.clusternet.io/adopted-by-description: <namespace>.<name>`: it existed before (made by hand, say) and
  was taken over; it is never deleted. Letting go of it removes only that mark.

Where we differ from Clusternet: its deployer takes over existing objects too, but marks them owned-by like the
ones it creates (pkg/utils/deployer.go: create, then update on AlreadyExists), and its cleanup deletes every
object its Descriptions name, whoever made it; a second Subscription deploying the same object just overwrites
the first's content and mark. Here a second Description is refused the object while another holds it
(applier.py); when the holder lets it go (deleted, or its feeds drop the object) it is handed to a Description
that wants it (a `claimant`, the one that reported the conflict first) instead of being deleted and re-created
at that one's next resync: the object is never missing in between. The agent applies one Description at a
time; the hub's workers do not, so a claimant whose own cleanup finishes just before the hand-over leaves the
object behind, marked as its own: left over, never deleted by a Description its mark does not name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from clusternet_api import known
from clusternet_api.apierrors import ResourceNotFound, explain, is_passing
from clusternet_api.apiresource import split_group
from clusternet_api.cascadeguard import ContentsUnknown, crd_holds, foreign_contents, foreign_instances, summary
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.preconditions import Deleted, delete_as_read
from clusternet_api.rawobjects import decode_raw

log = logging.getLogger(__name__)

ANNOTATION_OWNED = known.ANNOTATION_OWNED_BY_DESCRIPTION
ANNOTATION_ADOPTED = "apps.clusternet.io/adopted-by-description"


def owner_key(desc: Obj) -> str:
    return f"{desc['metadata']['namespace']}.{desc['metadata']['name']}"


def identity(obj: Obj) -> dict[str, str]:
    meta = obj.get("metadata") or {}
    ident = {"apiVersion": str(obj.get("apiVersion")), "kind": str(obj.get("kind")), "name": str(meta.get("name"))}
    if meta.get("namespace"):
        ident["namespace"] = str(meta["namespace"])
    return ident


def ident_key(ident: dict[str, str]) -> str:
    return json.dumps(ident, sort_keys=True)


def status_ident(status: Obj) -> dict[str, str]:
    """The identity of the object a `manifestStatuses` entry is about."""
    return {k: str(status[k]) for k in ("apiVersion", "kind", "name", "namespace") if status.get(k)}


GROUP_MOVES = {
    ("extensions", "Deployment"): "apps", ("extensions", "DaemonSet"): "apps", ("extensions", "ReplicaSet"): "apps",
    ("extensions", "Ingress"): "networking.k8s.io", ("extensions", "NetworkPolicy"): "networking.k8s.io",
    ("extensions", "PodSecurityPolicy"): "policy", ("events.k8s.io", "Event"): "",
}
"""(old group, kind) -> the group the kind moved to: the API server serves one stored object under both."""


def object_key(ident: dict[str, str]) -> str:
    """Which object in the child an identity names: group, kind, namespace and name, not the version.

    The API server stores one object for all the versions of its kind (and for a kind that moved group, both
    groups: GROUP_MOVES); a feed migrated from policy/v1beta1 to policy/v1 names the object it deployed before.
    Pruning by the full identity (apiVersion included) deleted it right after applying it (review F1)."""
    group = ident["apiVersion"].rpartition("/")[0]
    group = GROUP_MOVES.get((group, ident["kind"]), group)
    return json.dumps([group, ident["kind"], ident.get("namespace") or "", ident["name"]])


# Adoptions owed: (Description key, object_key) of objects someone else had put into a namespace the same apply had
# just created (applier._apply_object: the unread write's answer was 200, not 201), until the adopting write lands:
# its failure leaves our "owned" mark on someone else's object. The next apply adopts an owed object it finds there
# (one it creates anew is ours), and a cleanup before it only takes our mark off. Kept by this process only:
# another process deploying it meanwhile (a restart, another hub leading, the sync mode switched) takes the mark
# for the truth, and so does anyone after an unread write whose answer was lost (README).
adoption_owed: set[tuple[str, str]] = set()


def owe_adoption(key: str, ident: dict[str, str]) -> None:
    adoption_owed.add((key, object_key(ident)))


def adoption_is_owed(key: str, ident: dict[str, str]) -> bool:
    return (key, object_key(ident)) in adoption_owed


def adoption_made(key: str, ident: dict[str, str]) -> None:
    adoption_owed.discard((key, object_key(ident)))


def describe(ident: dict[str, str]) -> str:
    ns = ident.get("namespace")
    return f"{ident['kind']} {ns + '/' if ns else ''}{ident['name']}"


def marks(obj: Obj | None) -> tuple[str | None, str | None]:
    """(owned-by, adopted-by) of an object in a child."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(ANNOTATION_OWNED), annotations.get(ANNOTATION_ADOPTED)


class Claimants:
    """The other Descriptions of the cluster namespace that deploy the objects one Description lets go of.

    `others` is read (and every raw object of theirs decoded) only when something is let go of: most applies
    prune nothing. Descriptions being deleted and Helm ones (they deploy no raw objects) claim nothing; among
    several, one whose status already reports the conflict with the leaving Description comes first, then the
    oldest."""

    def __init__(self, leaving: Obj, others: Callable[[], Iterable[Obj]] = tuple) -> None:
        self.key, self.namespace = owner_key(leaving), leaving["metadata"]["namespace"]
        self.others = others
        self._by_object: dict[str, str] | None = None

    def of(self, ident: dict[str, str]) -> str | None:
        if self._by_object is None:
            self._by_object = self._index()
        return self._by_object.get(object_key(ident))

    def _index(self) -> dict[str, str]:
        wanting = [d for d in self.others() if d["metadata"].get("namespace") == self.namespace
                   and owner_key(d) != self.key and not d["metadata"].get("deletionTimestamp")
                   and (d.get("spec") or {}).get("deployer") != "Helm"]
        conflict = f"Description {self.key};"  # as applier.py words the refusal
        wanting.sort(key=lambda d: (conflict not in str((d.get("status") or {}).get("reason")),
                                    str(d["metadata"].get("creationTimestamp") or ""), d["metadata"]["name"]))
        out: dict[str, str] = {}
        for desc in wanting:
            for obj in decode_raw((desc.get("spec") or {}).get("raw") or []):
                out.setdefault(object_key(identity(obj)), owner_key(desc))
        return out


NOT_LET_GO, UNREADABLE = "no longer deployed; not let go of", "cannot be read to let go of it"
"""What a refusal to let go of an object says after the object's name (Released.errors)."""

SAID_AT_MOST = 5
"""Refusals named in one status reason or event; the rest are counted."""


@dataclass
class Released:
    """What letting go of objects did, by object (`Kind namespace/name`)."""

    deleted: list[str] = field(default_factory=list)
    handed_over: dict[str, list[str]] = field(default_factory=dict)  # claimant -> objects now marked as its own
    unadopted: list[str] = field(default_factory=list)  # adopted objects left in place, our mark removed
    kept: dict[str, str] = field(default_factory=dict)
    """Namespaces and CRDs we created but did not delete, our mark removed: what kept each (cascadeguard.py)."""
    claimants: set[str] = field(default_factory=set)
    """Descriptions wanting something let go of (handed over to them, or deleted or unadopted while they were
    refused it): to apply at once, so the refusal in their status does not outlive its cause."""
    deferred: list[dict[str, str]] = field(default_factory=list)
    """Objects of ours not let go of now, to look at again: changed while being deleted, not readable, or a
    Namespace or CRD whose contents cannot be listed now (release)."""
    errors: list[str] = field(default_factory=list)
    """One line per object the child refused to let go of (a 403 on its DELETE, say): it is in `deferred` too."""

    def refusals(self, limit: int = SAID_AT_MOST) -> str:
        """The errors in one line, at most `limit` of them and how many more: a status reason, an event, a log line
        (one per refused object made them grow without bound)."""
        more = len(self.errors) - limit
        return "; ".join(self.errors[:limit]) + (f"; and {more} more" if more > 0 else "")

    def __str__(self) -> str:
        """One log line's worth, for people (the dataclass's repr was what cleanup logs showed)."""
        parts = [f"deleted {', '.join(self.deleted)}" if self.deleted else "deleted nothing"]
        if self.handed_over:
            parts.append("handed over " + "; ".join(f"{', '.join(objs)} to {to}"
                                                    for to, objs in self.handed_over.items()))
        if self.unadopted:
            parts.append(f"left in place (adopted) {', '.join(self.unadopted)}")
        if self.kept:
            parts.append("kept " + "; ".join(f"{obj} ({why})" for obj, why in self.kept.items()))
        if self.deferred:
            parts.append(f"{len(self.deferred)} to look at again later")
        if self.errors:
            parts.append("failed: " + self.refusals())
        return "; ".join(parts)


class ReleaseDeferred(Exception):
    """A cleanup could not delete everything now (Released.deferred): to try again, its finalizer kept."""


def _not_served(e: Exception) -> bool:
    """A read failing because the server serves no such path now: a "no matches for kind", or a 404 for the path
    (kube.Kube raises one when the answer is no object's 404)."""
    return isinstance(e, ResourceNotFound) or (isinstance(e, ApiException) and e.status == 404)


async def _served_elsewhere(child: KubeApi, ident: dict[str, str], e: Exception) -> str | None:
    """Another apiVersion the child serves the object's kind in, when a read found the deployed one not served (a
    404 for its path, a "no matches for kind"): another version of its group (batch/v1beta1 CronJobs are batch/v1
    from 1.25), or the group a built-in kind moved to (GROUP_MOVES: extensions/v1beta1 Ingresses are
    networking.k8s.io on 1.22). The object is the same there. Counted as gone before, the Description's finalizer
    was removed with the object still running (re-review s39). None when there is none, or it cannot be told."""
    if not _not_served(e):
        return None
    group, kind = split_group(ident["apiVersion"]), ident["kind"]
    groups = {group, GROUP_MOVES.get((group, kind), group)}
    try:
        versions = [v for v in await child.group_versions() if split_group(v) in groups and v != ident["apiVersion"]]
        for version in versions:  # each group's preferred version first
            if any(str(entry.get("kind")) == kind for entry in await child.discover(version)):
                return version
    except Exception as failed:
        log.info("cannot tell where %s is served now: %s", describe(ident), failed)
    return None


async def _kind_gone(child: KubeApi, ident: dict[str, str], e: Exception) -> bool:
    """Does a read's failure say the object's kind is served no more (a "no matches for kind", a 404 for its
    path), with no CRD of the kind there (cascadeguard.crd_holds: a cold API server answers 404 for a kind its CRD
    still serves, and a CRD that stopped serving an old version still holds the objects)? Then its objects went
    with its CRD. A built-in group's kind (no CRD) served in no other version (_served_elsewhere) counts as gone
    too. Any other failure is not."""
    if not _not_served(e):
        return False
    return "/" not in ident["apiVersion"] or not await crd_holds(child, ident["apiVersion"], ident["kind"])


def release_rank(ident: dict[str, str]) -> int:
    """Custom objects and everything else first, then CRDs, then Namespaces: a CRD's or Namespace's deletion
    takes what is in it, so it is let go of only once our own objects in it are gone (cascadeguard.py)."""
    return {"CustomResourceDefinition": 1, "Namespace": 2}.get(ident["kind"], 0)


async def release_each(child: KubeApi, idents: list[dict[str, str]], key: str,
                       claimant: Callable[[dict[str, str]], str | None], out: Released,
                       applied: frozenset[str] = frozenset(), may_delete: bool = True,
                       unlisted: frozenset[str] = frozenset()) -> None:
    """Let go of each object (release), in release_rank's order.

    One the child refuses to let go of (a 403 on its DELETE or its mark's patch, say) goes to `out.errors`, in its
    words, and to `out.deferred` (so does one it cannot answer for now, unsaid), and the others are let go of all
    the same: the error escaped before, so the Description's status kept saying Success with no event, and a
    cleanup stopped at the first refusal (review s39-b, finding 3). CRDs and Namespaces wait, our mark kept, while
    anything of a rank before them was not let go of: still there, it counted as someone else's content, and our
    Namespace was kept for good, our mark removed (review s39-a, F2). `unlisted`: object_keys the Description
    never listed as deployed (its spec's objects whose apply failed): one of them that cannot be read is not
    waited on."""
    for ident in sorted(idents, key=release_rank):
        if release_rank(ident) and any(release_rank(d) < release_rank(ident) for d in out.deferred):
            out.deferred.append(ident)
            continue
        try:
            await release(child, ident, key, claimant(ident), out, applied, may_delete,
                          listed=object_key(ident) not in unlisted)
        except ApiException as e:
            if is_passing(e):  # the child busy or restarting (a 503 on the DELETE): looked at again, unsaid
                log.info("cannot let go of %s now (%s); left for the next look", describe(ident), e)
            else:
                out.errors.append(explain(e, f"{describe(ident)} ({NOT_LET_GO})"))
            out.deferred.append(ident)


LOOKS = 3
"""How many times release reads an object again after its DELETE found it changed since it was read."""


async def release(child: KubeApi, ident: dict[str, str], key: str, claimant: str | None, out: Released,
                  applied: frozenset[str] = frozenset(), may_delete: bool = True, listed: bool = True) -> None:
    """Let go of one object: only when it carries Description `key`'s mark, and never by deleting one it adopted,
    nor one whose UID is among `applied` (the UIDs the same apply just applied: under another name, an alias
    object_key does not know, it is still in the spec).

    Ours (owned-by): handed over to `claimant` when there is one (the mark rewritten), else deleted. Adopted:
    only our adopted-by mark is removed, by a JSON patch whose `test` makes sure it still names us. No
    server-side-apply release of our fields: applying an empty configuration as our field manager would make the
    API server remove every field only we own (a ConfigMap's data keys, say), and the object is to be left as
    it is. Its managedFields keep naming our field manager for those fields, which only a later server-side
    apply notices (a conflict it may force); the previous content is not restored (we never kept it).

    The DELETE carries the UID and resourceVersion just read as preconditions, so what is deleted is the object
    whose mark was checked, not one re-created or handed over meanwhile (review F8). A 409 (it changed since:
    often only its status) is no error: the object is read and checked again, up to LOOKS times, then left in
    `out.deferred` for the next apply or cleanup to look at."""
    for _ in range(LOOKS):
        if await _release_once(child, ident, key, claimant, out, applied, may_delete, listed):
            return
    log.info("%s kept changing while being let go of; left for the next look", describe(ident))
    out.deferred.append(ident)


async def _release_once(child: KubeApi, ident: dict[str, str], key: str, claimant: str | None, out: Released,
                        applied: frozenset[str], may_delete: bool = True, listed: bool = True,
                        elsewhere: bool = True) -> bool:
    """One look at the object (release): False when its DELETE found it changed since this look read it. Without
    `may_delete` (a silent cluster: applier.apply_description's prune_waits), what would be deleted, or kept for
    what it holds, is left in `out.deferred`; hand-overs and unadoptions, which delete nothing, still happen."""
    what = describe(ident)
    try:
        existing = await child.get(ident["apiVersion"], ident["kind"], ident["name"], ident.get("namespace"))
    except Exception as e:
        # a child restarting or overloaded, or any failure while nothing may be deleted (a silent cluster, whose
        # dead agent's token may be refused): it stays listed (finalizer, status) for the next look
        if is_passing(e) or not may_delete:
            log.info("cannot look up %s for cleanup now (%s); left for the next look", what, e)
            out.deferred.append(ident)
            return True
        if elsewhere and (version := await _served_elsewhere(child, ident, e)) is not None:  # where it is now
            return await _release_once(child, {**ident, "apiVersion": version}, key, claimant, out, applied,
                                       may_delete, listed, elsewhere=False)
        if await _kind_gone(child, ident, e):  # its CRD deleted, and its objects with it
            log.warning("cannot look up %s for cleanup: %s; its kind is no longer served: nothing of ours there",
                        what, e)
            return True
        if not listed:  # never deployed, as far as the Description says (an apply the child refused): not waited on
            log.warning("cannot look up %s for cleanup: %s; never listed as deployed: nothing of ours there", what, e)
            return True
        # a refusal (401, 403) or a cold API server's 404 for a kind a CRD still holds: an object the Description lists
        # may well be there, so it is not counted as let go of (review s39-a, F1: the finalizer went with it there)
        out.errors.append(explain(e, f"{what} ({UNREADABLE})") if isinstance(e, ApiException)
                          else f"{what} ({UNREADABLE}): {e}")
        out.deferred.append(ident)
        return True
    owned, adopted = marks(existing)
    if existing is None or key not in (owned, adopted) or (owned and owned != key):
        adoption_made(key, ident)  # nothing of ours there: an adoption owed for a write that never landed is moot
        return True
    if (uid := existing["metadata"].get("uid")) and uid in applied:
        log.info("%s is an object this apply deployed under another apiVersion: kept", what)
        return True
    if owned == key and adoption_is_owed(key, ident):  # someone's, marked ours by a write whose adoption failed
        if await _rewrite_mark(child, ident, ANNOTATION_OWNED, key, None):
            out.unadopted.append(what)
        adoption_made(key, ident)
        if claimant:  # it adopts it at its next apply
            out.claimants.add(claimant)
        return True
    if owned == key and claimant:
        if await _rewrite_mark(child, ident, ANNOTATION_OWNED, key, claimant):
            out.handed_over.setdefault(claimant, []).append(what)
            out.claimants.add(claimant)
        return True
    if owned == key and not may_delete:
        out.deferred.append(ident)
        return True
    try:
        why = await _kept(child, ident, existing) if owned == key else None
    except ContentsUnknown as e:
        if _worth_waiting(key, ident, e):  # looked at again later, our mark kept
            out.deferred.append(ident)
            return True
        why = f"what it holds cannot be listed ({e})"
    contents_known(key, ident)
    if why:
        if await _rewrite_mark(child, ident, ANNOTATION_OWNED, key, None):
            out.kept[what] = why
    elif owned == key:
        deleted = await delete_as_read(child, ident["apiVersion"], ident["kind"], existing, unchanged=True,
                                       then="looking again")
        if deleted is Deleted.CHANGED:
            return False
        if deleted is Deleted.DONE:
            out.deleted.append(what)
    elif await _rewrite_mark(child, ident, ANNOTATION_ADOPTED, key, None):
        out.unadopted.append(what)
    if claimant:
        out.claimants.add(claimant)
    return True


CONTENTS_PATIENCE = 600.0
"""Seconds a Namespace or CRD of ours whose contents cannot be listed for a passing reason keeps our mark (its
deletion waits) before it is kept for good, our mark removed. Long enough for what passes in minutes: a child's
API server restarting or throttling (429, 500, 504), a tunnel down, an aggregated API's rollout (metrics-server's
APIService answers 503 for the seconds its new pod takes); short enough that a Description's deletion does not
wait for ever on a group that is down for good."""

CONTENTS_LOOKS_APART = 900.0
"""Seconds without a look after which a wait is forgotten, to start again if ever met again (review s39-a, F4):
the release was given up (the feed put back) or the cluster was silent for long."""

CONTENTS_LOOK_CREDIT = 300.0
"""At most how much of the time since the last look a look counts as waited: a Pull agent's slowest usual resync (5
minutes), so that its looks, one per resync, add up, while a silence of the cluster (no look) counts for no more
(re-review s39: with the whole gap counted, a 10-15 minute silence kept the Namespace at the first look after)."""

contents_unknown_since: dict[tuple[str, str], tuple[float, float]] = {}
"""(Description key, object_key) -> (seconds waited, monotonic time of the last look) while its contents cannot be
listed for a passing reason. Kept by this process only: a restart, or another hub leading, waits again (never
less)."""


def _worth_waiting(key: str, ident: dict[str, str], e: ContentsUnknown) -> bool:
    """Is a release whose contents could not be listed to be tried again later, rather than the object kept for
    good: while the failure is a passing one (no answer, or an answer such as 429, 500, 503 or 504, or a
    just-started API server's 404 for a group a CRD still serves: e.cold), until CONTENTS_PATIENCE has been waited
    (CONTENTS_LOOK_CREDIT at most per look). A refusal (401, 403) or a contents check that cannot be made (a CRD
    that names no kind) is not waited on.

    Where we differ from the code before: a passing answer (a group's 503, the API server's 429) removed our mark
    at once, so a metrics-server rollout during a cleanup left a Namespace of ours behind for good, and so did a
    cleanup meeting a child's API server in the seconds after its restart (its CRD groups answer 404 until its CRD
    handler serves them); and a child that never answered held the Description's deletion for ever."""
    if not (e.cold or (e.__cause__ is not None and is_passing(e.__cause__))):
        return False
    now, entry = time.monotonic(), (key, object_key(ident))
    for stale in [k for k, (_, seen) in contents_unknown_since.items() if now - seen > CONTENTS_LOOKS_APART]:
        del contents_unknown_since[stale]  # given up long ago: started again if ever met again
    waited, last = contents_unknown_since.get(entry, (0.0, now))
    waited += min(now - last, CONTENTS_LOOK_CREDIT)
    contents_unknown_since[entry] = (waited, now)
    left = CONTENTS_PATIENCE - waited
    if left > 0:
        log.info("what %s holds cannot be listed now (%s); looked at again later, for %.0f s more",
                 describe(ident), e, left)
    return left > 0


def contents_known(key: str, ident: dict[str, str]) -> None:
    contents_unknown_since.pop((key, object_key(ident)), None)


async def _kept(child: KubeApi, ident: dict[str, str], existing: Obj) -> str | None:
    """Why a Namespace or CRD of ours is not to be deleted: what it still holds; ContentsUnknown when that cannot
    be told (cascadeguard.py). None for any other object, and for one whose deletion removes nothing else."""
    if ident["kind"] == "Namespace" and ident["apiVersion"] == "v1":
        foreign = await foreign_contents(child, ident["name"])
    elif ident["kind"] == "CustomResourceDefinition":
        foreign = await foreign_instances(child, existing)
    else:
        return None
    return f"it still holds {summary(foreign)}" if foreign else None


async def _rewrite_mark(child: KubeApi, ident: dict[str, str], annotation: str, expected: str,
                        new: str | None) -> bool:
    """Replace (or, for None, remove) one of our marks, only while it still says `expected`: False when it no
    longer does or the object is gone (someone else got there first: theirs to decide)."""
    path = "/metadata/annotations/" + annotation.replace("~", "~0").replace("/", "~1")
    body = [{"op": "test", "path": path, "value": expected},
            {"op": "remove", "path": path} if new is None else {"op": "replace", "path": path, "value": new}]
    try:
        await child.patch(ident["apiVersion"], ident["kind"], ident["name"], body, ident.get("namespace"),
                          content_type="application/json-patch+json")
    except ApiException as e:
        if e.status in (404, 409, 422):  # gone, or the test failed (422; some servers answer 409)
            log.info("%s changed hands meanwhile (HTTP %s); left as it is", describe(ident), e.status)
            return False
        raise
    return True
