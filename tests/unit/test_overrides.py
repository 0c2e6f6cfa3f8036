"""Overrides: Clusternet's selection and order, every patch type, and failures reported instead of dropped."""

from __future__ import annotations

import copy
import itertools
import json
import random
from typing import Any

import pytest

from clusternet_core.overrides import (
    apply_overrides,
    changed_paths,
    merge_patch,
    select_overrides,
)
from clusternet_core.scheduling import InvalidSelector

CLUSTER_NS = "clusternet-5l82l"
FEED = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "foo", "name": "web"}
CLUSTER = {
    "metadata": {"namespace": CLUSTER_NS, "name": "child1", "labels": {"env": "prod"}},
    "spec": {"clusterId": "id-1", "syncMode": "Pull"},
}
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "namespace": "foo",
        "name": "web",
        "labels": {"app": "web"},
        "uid": "u-1",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2024-01-01T00:00:00Z",
        "managedFields": [{"manager": "kubectl"}],
    },
    "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.24"}]}}},
    "status": {"replicas": 1},
}


def override(kind: str, name: str, priority: int | None, overrides: list[dict[str, Any]], *,
             feed: dict[str, Any] | None = None, namespace: str | None = None, created: str = "2024-01-01T00:00:00Z",
             **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if kind == "Localization":
        meta["namespace"] = namespace or CLUSTER_NS
    body: dict[str, Any] = {"feed": feed or FEED, "overrides": overrides, **spec}
    if priority is not None:
        body["priority"] = priority
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": kind, "metadata": meta, "spec": body}


def set_label(value: str) -> dict[str, Any]:
    return {"name": f"set-{value}", "type": "MergePatch", "value": f"metadata:\n  labels:\n    winner: {value}\n"}


def jsonpatch_override(name: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "type": "JSONPatch", "value": json.dumps(ops)}


# --- selection and order ---------------------------------------------------------------------------------


def test_documented_order_glob100_glob600_loc100_loc500() -> None:
    globs = [override("Globalization", "g600", 600, [set_label("g600")]),
             override("Globalization", "g100", 100, [set_label("g100")])]
    locs = [override("Localization", "l500", None, [set_label("l500")]),  # default priority 500
            override("Localization", "l100", 100, [set_label("l100")])]
    random.Random(7).shuffle(globs)
    random.Random(7).shuffle(locs)

    chosen = select_overrides(FEED, CLUSTER, globs, locs)
    assert [o["metadata"]["name"] for o in chosen] == ["g100", "g600", "l100", "l500"]

    result = apply_overrides(DEPLOYMENT, chosen)
    # Every override sets the same label: the last one in the documented order wins, even though a
    # Globalization has a higher priority number than both Localizations.
    assert result.object["metadata"]["labels"]["winner"] == "l500"
    assert [a.name for a in result.applied] == ["g100", "g600", "l100", "l500"]
    assert all(a.changed_paths == ("/metadata/labels/winner",) for a in result.applied)


def test_equal_priority_orders_by_creation_time_then_name() -> None:
    locs = [
        override("Localization", "b", 500, [], created="2024-01-01T00:00:05Z"),
        override("Localization", "c", 500, [], created="2024-01-01T00:00:01Z"),
        override("Localization", "a", 500, [], created="2024-01-01T00:00:05Z"),
    ]
    assert [o["metadata"]["name"] for o in select_overrides(FEED, CLUSTER, [], locs)] == ["c", "a", "b"]


def test_selection_filters_by_feed_cluster_namespace_affinity_and_deletion() -> None:
    globs = [
        override("Globalization", "all", 500, []),
        override("Globalization", "prod", 500, [], clusterAffinity={"matchLabels": {"env": "prod"}}),
        override("Globalization", "dev", 500, [], clusterAffinity={"matchLabels": {"env": "dev"}}),
        override("Globalization", "other-feed", 500, [], feed={**FEED, "name": "api"}),
        override("Globalization", "other-ns", 500, [], feed={**FEED, "namespace": "bar"}),
    ]
    deleting = override("Localization", "deleting", 500, [])
    deleting["metadata"]["deletionTimestamp"] = "2024-01-02T00:00:00Z"
    locs = [
        override("Localization", "mine", 500, []),
        override("Localization", "other-cluster", 500, [], namespace="clusternet-zzzzz"),
        deleting,
    ]
    names = [o["metadata"]["name"] for o in select_overrides(FEED, CLUSTER, globs, locs)]
    assert names == ["all", "prod", "mine"]


def test_override_feed_without_namespace_matches_cluster_scoped_feed() -> None:
    ns_feed = {"apiVersion": "v1", "kind": "Namespace", "name": "foo"}
    glob = override("Globalization", "g", 500, [], feed=ns_feed)
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}
    assert len(select_overrides(obj, CLUSTER, [glob], [])) == 1
    assert select_overrides(FEED, CLUSTER, [glob], []) == []


