"""A Namespace of ours whose contents cannot be listed now because the child did not answer (restarting, out of
reach) is looked at again later, our mark kept; an answer that refuses a listing (a 403, a group's 503) keeps it
for good, its mark removed (review s37: a hold on an unreachable child made that happen for a passing failure)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from clusternet_api import ownership
from clusternet_api.apierrors import ApiException, is_passing
from clusternet_api.reachability import Unreachable
from clusternet_api.tunnel import StreamOpenError
from clusternet_api.tunnel.mux import StreamOpenTimeout

KEY = "clusternet-x.d"


class Child:
    """A child holding what is asked for marked ours; its GET or its discovery fails with the error given."""

    def __init__(self, get_error: Exception | None = None, discovery_error: Exception | None = None) -> None:
        self.get_error, self.discovery_error = get_error, discovery_error
        self.patched: list[Any] = []
        self.deleted: list[Any] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if self.get_error is not None:
            raise self.get_error
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "uid": "u1", "resourceVersion": "1",
                             "annotations": {ownership.ANNOTATION_OWNED: KEY}}}

    async def group_versions(self) -> list[str]:
        assert self.discovery_error is not None
        raise self.discovery_error

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.patched.append(args)
        return {}

    async def delete(self, *args: Any, **kwargs: Any) -> bool:
        self.deleted.append(args)
        return True


@pytest.mark.parametrize("error", [Unreachable("https://child cannot be reached (connection timed out)"),
                                   aiohttp.ServerDisconnectedError(), TimeoutError()])
async def test_contents_unknown_for_a_passing_failure_defers(error: Exception) -> None:
    child, out = Child(discovery_error=error), ownership.Released()
    await ownership.release(child, {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}, KEY, None,  # type: ignore[arg-type]
                            out)
    assert out.deferred == [{"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}]
    assert not out.kept and child.patched == [] and child.deleted == []


@pytest.mark.parametrize("error", [ApiException(403, "Forbidden"), ApiException(503, "Service Unavailable")])
async def test_contents_unknown_for_an_answer_keeps_it_and_lets_go_of_our_mark(error: Exception) -> None:
    """The API server answered: a refusal, or a group's 503 (an aggregated API down, often for good), which the
    cleanup must not wait on for ever."""
    child, out = Child(discovery_error=error), ownership.Released()
    await ownership.release(child, {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}, KEY, None,  # type: ignore[arg-type]
                            out)
    assert list(out.kept) == ["Namespace team-a"] and "cannot be listed" in out.kept["Namespace team-a"]
    assert len(child.patched) == 1 and not out.deferred and child.deleted == []


# Over a tunnel (re-review s37): StreamOpenError is what a child out of reach gives there
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}
CM = {"apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": "team-a"}
DOWN = [StreamOpenError("dial api-server failed: ConnectionRefusedError"),
        StreamOpenError("the tunnel of cluster c1 is down (on every hub replica)"),
        StreamOpenTimeout("opening api-server timed out after 10s")]


@pytest.mark.parametrize("error", DOWN)
def test_a_tunnel_that_cannot_reach_the_child_is_passing(error: Exception) -> None:
    assert is_passing(error)


@pytest.mark.parametrize("error", DOWN)
async def test_an_object_not_read_over_a_broken_tunnel_is_looked_at_again(error: Exception) -> None:
    child, out = Child(get_error=error), ownership.Released()
    await ownership.release(child, CM, KEY, None, out)  # type: ignore[arg-type]
    assert out.deferred == [CM]


@pytest.mark.parametrize("error", DOWN)
async def test_a_namespace_not_listed_over_a_broken_tunnel_keeps_our_mark(error: Exception) -> None:
    child, out = Child(discovery_error=error), ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert out.deferred == [NAMESPACE] and not out.kept and child.patched == []
