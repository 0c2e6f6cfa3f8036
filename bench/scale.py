"""Scale: N simulated clusters running the real agent code against the real hub on a real parent.

Per size N, a fresh set-up: a parent and one child control plane (etcd, kube-apiserver,
kube-controller-manager), the CRDs and bootstrap token installed as an admin would, `clusternet-hub` as a
process (own TLS certificate, its default health-check and resync intervals), and N agents:

* **Agents.** `run_agent()` (clusternet_agent.agent, the real code, `deploys=True`) as asyncio tasks, N/W
  of them in each of W worker processes (this script with `--worker`). Each agent has its own cluster ID,
  its own namespace in the child (`scale-agent-<i>`: its key, its stored parent credentials, its
  app-deployer ServiceAccount), `--cluster-sync-mode=Dual`, `AppPusher` and `SocketConnection` on, and
  Clusternet's default heartbeat frequencies (collect every 20 s, report every 3 min; `--collect` and
  `--report` change them). It registers through a ClusterRegistrationRequest with the bootstrap token,
  heartbeats, holds a websocket tunnel to the hub, and hands the hub push credentials: the hub pushes
  through that tunnel and the agent dials the child's real API server for it. What is shared, unlike
  separate clusters: the child (one API server for all N), the CPU (2 cores for everything) and the RSA
  keys (a pool of 8 made up front; N key generations on one event loop would queue behind each other).
* **Tunnels go through a relay in each worker** (a TCP pass-through to the hub's port), so that the bench can
  cut every tunnel at once, as a network blip between the agents and the hub would; TLS is end to end
  (agent to hub), the relay sees bytes only.

Scenarios, in this order, each timed from watches on the parent (ManagedClusters, Descriptions) in this
process, timestamped on arrival:

1. Registration: all N agents start at once; per cluster, start -> ManagedCluster Ready=True.
2. Propagation: a Subscription of 2 feeds (a Namespace and a ConfigMap) to all N clusters; one
   Localization per feed and cluster gives each cluster its own namespace `app-<i>` in the child, and one
   Globalization (ApplyNow) sets a value in every ConfigMap. Timed from the Subscription existing until
   each Description is Success. Direct baseline, side by side: the same N x 2 objects applied to the child
   by a client per cluster (8 clusters at a time), right before ours (`app-<i>-direct`) and right after
   (`app-<i>-direct2`). A direct run that starts on a busier machine (1-minute load average more than
   1.0 above ours) is invalid: it is run again once, and if still busy it is reported and left out.
3. Override change: the Globalization's value changes; timed until every Description is Success for its
   new generation (all re-applied); a sample of ConfigMaps in the child is read back.
4. Steady state (`--steady` s, default 60): hub RSS (and peak), hub CPU seconds per cluster per minute, the
   parent's requests per cluster per minute (apiserver_request_total: from heartbeats, and in total).
5. 10 % agent outage and return: every 10th agent stops (tunnel and heartbeats end) for `--outage` s
   (default 30), then starts again with its stored credentials. Checked: no live cluster ever leaves
   Ready=True, no Description of a silent cluster is deleted and its objects are still in the child; timed:
   restart -> tunnel up again and a new heartbeat.
6. Reconnect storm: every worker's relay cuts all tunnels at once; timed until the hub holds N tunnels again
   (its clusternet_socket_connections gauge) and every ManagedCluster says SocketConnected=True again.

Throughout: no live cluster may ever show Ready other than True, and there must be exactly one Description
per cluster (none lost, none duplicated). With Clusternet's default 3-minute heartbeat the hub's grace
period is 9 minutes, longer than a round: a silent cluster is not expected to turn Unknown within it.

    .venv/bin/python bench/scale.py                      # --sizes 20,100 (make bench: ~7 min)
    .venv/bin/python bench/scale.py --sizes 500          # one size (1000: see bench/README.md)
    .venv/bin/python bench/scale.py --sizes 100 --profile-hub   # py-spy the hub during registration+deploy
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import functools
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_testing.controlplane import ControlPlane
from common import (
    BOOTSTRAP_TOKEN,
    REPO,
    SPAWNED,
    Hub,
    Proc,
    check_alive,
    install_parent,
    loadavg,
    machine_info,
    percentile,
    run_bench,
    start_hub,
)
from propagation import (
    DIRECT_CONCURRENCY,
    apply_in_order,
    bounded,
    cpu_accounting,
    cpu_seconds,
    feed_of,
    moved,
    plane_pids,
    request_counts,
    run_plugin,
    start_profile,
    stop_profile,
    write_feed_dir,
)

APPS = known.APPS_API_VERSION
CLUSTERS = known.CLUSTERS_API_VERSION
FEEDS = 2
KEY_POOL = 8
WARMUP = 2  # clusters registered (and left running) before anything is timed
AGENTS_PER_WORKER = 250
BUSY_MARGIN = 1.0  # a direct run whose 1-minute load average is this much above ours is invalid
TARGET_RSS_MB, TARGET_RATIO, TARGET_REG_P99_S = 500.0, 2.0, 2.0
SUB = "scale-app"
GLOBALIZATION = "scale-version"

log = logging.getLogger("bench.scale")


# =============================================================================================================
# Worker process: many agents, one relay
# =============================================================================================================


class Relay:
    """A TCP pass-through from 127.0.0.1:<port> to the hub, whose connections can all be cut at once."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.local_port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        self.local_port = server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.conns.add(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.conns.discard(pair)

    def drop(self) -> int:
        n = len(self.conns)
        for down, up in list(self.conns):
            down.transport.abort()
            up.transport.abort()
        return n


