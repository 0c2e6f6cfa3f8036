"""A Pull agent prunes at its next resync what one pass could not, drift correction off or not (review s39-a, F3).

The agent skipped a deployed Description that opted out of drift correction at every resync, so an object its
feeds dropped that one pass could not prune (its read answered 503, its DELETE was refused) stayed in the child,
listed and marked ours, until the next spec change. The hub's pusher had a prune-only pass for this; the agent now
does the same: it reads, not applies, what the Description still names."""

from __future__ import annotations

import copy
from typing import Any

from clusternet_agent.puller import Puller, idle
from clusternet_api import known, pendingprunes
from clusternet_api.kube import ApiException
from clusternet_api.rawobjects import encode_raw
from tests.unit.fakekube import FakeKube, Obj

NS = "clusternet-abc"
PULL = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
        "metadata": {"name": "c1", "namespace": NS}, "spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}


def cm(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"},
            "data": {"k": "v"}}


async def deployed_then_b_dropped() -> tuple[FakeKube, FakeKube, Puller]:
    """A Description with drift correction off, ConfigMaps a and b pulled and applied, then b's feed removed (its
    next generation, not pulled yet): (the parent, the child, the agent's puller)."""
    desc = {"apiVersion": known.APPS_API_VERSION, "kind": "Description",
            "metadata": {"name": "d", "namespace": NS, "finalizers": [known.FINALIZER_APPS],
                         "annotations": {known.ANNOTATION_DRIFT_CORRECTION: "false"}},
            "spec": {"deployer": "Generic", "raw": encode_raw([cm("a"), cm("b")])}}
    parent, child = FakeKube(desc), FakeKube()
    pulling = Puller(parent, child, NS, "c1", 30.0)
    await pulling.process(copy.deepcopy(desc), PULL, resync=False)
    parent.objects[("Description", NS, "d")]["spec"]["raw"] = encode_raw([cm("a")])  # b's feed removed
    parent.objects[("Description", NS, "d")]["metadata"]["generation"] += 1
    return parent, child, pulling


def stored_in(parent: FakeKube) -> Obj:
    return copy.deepcopy(parent.find("Description", NS, "d") or {})


async def test_a_prune_put_off_is_done_at_a_resync_with_drift_correction_off() -> None:
    parent, child, pulling = await deployed_then_b_dropped()
    real_get = child.get

    async def busy_for_b(api_version: str, kind: str, name: str, namespace: str | None = None) -> Any:
        if name == "b":
            raise ApiException(503, "Service Unavailable")  # the API server busy at that moment
        return await real_get(api_version, kind, name, namespace)

    child.get = busy_for_b  # type: ignore[method-assign]
    await pulling.process(stored_in(parent), PULL, resync=False)
    child.get = real_get  # type: ignore[method-assign]
    assert pendingprunes.prunes_pending(stored_in(parent)) and child.find("ConfigMap", "default", "b") is not None
    assert not idle(stored_in(parent), resync=True) and idle(stored_in(parent), resync=False)
    a_before = child.find("ConfigMap", "default", "a")
    await pulling.process(stored_in(parent), PULL, resync=True)
    assert child.find("ConfigMap", "default", "b") is None
    assert child.find("ConfigMap", "default", "a") == a_before  # read, not applied: drift correction is off
    assert stored_in(parent)["status"]["phase"] == "Success" and not pendingprunes.prunes_pending(stored_in(parent))
    assert idle(stored_in(parent), resync=True)  # nothing owed any more: skipped again at resyncs


async def test_a_refused_prune_with_drift_correction_off_never_puts_back_hand_edits() -> None:
    """Review s39: a prune the child refused made the Description a Failure, hence "not deployed", and every pass
    after applied it in full, putting back what a person had changed by hand although drift correction was off."""
    parent, child, pulling = await deployed_then_b_dropped()
    child.fail[("delete", "ConfigMap")] = ApiException(403, "configmaps is forbidden")
    await pulling.process(stored_in(parent), PULL, resync=False)
    status = stored_in(parent)["status"]
    assert status["phase"] == "Success" and "RBAC refused it" in status["reason"]
    edited = child.find("ConfigMap", "default", "a")
    assert edited is not None
    edited["data"] = {"k": "changed by hand"}
    for _ in range(2):  # resyncs: prune-only passes, the refusal still standing
        await pulling.process(stored_in(parent), PULL, resync=True)
    assert (child.find("ConfigMap", "default", "a") or {}).get("data") == {"k": "changed by hand"}
    assert child.find("ConfigMap", "default", "b") is not None
