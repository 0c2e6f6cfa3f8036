"""Write fencing: leader work stops writing the moment its Lease may have passed to another replica.

Leader election alone does not stop a deposed leader from writing: a leader frozen past its lease (SIGSTOP, a
stalled node, a paused VM) wakes up with its timers already due, and its workers write from caches that are
minutes old before its next renewal attempt can even read the Lease. The fourth audit measured ~2 s of such
writes after a 40-s freeze: children reverted to old templates, and the objects of a deleted Subscription
created again, orphaned for good. client-go has the same window; Kubernetes' controllers accept it.

Here the work run while leading (clusternet_api.leaderelection.run_while_leading) carries a fence in a context
variable that its tasks inherit. Every request that is not a read, made by a `Kube` from such a task, and every
Helm operation and relayed Helm connection, first asks the fence, which refuses once the last renewal of the
Lease was sent a renew deadline ago or more *on the local clock* (CLOCK_BOOTTIME, which a suspend does not stop:
leaderelection.boot_clock): no round trip, so a frozen or suspended process refuses at the first instruction
after it wakes. A `Kube` request asks it again after waiting for a connection
slot, before opening a new connection, and once it has its tunnel stream: one that waited for either (a child
client's few connections, the agent's OPEN answer) went out after the fence had expired (audit s36). Helm
operations ask it before they are handed to their thread; one queued there behind a long `wait` is not asked
again (the fence is asked on the event loop), and only the relayed Helm connections of tunnel clusters are
fenced per request. The other
replicas wait a whole lease duration (longer than the renew deadline) before they take over, so the two never
write at the same time unless a request was already on the wire, the one case no client-side fence can close.

Work outside the leader's (serving, tunnels, the shadow API, the peer Leases, the election itself) has no fence.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context, ContextVar, copy_context

Fence = Callable[[], None]
"""Raises LeadershipLost when this process may no longer write as the leader; returns otherwise."""

WRITE_FENCE: ContextVar[Fence | None] = ContextVar("clusternet_write_fence", default=None)
READS = frozenset({"GET", "HEAD", "OPTIONS"})


class LeadershipLost(Exception):
    """This process led and no longer does (or may not): it must stop writing (the binaries exit with status 1)."""


def current() -> Fence | None:
    """The fence of the work this task belongs to, if it is leader work."""
    return WRITE_FENCE.get()


def check(method: str = "POST", fence: Fence | None = None) -> None:
    """Raise LeadershipLost before a write (any method but a read) made by leader work that lost its Lease."""
    if method.upper() in READS:
        return
    fence = fence or WRITE_FENCE.get()
    if fence is not None:
        fence()


def unfenced() -> Context:
    """A copy of the current context without a fence: for a replica's own bookkeeping (a tunnel's SocketConnected
    mark) started from leader work, such as the shutdown kopf's cleanup handler runs (fourth audit: a deposed
    leader's last tunnel marks were refused)."""
    context = copy_context()
    context.run(WRITE_FENCE.set, None)
    return context
