"""The hub's ClusterRole (deploy/hub/02-rbac.yaml; the chart's equals it, test_charts) allows every write the hub's
registration and removal paths make, as FakeKube records them, judged with RBAC's own matching. A write the rules
lack is a 403 on a real parent, which no unit test saw (audit s36, finding 8: the namespace an approval made and
dropped again)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import yaml

from clusternet_api import known
from clusternet_api.kube import Kube
from clusternet_hub import registration, removal
from tests.unit.fakekube import FakeKube
from tests.unit.test_charts import REPO
from tests.unit.test_cluster_removal import NAME, SETTINGS, Parent, approved_parent
from tests.unit.test_deletes_as_read import earlier_registration

RESOURCES = {  # kind -> (API group, resource) of what these paths write
    "Namespace": ("", "namespaces"), "ServiceAccount": ("", "serviceaccounts"), "Secret": ("", "secrets"),
    "Event": ("", "events"),
    "ManagedCluster": ("clusters.clusternet.io", "managedclusters"),
    "ClusterRegistrationRequest": ("clusters.clusternet.io", "clusterregistrationrequests"),
    **{kind: ("rbac.authorization.k8s.io", kind.lower() + "s")
       for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")},
}


def hub_rules() -> list[dict[str, Any]]:
    docs = yaml.safe_load_all((REPO / "deploy" / "hub" / "02-rbac.yaml").read_text())
    role = next(d for d in docs if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "clusternet-hub")
    return list(role["rules"])


def allowed(rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str) -> bool:
    """RBAC's rule matching; `create` carries no name, so a rule with resourceNames never allows it."""
    def has(values: Iterable[str], value: str) -> bool:
        return "*" in values or value in values

    return any(has(r["verbs"], verb) and has(r.get("apiGroups", []), group) and has(r["resources"], resource)
               and (not r.get("resourceNames") or (verb != "create" and name in r["resourceNames"])) for r in rules)


def denied(parent: FakeKube, before: set[tuple[str, str, str]]) -> list[str]:
    """The recorded writes the hub's ClusterRole does not allow. Server-side apply is a PATCH, and needs `create`
    too when the object is new (`before`: what existed when the writes started)."""
    rules, existing, out = hub_rules(), set(before), []
    for verb, kind, where in parent.writes:
        ns, _, name = where.partition("/")
        group, resource = RESOURCES[kind]
        verb, _, sub = verb.partition("/")
        key = (kind, ns, name)
        needed = {"apply": ["patch"] + ([] if key in existing else ["create"])}.get(verb, [verb])
        out += [f"{v} {resource}{'/' + sub if sub else ''} {where.lstrip('/')}" for v in needed
                if not allowed(rules, v, group, resource + ("/" + sub if sub else ""), name)]
        (existing.discard if verb == "delete" else existing.add)(key)
    return out


async def test_a_first_approval_and_a_token_refresh_are_allowed() -> None:
    parent = Parent({"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
                     "metadata": {"name": NAME}, "spec": {"clusterId": "c1", "clusterName": "a"}})
    crr = parent.find("ClusterRegistrationRequest", None, NAME)
    assert crr is not None
    await registration.approve(cast(Kube, parent), crr, SETTINGS)
    assert denied(parent, set()) == []
    refreshed, crr = await approved_parent()
    before, refreshed.writes[:] = set(refreshed.objects), []
    await registration.approve(cast(Kube, refreshed), crr, SETTINGS)
    assert refreshed.writes and denied(refreshed, before) == []


async def test_an_approval_dropping_the_namespace_it_made_is_allowed() -> None:
    """A cluster registered before in another namespace re-registers naming a new one: the approval makes that
    namespace (in parallel with finding the earlier registration), then deletes it. Without `delete` on
    namespaces the DELETE was a 403: the approval failed, its retry approved into the earlier namespace, and the
    new one was left behind labelled with the cluster's id (which removal's _labelled_namespace may pick)."""
    parent = earlier_registration()
    before = set(parent.objects)
    crr = parent.objects[("ClusterRegistrationRequest", "", NAME)]
    result = await registration.approve(cast(Kube, parent), crr, SETTINGS)
    assert result["dedicatedNamespace"] == "team-a"
    assert any(w[:2] == ("delete", "Namespace") for w in parent.writes)
    assert denied(parent, before) == []


async def test_removing_a_cluster_is_allowed() -> None:
    parent, crr = await approved_parent()
    before, parent.writes[:] = set(parent.objects), []
    await removal.mark_removed(cast(Kube, parent), crr, "its ManagedCluster was deleted")
    assert parent.writes and denied(parent, before) == []
