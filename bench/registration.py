"""Registration latency: agent start -> its ManagedCluster is Ready=True on a real parent.

Everything runs for real on this machine: one parent and two child control planes (etcd, kube-apiserver,
kube-controller-manager), the CRDs and the bootstrap token installed as an admin would, and the hub as a
`clusternet-hub` process. For each round of N clusters, N agents are started at once:

* the two real children each get a `clusternet-agent` process (N=1: one of them);
* the others are simulated: `run_agent()` tasks in this process, each with a fresh cluster ID and its own
  namespace in one of the real children (so each reports that child's real health under its own ID). They
  are lightweight agents: registration and heartbeats, the real code, but without the deployer set-up
  (`AgentOptions.deploys=False`), which is no part of registering and would otherwise run 18 agents'
  deployer start-up on this one event loop. The two process agents are complete.

Every agent of every round registers a cluster ID the parent has never seen, like a first install.
A watch on the parent timestamps, per cluster: the CRR appearing, the hub writing Approved, and Ready=True.
For the simulated agents, the agent's own "registered as ..." log line adds when the agent took the
approval in, which splits "approved -> Ready" into the agent's approval polling and its first report.

    .venv/bin/python bench/registration.py            # N = 1, 5, 20
    .venv/bin/python bench/registration.py --quick    # N = 1, 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from clusternet_agent.agent import run_agent
from clusternet_agent.options import AgentOptions
from clusternet_api import known
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.sealing import generate_private_key
from clusternet_testing.controlplane import ControlPlane
from common import (
    BOOTSTRAP_TOKEN,
    Proc,
    agent,
    fmt,
    install_parent,
    machine_busy,
    machine_info,
    percentile,
    run_bench,
    spawn,
    start_hub,
    stats,
    stop_process,
)
from measure import cpu_seconds, plane_pids, request_counts

API = known.CLUSTERS_API_VERSION
TARGET_P99 = 2.0  # seconds, at 20 clusters
HEARTBEAT = "10s"  # the first report follows registration at once; later ones do not matter here
ROUND_TIMEOUT = 90.0
# A round starts once the whole machine uses less than this many cores over a second (at most QUIET_LIMIT_S
# of waiting): the previous round's clean-up (the parent's namespace controller removing 20 dedicated
# namespaces, the hub forgetting their clusters) otherwise overlaps the next round's registrations, which a
# first install never meets. Runs of 2026-12-03 started 0.5-1.5 s after that clean-up, at load 1.7-2.5.
QUIET_CORES = 0.3
QUIET_LIMIT_S = 60.0
# SocketConnection stays off: the tunnel is not part of registration, and without an aggregated-API route
# from this parent to the hub (no Service/APIService here) it would only retry in the background.
FEATURE_GATES = {known.GATE_APP_PUSHER: True, known.GATE_SOCKET_CONNECTION: False}

log = logging.getLogger("bench")


# --- what is measured ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    cluster_id: str
    kind: str  # "process" or "simulated"
    started: float  # time.monotonic() when the agent was started
    crr_seen: float | None = None
    approved_seen: float | None = None
    taken_in: float | None = None  # the agent logged "registered as ..." (simulated agents only)
    ready_seen: float | None = None

    def since_start(self, t: float | None) -> float | None:
        return None if t is None else t - self.started


class Observer:
    """Timestamps from watches on the parent (admin), keyed by cluster ID.

    The watches run in their own thread and event loop: the simulated agents keep the main loop busy, and
    events must be stamped when they arrive, not when that loop gets round to them.
    """

    def __init__(self, parent: ControlPlane) -> None:
        self.parent = parent
        self.samples: dict[str, Sample] = {}
        self.namespaces: dict[str, str] = {}  # dedicated namespace -> cluster ID
        self._synced = {"ClusterRegistrationRequest": threading.Event(), "ManagedCluster": threading.Event()}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="observer", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        for kind, synced in self._synced.items():
            if not synced.wait(timeout):
                raise RuntimeError(f"the watch of {kind} did not start")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def expect(self, sample: Sample) -> None:
        self.samples[sample.cluster_id] = sample

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with Kube(Credentials.from_kubeconfig(self.parent.kubeconfig)) as kube:
            watches = [asyncio.create_task(self._watch(kube, kind)) for kind in self._synced]
            await self._stop.wait()
            for t in watches:
                t.cancel()
            await asyncio.gather(*watches, return_exceptions=True)

    def on_crr(self, crr: Obj, now: float) -> None:
        sample = self.samples.get((crr.get("spec") or {}).get("clusterId", ""))
        if sample is None:
            return
        sample.crr_seen = sample.crr_seen or now
        status = crr.get("status") or {}
        if status.get("result") == "Approved" and status.get("token"):
            sample.approved_seen = sample.approved_seen or now
            self.namespaces[status.get("dedicatedNamespace", "")] = sample.cluster_id

    def on_mc(self, mc: Obj, now: float) -> None:
        sample = self.samples.get((mc["metadata"].get("labels") or {}).get(known.LABEL_CLUSTER_ID, ""))
        if sample is None:
            return
        ready = next((c for c in (mc.get("status") or {}).get("conditions") or []
                      if c.get("type") == known.CONDITION_READY), None)
        if ready and ready.get("status") == "True":
            sample.ready_seen = sample.ready_seen or now

    async def _watch(self, kube: Kube, kind: str) -> None:
        handle = self.on_crr if kind == "ClusterRegistrationRequest" else self.on_mc
        path = await kube.path(API, kind)
        while True:
            listed = await kube.request("GET", path)
            now = time.monotonic()
            for item in listed.get("items", []):
                handle(item, now)
            self._synced[kind].set()
            rv = listed["metadata"]["resourceVersion"]
            try:
                while True:
                    async for event in kube.watch(API, kind, server_timeout=240, resource_version=rv):
                        now = time.monotonic()
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            raise ApiException(status=int(obj.get("code") or 500), reason=obj.get("message"))
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if event.get("type") in ("ADDED", "MODIFIED"):
                            handle(obj, now)
            except Exception as e:  # expired resourceVersion, dropped connection: list again
                log.debug("watch of %s restarts after %r", kind, e)
                await asyncio.sleep(0.1)


class TakenIn(logging.Handler):
    """The simulated agents' "registered as <name> in namespace <ns>" lines, timestamped on arrival."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_namespace: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("registered as") and isinstance(record.args, tuple) and len(record.args) == 2:
            self.by_namespace.setdefault(str(record.args[1]), time.monotonic())


