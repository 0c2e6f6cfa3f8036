"""What an API server serves, as a `Kube` learns it: kinds by group-version, discovered on first use (again on a
miss), the API groups and their versions, and the REST path of a kind.

The base of clusternet_api.kube.Kube, whose `raw` sends the discovery requests; kept apart from kube.py, the client
itself (requests, their credentials and limits, reads, writes and watches). Concurrent callers share one discovery
of a group-version (sharedrun.py).
"""

from __future__ import annotations

import functools
from typing import Any

from clusternet_api.apierrors import ApiException, ResourceNotFound, status_error
from clusternet_api.restpaths import core_resource, resource_path
from clusternet_api.sharedrun import SharedRuns

Obj = dict[str, Any]


class ApiDiscovery:
    """The kinds, resources and API groups of one API server, discovered through `raw` (Kube's)."""

    def __init__(self) -> None:
        self._kinds: dict[str, dict[str, tuple[str, bool]]] = {}  # apiVersion -> kind -> (plural, namespaced)
        self._resources: dict[str, list[Obj]] = {}  # apiVersion -> its APIResource entries, no subresources
        self._unavailable: dict[str, tuple[int, Any]] = {}  # apiVersion -> its last discovery's 404 or 503
        self._discovering: SharedRuns[str, None] = SharedRuns()  # apiVersion -> its discovery in flight

    async def raw(self, method: str, path: str) -> tuple[int, Any]:
        """One request: (status, parsed body or text). Kube.raw sends it."""
        raise NotImplementedError

    async def _discover(self, api_version: str) -> None:
        """Learn the kinds of one group-version; concurrent callers share one request, and one of them that is
        cancelled (a tunnel handler whose agent left) stops waiting alone (sharedrun.py)."""
        await self._discovering.run(api_version, functools.partial(self._discovery, api_version),
                                    f"discovery of {api_version}")

    async def _discovery(self, api_version: str) -> None:
        status, body = await self.raw("GET", "/api/v1" if api_version == "v1" else f"/apis/{api_version}")
        entries: list[Obj] = []
        if status == 200 and isinstance(body, dict):
            entries = [r for r in body.get("resources") or [] if "/" not in r["name"]]
        elif status not in (404, 503):
            raise ApiException(status, f"discovery of {api_version} failed: {body}")
        if status in (404, 503):
            self._unavailable[api_version] = (status, body)
        else:
            self._unavailable.pop(api_version, None)
        self._resources[api_version] = entries
        self._kinds[api_version] = {r["kind"]: (r["name"], bool(r.get("namespaced"))) for r in entries}

    async def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """(plural, namespaced) of a kind; one discovery request per group-version, again on a miss."""
        if (core := core_resource(api_version, kind)) is not None:
            return core
        known = self._kinds.get(api_version)
        if known is None or kind not in known:
            await self._discover(api_version)  # first use, or a CRD installed since
            known = self._kinds.get(api_version) or {}
        if kind not in known:
            raise ResourceNotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return known[kind]

    async def resources(self, api_version: str) -> list[Obj]:
        """The APIResource entries (name, kind, namespaced, singularName, shortNames, ...) of one group-version,
        subresources left out; [] when the server does not serve it (404) or cannot now (503). Discovered once."""
        if api_version not in self._resources:
            await self._discover(api_version)
        return self._resources.get(api_version, [])

    async def discover(self, api_version: str) -> list[Obj]:
        """`resources`, asked again now whatever was discovered before (a kind added since is in it), for a
        caller that must see every kind: ApiException instead of [] when the server cannot tell now (503, an
        aggregated API down) or does not serve `api_version` (404: not served, or a CRD's group its API server,
        just started, does not serve yet although /apis lists it; the caller tells them apart)."""
        await self._discover(api_version)
        if api_version in self._unavailable:
            raise status_error(*self._unavailable[api_version])
        return self._resources.get(api_version, [])

    async def preferred_versions(self) -> list[str]:
        """`v1`, then the preferred version of every API group, in the server's order (kubectl's search order
        for a resource name)."""
        return ["v1"] + [g["preferredVersion"]["groupVersion"] for g in await self._api_groups()
                         if g.get("preferredVersion")]

    async def group_versions(self) -> list[str]:
        """`v1`, then every version every API group serves, each group's preferred version first, groups in the
        server's order: a kind served only in a version the group does not prefer (CronJob in batch/v1beta1 on
        1.20) is in one of these."""
        out = ["v1"]
        for group in await self._api_groups():
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            served = [str(v["groupVersion"]) for v in group.get("versions") or [] if v.get("groupVersion")]
            out += ([str(preferred)] if preferred else []) + [v for v in served if v != preferred]
        return out

    async def _api_groups(self) -> list[Obj]:
        """The APIGroup entries of /apis."""
        status, body = await self.raw("GET", "/apis")
        if status != 200 or not isinstance(body, dict):
            raise status_error(status, body)
        groups: list[Obj] = body.get("groups") or []
        return groups

    async def path(self, api_version: str, kind: str, name: str | None = None,
                   namespace: str | None = None, subresource: str | None = None) -> str:
        plural, namespaced = await self.resource(api_version, kind)
        return resource_path(api_version, plural, namespaced, name, namespace, subresource)
