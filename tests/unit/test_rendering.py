"""Rendering: Clusternet's names and labels, apply order, overrides per cluster and Description.spec.raw."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.models import Description
from clusternet_core.rendering import (
    base_name,
    decode_raw,
    description_name,
    encode_raw,
    feed_selector,
    legacy_manifest_name,
    manifest_labels,
    manifest_name,
    render_generic,
)

CLUSTER = {"metadata": {"namespace": "clusternet-abcde", "name": "child1", "labels": {"env": "prod"}},
           "spec": {"clusterId": "id-1", "syncMode": "Pull"}}


def obj(api_version: str, kind: str, name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, **extra}


def feed(o: dict[str, Any]) -> dict[str, Any]:
    f = {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"]}
    if o["metadata"].get("namespace"):
        f["namespace"] = o["metadata"]["namespace"]
    return f


def key(f: dict[str, Any]) -> str:
    parts = [f["apiVersion"], f["kind"], *([f["namespace"]] if f.get("namespace") else []), f["name"]]
    return "/".join(parts)


# --- names and labels ------------------------------------------------------------------------------------


def test_manifest_names_follow_clusternet() -> None:
    assert manifest_name("deployments", "foo", "my-nginx") == "deployments.foo.my-nginx"
    assert manifest_name("namespaces", None, "foo") == "namespaces.foo"
    assert manifest_name("customresourcedefinitions", "", "foos.x.io") == "customresourcedefinitions.foos.x.io"
    assert legacy_manifest_name("deployments", "foo", "my-nginx") == "deployments-foo-my-nginx"


def test_manifest_labels_keep_own_labels_but_config_labels_win() -> None:
    deploy = obj("apps/v1", "Deployment", "my-nginx", "foo")
    deploy["metadata"]["labels"] = {"app": "nginx", known.LABEL_CONFIG_NAME: "spoofed"}
    assert manifest_labels(deploy) == {
        "app": "nginx",
        known.LABEL_CONFIG_GROUP: "apps",
        known.LABEL_CONFIG_VERSION: "v1",
        known.LABEL_CONFIG_KIND: "Deployment",
        known.LABEL_CONFIG_NAME: "my-nginx",
        known.LABEL_CONFIG_NAMESPACE: "foo",
    }
    ns_labels = manifest_labels(obj("v1", "Namespace", "foo"))
    assert ns_labels[known.LABEL_CONFIG_GROUP] == "" and ns_labels[known.LABEL_CONFIG_NAMESPACE] == ""


def test_feed_selector_finds_the_manifest_by_its_labels() -> None:
    f = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}
    assert feed_selector(f) == (
        "apps.clusternet.io/config.group=apps,apps.clusternet.io/config.kind=Deployment,"
        "apps.clusternet.io/config.name=my-nginx,apps.clusternet.io/config.namespace=foo,"
        "apps.clusternet.io/config.version=v1"
    )
    selector = dict(pair.split("=", 1) for pair in feed_selector(f).split(","))
    labels = manifest_labels(obj("apps/v1", "Deployment", "my-nginx", "foo"))
    assert all(labels[k] == v for k, v in selector.items())
    assert "config.namespace" not in feed_selector({"apiVersion": "v1", "kind": "Namespace", "name": "foo"})


def test_base_names_are_deterministic_unique_per_subscription_and_short() -> None:
    a = base_name("app", subscription_namespace="team-a")
    assert a == base_name("app", subscription_namespace="team-a")
    assert a.startswith("app-") and len(a) == len("app-") + 5
    assert a != base_name("app", subscription_namespace="team-b")
    long = base_name("x" * 56 + "-" + "y" * 100, subscription_namespace="ns")
    assert len(long) <= 63 and "--" not in long
    assert description_name(a, "Generic") == f"{a}-generic"
    assert description_name(a, "Helm") == f"{a}-helm"
    with pytest.raises(ValueError, match="Generic or Helm"):
        description_name(a, "Kustomize")


# --- render_generic --------------------------------------------------------------------------------------


def test_render_orders_namespaces_then_crds_then_feed_order() -> None:
    deploy = obj("apps/v1", "Deployment", "web", "foo", spec={"replicas": 1})
    svc = obj("v1", "Service", "web", "foo")
    ns = obj("v1", "Namespace", "foo")
    crd = obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "foos.x.io")
    cr = obj("x.io/v1", "Foo", "f", "foo")
    objects = [deploy, cr, svc, crd, ns]
    result = render_generic([feed(o) for o in objects], {key(feed(o)): o for o in objects}, CLUSTER, [], [])
    assert result.errors == []
    assert [(o["kind"], o["metadata"]["name"]) for o in result.objects] == [
        ("Namespace", "foo"), ("CustomResourceDefinition", "foos.x.io"),
        ("Deployment", "web"), ("Foo", "f"), ("Service", "web"),
    ]


def test_render_applies_this_clusters_overrides_and_reports_per_object() -> None:
    deploy = obj("apps/v1", "Deployment", "web", "foo", spec={"replicas": 1}, status={"replicas": 1})
    manifest = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
                "metadata": {"namespace": known.RESERVED_NAMESPACE, "name": "deployments.foo.web"},
                "template": deploy}
    f = feed(deploy)
    locs = [
        {"kind": "Localization", "metadata": {"namespace": "clusternet-abcde", "name": "scale"},
         "spec": {"feed": f, "overrides": [{"name": "r", "type": "MergePatch", "value": "spec: {replicas: 3}"},
                                           {"name": "bad", "type": "JSONPatch",
                                            "value": '[{"op": "remove", "path": "/spec/nope"}]'}]}},
        {"kind": "Localization", "metadata": {"namespace": "clusternet-other", "name": "elsewhere"},
         "spec": {"feed": f, "overrides": [{"type": "MergePatch", "value": "spec: {replicas: 9}"}]}},
    ]
    result = render_generic([f], {key(f): manifest}, CLUSTER, [], locs)
    assert result.objects == [obj("apps/v1", "Deployment", "web", "foo", spec={"replicas": 3})]
    item = result.items[0]
    assert [a.changed_paths for a in item.applied] == [("/spec/replicas",)]
    assert result.all_errors() == [
        "Localization clusternet-abcde/scale override 'bad' (JSONPatch): path /spec/nope does not exist"
    ]


def test_an_override_applies_when_one_side_leaves_the_namespace_out_but_never_to_another_namespace() -> None:
    """Clusternet ties overrides to the template a feed resolves to; here the fields had to be equal, and an
    override naming `default/cfg` for a Subscription feed `cfg` (or the reverse) was dropped (audit s35)."""
    cm = obj("v1", "ConfigMap", "cfg", "default", data={"k": "1"})
    loose = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}

    def loc(feed: dict[str, Any], value: str) -> dict[str, Any]:
        return {"kind": "Localization", "metadata": {"namespace": "clusternet-abcde", "name": value},
                "spec": {"feed": feed, "overrides": [{"type": "MergePatch", "value": f"data: {{k: {value}}}"}]}}

    assert render_generic([loose], {key(loose): cm}, CLUSTER, [], [loc(feed(cm), "named")]).objects[0]["data"] == {
        "k": "named"}
    assert render_generic([feed(cm)], {key(feed(cm)): cm}, CLUSTER, [], [loc(loose, "loose")]).objects[0][
        "data"] == {"k": "loose"}
    elsewhere = {**feed(cm), "namespace": "prod"}
    assert render_generic([loose], {key(loose): cm}, CLUSTER, [], [loc(elsewhere, "other")]).objects[0]["data"] == {
        "k": "1"}


def test_an_apply_now_override_of_another_namespaces_object_changes_no_record() -> None:
    """The record of ApplyNow overrides (which re-renders a cluster when it changes) takes the resolved feed too:
    with the Subscription's literal `cfg`, an ApplyNow override of `prod/cfg` changed it (review s35)."""
    from clusternet_core.overrides import apply_now_digest
    from clusternet_core.rendering import resolved_feeds

    cm = obj("v1", "ConfigMap", "cfg", "default", data={"k": "1"})
    loose = {"apiVersion": "v1", "kind": "ConfigMap", "name": "cfg"}
    elsewhere = {"kind": "Localization", "metadata": {"namespace": "clusternet-abcde", "name": "x", "uid": "u"},
                 "spec": {"overridePolicy": "ApplyNow", "feed": {**feed(cm), "namespace": "prod"}, "overrides": []}}
    feeds = resolved_feeds([loose], {key(loose): cm})
    assert feeds == [feed(cm)]
    assert apply_now_digest(feeds, CLUSTER, [], [elsewhere]) == apply_now_digest(feeds, CLUSTER, [], [])
    here = {**elsewhere, "spec": {**elsewhere["spec"], "feed": feed(cm)}}
    assert apply_now_digest(feeds, CLUSTER, [], [here]) != apply_now_digest(feeds, CLUSTER, [], [])


