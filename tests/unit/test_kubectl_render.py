"""kubectl clusternet render: it previews only what the hub would deploy, and says why not otherwise.

The sixth audit rendered a Subscription for a cluster it does not bind (a full render, exit code 0, no word
that the cluster gets nothing) and a Subscription the hub refuses as a whole for a missing feed (the other
feeds' objects, exit code 0, while the hub deploys nothing).
"""

from __future__ import annotations

from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import Obj
from clusternet_core.naming import manifest_labels, manifest_name
from clusternet_core.rendering import base_name
from clusternet_kubectl.commands.render import render_command, render_header
from clusternet_kubectl.resources import (
    BASE,
    DESCRIPTION,
    GLOBALIZATION,
    HELM_CHART,
    LOCALIZATION,
    MANAGED_CLUSTER,
    MANIFEST,
    SUBSCRIPTION,
    Resource,
)
from clusternet_kubectl.session import Session

RESOURCES = (BASE, DESCRIPTION, GLOBALIZATION, HELM_CHART, LOCALIZATION, MANAGED_CLUSTER, MANIFEST, SUBSCRIPTION)


class FakeParent:
    """The GETs and LISTs render makes, answered from objects (no label selector but `k=v,...`)."""

    def __init__(self, *objects: Obj) -> None:
        self.objects = [(self.resource(o), o) for o in objects]
        self.lists: list[tuple[str, str | None]] = []

    @staticmethod
    def resource(obj: Obj) -> Resource:
        return next(r for r in RESOURCES if r.kind == obj["kind"])

    async def raw(self, method: str, path: str, *args: Any, **kw: Any) -> tuple[int, Any]:
        for r, o in self.objects:
            if r.path(o["metadata"].get("namespace"), o["metadata"]["name"]) == path:
                return 200, o
        return 404, {"kind": "Status", "code": 404}

    async def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                      **kw: Any) -> Obj:
        selector = dict(kv.split("=", 1) for kv in (query or {}).get("labelSelector", "").split(",") if kv)
        self.lists.append((path, (query or {}).get("labelSelector")))
        items = [o for r, o in self.objects
                 if path in (r.path(o["metadata"].get("namespace")), r.path(None))
                 and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
        return {"items": items}


def cluster(name: str, namespace: str, env: str, **spec: Any) -> Obj:
    return {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ManagedCluster",
            "metadata": {"name": name, "namespace": namespace, "labels": {"env": env}},
            "spec": {"clusterId": f"id-{name}", **spec}}


def template(obj: Obj) -> Obj:
    meta = obj["metadata"]
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Manifest", "template": obj,
            "metadata": {"name": manifest_name(obj["kind"].lower() + "s", meta.get("namespace"), meta["name"]),
                         "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(obj)}}


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "my-nginx-svc", "namespace": "foo"},
           "spec": {"ports": [{"port": 80}]}}
CHILD1, CHILD2 = cluster("child1", "clusternet-a", "dev"), cluster("child2", "clusternet-b", "prod")


def subscription(*feeds: Obj, env: str = "dev", **spec: Any) -> Obj:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
            "metadata": {"name": "app-demo", "namespace": "default", "uid": "sub-uid"},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"env": env}}}],
                     "feeds": list(feeds) or [{"apiVersion": "v1", "kind": "Namespace", "name": "foo"}], **spec}}