def test_broken_globalization_affinity_names_the_globalization() -> None:
    glob = override("Globalization", "broken", 500, [],
                    clusterAffinity={"matchExpressions": [{"key": "env", "operator": "In"}]})
    with pytest.raises(InvalidSelector, match="Globalization broken"):
        select_overrides(FEED, CLUSTER, [glob], [])


# --- patch types -----------------------------------------------------------------------------------------


def test_missing_path_is_reported_and_other_overrides_still_apply() -> None:
    loc = override("Localization", "web", 500, [
        jsonpatch_override("scale", [{"op": "replace", "path": "/spec/replicaz", "value": 3}]),
        jsonpatch_override("image", [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                                      "value": "nginx:1.25"}]),
    ])
    result = apply_overrides(DEPLOYMENT, [loc])
    assert [str(e) for e in result.errors] == [
        "Localization clusternet-5l82l/web override 'scale' (JSONPatch): path /spec/replicaz does not exist"
    ]
    assert result.errors[0].reason == "path /spec/replicaz does not exist"
    assert result.object["spec"]["replicas"] == 1
    assert result.object["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert [(a.override_name, a.changed_paths) for a in result.applied] == [
        ("image", ("/spec/template/spec/containers/0/image",))
    ]


def test_a_failing_json_patch_is_atomic() -> None:
    loc = override("Localization", "web", 500, [jsonpatch_override("two", [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/spec/nothing/here", "value": 1},
    ])])
    result = apply_overrides(DEPLOYMENT, [loc])
    assert result.object["spec"]["replicas"] == 1
    assert result.errors[0].reason == (
        "operation 2: path /spec/nothing/here cannot be created: its parent /spec/nothing does not exist"
    )


@pytest.mark.parametrize(
    ("conf", "reason"),
    [
        ({"type": "JSONPatch", "value": "[{"}, "value is neither valid JSON nor valid YAML"),
        ({"type": "MergePatch", "value": "a: [1\nb: 2"}, "value is neither valid JSON nor valid YAML"),
        ({"type": "JSONPatch", "value": '[{"path": "/spec"}]'}, "operation 1 has op None"),
        ({"type": "JSONPatch", "value": '[{"op": "add", "path": "spec"}]'}, "starting with '/'"),
        ({"type": "JSONPatch", "value": '[{"op": "replace", "path": "/spec/replicas"}]'}, "has no 'value'"),
        ({"type": "JSONPatch", "value": '"just text"'}, "must be a list of operations, got a string"),
        ({"type": "MergePatch", "value": "[1, 2]"}, "merge patch must be an object, got a list"),
        ({"type": "StrategicMergePatch", "value": "a: 1"}, "unknown override type 'StrategicMergePatch'"),
        ({"type": "JSONPatch", "value": '[{"op": "test", "path": "/spec/replicas", "value": 2}]'},
         "test failed: /spec/replicas is 1, not 2"),
    ],
)
def test_bad_overrides_are_errors_never_exceptions(conf: dict[str, Any], reason: str) -> None:
    loc = override("Localization", "web", 500, [conf, set_label("ok")])
    result = apply_overrides(DEPLOYMENT, [loc])
    assert len(result.errors) == 1
    assert reason in result.errors[0].reason
    assert result.errors[0].override_name == "#0"
    assert result.object["metadata"]["labels"]["winner"] == "ok"


