"""The SocketConnected marks the hub writes on ManagedClusters as agents' tunnels come and go.

Each cluster's marks are written in the background by one writer per cluster, which writes the latest state recorded
(`_record`): a state superseded before its write is sent is not written (_Race: its requests still waiting for the
client's rate limiter are given up), and a mark the ManagedCluster already shows is not written again. In a
reconnect storm every tunnel's cut and return used to be written in turn, a GET and a PATCH each behind the
client's 50-QPS limit (4 requests per cluster: the conditions were right again 6.2 s after the cut at 100 clusters,
3.6 s now; 100 s at 1,000, 81 s after the tunnels were back; bench/README.md). A stopping hub holds its marks
while kopf ends and writes them once its Lease is released, waiting while they progress (`finish_marks`). Kept
apart from sockets.py, which authorises the tunnels and carries requests through them: `SocketMarks` is the
registry's base, and uses its `kube` (the parent) and `peers` (the other replicas).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

from clusternet_api import fence, known
from clusternet_api.kube import ApiException, Kube
from clusternet_api.timefmt import now_rfc3339
from clusternet_hub import metrics

if TYPE_CHECKING:
    from clusternet_hub.peers import Peers
    from clusternet_hub.sockets import Tunnel

log = logging.getLogger(__name__)
T = TypeVar("T")

MC_API = known.CLUSTERS_API_VERSION
# How long a stopping hub waits for its tunnel-state marks (SocketConnected) still being written. Each is a GET
# and a PATCH: milliseconds against a parent that answers, 120 s apiece (the client's timeout) against one that
# does not, and being cut off from the parent is the usual reason a leader is deposed: its exit waited minutes
# with its port open, taking agents' reconnects it could not authorise (audit s36 F5). So the wait ends once no
# mark has been written for MARKS_STALL_SECONDS (a parent not answering), and after MARKS_GRACE_SECONDS in any
# case, within Kubernetes' 30-s termination grace with time left for the Lease's release. Behind the 50-QPS
# limiter about 25 marks are written a second: a single replica stopping with 1,000 tunnels leaves about half
# unwritten, which stay True until their agents report (3 min) or a replica they reconnect to marks them
# (review s36: a 5-s bound left 800).
MARKS_GRACE_SECONDS = 20.0
MARKS_STALL_SECONDS = 3.0


class Superseded(fence.LeadershipLost):
    """A later state of the cluster's tunnel was recorded: the request for this one is given up before it is sent.
    A LeadershipLost for `Kube`, which cleans up after a refused write the same way; it never leaves _mark."""


class _Race:
    """A writer's requests, given up for a superseded state as long as nothing is sent: a request still waiting
    for the client's rate limiter is cancelled (its token goes back to the bucket, so the later states' requests
    wait less), and a write is refused by the writer's fence, which a `Kube` asks at the last moment before it
    sends (clusternet_api.fence). A write that passed the fence is on its way and is awaited: the later state's
    read must come after it. In a storm at 100 clusters the cuts' reads went out in the limiter's burst and their
    PATCHes queued behind each other while the tunnels came back, and every cut was written anyway."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.newer = asyncio.Event()  # set by _record when a later state is recorded
        self.on_wire = False  # the current write passed the fence

    def fence(self) -> None:
        if self.newer.is_set():
            raise Superseded(f"a later tunnel state of cluster {self.cluster_id} was recorded")
        self.on_wire = True

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """`call`'s result, or Superseded once a later state is recorded before anything of it was sent. The request
        runs in a task of its own, fenced by `fence` alone (the writer's other requests, to the peers, are not), and
        ends with its outcome rather than an exception: kopf re-raises the exceptions of tasks still running when
        it stops (review s47)."""
        if self.newer.is_set():
            call.close()
            raise Superseded(f"a later tunnel state of cluster {self.cluster_id} was recorded")
        self.on_wire = False
        context = contextvars.copy_context()
        context.run(fence.WRITE_FENCE.set, self.fence)
        task = asyncio.create_task(_outcome(call), context=context)
        newer = asyncio.ensure_future(self.newer.wait())
        try:
            await asyncio.wait({task, newer}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and not self.on_wire:
                task.cancel()
            await asyncio.wait({task})
        except BaseException:  # the writer cancelled: its request too
            task.cancel()
            raise
        finally:
            newer.cancel()
        if task.cancelled():
            raise Superseded(f"a later tunnel state of cluster {self.cluster_id} was recorded")
        result, error = task.result()
        if error is not None:
            raise error
        return cast(T, result)


async def _outcome(call: Coroutine[Any, Any, T]) -> tuple[T | None, Exception | None]:
    try:
        return await call, None
    except Exception as e:
        return None, e


class SocketMarks:
    """The tunnels' SocketConnected marks, the base of sockets.SocketRegistry (which sets `kube` and `peers`)."""

    kube: Kube
    peers: Peers | None

    def __init__(self) -> None:
        self._marks: dict[str, asyncio.Task[None]] = {}  # cluster ID -> its writer of tunnel states (_record)
        self._wanted: dict[str, tuple[Tunnel, bool, str]] = {}  # cluster ID -> the state its writer takes next
        self._races: dict[str, _Race] = {}  # cluster ID -> its running writer's (_write)
        self._marks_written = 0  # tunnel-state writes ended so far: whether a stopping hub's marks progress (close)
        self._held: list[tuple[Tunnel, bool, str]] | None = None  # marks of a closing hub, for finish_marks

    def _record(self, tunnel: Tunnel, connected: bool, message: str) -> None:
        """Have the tunnel's state written to its ManagedCluster in the background: by the cluster's writer, which
        takes the latest state recorded once it is done with the one it writes (the last state written is the last
        one that happened). Never inline: the tunnel must be read from the moment it is registered, and on a busy
        parent the write takes seconds (409 retries against the agent's heartbeats, the client's QPS limit);
        attached first and read only after it, a reconnected tunnel sat deaf meanwhile and every stream opened on
        it timed out (test_faults.py, tunnels cut under load)."""
        if self._held is not None:  # closing: written by finish_marks, outside the work kopf cancels
            self._held.append((tunnel, connected, message))
            return
        cluster_id = tunnel.cluster_id
        self._wanted[cluster_id] = (tunnel, connected, message)
        writer = self._marks.get(cluster_id)
        if writer is not None and not writer.done():  # done but not yet popped: its loop has ended, start another
            if (race := self._races.get(cluster_id)) is not None:
                race.newer.set()
            return
        task = asyncio.create_task(self._write(cluster_id), context=fence.unfenced())  # this replica's own record
        self._marks[cluster_id] = task
        metrics.socket_marks_pending.set(len(self._marks))

        def forget(done: asyncio.Task[None]) -> None:
            if self._marks.get(cluster_id) is done:
                self._marks.pop(cluster_id)
            metrics.socket_marks_pending.set(len(self._marks))

        task.add_done_callback(forget)

    async def _write(self, cluster_id: str) -> None:
        """Write the cluster's latest recorded state until none is left to write, giving up a state superseded
        before its write is sent (_Race). Cancelled (kopf ends every task started while it ran), the state being
        written is kept for finish_marks unless a later one was recorded."""
        race = self._races[cluster_id] = _Race(cluster_id)
        try:
            while (wanted := self._wanted.pop(cluster_id, None)) is not None:
                race.newer.clear()
                try:
                    await self._mark(*wanted, race)
                except asyncio.CancelledError:
                    self._wanted.setdefault(cluster_id, wanted)
                    raise
                finally:
                    self._marks_written += 1
        finally:
            if self._races.get(cluster_id) is race:
                del self._races[cluster_id]

    def connected_message(self) -> str:
        """The message of the hub's SocketConnected=True. With other replicas it names this one: a mark the condition
        already shows is not written again, and two replicas' identical True would leave the resourceVersion as it
        was, so a stopping replica's False read before the agent moved would not fail (409) and ask again whether
        the agent moved (`_mark`, audit s36 F4): it would land over the new replica's tunnel (review s47)."""
        connected = known.SOCKET_CONNECTED_MESSAGE
        return connected if self.peers is None else f"{connected} to hub replica {self.peers.me.id}"

    async def _moved(self, cluster_id: str) -> bool:
        """Whether the agent already holds a tunnel to another replica: then that replica marked it connected,
        and marking it disconnected from here would be false."""
        if self.peers is None:
            return False
        try:
            return await self.peers.locate(cluster_id, fresh=True) is not None
        except Exception as e:  # never let bookkeeping break the detach
            log.warning("asking the other hub replicas about cluster %s failed: %s", cluster_id, e)
            return False

    async def _mark(self, tunnel: Tunnel, connected: bool, message: str, race: _Race) -> None:
        """Record tunnel health as a condition on the ManagedCluster (kept by the agent's heartbeats).

        A cut is not written if the agent holds a tunnel to another replica by then, which marked it connected.
        That is asked after the read, just before the write: the other replica writes its True after it has
        registered the tunnel, so a True our read saw is found by the question, and one written after our read
        fails our PATCH (409), whose retry asks again. Asked before the read, which waits behind the QPS limiter
        (a stopping replica's hundreds of marks take seconds), the agents' reconnects came in between, and a
        stopping or deposed replica overwrote the new replica's True with False for up to the agent's next
        report, 3 minutes (audit s36 F4).

        Not written: a state superseded by a later one before its write is sent (`race`; its writer writes the
        later one next), and one the condition already shows (the same status, reason and message: the agent's report
        may have written it, or a cut was superseded before it was written). The transition time is kept while the
        status stays the same, as Kubernetes conditions keep it; it was rewritten at each mark."""
        status, reason = ("True", "TunnelConnected") if connected else ("False", "TunnelDisconnected")
        try:
            for attempt in range(3):
                mc = await race.run(self.kube.get(MC_API, "ManagedCluster", tunnel.managed_cluster,
                                                  tunnel.namespace))
                if mc is None or (not connected and await self._moved(tunnel.cluster_id)):
                    return
                conditions = list((mc.get("status") or {}).get("conditions") or [])
                shown: dict[str, Any] = next((c for c in conditions if c.get("type") == known.CONDITION_SOCKET), {})
                if (shown.get("status"), shown.get("reason"), shown.get("message")) == (status, reason, message):
                    return
                since = shown.get("lastTransitionTime") if shown.get("status") == status else None
                conditions = [c for c in conditions if c.get("type") != known.CONDITION_SOCKET]
                conditions.append({"type": known.CONDITION_SOCKET, "status": status, "reason": reason,
                                   "message": message, "lastTransitionTime": since or now_rfc3339()})
                # resourceVersion: never overwrite a heartbeat the agent wrote meanwhile (its Ready condition)
                body = {"metadata": {"resourceVersion": mc["metadata"]["resourceVersion"]},
                        "status": {"conditions": conditions}}
                try:
                    await race.run(self.kube.patch(MC_API, "ManagedCluster", tunnel.managed_cluster, body,
                                                   tunnel.namespace, subresource="status"))
                    return
                except ApiException as e:
                    if e.status != 409 or attempt == 2:
                        raise
        except Superseded:
            return  # the writer writes the later state next
        except Exception as e:  # health bookkeeping must never break the tunnel
            log.warning("recording tunnel state of cluster %s failed: %s", tunnel.cluster_id, e)

    async def finish_marks(self) -> None:
        """Write the marks held since close, and wait for every mark still being written while they progress
        (MARKS_GRACE_SECONDS). The hub calls it once its Lease is released: waited for before, no replica led
        meanwhile at every stop of an HA leader; and once kopf has ended, which cancels every task started while
        it ran, marks that a stop inside its cleanup handler started included (re-review s36)."""
        held, self._held = self._held or [], None
        for tunnel, connected, message in held:
            self._record(tunnel, connected, message)
        for cluster_id, wanted in list(self._wanted.items()):  # their writers were cancelled
            if (writer := self._marks.get(cluster_id)) is None or writer.done():
                self._record(*wanted)
        marks = dict(self._marks)
        if not marks:
            return
        late = set(marks.values())
        deadline = asyncio.get_running_loop().time() + MARKS_GRACE_SECONDS
        while late and (left := deadline - asyncio.get_running_loop().time()) > 0:
            written = self._marks_written
            _, late = await asyncio.wait(late, timeout=min(left, MARKS_STALL_SECONDS))
            if self._marks_written == written:
                break  # none written for MARKS_STALL_SECONDS: the parent is not answering
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)  # their cancellation runs, not left pending at the loop's end
            log.warning("stopping without recording the tunnel state of %d cluster(s), not written in time "
                        "(the parent slow or out of reach): %s", len(late),
                        ", ".join(sorted(cluster_id for cluster_id, task in marks.items() if task in late)))
