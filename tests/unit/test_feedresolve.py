"""Which template a feed names: one is used, several (a feed without its namespace) refuse the Subscription."""

from __future__ import annotations

from typing import Any

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube
from clusternet_core import plan as planning
from clusternet_core import refusals
from clusternet_core.feedresolve import REASON_AMBIGUOUS, any_version_selector, matches, resolve_feeds, template_ref
from clusternet_core.naming import manifest_labels, manifest_name
from clusternet_hub.controller import Controller


def manifest(kind: str, namespace: str | None, name: str, api_version: str = "v1", *,
             stored_as: str | None = None) -> dict[str, Any]:
    """A Manifest as `kubectl clusternet apply` stores it."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    obj = {"apiVersion": api_version, "kind": kind, "metadata": meta}
    return {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest", "template": obj,
            "metadata": {"name": stored_as or manifest_name(kind.lower() + "s", namespace, name),
                         "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(obj)}}


TWIN_DEFAULT = manifest("ConfigMap", "default", "twin")
TWIN_OTHER = manifest("ConfigMap", "other", "twin")
LOOSE = {"apiVersion": "v1", "kind": "ConfigMap", "name": "twin"}


def test_a_feed_with_its_namespace_names_one_template() -> None:
    resolved = resolve_feeds([{**LOOSE, "namespace": "other"}], [TWIN_DEFAULT, TWIN_OTHER])
    assert resolved.templates == {"v1/ConfigMap/other/twin": TWIN_OTHER}
    assert resolved.ambiguous == [] and resolved.message() == ""


def test_a_feed_without_namespace_uses_the_only_template_there_is() -> None:
    resolved = resolve_feeds([LOOSE], [TWIN_OTHER, manifest("ConfigMap", "other", "unrelated")])
    assert resolved.templates == {"v1/ConfigMap/twin": TWIN_OTHER} and not resolved.ambiguous


def test_a_feed_without_namespace_matching_templates_in_two_namespaces_is_ambiguous() -> None:
    deploy = manifest("Deployment", "default", "web", "apps/v1")
    resolved = resolve_feeds([LOOSE, {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default",
                                      "name": "web"}], [TWIN_OTHER, deploy, TWIN_DEFAULT])
    assert resolved.templates == {"apps/v1/Deployment/default/web": deploy}  # the unambiguous feed resolves
    [ambiguity] = resolved.ambiguous
    assert ambiguity.candidates == ("ConfigMap default/twin", "ConfigMap other/twin")
    assert resolved.message() == (
        "feed ConfigMap twin (v1) has no namespace and matches 2 templates: ConfigMap default/twin, "
        "ConfigMap other/twin; set the feed's namespace to the one to deploy")


def test_one_object_stored_twice_is_one_candidate_and_the_first_copy_is_used() -> None:
    legacy = manifest("ConfigMap", "default", "twin", stored_as="configmaps-default-twin")
    resolved = resolve_feeds([LOOSE], [legacy, TWIN_DEFAULT])
    assert resolved.templates == {"v1/ConfigMap/twin": legacy} and not resolved.ambiguous


def test_the_same_ambiguous_feed_twice_is_reported_once_and_missing_templates_are_left_out() -> None:
    resolved = resolve_feeds([LOOSE, LOOSE, {**LOOSE, "name": "nowhere"}], [TWIN_DEFAULT, TWIN_OTHER])
    assert len(resolved.ambiguous) == 1 and resolved.templates == {}


def test_a_feed_under_the_wrong_api_version_is_refused_with_the_version_its_template_has() -> None:
    """Clusternet's overview feeds `apiVersion: apps/v1, kind: Service`: no template matches (a Service is v1), so
    the Subscription is refused; FeedNotFound alone did not say why (the sixth audit)."""
    service = manifest("Service", "foo", "my-nginx-svc")
    feeds = [{"apiVersion": "apps/v1", "kind": "Service", "namespace": "foo", "name": "my-nginx-svc"},
             {"apiVersion": "v1", "kind": "Service", "namespace": "foo", "name": "other"}]
    resolved = resolve_feeds(feeds, [service, manifest("Service", "bar", "my-nginx-svc", "v2"),
                                     manifest("ConfigMap", "foo", "my-nginx-svc")])
    assert resolved.templates == {} and resolved.other_versions == {"apps/v1/Service/foo/my-nginx-svc": ["v1"]}
    refused = refusals.refusal_condition(planning.subscription_feeds({"spec": {"feeds": feeds}}), resolved)
    assert refused is not None and refused["reason"] == refusals.REASON_FEED_NOT_FOUND
    assert refused["message"].startswith(
        "feed apps/v1/Service foo/my-nginx-svc not found: no Manifest in clusternet-reserved (did you mean "
        "apiVersion v1?); feed v1/Service foo/other not found: no Manifest in clusternet-reserved; ")
    # a feed without a namespace: any namespace's template of that kind and name is a hint
    loose = resolve_feeds([{"apiVersion": "apps/v1", "kind": "Service", "name": "my-nginx-svc"}],
                          [service, manifest("Service", "bar", "my-nginx-svc", "v2")])
    assert loose.other_versions == {"apps/v1/Service/my-nginx-svc": ["v1", "v2"]}
    # a HelmChart feed never has a Manifest: no hint looked for (nor a second pass over every template)
    chart = {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "namespace": "foo", "name": "my-nginx-svc"}
    assert resolve_feeds([chart], [service]).other_versions == {}
    assert any_version_selector(feeds[0]) == (
        "apps.clusternet.io/config.kind=Service,apps.clusternet.io/config.name=my-nginx-svc,"
        "apps.clusternet.io/config.namespace=foo")


def test_matching_and_a_templates_feed_fields() -> None:
    namespace = manifest("Namespace", None, "demo")
    assert matches({"apiVersion": "v1", "kind": "Namespace", "name": "demo"}, namespace)
    assert not matches({"apiVersion": "v1", "kind": "Namespace", "name": "demo", "namespace": "x"}, namespace)
    assert matches(LOOSE, TWIN_OTHER) and not matches({**LOOSE, "apiVersion": "v2"}, TWIN_OTHER)
    assert template_ref(manifest("Deployment", "a", "b", "apps/v1")) == {
        "apiVersion": "apps/v1", "kind": "Deployment", "namespace": "a", "name": "b"}


# --- the hub: an ambiguous Subscription is refused as a whole --------------------------------------------------


class RecordingKube(Kube):
    """Records writes instead of sending them; the refusal must write only the status and one event."""

    def __init__(self) -> None:
        super().__init__(Credentials("https://127.0.0.1:1"))
        self.writes: list[tuple[str, Any]] = []
        self.stored: dict[str, Any] = {}  # name -> the object as the parent holds it

    async def patch(self, api_version: str, kind: str, name: str, body: Any, namespace: str | None = None,
                    **kw: Any) -> Any:
        self.writes.append((f"patch {kind} {kw.get('subresource') or ''}".strip(), body))
        self.stored[name] = {**self.stored[name], **body}
        return self.stored[name]

    async def create(self, obj: Any, *args: Any, **kw: Any) -> Any:
        self.writes.append((f"create {obj['kind']}", obj))
        return obj

    async def apply(self, obj: Any, *args: Any, **kw: Any) -> Any:
        self.writes.append((f"apply {obj['kind']}", obj))
        return obj

    async def delete(self, *args: Any, **kw: Any) -> bool:
        self.writes.append(("delete", args))
        return True


async def test_the_hub_refuses_an_ambiguous_subscription_writing_nothing_but_its_status_and_an_event() -> None:
    async def no_tunnel(cluster_id: str) -> None:
        return None

    kube = RecordingKube()
    d = Controller(kube, {}, no_tunnel)
    deployed_status = {"bindingClusters": ["clusternet-a/child1"], "completedReleases": 1}
    sub = {"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
           "metadata": {"name": "app", "namespace": "default", "uid": "s1", "resourceVersion": "1",
                        "finalizers": [known.FINALIZER_APPS]},
           "spec": {"subscribers": [{"clusterAffinity": {}}], "feeds": [LOOSE]}, "status": deployed_status}
    d.store.caches.subscriptions[("default", "app")] = kube.stored["app"] = sub
    for m in (TWIN_DEFAULT, TWIN_OTHER):
        d.store.caches.manifests[m["metadata"]["name"]] = m
    await d.subscriptions.reconcile(("default", "app"), force=False)
    assert [w[0] for w in kube.writes] == ["create Event", "patch Subscription status"]
    event, status = kube.writes[0][1], kube.writes[1][1]["status"]
    assert event["type"] == "Warning" and event["reason"] == REASON_AMBIGUOUS
    assert event["involvedObject"]["kind"] == "Subscription" and event["involvedObject"]["name"] == "app"
    assert "ConfigMap default/twin, ConfigMap other/twin" in event["message"]
    [ready] = status["conditions"]
    # what it deployed stays deployed: its bindings stay, and what the reports say is kept up to date (review s39-b,
    # finding 1: the status of the moment of the refusal was copied; here no Description of child1 is cached)
    assert status["bindingClusters"] == deployed_status["bindingClusters"] and status["completedReleases"] == 0
    assert (ready["status"], ready["reason"]) == ("False", REASON_AMBIGUOUS)
    assert ready["message"].endswith("nothing is deployed, changed or removed")
    # reconciling again (resync) writes nothing: the same refusal is neither rewritten nor announced again
    kube.writes.clear()
    await d.subscriptions.reconcile(("default", "app"), force=False)
    assert kube.writes == []


def test_a_new_template_brings_back_subscriptions_whose_feed_it_matches_without_namespace() -> None:
    async def no_tunnel(cluster_id: str) -> None:
        return None

    d = Controller(Kube(Credentials("https://127.0.0.1:1")), {}, no_tunnel)
    for name, feed in (("loose", LOOSE), ("exact", {**LOOSE, "namespace": "default"}),
                       ("unrelated", {**LOOSE, "name": "x"})):
        d.store.caches.subscriptions[("default", name)] = {"metadata": {"name": name, "namespace": "default"},
                                                     "spec": {"feeds": [feed]}}
    d.store.on_manifest("ADDED", TWIN_OTHER)
    queued = {key for key, _ in d.store.queue.drain()}
    assert queued == {("sub", "default", "loose")}
