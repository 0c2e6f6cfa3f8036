"""The hub's and the agent's event loop: uvloop by default, asyncio's own when asked for."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from clusternet_api import eventloop


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_uvloop_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV_EVENT_LOOP, raising=False)
    assert eventloop.run(_loop_type()) is uvloop.Loop


def test_asyncio_when_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(eventloop.ENV_EVENT_LOOP, "asyncio")
    assert eventloop.loop_factory() is None
    assert not issubclass(eventloop.run(_loop_type()), uvloop.Loop)


def test_run_returns_the_result_and_raises_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV_EVENT_LOOP, raising=False)

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ValueError("bad flag")

    assert eventloop.run(answer()) == 42
    with pytest.raises(ValueError, match="bad flag"):
        eventloop.run(fail())
