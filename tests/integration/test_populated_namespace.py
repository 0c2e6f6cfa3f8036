"""An object a controller puts into a namespace our apply has just created is adopted, never owned (review F7).

A Description that deploys a Namespace and objects in it skips the GET of each object in the new namespace:
nothing can be there yet. Except what a controller that fills new namespaces writes in between (Kyverno
`generate` rules, OpenShift project templates, istiod's root certificate). Such an object used to be marked as
created by us, so the Description's cleanup deleted it, and the Namespace with it. The apply's answer now
tells: 200, not 201 Created, and the object is adopted instead. Run against a real kube-apiserver, whose
server-side apply must also drop our first "owned" mark when we apply again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from clusternet_api import applier, known
from clusternet_api.credentials import Credentials
from clusternet_api.kube import Kube, Obj
from clusternet_api.ownership import ANNOTATION_ADOPTED, ANNOTATION_OWNED
from clusternet_api.rawobjects import encode_raw
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl

pytestmark = pytest.mark.integration



def populated(ns: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "defaults", "namespace": ns},
                       "data": {"policy": "deny"}})


class PopulatingChild:
    """The child's API, with a controller that writes a ConfigMap into every namespace as soon as it exists: with
    `kubectl create` (an Update, whose managedFields entry outlives our forced apply) or with a server-side apply
    (whose entry our forced apply empties, and the API server drops: managedFields cannot tell then)."""

    def __init__(self, kube: Kube, child: ControlPlane, server_side: bool) -> None:
        self.kube, self.child, self.server_side = kube, child, server_side

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    async def apply(self, obj: Obj, field_manager: str, force: bool = True) -> Obj:
        applied = await self.kube.apply(obj, field_manager, force)
        if obj["kind"] == "Namespace":
            how = ["apply", "--server-side", "--field-manager=kyverno"] if self.server_side else ["create"]
            await asyncio.to_thread(kubectl, self.child, *how, "-f", "-", input=populated(obj["metadata"]["name"]))
        return applied


def description(ns: str) -> Obj:
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "defaults", "namespace": ns},
                "data": {"policy": "ours"}},
               {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": ns},
                "data": {"k": "v"}}]
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": "populated", "namespace": "clusternet-test", "uid": str(uuid.uuid4()),
                         "generation": 1},
            "spec": {"deployer": "Generic", "raw": encode_raw(objects)}}


@pytest.mark.parametrize("server_side", [False, True])
def test_an_object_written_into_our_new_namespace_meanwhile_is_adopted_and_kept_on_cleanup(
        child1: ControlPlane, server_side: bool) -> None:
    ns = "populated-by-" + ("apply" if server_side else "create")  # one per case: a deleted one lingers
    desc = description(ns)
    key = f"{desc['metadata']['namespace']}.{desc['metadata']['name']}"

    async def scenario() -> tuple[applier.ApplyOutcome, Obj, Obj | None, Obj | None, Obj | None]:
        async with Kube(Credentials.load(child1.kubeconfig)) as kube:
            outcome = await applier.apply_description(PopulatingChild(kube, child1, server_side), desc)  # type: ignore[arg-type]
            marked = await kube.get("v1", "ConfigMap", "defaults", ns)
            assert marked is not None
            desc["status"] = {"manifestStatuses": outcome.statuses}
            await applier.cleanup(kube, desc)
            return (outcome, marked, await kube.get("v1", "ConfigMap", "defaults", ns),
                    await kube.get("v1", "ConfigMap", "app", ns), await kube.get("v1", "Namespace", ns))

    try:
        outcome, marked, kept, app, namespace = asyncio.run(scenario())
    finally:
        kubectl(child1, "delete", "namespace", ns, "--wait=false", check=False)
    assert outcome.phase == "Success", outcome
    assert outcome.adopted == [f"ConfigMap {ns}/defaults"], outcome.adopted
    annotations = marked["metadata"]["annotations"]
    assert annotations.get(ANNOTATION_ADOPTED) == key and ANNOTATION_OWNED not in annotations
    assert marked["data"] == {"policy": "ours"}  # the feed's content applies: adopting is taking over the fields
    assert kept is not None and kept["metadata"]["uid"] == marked["metadata"]["uid"]  # unadopted, not deleted
    assert ANNOTATION_ADOPTED not in (kept["metadata"].get("annotations") or {})
    assert app is None  # ours: deleted
    assert namespace is not None and not namespace["metadata"].get("deletionTimestamp")  # it holds someone's object
