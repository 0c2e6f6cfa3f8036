"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection package does it.

Hub and agent replicas agree on one leader through the API server only (no consensus of our own):

* a candidate takes the Lease when nobody holds it, or when the holder's record has not changed for the
  record's leaseDurationSeconds *as observed on this candidate's own clock* (client-go's rule: the holder's
  renewTime is never compared with the local clock, so clock skew between machines does not matter);
* the leader renews every retry period; when a renewal has not succeeded within the renew deadline, or the
  Lease shows another holder, it stops leading (`hold()` returns) and the caller stops writing: the hub and
  the agent exit, as Kubernetes' own components do ("leaderelection lost"), and are restarted clean;
* every write is an update with the resourceVersion last read (optimistic concurrency): of two candidates
  racing for an expired Lease, one gets 409 Conflict;
* on a clean shutdown the leader releases the Lease (holder cleared, leaseDurationSeconds 1, as client-go's
  ReleaseOnCancel), so a standby takes over within a retry period instead of a lease duration;
* where we go further than client-go: the work run while leading is fenced (clusternet_api.fence). Its writes
  are refused, without a round trip, once the last renewal was sent a renew deadline ago on the local clock
  (`boot_clock`, which goes on while the machine sleeps), and `hold()` gives up at that same moment, so a leader
  frozen or suspended past its lease writes nothing on waking.

The Lease traffic goes through a client of its own (`lease_client`), as kube-controller-manager builds a
separate "leader-election" clientset: on the component's main client, with its --kube-api-qps limiter, a renewal
queued behind the hub's resume burst at leader start (~6 requests per approved cluster: 100 clusters at 50 QPS
are a 10-s queue) and outlived the renew deadline; the leader exited, and the standby that took over did the
same (review 6). Unlike client-go, whose separate client still has a limiter of its own at the same QPS, ours
has none: the election sends one or two requests a retry period, which no limiter of that size ever slows.

