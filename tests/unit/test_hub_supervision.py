"""The hub's long-running tasks never die silently, and the controller waits for the parent to answer its LISTs.

Found in review: the deployment controller was a task nobody awaited, and its first listing had no retry: one
failed LIST (the parent starting, RBAC or a CRD not in place yet) ended it without a word, and nothing was
reconciled or cleaned up until the hub was restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from clusternet_api.kube import ApiException, ResourceNotFound
from clusternet_hub import cli
from clusternet_hub.controller import Controller, controller
from clusternet_hub.supervision import ComponentDied, Supervisor
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import BASE, cluster, config_map_manifest, no_tunnel, subscription


class StartingParent(FakeKube):
    """A parent whose first LISTs fail as they do while it starts or is upgraded."""

    def __init__(self, *objects: Any) -> None:
        super().__init__(*objects)
        self.failures: list[tuple[str, Exception]] = [
            ("ManagedCluster", aiohttp.ClientConnectionError("connection refused")),
            ("HelmRelease", ResourceNotFound("no kind HelmRelease in apps.clusternet.io/v1alpha1")),
            ("ManagedCluster", ApiException(403, "managedclusters is forbidden"))]

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | None = None) -> list[Any]:
        if self.failures and self.failures[0][0] == kind:
            raise self.failures.pop(0)[1]
        return await super().list(api_version, kind, namespace, label_selector)


async def test_the_controller_retries_its_first_listing_saying_what_failed_then_reconciles(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(controller, "PRIME_RETRY_FIRST", 0.01)
    parent = StartingParent(cluster(), config_map_manifest(), subscription())
    c = Controller(parent, {}, no_tunnel, workers=1)
    with caplog.at_level(logging.WARNING, logger=controller.__name__):
        task = asyncio.create_task(c.run())
        for _ in range(100):
            await asyncio.sleep(0.01)
            if parent.find("Base", *BASE) is not None:
                break
    assert not task.done()
    task.cancel()
    assert parent.find("Base", *BASE) is not None  # primed, then reconciled
    lines = [r.getMessage() for r in caplog.records if r.name == controller.__name__]
    assert len(lines) == 2, lines  # each round lists every kind not listed yet, and names all that failed
    assert lines[0].startswith("deployment controller not started: listing ManagedCluster "
                               "(clusters.clusternet.io/v1beta1) failed: connection refused; listing HelmRelease "
                               "(apps.clusternet.io/v1alpha1) failed: no kind HelmRelease")
    assert lines[0].endswith("nothing is reconciled until it succeeds, retrying in 0s")
    assert "HTTP 403: managedclusters is forbidden" in lines[1] and "HelmRelease" not in lines[1]


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_crashed_task_is_logged_with_its_traceback_and_ends_the_work(
        caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor()

    async def crash() -> None:
        await asyncio.sleep(0.01)
        raise aiohttp.ClientConnectionError("connection refused")

    supervisor.start("the deployment controller", crash())
    work = forever()
    with pytest.raises(ComponentDied, match="the deployment controller ended"):
        await supervisor.run(work)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "the deployment controller crashed: connection refused"
    assert record.exc_info is not None and record.exc_info[0] is aiohttp.ClientConnectionError


async def test_a_task_that_returns_ends_the_work_too_but_one_cancelled_does_not() -> None:
    supervisor = Supervisor()

    async def done() -> None:
        return None

    supervisor.start("the health checks", done())
    with pytest.raises(ComponentDied):
        await supervisor.run(forever())
    calm = Supervisor()
    task = calm.start("the peer Lease renewal", forever())

    async def work() -> str:
        await asyncio.sleep(0.01)
        task.cancel()  # how the hub stops its tasks
        await asyncio.sleep(0.01)
        return "stopped"

    assert await calm.run(work()) == "stopped"


async def test_a_task_that_ends_cancelled_although_nobody_cancelled_it_is_a_death(
        caplog: pytest.LogCaptureFixture) -> None:
    """A CancelledError handed on by a shared wait (review 6, finding 2: a discovery whose first caller was
    cancelled) ended the deployment controller "cancelled", which the Supervisor took for a stop: no log line,
    and the hub went on leading with nothing reconciled. A timeout the task handled before does not make it one."""
    supervisor = Supervisor()

    async def handed_on() -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.001):  # cancels the task, and takes that back when it fires
                await asyncio.sleep(1)
        raise asyncio.CancelledError  # what a shared wait re-raised

    supervisor.start("the deployment controller", handed_on())
    with pytest.raises(ComponentDied, match="the deployment controller ended"):
        await asyncio.wait_for(supervisor.run(forever()), 5)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "the deployment controller ended cancelled although nobody cancelled it"
    assert record.exc_info is not None and record.exc_info[0] is asyncio.CancelledError  # where it came from


@pytest.mark.usefixtures("component_logging")
def test_the_hub_exits_with_status_1_when_a_component_died(monkeypatch: pytest.MonkeyPatch) -> None:
    def died(factory: Any) -> None:
        raise ComponentDied("the deployment controller ended; exiting so that the hub is restarted clean")

    exits: list[int] = []
    monkeypatch.setattr(cli, "_run_until_signalled", died)
    monkeypatch.setattr(cli.eventloop, "exit_if_threads_remain", lambda code, _log: exits.append(code))
    result = CliRunner().invoke(cli.main, ["--peer-port", "0", "--log-format", "text"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception  # not a crash
    assert exits == [1]  # not held up by a Helm thread either (test_eventloop)