def test_yaml_aliases_that_expand_past_the_cap_are_refused_not_expanded() -> None:
    """A kilobyte of nested aliases expanded to ~4 x 10^8 nodes in the hub's event loop (audit s35)."""
    names = "abcdefghij"
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in itertools.pairwise(names))
    loc = override("Localization", "l", 500, [{"type": "MergePatch", "value": bomb}, set_label("ok")])
    result = apply_overrides(DEPLOYMENT, [loc])
    assert len(result.errors) == 1 and "expands to more than 500,000 values" in result.errors[0].reason
    assert result.object["metadata"]["labels"]["winner"] == "ok"  # the override's other patches still apply
    # an alias that expands to little is welcome, as in a config's `<<: *defaults`
    merge = "base: &base {tier: front}\nmetadata: {labels: *base}\n"
    result = apply_overrides(DEPLOYMENT, [override("Localization", "l", 500, [{"type": "MergePatch", "value": merge}])])
    assert result.errors == [] and result.object["metadata"]["labels"]["tier"] == "front"


def test_values_may_be_yaml_json_or_already_parsed() -> None:
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 4}]
    for value in (json.dumps(ops), "- op: replace\n  path: /spec/replicas\n  value: 4\n", ops):
        result = apply_overrides(DEPLOYMENT, [override("Localization", "l", 500,
                                                      [{"type": "JSONPatch", "value": value}])])
        assert result.errors == [] and result.object["spec"]["replicas"] == 4


def test_merge_patch_null_deletes_and_objects_merge() -> None:
    loc = override("Localization", "l", 500, [{
        "type": "MergePatch",
        "value": json.dumps({"metadata": {"labels": {"app": None, "tier": "front"}}, "spec": {"replicas": 2}}),
    }])
    result = apply_overrides(DEPLOYMENT, [loc])
    assert result.object["metadata"]["labels"] == {"tier": "front"}
    assert result.object["spec"]["template"] == DEPLOYMENT["spec"]["template"]
    assert set(result.applied[0].changed_paths) == {"/metadata/labels/app", "/metadata/labels/tier", "/spec/replicas"}
    assert merge_patch({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}


CONFIGMAP: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"namespace": "foo", "name": "cfg"},
    "data": {
        "config.yaml": "server:\n  port: 8080\n  host: example.com\nlog: debug\n",
        "settings.json": '{"feature": {"a": true}, "list": [1, 2]}',
    },
}


def test_field_merge_patch_on_configmap_yaml_string() -> None:
    glob = override("Globalization", "cfg", 500, [{
        "name": "port", "type": "FieldMergePatch", "fieldPath": "/data/config.yaml",
        "value": "server:\n  port: 9090\nlog: null\n",
    }], feed={"apiVersion": "v1", "kind": "ConfigMap", "namespace": "foo", "name": "cfg"})
    result = apply_overrides(CONFIGMAP, [glob])
    assert result.errors == []
    text = result.object["data"]["config.yaml"]
    assert text == "server:\n  port: 9090\n  host: example.com\n"
    assert result.applied[0].changed_paths == ("/data/config.yaml",)
    assert result.object["data"]["settings.json"] == CONFIGMAP["data"]["settings.json"]


def test_field_json_patch_on_json_string_keeps_json() -> None:
    conf = {"type": "FieldJSONPatch", "fieldPath": "/data/settings.json", "fieldFormat": "JSON",
            "value": '[{"op": "add", "path": "/list/-", "value": 3}, {"op": "remove", "path": "/feature/a"}]'}
    result = apply_overrides(CONFIGMAP, [override("Localization", "l", 500, [conf])])
    assert result.errors == []
    assert json.loads(result.object["data"]["settings.json"]) == {"feature": {}, "list": [1, 2, 3]}


@pytest.mark.parametrize(
    ("conf", "reason"),
    [
        ({"fieldPath": "/data/missing.yaml"}, "field /data/missing.yaml does not exist"),
        ({"fieldPath": "/metadata"}, "field /metadata is an object, not a string holding YAML"),
        ({"fieldPath": "data.config"}, "fieldPath must be a JSON pointer"),
        ({"fieldPath": "/data/config.yaml", "fieldFormat": "JSON"}, "field /data/config.yaml is not valid JSON"),
        ({"fieldPath": "/data/config.yaml", "fieldFormat": "TOML"}, "fieldFormat 'TOML' is not supported"),
    ],
)
def test_field_patch_errors(conf: dict[str, Any], reason: str) -> None:
    full = {"name": "f", "type": "FieldMergePatch", "value": "a: 1", **conf}
    result = apply_overrides(CONFIGMAP, [override("Localization", "l", 500, [full])])
    assert len(result.errors) == 1
    assert reason in result.errors[0].reason
    assert result.object["data"] == CONFIGMAP["data"]