def test_missing_template_is_an_error_and_helm_feeds_are_skipped() -> None:
    cm = obj("v1", "ConfigMap", "cfg", "foo")
    missing = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "my-nginx"}
    chart = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart", "namespace": "default", "name": "db"}
    result = render_generic([missing, feed(cm), chart], {key(feed(cm)): cm}, CLUSTER, [], [])
    assert result.errors == ["feed apps/v1/Deployment foo/my-nginx not found: no Manifest in clusternet-reserved"]
    assert result.objects == [cm]
    assert result.skipped_feeds == [{**chart}]


def test_broken_globalization_is_a_feed_error_not_a_crash() -> None:
    cm = obj("v1", "ConfigMap", "cfg", "foo")
    glob = {"kind": "Globalization", "metadata": {"name": "g"},
            "spec": {"feed": feed(cm), "clusterAffinity": {"matchExpressions": [{"key": "a", "operator": "Nope"}]},
                     "overrides": []}}
    result = render_generic([feed(cm)], {key(feed(cm)): cm}, CLUSTER, [glob], [])
    assert result.objects == []
    assert "Globalization g" in result.errors[0] and "unknown operator" in result.errors[0]


# --- raw -------------------------------------------------------------------------------------------------


def test_raw_round_trip_is_base64_json_and_deterministic() -> None:
    objects = [obj("v1", "Namespace", "foo"), obj("v1", "ConfigMap", "cfg", "foo", data={"b": "2", "a": "ü"})]
    raw = encode_raw(objects)
    assert decode_raw(raw) == objects
    assert json.loads(base64.b64decode(raw[1])) == objects[1]
    reordered = [objects[0], {"data": {"a": "ü", "b": "2"}, "metadata": objects[1]["metadata"],
                              "kind": "ConfigMap", "apiVersion": "v1"}]
    assert encode_raw(reordered) == raw  # key order never changes the bytes
    # what we write is a valid Description.spec.raw
    Description.model_validate({"metadata": {"name": "d"}, "spec": {"deployer": "Generic", "raw": raw}})


def test_render_result_encoded_raw_matches_objects() -> None:
    cm = obj("v1", "ConfigMap", "cfg", "foo")
    result = render_generic([feed(cm)], {key(feed(cm)): cm}, CLUSTER, [], [])
    assert decode_raw(result.encoded_raw()) == [cm]


def test_decode_raw_names_the_bad_entry() -> None:
    good = encode_raw([{"a": 1}])[0]
    with pytest.raises(ValueError, match=r"spec.raw\[1\] is not base64-encoded JSON"):
        decode_raw([good, "!!!"])
    with pytest.raises(ValueError, match=r"spec.raw\[0\] is not a JSON object"):
        decode_raw([base64.b64encode(b"[1]").decode()])
