"""The hub's and the agent's event loop: uvloop by default, asyncio's own when asked for; and their exit, which
does not wait for a worker thread stuck in a Helm call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

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


@contextlib.contextmanager
def stuck_helm_thread() -> Iterator[None]:
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="helm-sdk_0")
    stuck.start()
    try:
        yield
    finally:
        release.set()
        stuck.join()


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    codes: list[int] = []
    monkeypatch.setattr(eventloop.os, "_exit", codes.append)
    monkeypatch.setattr(eventloop.logging, "shutdown", lambda: None)  # pytest's handlers stay open
    monkeypatch.setattr(eventloop, "THREADS_GRACE_SECONDS", 0.1)
    return codes


def test_a_stopping_process_does_not_wait_for_a_worker_thread_stuck_in_a_helm_call(exits: list[int]) -> None:
    """A hub stayed alive minutes after SIGTERM: Python joins worker threads at exit (the day-2 audit)."""
    log = logging.getLogger("test")
    eventloop.exit_if_threads_remain(0, log)
    assert exits == []  # nothing left running: the caller exits as usual
    with stuck_helm_thread():
        eventloop.exit_if_threads_remain(0, log)
        eventloop.exit_if_threads_remain(1, log)
    assert exits == [0, 1]  # with the status asked for


@pytest.mark.usefixtures("component_logging")
def test_an_agent_exits_without_waiting_for_a_stuck_helm_thread(monkeypatch: pytest.MonkeyPatch,
                                                                 exits: list[int]) -> None:
    """The agent joined its Helm threads too (a Pull-mode install's wait), stopping only when the kubelet
    killed it, 30 s later by default."""
    from click.testing import CliRunner

    from clusternet_agent import cli

    async def run_agent(*_args: object, **_kw: object) -> None:
        return None

    monkeypatch.setattr(cli, "run_agent", run_agent)
    with stuck_helm_thread():
        result = CliRunner().invoke(cli.main, [
            "--cluster-reg-parent-url=https://parent:6443", "--cluster-reg-token=07401b.f395accd246ae52d",
            "--secure-port=0", "--log-format=text"])
    assert result.exit_code == 0, result.output
    assert exits == [0] and "exiting without waiting for" in result.output and "helm-sdk_0" in result.output
