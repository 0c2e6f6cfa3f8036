"""A Namespace of ours whose contents cannot be listed now for a passing reason (the child restarting, out of reach
or throttling, an aggregated API's rollout) is looked at again later, our mark kept, for up to CONTENTS_PATIENCE;
an answer that refuses the listing (a 403), or a failure that lasts longer, keeps it for good, its mark removed
(review s37: a hold on an unreachable child made that happen for a passing failure)."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from clusternet_api import ownership
from clusternet_api.apierrors import ApiException, is_passing
from clusternet_api.reachability import Unreachable
from clusternet_api.tunnel import StreamOpenError
from clusternet_api.tunnel.mux import StreamOpenTimeout

KEY = "clusternet-x.d"
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "name": "team-a"}


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
        if self.discovery_error is not None:
            raise self.discovery_error
        return []  # nothing served that the Namespace could hold

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


async def test_a_refusal_keeps_it_at_once_and_lets_go_of_our_mark() -> None:
    """The API server answered that the listing is not allowed (a 403): waiting would not change that."""
    child, out = Child(discovery_error=ApiException(403, "Forbidden")), ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert list(out.kept) == ["Namespace team-a"] and "cannot be listed" in out.kept["Namespace team-a"]
    assert len(child.patched) == 1 and not out.deferred and child.deleted == []


PASSING_ANSWERS = [ApiException(503, "Service Unavailable"), ApiException(429, "Too Many Requests"),
                   ApiException(500, "Internal Server Error"), ApiException(504, "Gateway Timeout")]


@pytest.mark.parametrize("error", [*PASSING_ANSWERS, TimeoutError()])
async def test_a_passing_failure_is_waited_on_for_a_while_then_the_namespace_is_kept(
        error: Exception) -> None:
    """An answer that passes (an aggregated API's rollout: its group's 503; an API server throttling: 429) keeps
    our mark and is looked at again: the code before removed the mark at once, so a metrics-server rollout left
    our Namespace behind for good. After CONTENTS_PATIENCE the Namespace is kept, our mark removed: a group down
    for good does not hold the Description's deletion for ever (a child that never answered did before)."""
    child = Child(discovery_error=error)
    for waited in (0.0, 300.0, ownership.CONTENTS_PATIENCE - 5):
        age(waited)
        out = ownership.Released()
        await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
        assert out.deferred == [NAMESPACE] and not out.kept and child.patched == [], waited
    age(ownership.CONTENTS_PATIENCE)
    out = ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert list(out.kept) == ["Namespace team-a"] and "cannot be listed" in out.kept["Namespace team-a"]
    assert len(child.patched) == 1 and not out.deferred and child.deleted == []
    assert ownership.contents_unknown_since == {}


def age(seconds: float, last: float = 0.0) -> None:
    """Make the Namespace's wait `seconds` long so far, its last look `last` seconds ago (none seen yet: nothing to
    do)."""
    for k in ownership.contents_unknown_since:
        ownership.contents_unknown_since[k] = (seconds, time.monotonic() - last)


async def test_a_silence_counts_for_one_look_at_most() -> None:
    """Re-review s39: a 12-minute silence of the cluster (no look) counted in full, and the first look after kept the
    Namespace for good. It counts for CONTENTS_LOOK_CREDIT at most."""
    child = Child(discovery_error=ApiException(503, "Service Unavailable"))
    await ownership.release(child, NAMESPACE, KEY, None, ownership.Released())  # type: ignore[arg-type]
    age(0.0, last=720.0)
    out = ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert out.deferred == [NAMESPACE] and not out.kept
    [(waited, _)] = ownership.contents_unknown_since.values()
    assert ownership.CONTENTS_LOOK_CREDIT <= waited < ownership.CONTENTS_LOOK_CREDIT + 5


async def test_the_wait_starts_again_after_looks_that_stopped() -> None:
    """Review s39-a, F4: the time a cluster was silent (no look at its contents), or a release given up (the feed
    put back) and met again much later, counted as waiting, and one passing 503 then kept the Namespace at once."""
    child = Child(discovery_error=ApiException(503, "Service Unavailable"))
    await ownership.release(child, NAMESPACE, KEY, None, ownership.Released())  # type: ignore[arg-type]
    age(ownership.CONTENTS_PATIENCE * 3, last=ownership.CONTENTS_LOOKS_APART + 1)
    out = ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert out.deferred == [NAMESPACE] and not out.kept and child.patched == []


async def test_once_the_contents_are_listed_the_namespace_is_deleted_and_the_wait_forgotten() -> None:
    """The user's case: a metrics-server rollout answers 503 during the cleanup, then the group is back; our
    Namespace, holding nothing of anyone else, is deleted at the next look, and a later failure gets the whole
    patience again."""
    child = Child(discovery_error=ApiException(503, "Service Unavailable"))
    out = ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert out.deferred == [NAMESPACE] and ownership.contents_unknown_since
    child.discovery_error = None
    out = ownership.Released()
    await ownership.release(child, NAMESPACE, KEY, None, out)  # type: ignore[arg-type]
    assert out.deleted == ["Namespace team-a"] and not out.kept and not out.deferred
    assert ownership.contents_unknown_since == {}


# Over a tunnel (re-review s37): StreamOpenError is what a child out of reach gives there
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
