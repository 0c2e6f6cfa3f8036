"""The controller keeps the responses of its own writes in its caches (so it acts on them at once) only while the
watch has delivered nothing newer meanwhile: a response never puts an older copy back (review 6, finding 6)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable

import pytest

from clusternet_api import known
from clusternet_core.naming import manifest_labels
from clusternet_hub.controller import Controller
from clusternet_hub.controller.status import StatusWriter
from clusternet_hub.controller.store import Store, write_back
from tests.unit import test_dividing
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import BASE, DESC, SUB, cluster, config_map_manifest, primed, push_secret, subscription
from tests.unit.test_helm import FEED, HELM_DESC, HR, chart, helm_controller

CHART = ("default", "mysql")


def rv(obj: Obj | None) -> str | None:
    return None if obj is None else str(obj["metadata"]["resourceVersion"])


def someones_edit(parent: FakeKube, kind: str, namespace: str, name: str, **labels: str) -> Obj:
    """Someone else writes the object after us: a new label, a new resourceVersion."""
    edited = copy.deepcopy(parent.find(kind, namespace, name))
    assert edited is not None
    edited["metadata"]["labels"] = {**(edited["metadata"].get("labels") or {}), **labels}
    parent.objects[(kind, namespace, name)] = edited
    return copy.deepcopy(parent.touch(kind, namespace, name))


def watched(store: Store, kind: str) -> Callable[[str, Obj], None]:
    """The store's handler of the watch events of `kind`."""
    return {"Subscription": store.on_subscription, "Description": store.on_description, "Base": store.on_base,
            "HelmRelease": store.on_helmrelease, "HelmChart": store.on_helmchart,
            "FeedInventory": store.on_feed_inventory}[kind]


def cache_of(c: Controller, kind: str) -> dict[tuple[str, str], Obj]:
    caches = c.store.caches
    return {"Subscription": caches.subscriptions, "Description": caches.descriptions, "Base": caches.bases,
            "HelmRelease": caches.helmreleases, "HelmChart": caches.helmcharts,
            "FeedInventory": caches.inventories}[kind]


async def generic(write: tuple[str, str]) -> tuple[Controller, FakeKube, Callable[[Controller], Awaitable[None]]]:
    c, parent, _ = await primed(cluster(), config_map_manifest(), subscription())
    return c, parent, lambda c: c.subscriptions.reconcile(SUB, force=False)


async def dividing(write: tuple[str, str]) -> tuple[Controller, FakeKube, Callable[[Controller], Awaitable[None]]]:
    dividing_sub, template = test_dividing.subscription(), test_dividing.workload()
    dividing_sub["metadata"]["finalizers"] = [known.FINALIZER_APPS]
    manifest = test_dividing.manifest(template)
    manifest["metadata"]["labels"] = manifest_labels(template)
    c, parent, _ = await primed(cluster(), manifest, dividing_sub)
    return c, parent, lambda c: c.subscriptions.reconcile(("default", "web-sub"), force=False)


async def helm(write: tuple[str, str]) -> tuple[Controller, FakeKube, Callable[[Controller], Awaitable[None]]]:
    c, parent, _ = await helm_controller(cluster(), chart(), push_secret(), subscription(feeds=[FEED]))
    if write == ("patch/status", "HelmChart"):
        return c, parent, lambda c: c.charts.check(CHART)
    await c.subscriptions.reconcile(SUB, force=False)
    if write == ("apply", "HelmRelease"):
        return c, parent, lambda c: c.helm_descriptions.sync(HELM_DESC)
    await c.helm_descriptions.sync(HELM_DESC)
    return c, parent, lambda c: c.releases.push(HR)


WRITES = [  # (verb, kind), the key it writes, the setup and what writes it
    (("apply", "Base"), BASE, generic), (("apply", "Description"), DESC, generic),
    (("patch/status", "Subscription"), SUB, generic), (("apply", "HelmRelease"), HR, helm),
    (("patch/status", "HelmRelease"), HR, helm), (("patch/status", "HelmChart"), CHART, helm),
    (("apply", "FeedInventory"), ("default", "web-sub"), dividing)]


@pytest.mark.parametrize(("write", "key", "setup"), WRITES, ids=["/".join(w[0]) for w in WRITES])
async def test_a_response_never_replaces_a_newer_copy_the_watch_brought_meanwhile(
        write: tuple[str, str], key: tuple[str, str], setup: Callable[..., Awaitable[tuple[
            Controller, FakeKube, Callable[[Controller], Awaitable[None]]]]]) -> None:
    c, parent, run = await setup(write)
    kind, newer = write[1], []

    def watch_meanwhile(ours: Obj) -> None:
        watched(c.store, kind)("MODIFIED", ours)  # the watch brings our write, then someone's newer one
        newer.append(someones_edit(parent, kind, *key, edited="after-us"))
        watched(c.store, kind)("MODIFIED", newer[0])

    parent.landed[write] = watch_meanwhile
    await run(c)
    assert newer, f"{write} was not written"
    cache = cache_of(c, kind)
    assert rv(cache[key]) == rv(newer[0])  # it used to be our (older) response
    assert cache[key]["metadata"]["labels"]["edited"] == "after-us"