async def worker_main(config: dict[str, Any]) -> None:
    from clusternet_agent.agent import run_agent
    from clusternet_agent.options import AgentOptions

    relay = Relay("127.0.0.1", int(config["hub_port"]))
    await relay.start()
    child = Credentials.from_kubeconfig(Path(config["child_kubeconfig"]))
    agents: dict[int, dict[str, Any]] = {a["index"]: a for a in config["agents"]}
    running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    def options(a: dict[str, Any]) -> Any:
        return AgentOptions(
            parent_url=config["parent_url"], reg_token=BOOTSTRAP_TOKEN, parent_ca_file=config["parent_ca"],
            cluster_name=a["name"], cluster_id=a["cluster_id"], namespace=a["namespace"], sync_mode="Dual",
            cluster_labels=a.get("labels", {"bench": "scale"}),
            feature_gates={known.GATE_APP_PUSHER: True, known.GATE_SOCKET_CONNECTION: True},
            collect_frequency=float(config["collect"]), update_frequency=float(config["report"]),
            tunnel_url=f"https://127.0.0.1:{relay.local_port}", tunnel_ca_file=config["hub_ca"], deploys=True)

    def reply(**msg: Any) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def stop(ids: list[int]) -> None:
        pairs = [running.pop(i) for i in ids if i in running]
        for ev, _ in pairs:
            ev.set()
        if pairs:
            _, pending = await asyncio.wait([t for _, t in pairs], timeout=20)
            for t in pending:
                t.cancel()

    reply(event="ready", relay_port=relay.local_port)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "start":
            for i in cmd["ids"]:
                if i not in running:
                    ev = asyncio.Event()
                    running[i] = (ev, asyncio.create_task(run_agent(options(agents[i]), ev, child), name=f"agent-{i}"))
            reply(ack="start", at=time.time())
        elif cmd["cmd"] == "stop":
            await stop(cmd["ids"])
            reply(ack="stop", at=time.time())
        elif cmd["cmd"] == "drop":
            reply(ack="drop", at=time.time(), dropped=relay.drop())
        elif cmd["cmd"] == "status":
            failed = [f"{t.get_name()}: {t.exception()!r}" for _, t in running.values()
                      if t.done() and not t.cancelled() and t.exception() is not None]
            reply(ack="status", running=len(running), failed=failed[:5], rss_kb=rss_kb(os.getpid()))
        elif cmd["cmd"] == "exit":
            await stop(list(running))
            reply(ack="exit")
            break


# =============================================================================================================
# Main process: the set-up, the observers and the scenarios
# =============================================================================================================


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


class Worker:
    """One worker process and its command pipe."""

    def __init__(self, k: int, config: dict[str, Any], workdir: Path) -> None:
        args = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        log_path = workdir / f"worker-{k}.log"
        self.proc = Proc(f"worker-{k}", args, log_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
        SPAWNED.append(self.proc)
        with open(log_path, "ab") as err:
            self.proc.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                              env=env, start_new_session=True)
        self.popen = self.proc.proc
        self.ids = [a["index"] for a in config["agents"]]
        self.send_raw(config)

    def send_raw(self, msg: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(msg) + "\n").encode())
        self.popen.stdin.flush()

    async def read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = await asyncio.to_thread(self.popen.stdout.readline)
        if not line:
            raise RuntimeError(f"{self.proc.name} exited; see {self.proc.log}:\n{self.proc.output[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.send_raw({"cmd": cmd, **args})
        return await self.read()


async def all_workers(workers: list[Worker], cmd: str, ids: set[int] | None = None) -> list[dict[str, Any]]:
    def mine(w: Worker) -> dict[str, Any]:
        return {"ids": [i for i in w.ids if ids is None or i in ids]} if cmd in ("start", "stop") else {}

    return list(await asyncio.gather(*(w.call(cmd, **mine(w)) for w in workers)))


# --- watching the parent -------------------------------------------------------------------------------------


def condition(obj: Obj, ctype: str) -> str | None:
    return next((str(c.get("status")) for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == ctype), None)


@dataclass
class Cluster:
    index: int
    cluster_id: str
    namespace: str = ""  # its dedicated namespace on the parent
    ready: str | None = None
    socket: str | None = None
    last_observed: str | None = None
    crr_at: float | None = None  # its ClusterRegistrationRequest appeared
    approved_at: float | None = None  # the hub wrote Approved
    ready_at: float | None = None  # first Ready=True
    socket_up_at: list[float] = field(default_factory=list)
    heartbeat_at: list[float] = field(default_factory=list)  # lastObservedTime changed (arrival time)
    not_ready: list[tuple[float, str]] = field(default_factory=list)  # Ready left True: (when, new status)


@dataclass
class DescState:
    generation: int = 0
    names: set[str] = field(default_factory=set)
    success_at: dict[int, float] = field(default_factory=dict)  # generation -> first Success for it
    created_at: float | None = None  # first seen: where propagation's time goes (creating vs pushing)
    deleted: list[float] = field(default_factory=list)


class Watcher:
    """ManagedClusters and Descriptions on the parent, timestamped on arrival."""

    def __init__(self, kube: Kube, clusters: dict[str, Cluster]) -> None:
        self.kube = kube
        self.by_id = clusters
        self.by_ns: dict[str, Cluster] = {}
        self.descs: dict[str, DescState] = {}
        self.sub_seen: float | None = None
        self.changed = asyncio.Event()
        self.relists = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        ready = {kind: asyncio.Event() for kind in ("ManagedCluster", "ClusterRegistrationRequest", "Description",
                                                    "Subscription")}
        self.tasks = [asyncio.create_task(self._follow(APPS if k in ("Description", "Subscription") else CLUSTERS,
                                                       k, ready[k])) for k in ready]
        for ev in ready.values():
            await asyncio.wait_for(ev.wait(), 30)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def on_mc(self, event: str, mc: Obj, now: float) -> None:
        cid = str((mc.get("spec") or {}).get("clusterId", ""))
        c = self.by_id.get(cid)
        if c is None or event == "DELETED":
            return
        c.namespace = mc["metadata"]["namespace"]
        self.by_ns[c.namespace] = c
        ready, sock = condition(mc, known.CONDITION_READY), condition(mc, known.CONDITION_SOCKET)
        observed = (mc.get("status") or {}).get("lastObservedTime")
        if ready == "True" and c.ready_at is None:
            c.ready_at = now
        if c.ready == "True" and ready != "True":
            c.not_ready.append((now, str(ready)))
        if sock == "True" and c.socket != "True":
            c.socket_up_at.append(now)
        if observed and observed != c.last_observed:
            c.heartbeat_at.append(now)
        c.ready, c.socket, c.last_observed = ready, sock, observed

    def on_crr(self, event: str, crr: Obj, now: float) -> None:
        c = self.by_id.get(str((crr.get("spec") or {}).get("clusterId", "")))
        if c is None or event == "DELETED":
            return
        c.crr_at = c.crr_at or now
        if (crr.get("status") or {}).get("result") == "Approved":
            c.approved_at = c.approved_at or now

    def on_desc(self, event: str, desc: Obj, now: float) -> None:
        meta = desc["metadata"]
        if (meta.get("labels") or {}).get(known.LABEL_SUBS_NAME) != SUB:
            return
        state = self.descs.setdefault(meta["namespace"], DescState())
        if event == "DELETED":
            state.names.discard(meta["name"])
            state.deleted.append(now)
            return
        state.names.add(meta["name"])
        state.created_at = state.created_at or now
        gen = int(meta.get("generation") or 0)
        state.generation = gen
        status = desc.get("status") or {}
        if status.get("phase") == "Success" and str(status.get("observedGeneration")) == str(gen) and \
                len(status.get("manifestStatuses") or []) == FEEDS:
            state.success_at.setdefault(gen, now)

    def on_sub(self, event: str, sub: Obj, now: float) -> None:
        if sub["metadata"]["name"] == SUB and event != "DELETED" and self.sub_seen is None:
            self.sub_seen = now

    async def _follow(self, api: str, kind: str, ready: asyncio.Event) -> None:
        handle: Callable[[str, Obj, float], None] = {
            "ManagedCluster": self.on_mc, "ClusterRegistrationRequest": self.on_crr, "Description": self.on_desc,
            "Subscription": self.on_sub}[kind]
        rv: str | None = None
        while True:
            try:
                if rv is None:
                    listing = await self.kube.request("GET", await self.kube.path(api, kind))
                    now = time.monotonic()
                    for item in listing.get("items", []):
                        handle("ADDED", item, now)
                    rv = str(listing["metadata"]["resourceVersion"])
                    ready.set()
                async for event in self.kube.watch(api, kind, server_timeout=240, resource_version=rv):
                    now = time.monotonic()
                    if event["type"] == "ERROR":
                        rv = None
                        self.relists += 1
                        break
                    rv = str(event["object"]["metadata"]["resourceVersion"])
                    if event["type"] != "BOOKMARK":
                        handle(event["type"], event["object"], now)
                        self.changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("watch of %s broke: %r; listing again", kind, e)
                rv = None
                self.relists += 1
                await asyncio.sleep(0.5)

    async def until(self, done: Callable[[], bool], limit_s: float, what: str,
                    progress: Callable[[], str] = lambda: "") -> float:
        """Wait until `done()`; returns the time it became true (arrival time of the event that made it)."""
        deadline = time.monotonic() + limit_s
        while not done():
            self.changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} not reached within {limit_s:.0f} s {progress()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 1.0))
        return time.monotonic()


