"""A 404 on a watch (a parent API server starting again) ends kopf's stream instead of failing the operator,
so kopf's endless loop watches again; other errors still fail as kopf makes them. kopf's patches ask the
leader's write fence first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kopf._cogs.clients import errors, patching, watching

from clusternet_api.fence import WRITE_FENCE, LeadershipLost
from clusternet_hub import kopfhooks


def kopf_stream(error: Exception) -> Any:
    async def stream(**_: Any) -> AsyncIterator[dict[str, str]]:
        yield {"type": "ADDED"}
        raise error

    return stream


async def test_a_404_ends_the_stream_after_its_events(monkeypatch: pytest.MonkeyPatch) -> None:
    not_found = errors.APINotFoundError("404 page not found", status=404, headers={})
    monkeypatch.setattr(kopfhooks, "_kopf_continuous_watch", kopf_stream(not_found))
    assert [e async for e in kopfhooks.continuous_watch(resource="bases")] == [{"type": "ADDED"}]


async def test_other_errors_still_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    forbidden = errors.APIForbiddenError("forbidden", status=403, headers={})
    monkeypatch.setattr(kopfhooks, "_kopf_continuous_watch", kopf_stream(forbidden))
    with pytest.raises(errors.APIForbiddenError):
        [e async for e in kopfhooks.continuous_watch(resource="bases")]


def test_installed_where_kopf_calls_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's infinite_watch calls the module's continuous_watch by name: if kopf renames it, this fails."""
    monkeypatch.setattr(watching, "continuous_watch", watching.continuous_watch)
    kopfhooks.install()
    assert watching.continuous_watch is kopfhooks.continuous_watch
    assert "continuous_watch(" in Path(watching.__file__).read_text().split("async def infinite_watch", 1)[1]


async def test_kopfs_patches_ask_the_fence_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deposed leader's kopf writes none of its bookkeeping: the patch is refused before any request."""
    sent: list[dict[str, Any]] = []

    async def kopf_patch(**kwargs: Any) -> tuple[None, None]:
        sent.append(kwargs)
        return None, None

    def lost() -> None:
        raise LeadershipLost("Lease not renewed")

    monkeypatch.setattr(kopfhooks, "_kopf_patch_obj", kopf_patch)
    assert await kopfhooks.patch_obj(name="a") == (None, None)  # no fence (not leader work): as kopf's
    token = WRITE_FENCE.set(lost)
    try:
        with pytest.raises(LeadershipLost):
            await kopfhooks.patch_obj(name="b")
    finally:
        WRITE_FENCE.reset(token)
    assert [s["name"] for s in sent] == ["a"]


def test_patch_installed_where_kopf_calls_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's handlers patch through the module attribute: if kopf imports the function by name, this fails."""
    monkeypatch.setattr(patching, "patch_obj", patching.patch_obj)
    monkeypatch.setattr(watching, "continuous_watch", watching.continuous_watch)
    kopfhooks.install()
    assert patching.patch_obj is kopfhooks.patch_obj
    application = Path(patching.__file__).parents[2] / "_core" / "actions" / "application.py"
    assert "patching.patch_obj(" in application.read_text()