@pytest.mark.parametrize(("write", "key", "setup"), WRITES, ids=["/".join(w[0]) for w in WRITES])
async def test_a_response_the_watch_did_not_overtake_is_kept(
        write: tuple[str, str], key: tuple[str, str], setup: Callable[..., Awaitable[tuple[
            Controller, FakeKube, Callable[[Controller], Awaitable[None]]]]]) -> None:
    """What storing it is for: the next reconcile or status compares with what was just written."""
    c, parent, run = await setup(write)
    ours: list[Obj] = []
    parent.landed[write] = ours.append
    await run(c)
    cache = cache_of(c, write[1])
    assert ours and rv(cache[key]) == rv(ours[0])


def sub(version: int, feed: str, status: Obj | None = None) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
            "metadata": {"name": "s", "namespace": "default", "uid": "u1", "resourceVersion": str(version),
                         "generation": 1 if feed == "old" else 2, "finalizers": [known.FINALIZER_APPS]},
            "spec": {"feeds": [{"apiVersion": "v1", "kind": "ConfigMap", "namespace": "default", "name": feed}]},
            "status": status or {}}


async def status_write(store: Store, answer: Callable[[], Awaitable[Obj]]) -> None:
    class Parent:
        async def patch(self, *args: object, **kwargs: object) -> Obj:
            return await answer()

    await StatusWriter(Parent(), store).write(  # type: ignore[arg-type]
        store.caches.subscriptions[("default", "s")],
        {"type": "Ready", "status": "False", "reason": "x", "message": "y"})


async def test_a_spec_edit_watched_during_a_status_write_is_the_one_planned() -> None:
    """The review's case: the status PATCH commits (RV 10), the user edits the spec (RV 11), the watch delivers
    both before the PATCH's response: the cache went back to RV 10, the old spec, while the reconcile queued by
    the edit was still to run, and planned the old spec."""
    store = Store({})
    store.on_subscription("MODIFIED", sub(9, "old"))
    store.queue.drain()

    async def answer() -> Obj:
        store.on_subscription("MODIFIED", sub(10, "old", {"completedReleases": 1}))
        store.on_subscription("MODIFIED", sub(11, "new", {"completedReleases": 1}))
        await asyncio.sleep(0)
        return sub(10, "old", {"completedReleases": 1})

    await status_write(store, answer)
    assert [k for k, _ in store.queue.drain()] == [("sub", "default", "s")]
    cached = store.caches.subscriptions[("default", "s")]
    assert rv(cached) == "11" and cached["spec"]["feeds"][0]["name"] == "new"


async def test_a_spec_edit_the_status_writes_response_shows_first_is_planned_at_once() -> None:
    """An edit committed between the watch's last copy and our status PATCH: the response carries it before the
    watch does. Stored as it was, without an event, nothing queued its plan, and the watch's copy later looked
    unchanged: the edit waited for the periodic resync."""
    store = Store({})
    store.on_subscription("MODIFIED", sub(9, "old"))
    store.queue.drain()

    async def answer() -> Obj:
        return sub(11, "new", {"completedReleases": 1})

    await status_write(store, answer)
    assert [k for k, _ in store.queue.drain()] == [("sub", "default", "s")]
    assert rv(store.caches.subscriptions[("default", "s")]) == "11"
    store.on_subscription("MODIFIED", sub(10, "new"))  # the watch catches up: nothing more to do
    assert store.queue.drain() == []


async def test_a_write_puts_back_no_object_the_watch_deleted_unless_it_creates_it() -> None:
    cache: dict[tuple[str, str], Obj] = {("default", "s"): sub(9, "old")}

    async def write() -> Obj:
        cache.pop(("default", "s"))  # the watch: DELETED while the write is in flight
        return sub(10, "old")

    await write_back(cache, ("default", "s"), write(), creates=True)
    assert cache == {}

    async def answer() -> Obj:
        return sub(10, "old")

    await write_back(cache, ("default", "s"), answer())  # a status write to an object the cache dropped
    assert cache == {}
    await write_back(cache, ("default", "s"), answer(), creates=True)  # an apply that created it
    assert rv(cache[("default", "s")]) == "10"


async def test_a_copy_of_the_same_version_is_no_change() -> None:
    """A re-list delivers every object again as a new copy: the response is still newer than that."""
    cache: dict[tuple[str, str], Obj] = {("default", "s"): sub(9, "old")}

    async def write() -> Obj:
        cache[("default", "s")] = sub(9, "old")
        return sub(10, "old")

    await write_back(cache, ("default", "s"), write())
    assert rv(cache[("default", "s")]) == "10"
