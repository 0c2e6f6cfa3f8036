"""`kubectl clusternet get/describe/delete KIND`: the kind typed is resolved against the parent's discovery, as
kubectl resolves it; a kind the parent neither serves nor has templates of is kubectl's one-line error."""

from __future__ import annotations

from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube
from clusternet_core.naming import manifest_for, template_problem
from clusternet_kubectl.commands.apply import apply_command
from clusternet_kubectl.commands.delete import delete_command
from clusternet_kubectl.commands.describe import describe_command
from clusternet_kubectl.commands.get import get_command
from clusternet_kubectl.documents import Document
from clusternet_kubectl.errors import PluginError
from clusternet_kubectl.resources import MANIFEST
from clusternet_kubectl.session import Session
from clusternet_kubectl.targets import crd_resources, resolve_target
from tests.unit.test_kubectl_plugin import DISCOVERY

MANIFESTS = MANIFEST.path(known.RESERVED_NAMESPACE)
WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1", "namespace": "other"}}


class FakeParent(Kube):
    """Discovery from DISCOVERY, the Manifests given, and the answers of `paths` (503 for anything else)."""

    def __init__(self, *templates: tuple[str, dict[str, Any]], paths: dict[str, Any] | None = None) -> None:
        super().__init__(Credentials(server="http://parent.invalid"))
        self.paths: dict[str, Any] = {**DISCOVERY, MANIFESTS: {
            "items": [manifest_for(plural, obj) for plural, obj in templates], "metadata": {"resourceVersion": "7"}}}
        self.paths.update(paths or {})
        self.asked: list[str] = []

    async def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        self.asked.append(path)
        answer = self.paths.get(path)
        if isinstance(answer, int):
            return answer, {"kind": "Status", "code": answer, "message": "broken"}
        return (200, answer) if answer is not None else (503, "service unavailable")


def parent(*templates: tuple[str, dict[str, Any]], paths: dict[str, Any] | None = None) -> Session:
    return Session(FakeParent(*templates, paths=paths), "default")


@pytest.mark.parametrize(("args", "typed"), [
    (("nosuchkind", (), False), "nosuchkind"),
    (("deploymentz", (), True), "deploymentz"),  # -A
    (("deployments.appz", (), False), "deployments"),  # kubectl names the resource, not the group
    (("Nosuch.v1.foo", ("x",), False), "Nosuch"),
    (("nosuchkind/x", (), False), "nosuchkind"),
])
async def test_get_of_a_kind_the_parent_does_not_know_fails_like_kubectl(args: tuple[str, tuple[str, ...], bool],
                                                                         typed: str) -> None:
    with pytest.raises(PluginError) as failed:
        await get_command(parent(), *args, None)
    assert str(failed.value) == f'the server doesn\'t have a resource type "{typed}"'


async def test_describe_and_delete_of_an_unknown_kind_fail_the_same_way() -> None:
    message = 'the server doesn\'t have a resource type "nosuchkind"'
    with pytest.raises(PluginError, match=message):
        await describe_command(parent(), "nosuchkind", ("x",))
    with pytest.raises(PluginError, match=message):
        await delete_command(parent(), "nosuchkind", ("x",), [])


@pytest.mark.parametrize("typed", ["deploy", "deployments", "Deployment", "deployment.apps", "deployments.v1.apps",
                                   "svc"])