def test_helm_overrides_collect_values_and_leave_generic_objects_alone() -> None:
    overrides = [
        override("Globalization", "g", 100, [{"type": "Helm", "value": "image:\n  tag: '1.0'\nreplicas: 2\n"}]),
        override("Localization", "l", 500, [{"type": "Helm", "value": '{"image": {"tag": "2.0"}, "replicas": null}'},
                                            {"type": "Helm", "overrideChart": True, "value": "spec: {version: 9}"}]),
    ]
    result = apply_overrides(DEPLOYMENT, overrides)
    assert result.helm_values == {"image": {"tag": "2.0"}}
    assert result.errors == []
    assert [a.target for a in result.applied] == ["values", "values"]
    assert result.object["spec"] == DEPLOYMENT["spec"]


def test_override_chart_patches_helmchart_but_never_chart_or_target_namespace() -> None:
    chart: dict[str, Any] = {
        "apiVersion": "apps.clusternet.io/v1alpha1",
        "kind": "HelmChart",
        "metadata": {"namespace": "default", "name": "mysql"},
        "spec": {"repo": "https://charts.example.com", "chart": "mysql", "version": "1.0.0", "targetNamespace": "db"},
    }
    loc = override("Localization", "l", 500, [
        {"type": "Helm", "overrideChart": True,
         "value": "spec:\n  version: 2.0.0\n  chart: evil\n  targetNamespace: x\n"},
        {"name": "jp", "type": "JSONPatch", "value": '[{"op": "replace", "path": "/spec/version", "value": "3"}]'},
    ])
    result = apply_overrides(chart, [loc])
    assert result.object["spec"] == {**chart["spec"], "version": "2.0.0"}
    assert [e.override_name for e in result.errors] == ["jp"]
    assert "do not apply to a HelmChart" in result.errors[0].reason


def test_trailing_removals_and_input_left_untouched() -> None:
    original = copy.deepcopy(DEPLOYMENT)
    result = apply_overrides(DEPLOYMENT, [])
    assert "status" not in result.object
    assert set(result.object["metadata"]) == {"namespace", "name", "labels"}
    assert original == DEPLOYMENT
    result.object["spec"]["replicas"] = 99
    assert original == DEPLOYMENT


def test_changed_paths_reports_leaves_and_whole_added_or_removed_subtrees() -> None:
    before = {"a": {"b": 1, "c": [1, 2]}, "gone": {"x": 1}, "k/e~y": 1}
    after = {"a": {"b": 2, "c": [1, 3]}, "new": {"y": 1}, "k/e~y": 1}
    assert sorted(changed_paths(before, after)) == ["/a/b", "/a/c/1", "/gone", "/new"]
    assert changed_paths({"l": [1]}, {"l": [1, 2]}) == ["/l"]
    assert changed_paths({"k/e~y": 1}, {"k/e~y": 2}) == ["/k~1e~0y"]
    assert changed_paths({"n": 1}, {"n": 1.0}) == ["/n"]


def test_a_patch_may_not_replace_the_whole_object_with_a_non_object() -> None:
    conf = {"type": "JSONPatch", "value": '[{"op": "replace", "path": "", "value": [1]}]'}
    result = apply_overrides(DEPLOYMENT, [override("Localization", "l", 500, [conf])])
    assert result.errors[0].reason == "the patch would replace the whole object with a list"
    assert result.object["spec"] == DEPLOYMENT["spec"]


def test_an_override_chart_value_not_shaped_like_a_helmchart_is_refused_not_ignored() -> None:
    """The third audit: {"version": "0.2.0"} instead of {"spec": {"version": "0.2.0"}} changed nothing, and
    `kubectl clusternet render` listed it as applied."""
    chart: dict[str, Any] = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "HelmChart",
                             "metadata": {"namespace": "default", "name": "demo"},
                             "spec": {"repo": "https://charts.example.com", "chart": "demo", "version": "0.1.0",
                                      "targetNamespace": "demo"}}
    loc = override("Localization", "oc", 500, [{"name": "v", "type": "Helm", "overrideChart": True,
                                                "value": '{"version": "0.2.0"}'}])
    result = apply_overrides(chart, [loc])
    assert result.object["spec"] == chart["spec"] and result.applied == []
    assert [e.override_name for e in result.errors] == ["v"]
    assert "version at its top level changes nothing; chart fields go under spec" in result.errors[0].reason
