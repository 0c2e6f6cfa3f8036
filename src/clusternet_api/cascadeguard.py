"""Whether a Namespace or a CRD a Description created may be deleted: only when that deletes nothing else.

Deleting a Namespace deletes everything in it (the child's namespace controller does), and deleting a
CustomResourceDefinition deletes every object of its kind, in every namespace. So letting go of either by
deleting it would also remove another Description's objects, a Helm release and its record, what a user made
by hand, or objects the Description adopted (which we promise never to delete): none of them created by that
Description. Before such a delete, ownership.release asks what would go with it: `foreign_contents` lists
the namespace (every namespaced resource the child serves and can list, in every version of every group: a
kind may be served only in a version its group does not prefer, as CronJob in batch/v1beta1 on 1.20 or Istio's
EnvoyFilter in networking.istio.io/v1alpha3), `foreign_instances` the CRD's objects. The delete happens only
when nothing remains but:
- objects being deleted (the leaving Description's own were deleted just before: cleanup lets go of custom
  objects, then CRDs, then Namespaces; some are still terminating), and, in a namespace, dependents whose
  owners are all namespaced (ownerReferences: they go with their owners, which Kubernetes keeps in the
  dependent's namespace, so they are counted themselves, as ReplicaSets and Pods go with a Deployment). A
  dependent of a cluster-scoped owner (a ClusterRole, a Node, an operator's cluster-scoped custom resource) is
  counted: its owner is not in the namespace, and the Namespace's deletion would take the dependent while the
  owner stays. So is a dependent whose owner's kind the child's discovery does not know (its CRD removed, its
  group not served): it may be either, and an object we cannot place keeps the Namespace, as one we cannot
  list does. An owner reference names no namespace, so its kind's scope is what tells; it is read from the
  discovery the check makes anyway (every group-version once), so owners cost no request;
- what Kubernetes puts or keeps in every namespace: ServiceAccount `default`, ConfigMap `kube-root-ca.crt`,
  service-account token Secrets, Events, Endpoints (the endpoints controller's copy of a Service, which counts).
Anything else keeps the Namespace or CRD: only our mark is removed, and the Description's events name what kept
it. When the content cannot be listed (a LIST refused or failing), it is kept as well: we delete only what we
can see is ours alone; and so when the discovery of any group-version fails or the server cannot answer it now
(503): a kind we cannot see may have objects there. Objects that our own workloads made while running (a Lease,
a generated Secret) keep a Namespace too; the event names them, and deleting it is then the user's call.

Where we differ from Clusternet: its cleanup deletes a Namespace or CRD it deployed with whatever it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from clusternet_api.apiresource import split_group
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import error_text

# Groups whose namespaced resources are not stored objects of anyone (metrics are views of Pods and of what an
# adapter reads elsewhere) or are only records of what happened (events.k8s.io is core Events again). Their
# discovery is not asked either: an aggregated metrics API that is down keeps no Namespace.
IGNORED_GROUPS = frozenset({"metrics.k8s.io", "custom.metrics.k8s.io", "external.metrics.k8s.io",
                            "events.k8s.io"})
# What controllers put into every new namespace at once (the applier skips its GET for everything else there).
DEFAULTS = frozenset({("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")})
IGNORED_KINDS = frozenset({"Event", "Endpoints"})
SA_TOKEN = "kubernetes.io/service-account-token"
NAMED = 5  # objects named in a message; the rest are counted
LISTS_AT_ONCE = 8  # as the applier's applies: one child's API server, one connection pool

Scopes = Mapping[tuple[str, str], bool]
"""(group, kind) -> namespaced, of every kind the child's discovery showed in one check."""


class ContentsUnknown(Exception):
    """What the namespace holds could not be listed: it is kept. `cold`: the answer was a just-started API server's
    404 for a group or kind a CRD still serves, which passes within seconds (ownership waits on it as on a 503)."""

    def __init__(self, message: str, cold: bool = False) -> None:
        super().__init__(message)
        self.cold = cold


def unknown_by_answer(what: str, e: ApiException) -> ContentsUnknown:
    """ContentsUnknown for an answer to `what` (a discovery or LIST). Its callers return [] for a 404 of something
    served no more, so a 404 that reaches here is a cold API server's (`cold`)."""
    return ContentsUnknown(f"{what} failed: HTTP {e.status}: {e.reason}", cold=e.status == 404)


