"""A few clusters out of reach no longer hold every worker of the hub (audit s36, controllers, finding 7): at most
CLUSTER_WORKERS work on one cluster's pushes at once, and a push client fails at once towards a child it could
not connect to a moment ago (clusternet_api.reachability)."""

from __future__ import annotations

import asyncio
import base64
import copy
import time
from typing import Any

import pytest

from clusternet_api import known
from clusternet_hub.controller import Controller, pusher
from clusternet_hub.controller.store import CLUSTER_WORKERS, group_of
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import DESC, NS, SUB, deployed_controller, no_tunnel
from tests.unit.test_reachability import silent_tls_server


def test_the_work_that_shares_workers() -> None:
    assert group_of(("push", NS, "d")) == group_of(("push", NS, "e")) == (("push", NS), CLUSTER_WORKERS)
    assert group_of(("release", NS, "r")) == (("release", NS), 2)  # Helm's waits never hold the pushes
    assert [group_of((work, "default", "x")) for work in ("sub", "status", "helm", "chart", "stray", "invalid")] == [
        None] * 6


async def test_pushes_to_a_cluster_that_never_answers_leave_workers_for_the_rest() -> None:
    c = Controller(FakeKube(), {}, no_tunnel, workers=3)
    hung = asyncio.Event()  # never set: a child that takes every request and answers none
    done: list[Any] = []

    async def process(item: Any, force: bool) -> None:
        if item[1] == "clusternet-slow":
            await hung.wait()
        done.append(item)

    c.process = process  # type: ignore[method-assign]
    for i in range(4):
        c.store.enqueue("push", ("clusternet-slow", f"d{i}"))
    c.store.enqueue("push", (NS, "d"))
    c.store.enqueue("sub", SUB)
    workers = [asyncio.create_task(c._worker()) for _ in range(3)]
    await asyncio.sleep(0.05)
    for w in workers:
        w.cancel()
    # 3 workers used to take 3 of the slow cluster's pushes and hang, the Subscription and the other cluster waiting
    assert done == [("push", NS, "d"), ("sub", *SUB)]


async def test_a_push_to_a_child_that_does_not_answer_fails_in_seconds_and_the_next_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pusher, "CONNECT_TIMEOUT", 0.3)
    async with silent_tls_server() as (url, accepted):
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": known.DEPLOYER_SECRET, "namespace": NS},
                  "data": {"token": base64.b64encode(b"t0k3n").decode(),
                           "apiserver-advertise-url": base64.b64encode(url.encode()).decode()}}
        c, parent, _ = await deployed_controller(secret)
        c.pusher.connect = pusher.connect_child  # the hub's own client, not the fake child
        try:
            started = time.monotonic()
            await c.pusher.push(DESC)
            assert time.monotonic() - started < 3  # not the request timeout of 120 s
            status = parent.find("Description", *DESC)["status"]
            assert status["phase"] == "Failure" and f"{url} cannot be reached (connection timed out)" in \
                status["reason"], status
            c.store.on_description("MODIFIED", copy.deepcopy(parent.find("Description", *DESC)))  # the watch
            parent.writes.clear()
            started = time.monotonic()
            await c.pusher.push(DESC, force=True)  # retried within the hold: not sent at all
            assert time.monotonic() - started < 0.5
            # the same reason: no status write and no Warning event per retry (review s37)
            assert parent.find("Description", *DESC)["status"] == status and parent.writes == []
            assert accepted == [1]
        finally:
            await c.pusher.close()

