"""Two workers of one cluster (two Descriptions or two HelmReleases: different work keys, handled at once) share
what the hub keeps per cluster, and leak none of it (review 6, finding 9).

The Helm relay was created and started between a look-up and a store, and the child client replaced around the
old one's close: both workers made one, the second store won, and the other stayed open for the life of the hub
(a listener on a loopback port that shutdown never closed; an aiohttp session never closed).
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import pytest

from clusternet_api.kube import Credentials
from clusternet_api.tunnel import ByteStream, StreamOpenError
from clusternet_api.tunnel.relay import LoopbackRelay
from clusternet_hub.controller.helmpusher import ReleasePusher
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import NS, cluster, primed, push_secret


class SlowToClose(FakeKube):
    """A client whose close waits for the loop, as a real one closing its connections does."""

    async def close(self) -> None:
        await asyncio.sleep(0)
        await super().close()


async def test_two_workers_after_a_token_rotation_leave_one_client_and_close_the_others() -> None:
    c, _, _ = await primed(cluster(), push_secret())
    made: list[SlowToClose] = []

    def connect(creds: Credentials, connections: int, opener: object) -> SlowToClose:
        made.append(SlowToClose())
        return made[-1]

    c.pusher.connect = connect  # type: ignore[assignment]
    old = SlowToClose()
    c.pusher.children["abc"] = ("the token before its rotation", old)
    mc = c.store.caches.clusters[(NS, "child1")]
    first, second = await asyncio.gather(c.pusher.child_client(mc), c.pusher.child_client(mc))
    assert first is second is c.pusher.children["abc"][1]
    assert old.closed
    assert [k for k in made if not k.closed] == [first]  # every other client made is closed: here, none was
    assert len(made) == 1


async def no_stream() -> ByteStream:
    raise StreamOpenError("no tunnel here")


async def a_tunnel(cluster_id: str) -> object:
    return no_stream


async def refused(url: str) -> bool:
    """Whether nothing listens at `url` any more."""
    parts = urlsplit(url)
    try:
        _, writer = await asyncio.open_connection(parts.hostname, parts.port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_two_workers_of_one_cluster_share_one_helm_relay_which_shutdown_closes() -> None:
    c, _, _ = await primed(cluster(), push_secret())
    c.pusher.tunnel_opener = a_tunnel  # type: ignore[assignment]
    releases: ReleasePusher = c.releases
    mc = c.store.caches.clusters[(NS, "child1")]
    accesses = await asyncio.gather(releases.access(mc), releases.access(mc))
    urls = {a.server for a in accesses if not isinstance(a, str)}
    assert len(urls) == 1 and list(releases.relays) == ["abc"]
    await releases.close()
    assert all([await refused(url) for url in urls])  # no listener left behind on a loopback port


async def test_a_relay_closed_while_it_starts_does_not_go_on_listening() -> None:
    """A removed cluster's relay is closed by the resync (forget_gone) while a worker may be starting it."""
    relay = LoopbackRelay(no_stream)
    starting = asyncio.create_task(relay.start())
    await asyncio.sleep(0)  # in asyncio.start_server
    await relay.close()
    with pytest.raises(RuntimeError, match="the relay was closed"):
        await starting
    assert relay.server is None