# --- one round ----------------------------------------------------------------------------------------------


@dataclass
class Round:
    n: int
    samples: list[Sample]
    wall: float
    load: float  # 1-minute load average when the round started (other work on the machine skews results)
    busy: float  # cores the machine used in the second before the round started
    waited: float  # seconds spent waiting for that quiet
    cpu: dict[str, float]  # CPU seconds per process during the round (until the last Ready)
    requests: collections.Counter[str]  # the parent's requests during the round, by verb and resource


async def seed_key(child: Kube, namespace: str) -> None:
    """A simulated agent's key, made up front: in one event loop, N key generations would queue behind
    each other, which real agents (one per cluster) never do. Real agent processes still make their own."""
    with contextlib.suppress(ApiException):
        await child.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if await child.get("v1", "Secret", known.AGENT_KEY_SECRET, namespace) is None:
        pem = generate_private_key()
        await child.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": known.AGENT_KEY_SECRET, "namespace": namespace},
                            "data": {"key.pem": base64.b64encode(pem).decode()}})


async def forget_parent(child: Kube, namespace: str, key_too: bool) -> None:
    """Remove what an earlier round stored in the child, so every round is a first registration."""
    names = [known.PARENT_CREDENTIALS_SECRET] + ([known.AGENT_KEY_SECRET] if key_too else [])
    for name in names:
        await child.delete("v1", "Secret", name, namespace)


def sim_namespace(i: int) -> str:
    return f"clusternet-sim-{i}"