# --- the hub's numbers ----------------------------------------------------------------------------------------


def hub_metric(hub: Hub, name: str) -> float | None:
    ctx = ssl.create_default_context(cafile=str(hub.ca))
    with urllib.request.urlopen(f"{hub.url}/metrics", context=ctx, timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


async def created_despite_overload(kube: Kube, obj: dict[str, Any]) -> None:
    """Create, retrying what a saturated parent answers (at 1,000 clusters: HTTP 500 "resource quota evaluation
    timed out", 504) a few times; an object that exists already (an earlier try that did land) counts."""
    for attempt in range(5):
        try:
            await kube.create(obj)
            return
        except ApiException as e:
            if e.status == 409:
                return
            if e.status not in (500, 504) or attempt == 4:
                raise
        await asyncio.sleep(2.0 * (attempt + 1))


async def tunnels_held(hub: Hub, n: int, since: float, limit_s: float) -> float | None:
    """Seconds from `since` until the hub holds `n` tunnels (its clusternet_socket_connections gauge)."""
    deadline = since + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            held = await asyncio.to_thread(hub_metric, hub, "clusternet_socket_connections")
            if held is not None and held >= n:
                return time.monotonic() - since
        await asyncio.sleep(0.25)
    return None


MEMHOOK = """
import os, signal, tracemalloc
if os.environ.get("SCALE_TRACE_OUT"):
    tracemalloc.start(int(os.environ.get("SCALE_TRACE_FRAMES", "1")))

    def _dump(signum, frame):
        snap = tracemalloc.take_snapshot()
        with open(os.environ["SCALE_TRACE_OUT"], "w") as out:
            total = sum(s.size for s in snap.statistics("filename"))
            out.write(f"traced {total / 1048576:.1f} MB\\n")
            for kind in ("filename", "lineno"):
                for stat in snap.statistics(kind)[:25]:
                    out.write(f"{kind} {stat.size / 1048576:8.1f} MB {stat.count:9d} {stat.traceback}\\n")

    signal.signal(signal.SIGUSR2, _dump)
"""


def memory_hook(workdir: Path) -> dict[str, str]:
    """Environment that makes a Python process trace its allocations (tracemalloc, via a sitecustomize on its
    PYTHONPATH) and write the top allocation sites to a file on SIGUSR2: where the hub's memory goes, without
    changing the hub. Tracing slows it down: numbers of such a run are not the bench's."""
    hook = workdir / "memhook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(MEMHOOK)
    return {"PYTHONPATH": str(hook), "SCALE_TRACE_OUT": str(workdir / "hub-memory.txt")}


# --- set-up -----------------------------------------------------------------------------------------------------


async def seed_agents(child: Kube, n: int, first: int = 0) -> list[bytes]:
    """Each agent's namespace in the child with its key (from a pool: RSA generation is not what is measured)."""
    from clusternet_api.sealing import generate_private_key

    pool = [generate_private_key() for _ in range(KEY_POOL)]

    async def one(i: int) -> None:
        ns = agent_namespace(i)
        await child.create_or_get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await child.create_or_get({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                   "metadata": {"name": known.AGENT_KEY_SECRET, "namespace": ns},
                                   "data": {"key.pem": base64.b64encode(pool[i % KEY_POOL]).decode()}})

    await bounded([functools.partial(one, i) for i in range(first, n)], 16)
    return pool


def agent_namespace(i: int) -> str:
    return f"scale-agent-{i}"


def app_namespace(i: int) -> str:
    return f"app-{i}"


def app_objects(namespace: str) -> list[Obj]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": namespace},
             "data": {"greeting": "hello from the scale bench"}}]