def is_foreign(obj: Obj, scopes: Scopes) -> bool:
    """Does this object keep its Namespace from being deleted? Objects of the Description letting go of the
    Namespace count as well: at cleanup they are gone or terminating by then, and when its feeds drop only the
    Namespace they are still deployed, and deleting the Namespace would delete them. `scopes`: the kinds the
    child serves, to tell whether the object's owners are in the namespace (goes_with_owners)."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp") or goes_with_owners(meta.get("ownerReferences"), scopes):
        return False
    kind = str(obj.get("kind") or "")
    if kind in IGNORED_KINDS or (kind, meta.get("name")) in DEFAULTS:
        return False
    return not (kind == "Secret" and obj.get("type") == SA_TOKEN)


def goes_with_owners(refs: object, scopes: Scopes) -> bool:
    """Whether a namespaced object has owners and all of them are of namespaced kinds, hence in its namespace and
    counted there themselves. The garbage collector keeps a dependent while any owner lives, so one owner that is
    cluster-scoped, or of a kind `scopes` does not know, is enough to count the dependent."""
    owners = refs if isinstance(refs, list) else []
    return bool(owners) and all(
        isinstance(ref, dict) and scopes.get((split_group(str(ref.get("apiVersion") or "")), str(ref.get("kind"))))
        is True for ref in owners)


async def foreign_contents(child: KubeApi, namespace: str) -> list[str]:
    """`Kind namespace/name` of every object in `namespace` that keeps it (is_foreign), sorted; ContentsUnknown
    when the child does not tell."""
    try:
        listable, scopes = await _discovered(child)
    except ContentsUnknown:
        raise
    except Exception as e:
        raise ContentsUnknown(f"discovery failed: {error_text(e)}") from e
    limit = asyncio.Semaphore(LISTS_AT_ONCE)

    async def one(api_version: str, kind: str, plural: str) -> list[str]:
        async with limit:
            try:
                items = await child.list(api_version, kind, namespace)
            except ApiException as e:
                if e.status == 404 and not await _still_served(child, api_version, kind, plural):
                    return []  # served no longer (a CRD deleted meanwhile): nothing of it here
                raise unknown_by_answer(f"listing {kind} ({api_version})", e) from e
            except Exception as e:
                raise ContentsUnknown(f"listing {kind} ({api_version}) failed: {error_text(e)}") from e
        return [f"{kind} {namespace}/{(o.get('metadata') or {}).get('name')}" for o in items
                if is_foreign({"kind": kind, **o}, scopes)]

    found = await asyncio.gather(*(one(v, k, p) for v, k, p in listable))
    return sorted({what for part in found for what in part})


async def _discovered(child: KubeApi) -> tuple[list[tuple[str, str, str]], Scopes]:
    """(apiVersion, kind, plural) of every namespaced resource the child serves in any version of any group and
    allows to list, each (group, kind) once, in its group's preferred version when served there, core first; and
    the scope of every kind served (a kind cluster-scoped in any version counts as cluster-scoped). Discovery is
    asked afresh (a kind added since the last one counts), once per group-version for both; any group-version it
    cannot tell about raises, and so does one that `/apis` lists while its own discovery answers 404 and a CRD
    serves it (_crd_serves). An entry counts as listable only when its verbs say so (an entry without a kind or
    verbs, as an aggregated API's subresource-only list may hold, is no kind to list)."""
    versions = [v for v in await child.group_versions() if v.rpartition("/")[0] not in IGNORED_GROUPS]
    limit = asyncio.Semaphore(LISTS_AT_ONCE)

    async def discover(version: str) -> list[Obj]:
        async with limit:
            try:
                return await child.discover(version)
            except ApiException as e:
                if e.status == 404 and not await _crd_serves(child, version):
                    return []  # not served (a CRD deleted since /apis was read, an aggregated API's quirk)
                raise unknown_by_answer(f"discovery of {version}", e) from e
            except Exception as e:
                raise ContentsUnknown(f"discovery of {version} failed: {error_text(e)}") from e

    found = await asyncio.gather(*(discover(v) for v in versions))
    out: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    scopes: dict[tuple[str, str], bool] = {}
    for version, entries in zip(versions, found, strict=True):  # each group's preferred version comes first
        for entry in entries:
            group_kind = (split_group(version), str(entry["kind"]))
            namespaced = bool(entry.get("namespaced"))
            if namespaced and group_kind[1] and "list" in (entry.get("verbs") or []) and group_kind not in seen:
                seen.add(group_kind)
                out.append((version, group_kind[1], str(entry.get("name") or "")))
            scopes[group_kind] = scopes.get(group_kind, True) and namespaced
    return out, scopes


async def foreign_instances(child: KubeApi, crd: Obj) -> list[str]:
    """`Kind namespace/name` of every object of the CRD's kind that is not being deleted, sorted (ownerReferences
    do not save an object here: the CRD's deletion takes it whatever owns it); ContentsUnknown when the child
    does not tell."""
    spec = crd.get("spec") or {}
    kind = str((spec.get("names") or {}).get("kind") or "")
    versions = [v.get("name") for v in spec.get("versions") or [] if v.get("served", True)] or [spec.get("version")]
    if not kind or not versions[0]:
        raise ContentsUnknown("the CRD names no kind or served version")
    api_version = f"{spec.get('group')}/{versions[0]}"
    try:
        items = await child.list(api_version, kind)
    except ApiException as e:
        if e.status == 404 and not await _crd_in_service(child, crd):
            return []  # not served (yet, or any more): no object of it exists
        raise unknown_by_answer(f"listing {kind} ({api_version})", e) from e
    except Exception as e:
        raise ContentsUnknown(f"listing {kind} ({api_version}) failed: {error_text(e)}") from e
    return sorted(f"{kind} {_where(o)}" for o in items if not (o.get("metadata") or {}).get("deletionTimestamp"))


async def _still_served(child: KubeApi, api_version: str, kind: str, plural: str) -> bool:
    """Is a kind whose LIST answered 404 still served? A 404 is "deleted meanwhile" only when fresh discovery
    does not list it and no CRD of it is there (or the one there is being deleted): a kube-apiserver that has just
    started (or an HA child's replica just rolled) answers 404 for custom resources until its CRD handler catches
    up (the first-rule review s31, F1), and for their group's discovery too (audit s36); taking that for "nothing
    there" deleted the Namespace with other people's objects of that kind in it. A failure to tell counts as still
    served: nothing is deleted on a guess."""
    try:
        try:
            entries = await child.discover(api_version)
        except ApiException as e:
            if e.status != 404:
                raise
            entries = []  # the group's discovery answers 404 too: the CRD decides
        if any(str(e.get("kind")) == kind for e in entries):
            return True
        group = split_group(api_version)
        if not group or not plural:
            return False
        crd = await child.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", f"{plural}.{group}")
    except Exception:
        return True
    return crd is not None and not (crd.get("metadata") or {}).get("deletionTimestamp")


async def _crd_serves(child: KubeApi, api_version: str) -> bool:
    """Does a CRD of the group serve `api_version`, not being deleted? Then the group's discovery answering 404
    while /apis lists it is a kube-apiserver just started, whose CRD handler does not serve the group yet (audit
    s36: taken for "no kinds", a cleanup deleted a Namespace holding someone else's custom objects). Not a CRD's
    (an aggregated API's 404), one going or one never Established: nothing is served there. Reading the CRDs
    failing counts as yes. One LIST of every CRD, only when a listed group's discovery answers 404 (rare: an API
    server starting, a CRD deleted meanwhile)."""
    group, _, version = api_version.rpartition("/")
    try:
        crds = await child.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    except Exception:
        return True
    return any((crd.get("spec") or {}).get("group") == group and _established(crd) and not (
        crd.get("metadata") or {}).get("deletionTimestamp") and any(
        v.get("name") == version and v.get("served", True) for v in (crd.get("spec") or {}).get("versions") or [])
        for crd in crds)


async def crd_holds(child: KubeApi, api_version: str, kind: str) -> bool:
    """Is a CRD of `kind` in the group of `api_version` there, not being deleted, whatever versions it serves now?
    Its objects are then still stored (served under another version, or soon again by a cold API server), so a 404
    for their path is no sign they are gone (review s39 of ownership._kind_gone: a CRD that stopped serving an
    old version still holds every object). Reading the CRDs failing counts as yes."""
    group = split_group(api_version)
    try:
        crds = await child.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    except Exception:
        return True
    return any((crd.get("spec") or {}).get("group") == group and ((crd.get("spec") or {}).get("names") or {}).get(
        "kind") == kind and not (crd.get("metadata") or {}).get("deletionTimestamp") for crd in crds)


def _established(crd: Obj) -> bool:
    """A CRD that never became Established serves nothing, so no object of it exists (re-review s36). Its stored
    status survives an API server's restart, so a cold server's CRDs still say so."""
    return any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or [])


async def _crd_in_service(child: KubeApi, crd: Obj) -> bool:
    """Is the CRD whose kind's LIST answered 404 still there, not being deleted, and Established (serving)? Then
    the 404 is a cold API server's (see _still_served), not "no object of it exists", and deleting the CRD would
    take every object of its kind, other people's too. Reading it failing counts as yes."""
    try:
        found = await child.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
    except Exception:
        return True
    if found is None or (found.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return _established(found)


def _where(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))


def summary(objects: list[str]) -> str:
    """The first NAMED objects, and how many more."""
    named = ", ".join(objects[:NAMED])
    return named + (f" and {len(objects) - NAMED} more" if len(objects) > NAMED else "")
