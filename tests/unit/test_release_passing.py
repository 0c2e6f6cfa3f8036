"""A Namespace of ours whose contents cannot be listed now because the child did not answer (restarting, out of
reach) is looked at again later, our mark kept; an answer that refuses a listing (a 403, a group's 503) keeps it
for good, its mark removed (review s37: a hold on an unreachable child made that happen for a passing failure)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from clusternet_api import ownership
from clusternet_api.apierrors import ApiException
from clusternet_api.reachability import Unreachable

KEY = "clusternet-x.d"


class Child:
    """A child holding Namespace team-a marked ours, whose discovery fails with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error, self.patched, self.deleted = error, list[Any](), list[Any]()

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "uid": "u1", "resourceVersion": "1",
                             "annotations": {ownership.ANNOTATION_OWNED: KEY}}}

    async def group_versions(self) -> list[str]:
        raise self.error

    async def patch(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.patched.append(args)
        return {}

    async def delete(self, *args: Any, **kwargs: Any) -> bool:
        self.deleted.append(args)
        return True


@pytest.mark.parametrize("error", [Unreachable("https://child cannot be reached (connection timed out)"),
                                   aiohttp.ServerDisconnectedError(), TimeoutError()])
async def test_contents_unknown_for_a_passing_failure_defers(error: Exception) -> None:
    child, out = Child(error), ownership.Released()
    await ownership.release(child, {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}, KEY, None,  # type: ignore[arg-type]
                            out)
    assert out.deferred == [{"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}]
    assert not out.kept and child.patched == [] and child.deleted == []


@pytest.mark.parametrize("error", [ApiException(403, "Forbidden"), ApiException(503, "Service Unavailable")])
async def test_contents_unknown_for_an_answer_keeps_it_and_lets_go_of_our_mark(error: Exception) -> None:
    """The API server answered: a refusal, or a group's 503 (an aggregated API down, often for good), which the
    cleanup must not wait on for ever."""
    child, out = Child(error), ownership.Released()
    await ownership.release(child, {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}, KEY, None,  # type: ignore[arg-type]
                            out)
    assert list(out.kept) == ["Namespace team-a"] and "cannot be listed" in out.kept["Namespace team-a"]
    assert len(child.patched) == 1 and not out.deferred and child.deleted == []
