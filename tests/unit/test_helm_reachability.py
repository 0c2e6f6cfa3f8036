"""A HelmRelease to a child reached straight at its URL, when no connection can be made to it: the push client's hold
(clusternet_api.reachability) answers before Helm is asked, and the release waits at the pushes' pace."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from clusternet_api import known
from clusternet_api.reachability import TIMED_OUT, held_words
from clusternet_hub.controller import Controller, helmpusher
from clusternet_hub.controller.helmpusher import Held
from clusternet_hub.controller.pusher import connect_child
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import NS, SUB, cluster, namespace, no_tunnel, subscription
from tests.unit.test_helm import FEED, HELM_DESC, HR, chart


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def direct_secret(url: str) -> Obj:
    data = {"token": b"t0k3n", "apiserver-advertise-url": url.encode()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": known.DEPLOYER_SECRET, "namespace": NS},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


async def release_pushed(url: str) -> tuple[Controller, FakeKube, FakeHelm]:
    """A Subscription of the chart to the one cluster, whose deployer credentials name `url`, reconciled, and its
    HelmRelease pushed once (the caller closes the controller's pusher)."""
    parent, helm = FakeKube(namespace(), cluster(), chart(), direct_secret(url), subscription(feeds=[FEED])), \
        FakeHelm()
    c = Controller(parent, {}, no_tunnel, helm=helm, connect=connect_child)
    await c.store.prime(parent)
    c.store.queue.drain()
    try:
        await c.subscriptions.reconcile(SUB, force=False)
        await c.helm_descriptions.sync(HELM_DESC)
        await c.releases.push(HR)
    except BaseException:
        await c.pusher.close()
        raise
    return c, parent, helm


async def test_a_release_to_a_child_out_of_reach_waits_with_the_holds_words_and_helm_is_not_asked() -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    c, parent, helm = await release_pushed(url)
    try:
        said = parent.find("HelmRelease", *HR)["status"]["description"]
        assert said.startswith(f"{url} cannot be reached") and "asked again by one request at a time" in said
        assert helm.releases == {} and helm.calls == []
        assert ("release", *HR) in c.store.queue._later  # tried again at the pushes' pace: no event brings it back

        start = time.monotonic()  # within the hold: not asked again, the same words
        assert await c.releases.access(c.pusher.cluster_in(NS) or {}) == said
        assert isinstance(await c.releases.access(c.pusher.cluster_in(NS) or {}), Held)
        assert time.monotonic() - start < 0.5
        assert helm.calls == []
    finally:
        await c.pusher.close()


async def test_a_child_that_accepts_but_never_answers_holds_the_release_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frozen child (SIGSTOP: its port still accepts, nothing answers), reached on a connection kept alive or by
    the hold's probe: the pre-flight's own limit ran out and Helm was called, waiting its own timeouts (the frozen-
    child integration test, s39). No answer within PREFLIGHT_SECONDS now holds the release, in the same words at
    each retry."""
    monkeypatch.setattr(helmpusher, "PREFLIGHT_SECONDS", 0.3)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted: the TCP handshake completes, TLS never answers
    url = f"https://127.0.0.1:{silent.getsockname()[1]}"
    c, parent, helm = await release_pushed(url)
    try:
        said = parent.find("HelmRelease", *HR)["status"]["description"]
        assert said == held_words(url, TIMED_OUT), said  # the hold's words: the same at the next attempt
        assert helm.calls == []
        assert await c.releases.access(c.pusher.cluster_in(NS) or {}) == said
    finally:
        await c.pusher.close()
        silent.close()