async def test_a_known_kind_without_templates_is_no_resources_found(typed: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert await get_command(parent(), typed, (), False, None) == 0
    assert capsys.readouterr().err == "No resources found in default namespace.\n"


async def test_skip_validating_templates_make_their_literal_kind_known(capsys: pytest.CaptureFixture[str]) -> None:
    """The parent does not serve Widgets, but stores a template of one: listing them is no error anywhere."""
    assert await get_command(parent(("widgets", WIDGET)), "widgets", (), False, None) == 0
    assert capsys.readouterr().err == "No resources found in default namespace.\n"
    assert await get_command(parent(("widgets", WIDGET)), "Widget", (), True, None) == 0
    assert capsys.readouterr().out.split() == ["NAMESPACE", "NAME", "CREATED", "AT", "other", "w1", "<unknown>"]
    with pytest.raises(PluginError, match='resource type "gadgets"'):
        await get_command(parent(("widgets", WIDGET)), "gadgets", (), True, None)


async def test_a_literal_kind_lists_the_templates_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Knowing that the literal kind exists took a list of every Manifest: the command filters that one."""
    session = parent(("widgets", WIDGET))
    assert await get_command(session, "widgets", (), True, None) == 0
    assert await get_command(session, "widgets", ("w1",), True, None) == 0
    assert isinstance(session.kube, FakeParent) and session.kube.asked.count(MANIFESTS) == 2  # one per command
    assert capsys.readouterr().out.split()[-3:] == ["other", "w1", "<unknown>"]


async def test_without_discovery_the_kind_is_taken_literally_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    """Discovery refused (here /apis answers 500): no verdict on the kind, the templates are looked up by name."""
    assert await get_command(parent(paths={"/apis": 500}), "nosuchkind", (), False, None) == 0
    assert capsys.readouterr().err == "No resources found in default namespace.\n"


def test_the_crds_of_an_apply_define_their_kinds_with_their_plural_and_scope() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgetz"},
                    "versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}]}}
    cluster_scoped = {**crd, "spec": {**crd["spec"], "scope": "Cluster", "names": {"kind": "Rack", "plural": "racks"},
                                      "versions": [{"name": "v2"}]}}
    defined = crd_resources([crd, cluster_scoped, WIDGET])
    assert sorted(defined) == [("example.com/v1", "Gadget"), ("example.com/v2", "Rack")]
    gadget = defined[("example.com/v1", "Gadget")]
    assert (gadget.plural, gadget.namespaced) == ("gadgetz", True)
    assert not defined[("example.com/v2", "Rack")].namespaced


async def test_an_object_of_a_kind_its_apply_defines_is_a_template_in_the_default_namespace() -> None:
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "gadgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced", "names": {"kind": "Gadget", "plural": "gadgets"},
                    "versions": [{"name": "v1", "served": True}]}}
    gadget = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g1"}}
    with pytest.raises(PluginError, match="apply its CRD in the same command"):
        await resolve_target(parent(), gadget)
    target = await resolve_target(parent(), gadget, crd_resources([crd]))
    assert (target.manifest_name, target.known) == ("gadgets.default.g1", False)


async def test_deleting_a_literal_kind_never_takes_another_groups_template(capsys: pytest.CaptureFixture[str]) -> None:
    """The delete review (F12): `delete widgets foo -n team-a` also deleted a cluster-scoped Widget foo of another
    group. Templates in the namespace come first; two groups are refused until the group is named."""
    ours = {"apiVersion": "a.example.com/v1", "kind": "Widget", "metadata": {"name": "foo", "namespace": "team-a"}}
    theirs = {"apiVersion": "b.example.com/v1", "kind": "Widget", "metadata": {"name": "foo"}}
    other = {"apiVersion": "c.example.com/v1", "kind": "Widget", "metadata": {"name": "bar"}}
    third = {"apiVersion": "d.example.com/v1", "kind": "Widget", "metadata": {"name": "bar"}}
    templates = [("widgets", o) for o in (ours, theirs, other, third)]
    deletes = {MANIFEST.path(known.RESERVED_NAMESPACE, manifest_for(plural, o)["metadata"]["name"]): {}
               for plural, o in templates}
    session = Session(FakeParent(*templates, paths=deletes), "team-a")
    asked = session.kube.asked  # type: ignore[attr-defined]

    def deleted() -> list[str]:
        return sorted(p for p in asked if p in deletes)

    assert await delete_command(session, "widgets", ("foo",), []) == 0
    assert deleted() == [MANIFEST.path(known.RESERVED_NAMESPACE, manifest_for("widgets", ours)["metadata"]["name"])]
    asked.clear()
    assert await delete_command(session, "widgets", ("bar",), []) == 1  # c and d: which one?
    assert deleted() == [] and "name the group" in capsys.readouterr().err
    assert await delete_command(session, "widgets.d.example.com", ("bar",), []) == 0
    assert deleted() == [MANIFEST.path(known.RESERVED_NAMESPACE, manifest_for("widgets", third)["metadata"]["name"])]


async def test_delete_f_deletes_only_the_template_its_file_stores(capsys: pytest.CaptureFixture[str]) -> None:
    """A kind the parent does not serve: `-f` of a file without a namespace deleted that name's templates in every
    namespace, and one whose template was gone the namespace-less one (audit s35). A file knows the scope."""
    skip = {"annotations": {known.ANNOTATION_SKIP_VALIDATING: "true"}}
    widgets = [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "foo", **ns, **skip}}
               for ns in ({"namespace": "team-a"}, {"namespace": "team-b"}, {})]
    paths = {MANIFEST.path(known.RESERVED_NAMESPACE, manifest_for("widgets", w)["metadata"]["name"]):
             manifest_for("widgets", w) for w in widgets}
    path = list(paths)
    session = Session(FakeParent(*[("widgets", w) for w in widgets], paths=paths), "default")
    asked = session.kube.asked  # type: ignore[attr-defined]
    assert await delete_command(session, None, (), [Document("widget.yaml", widgets[2])]) == 0
    assert sorted({p for p in asked if p in paths}) == [path[2]]
    assert capsys.readouterr().out == 'widget.example.com "foo" deleted\n'
    asked.clear()
    session.kube.paths[path[0]] = 404  # type: ignore[attr-defined]  # team-a's is gone: nothing else instead
    assert await delete_command(session, None, (), [Document("team-a.yaml", widgets[0])]) == 1
    assert [p for p in asked if p in paths] == [path[0]]
    assert 'widgets.example.com "foo" not found' in capsys.readouterr().err
    session.kube.paths[path[0]] = paths[path[0]]  # type: ignore[attr-defined]  # team-a's foo is back
    dotted = {**widgets[2], "metadata": {**widgets[2]["metadata"], "name": "team-a.foo"}}  # stored as team-a's foo
    assert await delete_command(session, None, (), [Document("dotted.yaml", dotted)]) == 1  # review s35
    assert 'widgets.example.com "team-a.foo" not found' in capsys.readouterr().err


def test_what_cannot_be_a_template_is_said_in_one_line() -> None:
    assert template_problem("services", {"metadata": "x"}) == "metadata must be a map"
    assert template_problem("services", {"metadata": {"name": "a", "labels": "x"}}) == "metadata.labels must be a map"
    assert template_problem("services", {"metadata": {"name": "web", "namespace": "foo"}}) is None
    colon = template_problem("clusterroles", {"metadata": {"name": "system:metrics-server"}})
    assert colon is not None and "'clusterroles.system:metrics-server'" in colon
    assert template_problem("configmaps", {"metadata": {"name": "x" * 64, "namespace": "foo"}}) is not None


async def test_apply_refuses_what_cannot_be_a_template_before_writing(capsys: pytest.CaptureFixture[str]) -> None:
    """A string for metadata stopped the whole apply with a Python error; a name its Manifest cannot carry got the
    Manifest's 422, naming only the Manifest (audit s35)."""
    session = parent()
    docs = [Document("bad-meta.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": "x"}),
            Document("long.yaml", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s" * 64}})]
    assert await apply_command(session, docs) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: service/<no name> from bad-meta.yaml: metadata must be a map"
    assert err[1].startswith(f'error: service/{"s" * 64} from long.yaml: name "{"s" * 64}" cannot name a template')
    assert not [p for p in session.kube.asked if p.startswith(MANIFESTS)]  # type: ignore[attr-defined]
