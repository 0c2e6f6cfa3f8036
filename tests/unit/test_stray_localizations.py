"""A Localization outside every cluster's namespace is told that it applies to nothing.

Found by an audit: one in `default` or in a mistyped `clusternet-xxxxx` was accepted and ignored without a word
(as in Clusternet), so the override the user wrote silently never reached any cluster.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from clusternet_api import applier
from clusternet_api.kube import Obj
from clusternet_hub.controller.controller import Controller
from clusternet_hub.controller.store import Store

CLUSTER = {"metadata": {"name": "child1", "namespace": "clusternet-abc"}}


def localization(namespace: str, spec: Obj | None = None) -> Obj:
    return {"kind": "Localization", "metadata": {"name": "loc", "namespace": namespace},
            "spec": spec or {"priority": 500, "overrides": []}}


def test_only_a_localization_outside_the_cluster_namespaces_is_queued_for_a_warning() -> None:
    store = Store({("clusternet-abc", "child1"): CLUSTER})
    store.on_override("MODIFIED", localization("clusternet-abc"))
    assert not store.queue.drain()
    for namespace in ("default", "clusternet-nope1"):
        store.on_override("MODIFIED", localization(namespace))
        assert store.queue.drain() == [(("stray", namespace, "loc"), False)]
    store.on_override("MODIFIED", localization("default"))  # the same spec again: said once
    assert not store.queue.drain()
    store.on_override("DELETED", localization("default"))
    assert not store.queue.drain()


async def test_the_warning_names_the_localization_and_is_skipped_once_its_cluster_exists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[Any, ...]] = []

    async def post_event(kube: object, obj: Obj, *args: Any) -> None:
        events.append((obj["metadata"]["namespace"], *args))

    monkeypatch.setattr(applier, "post_event", post_event)
    store = Store({})
    store.on_override("MODIFIED", localization("clusternet-new"))
    controller: Any = SimpleNamespace(store=store, kube=None)
    await Controller.warn_stray_localization(controller, ("clusternet-new", "loc"))
    assert events[0][:3] == ("clusternet-new", "Warning", "NotInClusterNamespace")
    assert "Localization clusternet-new/loc applies to no cluster" in events[0][3]
    store.caches.clusters[("clusternet-new", "child3")] = CLUSTER  # registered before the warning went out
    await Controller.warn_stray_localization(controller, ("clusternet-new", "loc"))
    assert len(events) == 1
