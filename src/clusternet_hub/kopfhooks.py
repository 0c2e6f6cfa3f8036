"""Where the hub changes kopf's behaviour: its watch-streams outlive a restarting parent, a re-list forgets what it
no longer has, and its own patches are fenced like ours.

Watches. kopf retries a watch that fails with 429 and treats any other API error as fatal for the whole operator
(its design: crash and let Kubernetes restart the pod). A kube-apiserver starting again answers 404 "page not
found" for custom resources until its CRD handler has caught up: seen in tests/integration/test_faults.py, where
the hub exited 2 s after the parent came back, so nothing recovered by itself. That 404 is transient. The hub
watches only its own CRDs, without which it cannot run at all, so a 404 on their watch is waited out as kopf waits
out a 429: logged, then the stream starts again after `settings.watching.reconnect_backoff`. Clusternet's
informers (client-go reflectors) retry every watch error alike. kopf offers no setting for this, hence the wrapper
around its stream function (kopf 1.45; the unit test fails if kopf renames it).

Re-lists. After a 410, a failed LIST, or the 404 above, kopf lists again, and a listing yields only what exists:
an object deleted while the watch was down produced no DELETED event, and stayed in the hub's caches for the life
of the process (review 6, finding 4): a deleted ManagedCluster scheduled onto, a deleted Manifest rendered, a
deleted Globalization applied. client-go's informers (Clusternet's) compare a re-list with their store and emit
DeletedFinalStateUnknown for what it lacks; kopf keeps no such store. The same wrapper keeps one: the last body the
stream delivered of each object, per watch stream (resource and namespace). When a listing ends (kopf's
Bookmark.LISTED) every object it did not list is given to kopf as a DELETED event with that last body, as if the
watch had seen the deletion, so every consumer (kopf's own memory of the object, the hub's event handlers:
track_cluster, the controller's store) forgets it the way a real deletion makes it. A re-list compares with the
stream's own record, not the hub's caches: those also hold write responses made while the stream was down, which
may be newer than the listing (an object created after its snapshot), and must not be called deleted. A listing
that fails before its end deletes nothing; the next one decides.

The first listing compares with what the deployment controller listed before it (Store.prime): each watch of a
kind the controller caches starts only once prime has listed that kind, so that LIST is the older, and an object
it returned that the watch's first listing lacks was deleted in between, which neither the listing nor the watch
after it would ever say (review 6, left undone in stop 28). What the caches hold then is all older than the
watch's LIST (prime's objects, the hub's earlier write responses); what comes later is not compared. Prime lists
each kind on its own, so one whose LIST keeps failing holds back its own watch alone (with a warning after
Store.SEED_WAIT_WARNING). Without a seed (the unit tests), the first listing has nothing to compare with and
deletes nothing.
Objects being deleted but held by a finalizer (the hub's, on Subscriptions, Descriptions, HelmReleases) are still
listed, so they never count as gone. The record costs little: it holds the bodies kopf parsed, whose contents
the hub's caches share (its handlers store `dict(body)`, a shallow copy). A periodic LIST of every cached kind
would have done the same at the cost of reading everything again every period, with the same care needed about
what it may call deleted; the re-list is the moment objects can go missing, and kopf does it anyway.

Patches. kopf writes its own bookkeeping (finalizers, handler progress, the last-handled state) with its own
client, which our write fence (clusternet_api.fence) did not see: after a freeze past the Lease, a deposed
leader's kopf could still remove a finalizer or rewrite the diff base the new leader's kopf reads. kopf runs
inside the leader's fenced work, so its tasks carry the fence too; its patch function now asks the fence first
and raises LeadershipLost like our own writes. Client-go based operators (Clusternet's) have no such fence.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from kopf._cogs.clients import errors, patching, watching

from clusternet_api import fence
from clusternet_api.apiresource import key_of

log = logging.getLogger(__name__)
_kopf_continuous_watch = watching.continuous_watch
_kopf_patch_obj = patching.patch_obj

ObjectKey = tuple[str, str]
"""(namespace or "", name): the key of the hub's caches, and client-go's (an object re-created under the same name
since is an update in both, not a deletion)."""

# watch task -> (resource, namespace) -> what its stream last delivered of each object that exists. kopf runs one
# task per watch stream (queueing.watcher), which calls continuous_watch again after each end: the record outlives
# those calls, and goes with the task.
_delivered: weakref.WeakKeyDictionary[asyncio.Task[Any], dict[tuple[Any, Any], dict[ObjectKey, Any]]] = \
    weakref.WeakKeyDictionary()


Seed = Callable[[str, str], Awaitable[list[Any]]]
"""(group, plural) -> what the hub cached of that kind before its watch's first listing (Store.seed)."""
_seed: Seed | None = None


def _stream_record(resource: Any, namespace: Any) -> tuple[dict[ObjectKey, Any], bool]:
    """The stream's record, and whether this is its first call (no listing yet)."""
    task = asyncio.current_task()
    assert task is not None, "kopf's watch runs in a task"
    streams = _delivered.setdefault(task, {})
    first = (resource, namespace) not in streams
    return streams.setdefault((resource, namespace), {}), first


async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's stream, ended instead of failed on 404, so kopf's endless loop starts it again; at the end of each
    listing, a DELETED event for each object the stream delivered before that the listing lacks."""
    resource, namespace = kwargs.get("resource"), kwargs.get("namespace")
    delivered, first = _stream_record(resource, namespace)
    if first and _seed is not None and resource is not None:
        # what the controller listed before this watch lists: the comparison a re-list makes, made with it (only
        # what this stream covers: the hub's watches are cluster-wide and without selectors, which it assumes)
        delivered.update((key_of(obj), obj) for obj in await _seed(resource.group, resource.plural)
                         if namespace is None or obj["metadata"].get("namespace") == namespace)
    listed: set[ObjectKey] = set()  # each call of kopf's starts with a listing (or an initial streaming)
    try:
        async for event in _kopf_continuous_watch(**kwargs):
            if event is watching.Bookmark.LISTED:
                gone = [key for key in delivered if key not in listed]
                if gone:
                    log.info("%d of %s no longer exist (not in the watch's new listing): handled as deleted",
                             len(gone), resource)
                for key in gone:
                    yield {"type": "DELETED", "object": delivered.pop(key)}
            elif isinstance(event, dict) and isinstance(event.get("object"), dict) and event.get("type") in (
                    None, "ADDED", "MODIFIED", "DELETED"):
                key = key_of(event["object"])
                if event["type"] == "DELETED":
                    delivered.pop(key, None)
                else:
                    delivered[key] = event["object"]
                    if event["type"] is None:  # kopf's listing
                        listed.add(key)
            yield event
    except errors.APINotFoundError as e:
        log.warning("watch of %s answered 404 (%s): the API server may be starting; watching again",
                    kwargs.get("resource"), e)


async def patch_obj(**kwargs: Any) -> Any:
    """kopf's patch, refused (LeadershipLost) when the task's fence says the Lease may have passed on."""
    fence.check("PATCH")
    return await _kopf_patch_obj(**kwargs)


def install(seed: Seed | None = None) -> None:
    """Put the wrappers in place of kopf's functions (idempotent); `seed`: see continuous_watch."""
    global _seed
    _seed = seed
    watching.continuous_watch = continuous_watch
    patching.patch_obj = patch_obj