Any error a request can meet (an API error, a refused or dropped connection, a timeout, an exec credential
plugin that failed) fails only that attempt, as client-go's tryAcquireOrRenew returns false on any error: a
leader retries until its renew deadline, a standby keeps trying. A dropped connection
(aiohttp.ServerDisconnectedError, e.g. a kube-apiserver behind a load balancer shutting down) used to end a
leader with a misleading "Lease lost" and crash a standby (review 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from clusternet_api.backoff import jittered
from clusternet_api.execplugin import CredentialsError
from clusternet_api.fence import WRITE_FENCE, LeadershipLost
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.logs import error_text
from clusternet_api.restpaths import resource_path

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
JITTER_FACTOR = 1.2  # client-go's JitterFactor: retries wait retry_period * [1, 1.2)
SUPPORTED_LOCKS = ("leases",)
RELEASE_ATTEMPTS = 3  # a release meets 409 only when a renewal raced it; one re-read settles that
# the election's requests (one at a time) and, on the hub, the peer Leases' watch, renewal, list and expiry:
# a handful at once, never waiting for a connection
LEASE_CONNECTIONS = 8
FAILED_ATTEMPT = (ApiException, aiohttp.ClientError, OSError, TimeoutError, CredentialsError)
"""What fails one attempt at the Lease, and not the election: whatever a request can raise."""
_BOOTTIME: int | None = getattr(time, "CLOCK_BOOTTIME", None)


def boot_clock() -> float:
    """Seconds on Linux's CLOCK_BOOTTIME, which goes on while the machine is suspended; elsewhere time.monotonic().

    The election's clock (the fence's too). It was the event loop's, CLOCK_MONOTONIC, which stops during a
    suspend: a VM suspended past its lease woke believing its last renewal recent, and the fence let its writes
    out until hold()'s next failed renewal, up to a renew deadline later (audit s36, HA F10). Only durations
    are taken from it, never compared across machines."""
    return time.clock_gettime(_BOOTTIME) if _BOOTTIME is not None else time.monotonic()


def lease_client(creds: Credentials, user_agent: str) -> Kube:
    """A client for Lease traffic only, beside a component's main client on the same `creds` (the same exec
    plugin, whose credential is shared; the same token file), without the --kube-api-qps limiter: see the
    module's docstring. The caller closes it (`async with`)."""
    return Kube(creds, user_agent=f"{user_agent} leader-election", connections=LEASE_CONNECTIONS)


@dataclass(frozen=True)
class LeaderElectionConfig:
    """Kubernetes' --leader-elect* flags (component-base LeaderElectionConfiguration), in seconds."""

    enabled: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    resource_lock: str = "leases"
    resource_name: str = ""
    resource_namespace: str = "clusternet-system"

    def validate(self) -> None:
        """ValueError naming the flag, with client-go's own constraints."""
        if self.resource_lock not in SUPPORTED_LOCKS:
            raise ValueError(f"--leader-elect-resource-lock={self.resource_lock}: only 'leases' is supported "
                             "(endpoints and configmaps locks were removed from Kubernetes)")
        if not self.resource_name or not self.resource_namespace:
            raise ValueError("--leader-elect-resource-name and --leader-elect-resource-namespace must not be empty")
        if self.retry_period <= 0 or self.lease_duration <= 0 or self.renew_deadline <= 0:
            raise ValueError("--leader-elect-lease-duration, -renew-deadline and -retry-period must be positive")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError("--leader-elect-renew-deadline must be greater than 1.2 x --leader-elect-retry-period")


def lease_seconds(duration: float) -> int:
    """A lease duration as the Lease's whole `leaseDurationSeconds`, rounded up: never shorter than the duration,
    so never within the renew deadline the leader's fence allows it (validate). Rounded, 10.4 s against a 10.3-s
    renew deadline wrote 10, and a standby could take over while the leader could still write (audit s36 F7);
    client-go rounds down and accepts the same window. Checking the rounded-down value refused settings that
    were valid (1.5 s / 1.2 s: review s36)."""
    return max(1, math.ceil(duration))


def default_identity() -> str:
    """hostname_uuid, as Kubernetes' components name a candidate (unique even for two processes on a host)."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def micro_time(now: datetime.datetime | None = None) -> str:
    """metav1.MicroTime: RFC 3339 in UTC with microseconds."""
    return (now or datetime.datetime.now(datetime.UTC)).astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for one Lease. `acquire()` until leading, then `hold()` until lost, `release()` at the end."""

    def __init__(self, kube: Kube, config: LeaderElectionConfig, identity: str | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.kube = kube
        self.config = config
        self.identity = identity or default_identity()
        self._clock = clock or boot_clock
        self._observed_spec: dict[str, Any] | None = None
        self._observed_time = 0.0
        self._lease: Obj | None = None  # the Lease as last read or written
        self._renewed_at = 0.0  # local clock when our last successful write of the Lease was sent
        self.leading = False
        self.unreachable: str | None = None
        """Why the last attempt to acquire failed (None: it read the Lease): a standby that cannot reach the API
        server could not take over, which its readiness says (clusternet_agent.probes)."""

    @property
    def path(self) -> str:
        return resource_path(LEASE_API, "leases", True, self.config.resource_name, self.config.resource_namespace)

    def _spec(self, old: dict[str, Any]) -> dict[str, Any]:
        now = micro_time()
        ours = old.get("holderIdentity") == self.identity
        return {"holderIdentity": self.identity, "leaseDurationSeconds": lease_seconds(self.config.lease_duration),
                "acquireTime": old.get("acquireTime") if ours and old.get("acquireTime") else now,
                "renewTime": now,
                "leaseTransitions": int(old.get("leaseTransitions") or 0) + (0 if ours or not old else 1)}

    async def _ensure_namespace(self) -> None:
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.config.resource_namespace}}
        with contextlib.suppress(ApiException):
            await self.kube.create_or_get(ns)

    async def try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew); True when this candidate holds the Lease afterwards.
        Raises LeadershipLost when it led and the Lease now names another holder."""
        lease = await self.kube.get(LEASE_API, "Lease", self.config.resource_name, self.config.resource_namespace)
        if lease is None:
            body = {"apiVersion": LEASE_API, "kind": "Lease",
                    "metadata": {"name": self.config.resource_name, "namespace": self.config.resource_namespace},
                    "spec": self._spec({})}
            sent = self._clock()
            try:
                created = await self.kube.request("POST", resource_path(
                    LEASE_API, "leases", True, namespace=self.config.resource_namespace), body)
            except ApiException as e:
                if e.status == 404:  # no such namespace yet: create it, try again next round
                    await self._ensure_namespace()
                elif e.status != 409:
                    raise
                return False
            return self._won(created, sent)
        spec = lease.get("spec") or {}
        now = self._clock()
        if spec != self._observed_spec:
            self._observed_spec, self._observed_time = spec, now
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity:
            if self.leading:
                raise LeadershipLost(f"the Lease is now held by {holder}")
            if self._observed_time + float(spec.get("leaseDurationSeconds") or 0) > now:
                return False  # held, and its holder renewed it within its lease duration as seen from here
        lease["spec"] = {**spec, **self._spec(spec)}
        sent = self._clock()
        try:
            updated = await self.kube.request("PUT", self.path, lease)
        except ApiException as e:
            if e.status == 409:  # someone else wrote in between: decided on the next read
                return False
            raise
        return self._won(updated, sent)

    def _won(self, lease: Obj, sent: float) -> bool:
        if not self.leading:
            log.info("leader election: %s acquired Lease %s/%s", self.identity, self.config.resource_namespace,
                     self.config.resource_name)
        self._lease = lease
        self._observed_spec, self._observed_time = lease.get("spec") or {}, self._clock()
        self._renewed_at = sent
        self.leading = True
        return True

    def expired(self) -> bool:
        """True when this process may no longer act as the leader: it does not lead, or its last renewal was sent
        a renew deadline ago or more. Another replica takes over only a lease duration after it saw that
        renewal, which is later still: the gap is the margin for requests already on the wire."""
        return not self.leading or self._clock() - self._renewed_at >= self.config.renew_deadline

    def fence(self) -> None:
        """The write fence of the work run while leading (clusternet_api.fence): raises LeadershipLost when
        expired()."""
        if self.expired():
            raise LeadershipLost(f"Lease {self.config.resource_namespace}/{self.config.resource_name} not renewed "
                                 f"within {self.config.renew_deadline:.0f}s: no more writes as the leader")

    def _jittered(self) -> float:
        return jittered(self.config.retry_period, (1.0, JITTER_FACTOR))

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Try every retry period (jittered) until leading (True) or `stop` is set (False)."""
        log.info("leader election: %s waits for Lease %s/%s", self.identity, self.config.resource_namespace,
                 self.config.resource_name)
        while stop is None or not stop.is_set():
            try:
                # one attempt at most a renew deadline, as kube-controller-manager's leader-election client's
                # timeout: a request hung on a dead connection does not hold the standby for minutes
                async with asyncio.timeout(self.config.renew_deadline):
                    acquired = await self.try_acquire_or_renew()
                self.unreachable = None
                if acquired:
                    return True
            except ApiException as e:
                self.unreachable = f"reading Lease {self.config.resource_namespace}/{self.config.resource_name} " \
                                   f"failed: {e}"
                log.warning("leader election: %s", self.unreachable)
            except FAILED_ATTEMPT as e:
                self.unreachable = f"API server out of reach: {error_text(e)}"
                log.warning("leader election: %s", self.unreachable)
            if stop is None:
                await asyncio.sleep(self._jittered())
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._jittered())
        return False

    async def hold(self) -> None:
        """Renew every retry period; return when leadership is lost (no renewal within the renew deadline, or
        another holder). The caller must stop writing then."""
        while True:
            await asyncio.sleep(self.config.retry_period)
            # from the last renewal's sending, as the fence counts: a process frozen past its lease gives up here,
            # before any request, instead of renewing a Lease another replica may hold by now
            deadline = self._renewed_at + self.config.renew_deadline
            while True:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    log.error("leader election: Lease %s/%s not renewed within %.0fs: leaderelection lost",
                              self.config.resource_namespace, self.config.resource_name,
                              self.config.renew_deadline)
                    self.leading = False
                    return
                try:
                    async with asyncio.timeout(remaining):
                        if await self.try_acquire_or_renew():
                            break
                except LeadershipLost as e:
                    log.error("leader election: leaderelection lost: %s", e)
                    self.leading = False
                    return
                except TimeoutError:
                    continue
                except FAILED_ATTEMPT as e:  # retried until the deadline, as client-go's renew loop does
                    log.warning("leader election: renewing Lease %s/%s failed: %s", self.config.resource_namespace,
                                self.config.resource_name, error_text(e))
                await asyncio.sleep(min(self.config.retry_period, max(0.0, deadline - self._clock())))

    async def release(self) -> None:
        """Give the Lease up if we hold it (clean shutdown): holder cleared, leaseDurationSeconds 1.

        Our copy may be one renewal behind: a renewal cancelled by the shutdown can have reached the API server
        after all, and then our PUT meets 409. The Lease is read again and the release retried while it still
        names us (measured under load in CI: without the retry the Lease stayed held for its whole duration).
        All of it within a renew deadline: a request hung on a dead connection held a stopping replica up to the
        client's 120 s (review 6), past Kubernetes' 30-s grace period; an unreleased Lease expires by itself."""
        try:
            async with asyncio.timeout(self.config.renew_deadline):
                await self._release()
        except TimeoutError:
            self._release_failed(TimeoutError(f"no answer within {self.config.renew_deadline:g}s"))

    async def _release(self) -> None:
        if not self.leading or self._lease is None:
            return
        self.leading = False
        lease: Obj | None = dict(self._lease)
        for _ in range(RELEASE_ATTEMPTS):
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return  # gone, or someone else's now: nothing of ours to give up
            now = micro_time()
            lease["spec"] = {**(lease.get("spec") or {}), "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": now, "acquireTime": now}
            try:
                await self.kube.request("PUT", self.path, lease)
                log.info("leader election: released Lease %s/%s", self.config.resource_namespace,
                         self.config.resource_name)
                return
            except ApiException as e:
                if e.status != 409:
                    return self._release_failed(e)
                try:
                    lease = await self.kube.get(LEASE_API, "Lease", self.config.resource_name,
                                                self.config.resource_namespace)
                except FAILED_ATTEMPT as e2:
                    return self._release_failed(e2)
            except FAILED_ATTEMPT as e:
                return self._release_failed(e)
        self._release_failed(TimeoutError(f"still conflicting after {RELEASE_ATTEMPTS} attempts"))

    def _release_failed(self, e: BaseException) -> None:
        log.warning("leader election: releasing Lease %s/%s failed (it expires by itself): %s",
                    self.config.resource_namespace, self.config.resource_name, error_text(e))


