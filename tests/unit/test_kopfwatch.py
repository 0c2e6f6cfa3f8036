"""A 404 on a watch (a parent API server starting again) ends kopf's stream instead of failing the operator,
so kopf's endless loop watches again; other errors still fail as kopf makes them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kopf._cogs.clients import errors, watching

from clusternet_hub import kopfwatch


def kopf_stream(error: Exception) -> Any:
    async def stream(**_: Any) -> AsyncIterator[dict[str, str]]:
        yield {"type": "ADDED"}
        raise error

    return stream


async def test_a_404_ends_the_stream_after_its_events(monkeypatch: pytest.MonkeyPatch) -> None:
    not_found = errors.APINotFoundError("404 page not found", status=404, headers={})
    monkeypatch.setattr(kopfwatch, "_kopf_continuous_watch", kopf_stream(not_found))
    assert [e async for e in kopfwatch.continuous_watch(resource="bases")] == [{"type": "ADDED"}]


async def test_other_errors_still_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    forbidden = errors.APIForbiddenError("forbidden", status=403, headers={})
    monkeypatch.setattr(kopfwatch, "_kopf_continuous_watch", kopf_stream(forbidden))
    with pytest.raises(errors.APIForbiddenError):
        [e async for e in kopfwatch.continuous_watch(resource="bases")]


def test_installed_where_kopf_calls_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's infinite_watch calls the module's continuous_watch by name: if kopf renames it, this fails."""
    monkeypatch.setattr(watching, "continuous_watch", watching.continuous_watch)
    kopfwatch.install()
    assert watching.continuous_watch is kopfwatch.continuous_watch
    assert "continuous_watch(" in Path(watching.__file__).read_text().split("async def infinite_watch", 1)[1]