async def render(capsys: pytest.CaptureFixture[str], *objects: Obj, cluster_ref: str = "child1",
                 allow_unbound: bool = False) -> tuple[int, str, str]:
    parent = FakeParent(CHILD1, CHILD2, template(NAMESPACE), template(SERVICE), *objects)
    code = await render_command(Session(parent, "default"), "app-demo", cluster_ref,  # type: ignore[arg-type]
                                allow_unbound)
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_bound_cluster_gets_its_render(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await render(capsys, subscription())
    assert (code, err) == (0, "")
    assert out.startswith("# Subscription default/app-demo rendered for ManagedCluster clusternet-a/child1")
    assert "kind: Namespace" in out


async def test_a_cluster_the_subscription_does_not_bind_is_refused_in_one_line_unless_allowed(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await render(capsys, subscription(), cluster_ref="child2")
    assert (code, out) == (1, "")
    assert err == ("error: Subscription default/app-demo does not bind ManagedCluster clusternet-b/child2 (no "
                   "subscriber's clusterAffinity matches its labels): it gets nothing from it; --allow-unbound "
                   "renders what it would get\n")
    code, out, err = await render(capsys, subscription(), cluster_ref="child2", allow_unbound=True)
    assert code == 0 and "kind: Namespace" in out
    assert err.startswith("note: Subscription default/app-demo does not bind ManagedCluster clusternet-b/child2 (")


async def test_a_tainted_cluster_is_unbound_unless_the_subscription_still_holds_objects_there(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The hub's rule: a NoSchedule taint keeps new bindings off, not a cluster the Subscription deployed to."""
    tainted = cluster("child3", "clusternet-c", "dev", taints=[{"key": "k", "effect": "NoSchedule"}])
    code, _, err = await render(capsys, subscription(), tainted, cluster_ref="child3")
    assert code == 1 and "(untolerated taint k:NoSchedule)" in err, err
    base = {"apiVersion": known.APPS_API_VERSION, "kind": "Base",
            "metadata": {"name": base_name("app-demo", subscription_namespace="default"), "namespace": "clusternet-c",
                         "labels": {known.LABEL_SUBS_UID: "sub-uid"}}}
    code, out, err = await render(capsys, subscription(), tainted, base, cluster_ref="child3")
    assert (code, err) == (0, "") and "kind: Namespace" in out


async def test_a_missing_feed_refuses_like_the_hub_with_its_reason_and_hint(capsys: pytest.CaptureFixture[str]) -> None:
    """Clusternet's overview feeds its Service as apps/v1: the hub refuses the Subscription (FeedNotFound)."""
    wrong = {"apiVersion": "apps/v1", "kind": "Service", "namespace": "foo", "name": "my-nginx-svc"}
    code, out, err = await render(capsys, subscription({"apiVersion": "v1", "kind": "Namespace", "name": "foo"},
                                                       wrong))
    assert (code, out) == (1, "")
    assert err == ("error: FeedNotFound: feed apps/v1/Service foo/my-nginx-svc not found: no Manifest in "
                   "clusternet-reserved (did you mean apiVersion v1?); the hub refuses this Subscription until "
                   "then\n")


async def test_an_ambiguous_feed_and_a_broken_affinity_are_refused_too(capsys: pytest.CaptureFixture[str]) -> None:
    other = {**SERVICE, "metadata": {"name": "my-nginx-svc", "namespace": "bar"}}
    loose = {"apiVersion": "v1", "kind": "Service", "name": "my-nginx-svc"}
    code, out, err = await render(capsys, subscription(loose), template(other))
    assert (code, out) == (1, "") and err.startswith("error: AmbiguousFeed: feed Service my-nginx-svc (v1) has no")
    broken = subscription()
    broken["spec"]["subscribers"] = [{"clusterAffinity": {"matchExpressions": [{"key": "env", "operator": "In"}]}}]
    code, out, err = await render(capsys, broken)
    assert (code, out) == (1, "") and err.startswith("error: InvalidSubscription: spec.subscribers[0]"), err


def test_a_chart_header_names_the_kind_once() -> None:
    from clusternet_core.helmrender import RenderedChart

    chart = {"spec": {"chart": "mysql", "version": "8.6.2", "repo": "https://charts.example", "targetNamespace": "abc"}}
    item = RenderedChart(feed={"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "namespace": "default",
                               "name": "mysql"}, chart=chart, values={})
    assert render_header(item)[0] == ("# HelmChart default/mysql: chart mysql 8.6.2 from https://charts.example, "
                                      "release mysql in namespace abc")