async def run_round(n: int, label: str, parent: ControlPlane, children: list[ControlPlane],
                    parent_kube: Kube, child_kubes: list[Kube], observer: Observer, taken_in: TakenIn,
                    workdir: Path, pids: dict[str, int]) -> Round:
    n_procs = min(n, len(children))
    n_sims = n - n_procs
    for kube in child_kubes[:n_procs]:
        await forget_parent(kube, known.SYSTEM_NAMESPACE, key_too=True)
    for i in range(n_sims):
        kube = child_kubes[i % len(child_kubes)]
        await seed_key(kube, sim_namespace(i))
        await forget_parent(kube, sim_namespace(i), key_too=False)
    waited, busy = await until_machine_quiet()

    procs: list[Proc] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    samples: list[Sample] = []
    load = os.getloadavg()[0]
    requests0 = await request_counts(parent_kube)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    begin = time.monotonic()
    try:
        for child in children[:n_procs]:
            cid = str(uuid.uuid4())
            sample = Sample(cid, "process", time.monotonic())
            observer.expect(sample)
            samples.append(sample)
            proc = agent(child, parent, workdir, f"{label}-{child.name}", f"--cluster-id={cid}",
                         "--cluster-sync-mode=Dual", "--feature-gates=AppPusher=true,SocketConnection=false",
                         cadence=(HEARTBEAT, HEARTBEAT))
            procs.append(proc)  # before starting, so the round's clean-up stops it even if the start is interrupted
            spawn(proc)
        for i in range(n_sims):
            child = children[i % len(children)]
            cid = str(uuid.uuid4())
            opts = AgentOptions(
                parent_url=parent.url, reg_token=BOOTSTRAP_TOKEN, parent_ca_file=str(parent.ca_file),
                cluster_name=f"{label}-sim-{i}", cluster_id=cid, namespace=sim_namespace(i), sync_mode="Dual",
                feature_gates=dict(FEATURE_GATES), collect_frequency=10.0, update_frequency=10.0,
                deploys=False)  # lightweight: registration and heartbeats, no deployer set-up
            sample = Sample(cid, "simulated", time.monotonic())
            observer.expect(sample)
            samples.append(sample)
            tasks.append(asyncio.create_task(run_agent(opts, stop, Credentials.from_kubeconfig(child.kubeconfig)),
                                             name=f"sim-{i}"))
        deadline = begin + ROUND_TIMEOUT
        while time.monotonic() < deadline and any(s.ready_seen is None for s in samples):
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise RuntimeError(f"simulated agent {t.get_name()} failed: {t.exception()!r}")
            await asyncio.sleep(0.05)
        wall = time.monotonic() - begin
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["agent processes"] = sum(cpu_seconds(p.proc.pid) for p in procs if p.proc is not None)
        requests = await request_counts(parent_kube) - requests0
        for s in samples:
            ns = next((ns for ns, cid in observer.namespaces.items() if cid == s.cluster_id), None)
            if s.kind == "simulated" and ns is not None:
                s.taken_in = taken_in.by_namespace.get(ns)
    finally:
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=10)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for p in procs:
            await asyncio.to_thread(stop_process, p)
    await forget_round(parent_kube, samples, observer)
    return Round(n, samples, wall, load, busy, waited, cpu, requests)


async def until_machine_quiet() -> tuple[float, float]:
    """Wait until the machine uses less than QUIET_CORES (QUIET_LIMIT_S at most): (seconds waited, cores)."""
    t0 = time.monotonic()
    while True:
        busy = await asyncio.to_thread(machine_busy)
        waited = time.monotonic() - t0
        if busy < QUIET_CORES or waited > QUIET_LIMIT_S:
            return waited, busy


async def forget_round(parent: Kube, samples: list[Sample], observer: Observer) -> None:
    """Delete the round's ManagedClusters and requests, so the hub's health checks have nothing stale to do."""
    ids = {s.cluster_id for s in samples}
    for ns, cid in list(observer.namespaces.items()):
        if cid in ids:
            for mc in await parent.list(API, "ManagedCluster", namespace=ns):
                await parent.delete(API, "ManagedCluster", mc["metadata"]["name"], ns)
    for cid in ids:
        await parent.delete(API, "ClusterRegistrationRequest", f"clusternet-{cid}")


# --- reporting ----------------------------------------------------------------------------------------------