def globalization(objects: list[Obj], version: str) -> Obj:
    return {"apiVersion": APPS, "kind": "Globalization", "metadata": {"name": GLOBALIZATION},
            "spec": {"overridePolicy": "ApplyNow", "priority": 500, "feed": feed_of(objects[1]),
                     "clusterAffinity": {"matchLabels": {"bench": "scale"}},
                     "overrides": [{"name": "version", "type": "MergePatch",
                                    "value": json.dumps({"data": {"version": version}})}]}}


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class SizeResult:
    n: int
    workers: int
    load_start: str
    registration: list[float] = field(default_factory=list)
    registered: int = 0
    reg_phases: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    tunnels_up_s: float | None = None
    prop: list[float] = field(default_factory=list)
    direct: list[tuple[str, float, float, bool]] = field(default_factory=list)  # (label, seconds, load1, valid)
    prop_load: float = 0.0
    override: list[float] = field(default_factory=list)
    override_checked: str = ""
    steady_s: float = 0.0
    hub_rss_mb: float = 0.0
    hub_idle_mb: float = 0.0  # before any agent started
    rss_phases: dict[str, float] = field(default_factory=dict)  # hub RSS (MB) after each phase
    hub_peak_mb: float = 0.0
    hub_cpu_per_cluster_min: float = 0.0
    hub_cpu_s: float = 0.0
    parent_heartbeat_per_cluster_min: float = 0.0
    parent_total_per_cluster_min: float = 0.0
    parent_requests: dict[str, int] = field(default_factory=dict)
    worker_rss_mb: float = 0.0
    outage_n: int = 0
    outage_return: list[float] = field(default_factory=list)
    outage_ok: str = ""
    storm_tunnels_s: float | None = None
    storm_conditions_s: float | None = None
    storm_dropped: int = 0
    live_not_ready: int = 0
    desc_problems: str = ""
    notes: list[str] = field(default_factory=list)
    profile: list[tuple[str, float]] = field(default_factory=list)
    profile_window: str = ""
    # CPU seconds per process group during each timed deployment ("direct before", "propagation", ...): our
    # path and the direct one share this machine's cores, so what each costs in all bounds the ratio
    phase_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: list[str] = field(default_factory=list)  # tracemalloc's top sites in the hub (--trace-hub-memory)
    wall_s: float = 0.0


