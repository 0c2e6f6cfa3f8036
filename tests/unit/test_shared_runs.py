"""A run that concurrent callers share (a group-version's discovery, an exec plugin's run) is cancelled for one
caller alone (review 6, finding 2).

The first caller used to run it in its own task and hand its outcome to the others, a cancellation too: a tunnel
handler whose agent gave up cancelled the discovery the deployment controller was waiting on, and the controller
ended "cancelled", which its supervisor took for a deliberate stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clusternet_api.credentials import Credentials
from clusternet_api.execplugin import ExecCredential, ExecPlugin
from clusternet_api.kube import ApiException, Kube
from clusternet_hub.supervision import Supervisor

GV = "clusters.clusternet.io/v1beta1"
DISCOVERY = {"resources": [{"name": "managedclusters", "kind": "ManagedCluster", "namespaced": True}]}


class SlowParent(Kube):
    """A parent whose discovery answers after `release` is set, with `answers` in turn (then 200)."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        super().__init__(Credentials(server="http://parent.invalid"))
        self.release = asyncio.Event()
        self.asked = 0
        self.answers = list(answers)

    async def raw(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        assert (method, path) == ("GET", f"/apis/{GV}")
        self.asked += 1
        await self.release.wait()
        return self.answers.pop(0) if self.answers else (200, DISCOVERY)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_cancelled_first_caller_leaves_the_discovery_to_the_others() -> None:
    parent = SlowParent()
    handler = asyncio.create_task(parent.resource(GV, "ManagedCluster"))  # a tunnel handler asks first
    await settle()
    controller = asyncio.create_task(parent.resource(GV, "ManagedCluster"))  # the controller waits on it
    await settle()
    handler.cancel()  # the agent gave up its handshake
    await settle()
    parent.release.set()
    assert await controller == ("managedclusters", True)  # not cancelled: nobody cancelled it
    assert handler.cancelled()
    assert parent.asked == 1  # one request, shared


async def test_the_controller_under_its_supervisor_outlives_a_cancelled_handler() -> None:
    """The review's scenario end to end: the controller keeps running, the Supervisor has nothing to report."""
    parent = SlowParent()
    supervisor = Supervisor()
    primed = asyncio.Event()

    async def controller() -> None:
        await parent.resource(GV, "ManagedCluster")
        primed.set()
        await asyncio.Event().wait()

    handler = asyncio.create_task(parent.resource(GV, "ManagedCluster"))
    await settle()
    task = supervisor.start("the deployment controller", controller())
    await settle()
    handler.cancel()
    await settle()
    parent.release.set()

    async def work() -> str:
        await asyncio.wait_for(primed.wait(), 2)
        return "leading"

    assert await supervisor.run(work()) == "leading"
    assert not task.done()
    task.cancel()


async def test_a_discovery_every_caller_left_is_cancelled_and_a_failed_one_is_asked_again() -> None:
    """Nobody keeps waiting on a request nobody wants (as when the first caller ran it), nor on a failure: the
    next call asks again, and its error is never reported as "exception was never retrieved"."""
    parent = SlowParent((500, "etcdserver: leader changed"))
    only = asyncio.create_task(parent.resource(GV, "ManagedCluster"))
    await settle()
    assert GV in parent._discovering
    only.cancel()
    await settle()
    assert GV not in parent._discovering  # cancelled with its last caller, and forgotten at once
    parent.release.set()
    with pytest.raises(ApiException, match="leader changed"):
        await parent.resource(GV, "ManagedCluster")
    assert GV not in parent._discovering
    assert await parent.resource(GV, "ManagedCluster") == ("managedclusters", True)
    assert parent.asked == 3


class SlowPlugin(ExecPlugin):
    """An exec plugin whose command answers once `release` is set."""

    def __init__(self) -> None:
        super().__init__("credential-helper", user="u")
        self.release = asyncio.Event()

    async def run(self) -> ExecCredential:
        self.runs += 1
        await self.release.wait()
        return ExecCredential(token=f"tok-{self.runs}")


async def test_a_cancelled_caller_of_an_exec_plugin_leaves_its_run_to_the_others() -> None:
    plugin = SlowPlugin()
    first = asyncio.create_task(plugin.credential())  # a request whose timeout fires
    await settle()
    second = asyncio.create_task(plugin.credential())
    await settle()
    first.cancel()
    await settle()
    plugin.release.set()
    assert (await second).token == "tok-1"
    assert plugin.runs == 1