def phases(s: Sample) -> dict[str, float | None]:
    def between(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else b - a

    return {
        "start→CRR": between(s.started, s.crr_seen),
        "CRR→Approved (hub)": between(s.crr_seen, s.approved_seen),
        "Approved→taken in (agent poll)": between(s.approved_seen, s.taken_in),
        "taken in→Ready (first report)": between(s.taken_in, s.ready_seen),
        "Approved→Ready": between(s.approved_seen, s.ready_seen),
    }


def report(rounds: list[Round], machine: dict[str, str]) -> str:
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "",
             f"Target: P99 ≤ {TARGET_P99:.0f} s at 20 clusters (Karmada publishes 6.9 s P99 for cluster "
             "registration, under 2 s without resource modelling).", "",
             "Agent start → ManagedCluster Ready=True, seconds (nearest-rank percentiles):", "",
             "| N | agents (process + simulated) | ready | P50 | P90 | P99 | max | load avg before | "
             "cores busy in the second before (waited) |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rounds:
        ready = [s.since_start(s.ready_seen) for s in r.samples]
        values = [v for v in ready if v is not None]
        st = stats(values)
        procs = sum(s.kind == "process" for s in r.samples)
        cells = [fmt(x) for x in st] if st else ["n/a"] * 4
        lines.append(f"| {r.n} | {procs} + {r.n - procs} | {len(values)}/{r.n} | " + " | ".join(cells)
                     + f" | {r.load:.1f} | {r.busy:.2f} ({r.waited:.0f} s)"
                     + ("" if r.busy < QUIET_CORES else ": busy, invalid") + " |")
    lines += ["", "Where the time goes (P50 / max per phase, seconds; 'taken in' is known for simulated agents):",
              "", "| N | kind | " + " | ".join(phases(Sample("", "", 0.0))) + " |",
              "|---:|---|" + "---:|" * len(phases(Sample("", "", 0.0)))]
    for r in rounds:
        for kind in ("process", "simulated"):
            group = [phases(s) for s in r.samples if s.kind == kind]
            if not group:
                continue
            cells = []
            for name in group[0]:
                vals = [v for g in group if (v := g[name]) is not None]
                cells.append(f"{fmt(percentile(vals, 50))} / {fmt(max(vals))}" if vals else "n/a")
            lines.append(f"| {r.n} | {kind} | " + " | ".join(cells) + " |")
    lines += ["", "CPU seconds per process during each round (start to the last Ready; the wall time is the round's):",
              "", "| N | wall | " + " | ".join(rounds[0].cpu) + " |", "|---:|---:|" + "---:|" * len(rounds[0].cpu)]
    for r in rounds:
        lines.append(f"| {r.n} | {r.wall:.2f} | " + " | ".join(f"{v:.2f}" for v in r.cpu.values()) + " |")
    lines += ["", "The parent's requests per registered cluster during each round (watches left out):", ""]
    for r in rounds:
        top = ", ".join(f"{what} {count / r.n:.1f}" for what, count in r.requests.most_common(12))
        lines.append(f"* N={r.n}: {sum(r.requests.values()) / r.n:.1f} in all; {top}")
    last = next((r for r in rounds if r.n == 20), None)
    if last is not None:
        values = [v for s in last.samples if (v := s.since_start(s.ready_seen)) is not None]
        p99 = percentile(values, 99) if values else float("inf")
        missing = len(last.samples) - len(values)
        verdict = "meets" if p99 <= TARGET_P99 and not missing else "MISSES"
        lines += ["", f"At N=20: P99 {fmt(p99)} s {verdict} the {TARGET_P99:.0f} s target"
                  + (f" ({missing} clusters never became Ready)" if missing else "") + "."]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------------------


async def bench(sizes: list[int], parent: ControlPlane, children: list[ControlPlane], workdir: Path,
                hub_pid: int) -> str:
    taken_in = TakenIn()
    logging.getLogger("clusternet_agent.registration").addHandler(taken_in)
    observer = Observer(parent)
    try:
        await asyncio.to_thread(observer.start)
        async with contextlib.AsyncExitStack() as stack:
            admin = await stack.enter_async_context(Kube(Credentials.from_kubeconfig(parent.kubeconfig)))
            child_kubes = [await stack.enter_async_context(Kube(Credentials.from_kubeconfig(c.kubeconfig)))
                           for c in children]
            pids = {**plane_pids(parent), **{f"{c.name} kube-apiserver": pid for c in children
                                             for name, pid in plane_pids(c).items() if name.endswith("apiserver")},
                    "hub": hub_pid, "bench (simulated agents)": os.getpid()}
            # Warm-up (not counted): first-use costs of discovery caches, imports and the hub's watches.
            await run_round(2, "warmup", parent, children, admin, child_kubes, observer, taken_in, workdir, pids)
            rounds = []
            for n in sizes:
                print(f"round N={n} ...", flush=True)
                r = await run_round(n, f"n{n}", parent, children, admin, child_kubes, observer, taken_in, workdir,
                                    pids)
                done = [v for s in r.samples if (v := s.since_start(s.ready_seen)) is not None]
                print(f"  {len(done)}/{n} Ready; max {fmt(max(done) if done else None)} s", flush=True)
                rounds.append(r)
                await asyncio.sleep(2.0)
            return report(rounds, machine_info(parent, load=False))
    finally:
        await asyncio.to_thread(observer.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 1 and 5 only")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    parser.add_argument("--verbose", action="store_true", help="the simulated agents' INFO logs")
    parser.add_argument("--hub-arg", action="append", default=[],
                        help="an extra clusternet-hub flag (repeatable), e.g. --hub-arg=--kube-api-qps=200")
    args = parser.parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    logging.getLogger("clusternet_agent.registration").setLevel(logging.INFO)  # TakenIn needs its INFO lines
    sizes = [1, 5] if args.quick else [1, 5, 20]

    def body(planes: list[ControlPlane], workdir: Path) -> None:
        install_parent(planes[0])
        hub = start_hub(planes[0], workdir, "--health-check-interval=1", *args.hub_arg)
        if args.hub_arg:
            print(f"hub flags: {' '.join(args.hub_arg)}")
        assert hub.proc.proc is not None
        text = asyncio.run(bench(sizes, planes[0], planes[1:], workdir, hub.proc.proc.pid))
        print()
        print(text)

    return run_bench(["parent", "child1", "child2"], "a parent and 2 child control planes", "clusternet-bench-",
                     args.keep, body)


if __name__ == "__main__":
    raise SystemExit(main())