def s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def p(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


async def direct_run(child_creds: Credentials, n: int, suffix: str) -> float:
    async def one(i: int) -> None:
        async with Kube(child_creds, user_agent="bench-direct") as own:
            await apply_in_order(own, moved(app_objects("x"), f"{app_namespace(i)}{suffix}"))

    t0 = time.monotonic()
    await bounded([functools.partial(one, i) for i in range(n)], DIRECT_CONCURRENCY)
    return time.monotonic() - t0


async def settle(seconds: float) -> None:
    """A pause for what the last step left behind (controllers creating per-namespace objects)."""
    await asyncio.sleep(seconds)


async def run_size(n: int, args: argparse.Namespace, parent: ControlPlane, child: ControlPlane, hub: Hub,
                   workdir: Path) -> SizeResult:
    t_begin = time.monotonic()
    n_workers = max(1, -(-n // AGENTS_PER_WORKER))
    res = SizeResult(n, n_workers, loadavg())
    clusters = {str(uuid.uuid4()): None for _ in range(n)}
    by_id = {cid: Cluster(i, cid) for i, cid in enumerate(clusters)}
    by_index = {c.index: c for c in by_id.values()}
    assert hub.proc.proc is not None
    hub_pid = hub.proc.proc.pid
    child_creds = Credentials.from_kubeconfig(child.kubeconfig)
    async with (Kube(Credentials.from_kubeconfig(parent.kubeconfig), user_agent="bench") as pk,
                Kube(child_creds, user_agent="bench") as ck):
        print(f"  seeding {n} agent namespaces and keys in the child ...", flush=True)
        await seed_agents(ck, n)
        watcher = Watcher(pk, by_id)
        await watcher.start()
        agents = [{"index": c.index, "cluster_id": c.cluster_id, "name": f"scale-{c.index}",
                   "namespace": agent_namespace(c.index)} for c in by_id.values()]
        base = {"parent_url": parent.url, "parent_ca": str(parent.ca_file), "hub_port": hub.url.rsplit(":", 1)[1],
                "hub_ca": str(hub.ca), "child_kubeconfig": str(child.kubeconfig), "collect": args.collect,
                "report": args.report}
        # warm-up (not counted): two clusters of their own register first, as a hub that has been running for a
        # while has its watches, discovery and connections to the parent up already
        warm = {str(uuid.uuid4()): Cluster(n + k, "") for k in range(WARMUP)}
        for cid, c in warm.items():
            c.cluster_id = cid
        warm_agents = [{"index": c.index, "cluster_id": c.cluster_id, "name": f"warmup-{c.index - n}",
                        "namespace": agent_namespace(c.index), "labels": {"bench": "warmup"}} for c in warm.values()]
        await seed_agents(ck, n + WARMUP, first=n)
        workers = [Worker(k, {**base, "agents": agents[k::n_workers] + (warm_agents if k == 0 else [])}, workdir)
                   for k in range(n_workers)]
        for w in workers:
            hello = await w.read()
            assert hello.get("event") == "ready", hello
        watcher.by_id.update(warm)
        await workers[0].call("start", ids=[c.index for c in warm.values()])
        await watcher.until(lambda: all(c.ready_at is not None for c in warm.values()), 120, "warm-up clusters Ready")
        await watcher.until(lambda: all(c.socket == "True" for c in warm.values()), 60, "warm-up tunnels")
        for cid in warm:
            del watcher.by_id[cid]
        await settle(args.settle)
        workers[0].ids = [i for i in workers[0].ids if i < n]  # later commands leave the warm-up agents alone
        spy = await start_profile(hub_pid, workdir / f"hub-profile-{n}.txt") if args.profile_hub == "all" else None
        res.profile_window = "registration to override"
        cpu_hub_0 = cpu_seconds(hub_pid)
        res.hub_idle_mb = rss_kb(hub_pid) / 1024

        # 1. registration -------------------------------------------------------------------------------------
        print(f"  registration: {n} agents start at once ...", flush=True)
        t0 = time.monotonic()
        await all_workers(workers, "start")

        def registered() -> int:
            return sum(c.ready_at is not None for c in by_id.values())

        try:
            await watcher.until(lambda: registered() == n, max(120.0, n * 0.6), "all clusters Ready",
                                lambda: f"({registered()}/{n})")
        except TimeoutError as e:
            res.notes.append(str(e))
        res.registered = registered()
        res.registration = [c.ready_at - t0 for c in by_id.values() if c.ready_at is not None]
        for name, (a, b) in {"start→CRR": ("t0", "crr_at"), "CRR→Approved (hub)": ("crr_at", "approved_at"),
                             "Approved→Ready (agent)": ("approved_at", "ready_at")}.items():
            vals = [getattr(c, b) - (t0 if a == "t0" else getattr(c, a)) for c in by_id.values()
                    if getattr(c, b) is not None and (a == "t0" or getattr(c, a) is not None)]
            res.reg_phases[name] = (p(vals, 50), max(vals) if vals else None)
        print(f"    {res.registered}/{n} Ready; P50 {s(p(res.registration, 50))}, P99 {s(p(res.registration, 99))}",
              flush=True)
        # tunnels and push credentials, before anything is deployed
        try:
            res.tunnels_up_s = await tunnels_held(hub, n + WARMUP, t0, max(120.0, n * 0.3))
            if res.tunnels_up_s is None:
                raise TimeoutError(f"the hub did not hold {n} tunnels")

            async def credentials() -> int:
                listing = await pk.request("GET", "/api/v1/secrets",
                                           query={"fieldSelector": f"metadata.name={known.DEPLOYER_SECRET}"})
                return len(listing.get("items", []))

            deadline = time.monotonic() + max(120.0, n * 0.3)
            while (have := await credentials()) < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"push credentials of {have}/{n} clusters")
                await asyncio.sleep(1.0)
        except TimeoutError as e:
            res.notes.append(str(e))
        res.notes.append(f"{sum(c.socket == 'True' for c in by_id.values())}/{n} ManagedClusters said "
                         "SocketConnected=True once all push credentials were there")
        res.rss_phases["registered, tunnels up"] = rss_kb(hub_pid) / 1024
        print(f"    tunnels up after {s(res.tunnels_up_s)}; hub RSS {res.rss_phases['registered, tunnels up']:.0f} MB "
              f"(idle {res.hub_idle_mb:.0f} MB)", flush=True)
        status = await all_workers(workers, "status")
        failed = [f for st in status for f in st["failed"]]
        if failed:
            res.notes.append(f"agents that failed: {failed[:3]}")

        # 2. propagation --------------------------------------------------------------------------------------
        objects = app_objects("scale-src")
        code, output = await run_plugin(write_feed_dir(workdir / "feeds", objects, None), parent)
        if code != 0:
            raise RuntimeError(f"storing the templates failed:\n{output}")
        await pk.create(globalization(objects, "1"))

        async def localize(c: Cluster) -> None:
            for k, obj in enumerate(objects):
                path = "/metadata/name" if obj["kind"] == "Namespace" else "/metadata/namespace"
                await created_despite_overload(pk, {
                    "apiVersion": APPS, "kind": "Localization",
                    "metadata": {"name": f"scale-{k}", "namespace": c.namespace},
                    "spec": {"overridePolicy": "ApplyLater", "feed": feed_of(obj), "overrides": [{
                        "name": "own-namespace", "type": "JSONPatch",
                        "value": json.dumps([{"op": "replace", "path": path, "value": app_namespace(c.index)}])}]}})

        live = [c for c in by_id.values() if c.namespace]
        await bounded([functools.partial(localize, c) for c in live], DIRECT_CONCURRENCY)
        await settle(args.settle)

        pids = {**plane_pids(parent), **plane_pids(child), "hub": hub_pid,
                **{f"worker {w.proc.name}": w.popen.pid for w in workers}, "bench": os.getpid()}

        async def direct(label: str, suffix: str) -> None:
            for attempt in (1, 2):
                load = os.getloadavg()[0]
                with cpu_accounting(pids, res.phase_cpu.setdefault(f"direct {label}", {})):
                    took = await direct_run(child_creds, n, suffix + ("" if attempt == 1 else "r"))
                valid = load <= res.prop_load + BUSY_MARGIN if res.prop_load else True
                res.direct.append((label + ("" if attempt == 1 else " (rerun)"), took, load, valid))
                print(f"    direct {label}: {n * FEEDS} objects in {took:.2f} s (load {load:.2f})", flush=True)
                if valid:
                    return
                await settle(args.settle)

        res.prop_load = 0.0
        await direct("before", "-direct")
        await settle(args.settle)
        res.prop_load = os.getloadavg()[0]
        # the "before" run's validity is judged against the load at the start of ours
        label, took, load, _ = res.direct[0]
        res.direct[0] = (label, took, load, load <= res.prop_load + BUSY_MARGIN)
        print(f"  propagation: Subscription to {n} clusters (load {res.prop_load:.2f}) ...", flush=True)
        if args.profile_hub == "propagation":
            spy = await start_profile(hub_pid, workdir / f"hub-profile-{n}.txt")
            res.profile_window = "propagation (Subscription to the last Description Success)"
        cpu_prop0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        t_sub = time.monotonic()
        await pk.create({"apiVersion": APPS, "kind": "Subscription", "metadata": {"name": SUB, "namespace": "default"},
                         "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"bench": "scale"}}}],
                                  "feeds": [feed_of(o) for o in objects]}})

        def deployed_gen(min_gen: dict[str, int]) -> int:
            return sum(any(g >= min_gen.get(c.namespace, 1) for g in watcher.descs.get(c.namespace, DescState())
                           .success_at) for c in live)

        try:
            await watcher.until(lambda: deployed_gen({}) == len(live), max(180.0, n * 1.0), "all Descriptions Success",
                                lambda: f"({deployed_gen({})}/{len(live)})")
        except TimeoutError as e:
            res.notes.append(str(e))
        res.phase_cpu["propagation"] = {name: cpu_seconds(pid) - cpu_prop0[name] for name, pid in pids.items()}
        if spy is not None and args.profile_hub == "propagation":
            res.profile, spy = await stop_profile(spy), None
        seen = watcher.sub_seen or t_sub
        res.prop = [min(st.success_at.values()) - seen for c in live
                    if (st := watcher.descs.get(c.namespace)) and st.success_at]
        print(f"    {len(res.prop)}/{len(live)} Success; P50 {s(p(res.prop, 50))}, P99 {s(p(res.prop, 99))}, "
              f"all {s(max(res.prop) if res.prop else None)}", flush=True)
        created = [st.created_at - seen for c in live if (st := watcher.descs.get(c.namespace)) and st.created_at]
        pushed = [min(st.success_at.values()) - st.created_at for c in live
                  if (st := watcher.descs.get(c.namespace)) and st.success_at and st.created_at]
        res.notes.append(f"propagation at {n}: Subscription -> Description created P50/P99/all "
                         f"{s(p(created, 50))}/{s(p(created, 99))}/{s(max(created, default=None))}; created -> "
                         f"Success P50/P99/max {s(p(pushed, 50))}/{s(p(pushed, 99))}/{s(max(pushed, default=None))}")
        print(f"    {res.notes[-1]}", flush=True)
        res.rss_phases["deployed"] = rss_kb(hub_pid) / 1024
        await settle(args.settle)
        await direct("after", "-direct2")

        # 3. override change ----------------------------------------------------------------------------------
        await settle(args.settle)
        before = {c.namespace: watcher.descs[c.namespace].generation for c in live if c.namespace in watcher.descs}
        wanted = {ns: g + 1 for ns, g in before.items()}
        print("  override change: the Globalization's value 1 -> 2 ...", flush=True)
        t_ov = time.monotonic()
        await pk.patch(APPS, "Globalization", GLOBALIZATION, {"spec": globalization(objects, "2")["spec"]})
        try:
            await watcher.until(lambda: deployed_gen(wanted) == len(wanted), max(180.0, n * 1.0),
                                "all re-applied", lambda: f"({deployed_gen(wanted)}/{len(wanted)})")
        except TimeoutError as e:
            res.notes.append(str(e))
        res.override = [min(t for g, t in st.success_at.items() if g >= wanted[ns]) - t_ov
                        for ns, st in watcher.descs.items() if ns in wanted
                        and any(g >= wanted[ns] for g in st.success_at)]
        sample = live[:: max(1, len(live) // 10)]
        versions = [((await ck.get("v1", "ConfigMap", "config", app_namespace(c.index))) or {}).get("data", {})
                    .get("version") for c in sample]
        res.override_checked = f"{sum(v == '2' for v in versions)}/{len(versions)} sampled ConfigMaps in the child " \
                               "say version 2"
        print(f"    {len(res.override)}/{len(wanted)} re-applied; P50 {s(p(res.override, 50))}, "
              f"all {s(max(res.override) if res.override else None)}; {res.override_checked}", flush=True)
        res.rss_phases["override re-applied"] = rss_kb(hub_pid) / 1024
        if spy is not None:
            res.profile = await stop_profile(spy)

        # 4. steady state -------------------------------------------------------------------------------------
        await settle(args.settle)
        print(f"  steady state for {args.steady:.0f} s ...", flush=True)
        counts0 = await request_counts(pk)
        cpu0, t_st = cpu_seconds(hub_pid), time.monotonic()
        await asyncio.sleep(args.steady)
        cpu1, t_st1 = cpu_seconds(hub_pid), time.monotonic()
        counts1 = await request_counts(pk)
        res.steady_s = t_st1 - t_st
        minutes = res.steady_s / 60
        res.hub_cpu_s = cpu1 - cpu0
        res.hub_cpu_per_cluster_min = res.hub_cpu_s / n / minutes
        res.hub_rss_mb, res.hub_peak_mb = rss_kb(hub_pid) / 1024, rss_kb(hub_pid, "VmHWM") / 1024
        delta = {k: v for k, v in (counts1 - counts0).items() if v > 0}
        res.parent_requests = dict(sorted(delta.items(), key=lambda kv: -kv[1])[:8])
        # a report is a GET of the ManagedCluster and a PATCH of its status (heartbeat.report); the agents all
        # registered at once, so a window shorter than the report period sees all their reports or none:
        # count the reports that arrived since each cluster's first one instead
        reports = sum(max(0, len(c.heartbeat_at) - 1) for c in by_id.values())
        span = sum(t_st1 - c.heartbeat_at[0] for c in by_id.values() if c.heartbeat_at) / 60
        res.parent_heartbeat_per_cluster_min = 2 * reports / span if span else 0.0
        res.notes.append(f"heartbeats: {reports} reports after the first ones over {span:.0f} cluster-minutes "
                         f"(one report = GET + PATCH; design: 2 per {args.report:g} s = "
                         f"{120 / args.report:.2f} per cluster per minute)")
        res.parent_total_per_cluster_min = sum(delta.values()) / n / minutes
        if args.trace_hub_memory:
            os.kill(hub_pid, signal.SIGUSR2)
            dump = workdir / "hub-memory.txt"
            for _ in range(60):
                await asyncio.sleep(1.0)
                if dump.exists() and dump.stat().st_size > 0:
                    await asyncio.sleep(1.0)
                    res.memory = dump.read_text().splitlines()
                    break
        status = await all_workers(workers, "status")
        res.worker_rss_mb = sum(st["rss_kb"] for st in status) / 1024
        print(f"    hub RSS {res.hub_rss_mb:.0f} MB (peak {res.hub_peak_mb:.0f}), hub CPU "
              f"{res.hub_cpu_per_cluster_min * 1000:.1f} ms per cluster per minute; parent: "
              f"{res.parent_heartbeat_per_cluster_min:.2f} heartbeat requests per cluster per minute "
              f"({res.parent_total_per_cluster_min:.2f} in all)", flush=True)

        # 5. a 10 % outage and return ---------------------------------------------------------------------------
        silent = {c.index for c in live if c.index % 10 == 0}
        res.outage_n = len(silent)
        print(f"  outage: {len(silent)} agents stop for {args.outage:.0f} s ...", flush=True)
        t_out = time.monotonic()
        await all_workers(workers, "stop", silent)
        await asyncio.sleep(args.outage)
        problems = []
        gone = [by_index[i].namespace for i in silent if not watcher.descs.get(by_index[i].namespace,
                                                                                DescState()).names]
        if gone:
            problems.append(f"{len(gone)} silent clusters lost their Description")
        missing = 0
        for i in sorted(silent)[:20]:
            if await ck.get("v1", "ConfigMap", "config", app_namespace(i)) is None:
                missing += 1
        if missing:
            problems.append(f"{missing} of {min(20, len(silent))} checked silent clusters lost their ConfigMap")
        unknown_silent = sum(by_index[i].ready != "True" for i in silent)
        t_back = time.monotonic()
        marks = {i: (len(by_index[i].socket_up_at), len(by_index[i].heartbeat_at)) for i in silent}
        await all_workers(workers, "start", silent)

        marked_down = sum(by_index[i].socket == "False" for i in silent)

        def returned(i: int) -> bool:  # a heartbeat since the restart, Ready, and the tunnel marked up
            c = by_index[i]
            return len(c.heartbeat_at) > marks[i][1] and c.ready == "True" and c.socket == "True"

        try:
            await watcher.until(lambda: all(returned(i) for i in silent), max(120.0, n * 0.3), "silent ones back",
                                lambda: f"({sum(returned(i) for i in silent)}/{len(silent)})")
        except TimeoutError as e:
            late = [by_index[i] for i in silent if not returned(i)]
            problems.append(f"{e}: " + ", ".join(
                f"{c.namespace} (SocketConnected {c.socket}, Ready {c.ready}, tunnel ups "
                f"{len(c.socket_up_at) - marks[c.index][0]}, heartbeats {len(c.heartbeat_at) - marks[c.index][1]})"
                for c in late[:3]))
        res.outage_return = [max(by_index[i].socket_up_at[-1] if len(by_index[i].socket_up_at) > marks[i][0]
                                 else 0.0, by_index[i].heartbeat_at[-1]) - t_back for i in silent if returned(i)]
        if await tunnels_held(hub, n + WARMUP, t_back, 60) is None:
            problems.append("the hub did not hold every tunnel again within 60 s")
        res.outage_ok = "; ".join(problems) or (
            f"every silent cluster kept its Description and (checked {min(20, len(silent))}) its ConfigMap; "
            f"{unknown_silent} of them left Ready=True during the {time.monotonic() - t_out:.0f} s; the hub "
            f"marked {marked_down} of them SocketConnected=False meanwhile")
        last = max(res.outage_return) if res.outage_return else None
        print(f"    back: P50 {s(p(res.outage_return, 50))}, all {s(last)}; {res.outage_ok}", flush=True)

        # 6. reconnect storm ------------------------------------------------------------------------------------
        await settle(args.settle)
        ups = {c.index: len(c.socket_up_at) for c in live}
        print(f"  reconnect storm: all {n} tunnels cut at once ...", flush=True)
        t_storm = time.monotonic()
        dropped = await all_workers(workers, "drop")
        res.storm_dropped = sum(d["dropped"] for d in dropped)
        await asyncio.sleep(0.5)
        res.storm_tunnels_s = await tunnels_held(hub, len(live) + WARMUP, t_storm, max(120.0, n * 0.3))
        try:
            await watcher.until(lambda: all(len(c.socket_up_at) > ups[c.index] and c.socket == "True" for c in live),
                                max(120.0, n * 0.3), "all SocketConnected again",
                                lambda: f"({sum(len(c.socket_up_at) > ups[c.index] for c in live)}/{len(live)})")
            res.storm_conditions_s = max(c.socket_up_at[-1] for c in live) - t_storm
        except TimeoutError as e:
            res.notes.append(str(e))
        print(f"    hub holds all tunnels after {s(res.storm_tunnels_s)}, every SocketConnected=True after "
              f"{s(res.storm_conditions_s)} ({res.storm_dropped} connections cut)", flush=True)

        # checks over the whole run -----------------------------------------------------------------------------
        res.live_not_ready = sum(
            1 for c in live for (t, _) in c.not_ready
            if not (c.index in silent and t_out <= t <= t_back + 60))
        dups = [ns for ns, st in watcher.descs.items() if len(st.names) > 1]
        lost = [c.namespace for c in live if not watcher.descs.get(c.namespace, DescState()).names]
        listed = await pk.list(APPS, "Description", label_selector=f"{known.LABEL_SUBS_NAME}={SUB}")
        per_ns: dict[str, int] = {}
        for d in listed:
            per_ns[d["metadata"]["namespace"]] = per_ns.get(d["metadata"]["namespace"], 0) + 1
        dup_listed = sum(1 for v in per_ns.values() if v > 1)
        res.desc_problems = (f"{len(listed)} Descriptions for {len(live)} clusters; {len(lost)} lost, "
                             f"{len(dups) + dup_listed} duplicated")
        res.hub_peak_mb = max(res.hub_peak_mb, rss_kb(hub_pid, "VmHWM") / 1024)
        if watcher.relists:
            res.notes.append(f"the bench's watches were re-listed {watcher.relists} time(s)")
        res.notes.append(f"hub CPU over the whole round: {cpu_seconds(hub_pid) - cpu_hub_0:.1f} s")
        await all_workers(workers, "exit")
        await watcher.stop()
    res.wall_s = time.monotonic() - t_begin
    return res


# --- report ----------------------------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "yes" if ok else "**NO**"


def report(results: list[SizeResult], machine: dict[str, str], args: argparse.Namespace) -> str:
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "",
             f"Agents: the real agent code (`run_agent`, deploys on), {AGENTS_PER_WORKER} per worker process, "
             f"collect every {args.collect:g} s, report every {args.report:g} s"
             + (" (Clusternet's defaults)" if (args.collect, args.report) == (20.0, 180.0) else "")
             + "; one real child API server for all; hub pushes through each agent's tunnel.", "",
             "| N | load at start | registration P50 / P99 (Ready/N) | propagation P50 / P99 / all | direct before / "
             "after (load) | ratio | override → all re-applied P50 / all | hub RSS (peak) | hub CPU per cluster "
             "per min | parent heartbeat req per cluster per min (all) | 10 % outage: back P50 / all | reconnect "
             "storm: tunnels / conditions | live ever not Ready | Descriptions |",
             "|---:|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        valid = [t for _, t, _, ok in r.direct if ok]
        top = max(r.prop) if r.prop else None
        ratio = top / min(valid) if top and valid else None
        dcell = " / ".join(f"{t:.2f} s ({load:.1f}{'' if ok else ', busy: invalid'})" for _, t, load, ok in r.direct)
        lines.append(
            f"| {r.n} | {r.load_start} | {s(p(r.registration, 50))} / {s(p(r.registration, 99))} "
            f"({r.registered}/{r.n}) | {s(p(r.prop, 50))} / {s(p(r.prop, 99))} / {s(top)} | {dcell} | "
            f"{'n/a' if ratio is None else f'{ratio:.1f}x'} | {s(p(r.override, 50))} / "
            f"{s(max(r.override) if r.override else None)} | {r.hub_rss_mb:.0f} MB ({r.hub_peak_mb:.0f}) | "
            f"{r.hub_cpu_per_cluster_min * 1000:.1f} ms | {r.parent_heartbeat_per_cluster_min:.2f} "
            f"({r.parent_total_per_cluster_min:.2f}) | {s(p(r.outage_return, 50))} / "
            f"{s(max(r.outage_return) if r.outage_return else None)} | {s(r.storm_tunnels_s)} / "
            f"{s(r.storm_conditions_s)} | {r.live_not_ready} | {r.desc_problems} |")
    lines += ["", "Targets:", ""]
    for r in results:
        valid = [t for _, t, _, ok in r.direct if ok]
        top = max(r.prop) if r.prop else None
        ratio = top / min(valid) if top and valid else None
        per_cluster = (r.hub_rss_mb - r.hub_idle_mb) / r.n
        at_1000 = r.hub_idle_mb + per_cluster * 1000
        lines.append(
            f"* N={r.n}: propagation ≤ {TARGET_RATIO:g}x direct (time to all against the faster valid direct run): "
            f"{verdict(None if ratio is None else ratio <= TARGET_RATIO)}; live clusters never left Ready: "
            f"{verdict(r.live_not_ready == 0)}; one Description per cluster: "
            f"{verdict(r.desc_problems.endswith('0 lost, 0 duplicated'))}; hub RSS {r.hub_idle_mb:.0f} MB idle, "
            f"{r.hub_rss_mb:.0f} MB at steady state ({per_cluster * 1000:.0f} kB per cluster), peak "
            f"{r.hub_peak_mb:.0f} MB: "
            + (f"≤ {TARGET_RSS_MB:g} MB at 1,000: {verdict(r.hub_peak_mb <= TARGET_RSS_MB)}" if r.n >= 1000 else
               f"at 1,000 that would be ~{at_1000:.0f} MB (extrapolated, not measured)")
            + (f"; registration P99 ≤ {TARGET_REG_P99_S:g} s: "
               f"{verdict((p(r.registration, 99) or 99) <= TARGET_REG_P99_S)}" if r.n <= 20 else ""))
    lines += ["", "Details:"]
    for r in results:
        lines.append(f"* N={r.n} ({r.workers} worker process(es), round {r.wall_s:.0f} s): registration phases "
                     "P50 / max: " + ", ".join(f"{k} {s(a)} / {s(b)}" for k, (a, b) in r.reg_phases.items())
                     + f"; hub RSS idle {r.hub_idle_mb:.0f} MB, then "
                     + ", ".join(f"{k} {v:.0f} MB" for k, v in r.rss_phases.items())
                     + f"; all tunnels up "
                     f"{s(r.tunnels_up_s)} after the start; override: {r.override_checked}; outage of {r.outage_n}: "
                     f"{r.outage_ok}; storm cut {r.storm_dropped} connections; steady state {r.steady_s:.0f} s: hub "
                     f"{r.hub_cpu_s:.1f} CPU-s, workers' RSS {r.worker_rss_mb:.0f} MB; parent requests in that window: "
                     + ", ".join(f"{k} {v}" for k, v in r.parent_requests.items())
                     + "".join(f"; {note}" for note in r.notes) + ".")
        if r.phase_cpu:
            lines += ["", f"  CPU seconds per process during each timed deployment, N={r.n} (agents: all worker "
                      "processes; the direct applies run in the bench process):", "", *cpu_table(r.phase_cpu), ""]
        if r.profile:
            lines += ["", f"  py-spy of the hub, N={r.n}, {r.profile_window} (share of samples in or under):",
                      ""] + [f"      {share:5.1%}  {frame}" for frame, share in r.profile[:20]] + [""]
        if r.memory:
            lines += ["", f"  tracemalloc in the hub at steady state, N={r.n} (RSS {r.hub_rss_mb:.0f} MB):", ""]
            lines += [f"      {line}" for line in r.memory]
    return "\n".join(lines)


def cpu_table(phases: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: one per phase, one column per process (worker processes summed as "agents")."""
    def grouped(cpu: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, v in cpu.items():
            key = "agents" if name.startswith("worker ") else name
            out[key] = out.get(key, 0.0) + v
        return out

    rows = {phase: grouped(cpu) for phase, cpu in phases.items()}
    columns = list(next(iter(rows.values())))
    lines = ["      | phase | " + " | ".join(columns) + " | all |", "      |---|" + "---:|" * (len(columns) + 1)]
    for phase, cpu in rows.items():
        lines.append(f"      | {phase} | " + " | ".join(f"{cpu.get(c, 0.0):.1f}" for c in columns)
                     + f" | {sum(cpu.values()):.1f} |")
    return lines


# --- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,100", help="comma-separated cluster counts (default 20,100: make bench)")
    parser.add_argument("--collect", type=float, default=20.0, help="agents' status collect period, s (20)")
    parser.add_argument("--report", type=float, default=180.0, help="agents' status report period, s (180)")
    parser.add_argument("--steady", type=float, default=60.0, help="steady-state window, s (60)")
    parser.add_argument("--outage", type=float, default=30.0, help="how long 10 %% of the agents stay silent, s")
    parser.add_argument("--settle", type=float, default=5.0, help="pause between phases, s")
    parser.add_argument("--profile-hub", nargs="?", const="all", choices=("all", "propagation"),
                        help="py-spy the hub from registration to override (all) or during propagation only")
    parser.add_argument("--out", help="also write the report here (make bench: bench/results/<date>-scale.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    parser.add_argument("--trace-hub-memory", action="store_true",
                        help="tracemalloc in the hub; its top allocation sites at steady state (slows the hub)")
    parser.add_argument("--hub-arg", action="append", default=[], help="an extra clusternet-hub flag (repeatable)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        asyncio.run(worker_main(json.loads(sys.stdin.readline())))
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    started = time.monotonic()
    results: list[SizeResult] = []
    machine: dict[str, str] = {}
    codes = []
    for n in sizes:
        def body(planes: list[ControlPlane], workdir: Path, n: int = n) -> None:
            parent, child = planes
            install_parent(parent)
            parent.apply_manifest({"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": known.RESERVED_NAMESPACE}})
            if not machine:
                machine.update(machine_info(parent))
            saved = dict(os.environ)
            if args.trace_hub_memory:  # the hub inherits it; restored before the workers start
                os.environ.update(memory_hook(workdir))
            try:
                hub = start_hub(parent, workdir, *args.hub_arg)
            finally:
                os.environ.clear()
                os.environ.update(saved)
            print(f"N={n}: hub up after {time.monotonic() - started:.0f} s of the run", flush=True)
            results.append(asyncio.run(run_size(n, args, parent, child, hub, workdir)))
            check_alive([hub.proc])
            if (pids := plane_pids(parent)):
                log.debug("parent processes %s", pids)

        codes.append(run_bench(["parent", "child1"], f"a parent and a child control plane for N={n}",
                               f"clusternet-bench-scale-{n}-", args.keep, body))
        if codes[-1]:
            break
    machine["load avg at end"] = loadavg()
    text = report(results, machine, args)
    if codes and codes[-1]:
        text += f"\n\nInterrupted (exit {codes[-1]}) during N={sizes[len(results)]}: that round is not in the table."
    text += f"\n\n(total {time.monotonic() - started:.0f} s)\n"
    print()
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        # every run is kept, one section each (a run on a busy machine is reported, never averaged in)
        head = "" if out.exists() else \
            f"# Scale bench ({out.stem})\n\nWritten by `bench/scale.py --out`; one section per run.\n\n"
        command = " ".join(["bench/scale.py", *(argv if argv is not None else sys.argv[1:])])
        section = f"## Run at {datetime.datetime.now(datetime.UTC):%H:%M} UTC: `{command}`\n\n{text}\n"
        with out.open("a") as f:
            f.write(head + section)
        print(f"appended to {out}")
    return max(codes) if codes else 0


if __name__ == "__main__":
    raise SystemExit(main())