async def run_while_leading(elector: LeaderElector, stop: asyncio.Event,
                            work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Wait for leadership (returning when `stop` is set first), run `work` while leading, release the Lease when
    `work` ends. Leadership lost: `work` is cancelled and LeadershipLost raised. `work` runs fenced: its writes
    are refused once the Lease may have expired (clusternet_api.fence)."""
    if not await elector.acquire(stop):
        return
    fenced = contextvars.copy_context()  # the work's tasks inherit the fence; the renewals below have none
    fenced.run(WRITE_FENCE.set, elector.fence)
    task = asyncio.get_running_loop().create_task(work(), context=fenced)
    holding = asyncio.ensure_future(elector.hold())
    try:
        await asyncio.wait({task, holding}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # stopped from outside (a replica-level task died: the hub's Supervisor)
        await _stopped(holding, task)
        await elector.release()  # the work has ended: a standby need not wait out the lease (audit s36 F6)
        raise
    finally:
        await _stopped(holding, task)
    if task.done() and not task.cancelled() and task.exception() is None:
        await elector.release()
        return
    if task.done() and not task.cancelled() and task.exception() is not None:
        await elector.release()
        raise task.exception()  # type: ignore[misc]
    # hold() retries every failure of a request; one that still escapes it is a bug: said here, with its
    # traceback, and as the cause (unread, asyncio logged "Task exception was never retrieved" at exit)
    failed = holding.exception() if holding.done() and not holding.cancelled() else None
    if failed is not None:
        log.error("leader election: renewing the Lease failed unexpectedly: %s", error_text(failed), exc_info=failed)
    raise LeadershipLost(f"Lease {elector.config.resource_namespace}/{elector.config.resource_name} lost") from failed


async def _stopped(*tasks: asyncio.Future[Any]) -> None:
    """Cancel each task not done and wait for it to end."""
    for t in tasks:
        if not t.done():
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
