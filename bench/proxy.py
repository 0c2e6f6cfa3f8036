"""Proxy overhead: a child's kube-apiserver reached directly vs through the hub's tunnel proxy.

Everything runs for real on this machine: a parent and one child control plane (etcd, kube-apiserver,
kube-controller-manager), the CRDs and bootstrap token installed as an admin would, `clusternet-hub` as a
process with its own TLS certificate, and one `clusternet-agent` process holding a direct tunnel to the hub's
port (`--tunnel-url`; the aggregated-API route needs port 443 and is covered by tests/integration).

Two clients with aiohttp keep-alive sessions and the same child ServiceAccount token (cluster-admin) talk to

* DIRECT:  https://<child apiserver>/<path>                                 (child CA)
* PROXIED: https://<hub>/apis/proxies.clusternet.io/v1alpha1/sockets/<id>/proxy/direct/<path>  (hub CA)

and every measurement alternates between them request by request, so that whatever else runs on the
machine affects both sides alike:

* small GET latency (GET /api/v1/namespaces/default);
* large LIST throughput (ConfigMaps of ~1 MB each, ~20 MB per LIST);
* time to first event of a watch (watch open -> POST a ConfigMap -> its ADDED event arrives);
* 50 concurrent small GETs (fresh connections, then the same connections again).

The hub's and the agent's CPU time and run-queue wait (/proc/<pid>/task/*/schedstat) over the GET and LIST
phases and the proxied warm bursts are reported per proxied request / MB: only proxied requests go through
those two processes.

    .venv/bin/python bench/proxy.py            # full run (~1 min including control-plane start-up)
    .venv/bin/python bench/proxy.py --quick    # fewer iterations (~45 s)
    .venv/bin/python bench/proxy.py --keep     # keep the work directory with all logs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from clusternet_testing.controlplane import ControlPlane, free_port
from common import (
    SPAWNED,
    agent,
    check_alive,
    https_status,
    install_parent,
    loadavg,
    machine_info,
    percentile,
    run_bench,
    service_account_token,
    spawn,
    start_hub,
    wait_until,
)

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"
SMALL_PATH = "/api/v1/namespaces/default"
LIST_NS = "bench-list"
WATCH_NS = "bench-watch"
CM_BYTES = 1_000_000  # one ConfigMap's payload; the apiserver caps a ConfigMap at 1 MiB
# Targets: proxied small-GET P50 and P99 within 1.5 x direct + 2 ms; proxied LIST at least 50 % of direct; a burst
# of `concurrency` GETs on warm connections within 2 x direct (every burst), concurrent LISTs 50 % of direct.
LATENCY_FACTOR, LATENCY_SLACK_MS, THROUGHPUT_SHARE, BURST_FACTOR = 1.5, 2.0, 0.5, 2.0
BURSTS = 5  # warm bursts of each way, alternating
LIST_CONCURRENCY, LIST_ROUNDS = 5, 3  # LISTs at once, rounds of each way


@dataclass(frozen=True)
class Plan:
    warmup: int
    gets: int
    list_objects: int
    lists: int
    watches: int
    concurrency: int = 50


FULL = Plan(warmup=50, gets=500, list_objects=20, lists=10, watches=30)
QUICK = Plan(warmup=10, gets=100, list_objects=5, lists=3, watches=5)


# --- the two ways in ---------------------------------------------------------------------------------------


@dataclass
class Way:
    """One route to the child's API server: a base URL, a CA and a keep-alive session."""

    name: str
    base: str
    ca: Path
    token: str
    session: aiohttp.ClientSession | None = None

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def new_session(self, limit: int = 100) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl(), limit=limit, keepalive_timeout=60),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=120))

    async def __aenter__(self) -> Way:
        self.session = self.new_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    @property
    def s(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    def url(self, path: str) -> str:
        return self.base + path

    async def get(self, path: str, session: aiohttp.ClientSession | None = None) -> tuple[int, bytes]:
        async with (session or self.s).get(self.url(path)) as r:
            return r.status, await r.read()

    async def post(self, path: str, body: dict[str, Any], ok: tuple[int, ...] = (201,)) -> None:
        async with self.s.post(self.url(path), json=body) as r:
            if r.status not in ok:
                raise RuntimeError(f"{self.name}: POST {path}: HTTP {r.status}: {(await r.text())[:300]}")


# --- statistics --------------------------------------------------------------------------------------------


@dataclass
class Results:
    plan: Plan
    machine: dict[str, str] = field(default_factory=dict)
    get_ms: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "proxied": []})
    get_errors: dict[str, int] = field(default_factory=lambda: {"direct": 0, "proxied": 0})
    list_mbps: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "proxied": []})
    list_bytes: int = 0
    watch_open_ms: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "proxied": []})
    watch_event_ms: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "proxied": []})
    concurrent: list[tuple[str, float, int]] = field(default_factory=list)  # (label, wall ms, errors)
    concurrent_list_mbps: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "proxied": []})
    peer_get_ms: dict[str, list[float]] = field(default_factory=lambda: {"proxied": [], "peer": []})
    pids: dict[str, int] = field(default_factory=dict)  # hub, agent: CPU accounting
    # (process, phase) -> (CPU s, run-queue wait s) over a measured phase; only proxied requests touch them
    sched: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on CPU, seconds runnable but waiting for a CPU) over all threads of a process (Linux)."""
    run = wait = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "schedstat").read_text().split()
                run, wait = run + int(fields[0]), wait + int(fields[1])
    return run / 1e9, wait / 1e9


@contextlib.contextmanager
def accounted(res: Results, phase: str, add: bool = False) -> Iterator[None]:
    """Record the processes' CPU and run-queue wait over the block as `phase`; `add` sums repeated blocks."""
    before = {name: schedstat(pid) for name, pid in res.pids.items()}
    yield
    for name, pid in res.pids.items():
        after = schedstat(pid)
        run, wait = res.sched.get((name, phase), (0.0, 0.0)) if add else (0.0, 0.0)
        res.sched[(name, phase)] = (run + after[0] - before[name][0], wait + after[1] - before[name][1])


# --- measurements ------------------------------------------------------------------------------------------


async def alternate(direct: Way, proxied: Way, n: int, one: Callable[[Way], Awaitable[float | None]],
                    sink: dict[str, list[float]] | None) -> None:
    """Run `one` n times per way, alternating, with the first of each pair swapped every round."""
    for i in range(n):
        pair = (direct, proxied) if i % 2 == 0 else (proxied, direct)
        for way in pair:
            value = await one(way)
            if sink is not None and value is not None:
                sink[way.name].append(value)


async def small_gets(direct: Way, proxied: Way, res: Results) -> None:
    async def one(way: Way) -> float | None:
        t0 = time.perf_counter()
        try:
            status, _ = await way.get(SMALL_PATH)
        except aiohttp.ClientError:
            status = 0
        elapsed = (time.perf_counter() - t0) * 1000
        if status != 200:
            res.get_errors[way.name] += 1
            return None
        return elapsed

    await alternate(direct, proxied, res.plan.warmup, one, None)
    res.get_errors = {"direct": 0, "proxied": 0}
    with accounted(res, "gets"):
        await alternate(direct, proxied, res.plan.gets, one, res.get_ms)


async def peer_gets(proxied: Way, peer: Way, res: Results) -> None:
    """Small GETs through the replica holding the tunnel and through the other one (peer forwarding),
    alternating: what a request that lands on the wrong replica pays."""
    async def one(way: Way) -> float | None:
        t0 = time.perf_counter()
        status, _ = await way.get(SMALL_PATH)
        if status != 200:
            raise RuntimeError(f"{way.name} GET: HTTP {status}")
        return (time.perf_counter() - t0) * 1000

    await alternate(proxied, peer, res.plan.warmup, one, None)
    await alternate(proxied, peer, res.plan.gets // 2, one, res.peer_get_ms)


async def large_lists(direct: Way, proxied: Way, res: Results) -> None:
    await create_namespace(direct, LIST_NS)
    blob = "x" * CM_BYTES
    for i in range(res.plan.list_objects):
        await direct.post(f"/api/v1/namespaces/{LIST_NS}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{i}", "labels": {"bench": "list"}},
            "data": {"blob": blob}},
            ok=(201, 409))
    path = f"/api/v1/namespaces/{LIST_NS}/configmaps?labelSelector=bench%3Dlist"  # not kube-root-ca.crt
    sizes: dict[str, int] = {}

    async def one(way: Way) -> float | None:
        t0 = time.perf_counter()
        status, body = await way.get(path)
        elapsed = time.perf_counter() - t0
        if status != 200:
            raise RuntimeError(f"{way.name} LIST: HTTP {status}")
        sizes[way.name] = len(body)
        return len(body) / 1e6 / elapsed

    await alternate(direct, proxied, 1, one, None)  # warm-up
    items = {name: len(json.loads((await way.get(path))[1])["items"]) for name, way in
             (("direct", direct), ("proxied", proxied))}
    if set(items.values()) != {res.plan.list_objects}:
        raise RuntimeError(f"LIST returned {items} items, expected {res.plan.list_objects}")
    with accounted(res, "lists"):
        await alternate(direct, proxied, res.plan.lists, one, res.list_mbps)
    res.list_bytes = sizes["direct"]
    if sizes["proxied"] != sizes["direct"]:
        raise RuntimeError(f"LIST sizes differ: {sizes}")


async def watch_first_event(direct: Way, proxied: Way, writer: Way, res: Results) -> None:
    """Watch from the current resourceVersion, POST a ConfigMap (always directly, so both ways wait for the
    same write) and time POST start -> the watcher reads the ADDED line. Opening the watch is timed apart."""
    await create_namespace(direct, WATCH_NS)
    counter = iter(range(1_000_000))
    # A watch abandoned mid-stream cannot go back to the pool: each watch gets a fresh connection on a session
    # of its own, and opening it (connection set-up included) is reported separately from the event delivery.
    sessions = {w.name: w.new_session() for w in (direct, proxied)}

    async def one(way: Way) -> float | None:
        rv = json.loads((await writer.get(f"/api/v1/namespaces/{WATCH_NS}/configmaps?limit=1"))[1])
        name = f"w-{next(counter)}"
        url = way.url(f"/api/v1/namespaces/{WATCH_NS}/configmaps?watch=1&timeoutSeconds=60"
                      f"&resourceVersion={rv['metadata']['resourceVersion']}")
        t_open = time.perf_counter()
        async with sessions[way.name].get(url) as r:
            if r.status != 200:
                raise RuntimeError(f"{way.name} watch: HTTP {r.status}")
            opened = (time.perf_counter() - t_open) * 1000
            t0 = time.perf_counter()
            post = asyncio.create_task(writer.post(f"/api/v1/namespaces/{WATCH_NS}/configmaps", {
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}))
            async with asyncio.timeout(30):
                while line := await r.content.readline():
                    event = json.loads(line)
                    if event["type"] == "ADDED" and event["object"]["metadata"]["name"] == name:
                        break
                else:
                    raise RuntimeError(f"{way.name} watch ended before the ADDED event of {name}")
            elapsed = (time.perf_counter() - t0) * 1000
            await post
        res.watch_open_ms[way.name].append(opened)
        return elapsed

    try:
        await alternate(direct, proxied, 2, one, None)  # warm-up
        res.watch_open_ms = {"direct": [], "proxied": []}
        await alternate(direct, proxied, res.plan.watches, one, res.watch_event_ms)
    finally:
        for s in sessions.values():
            await s.close()


async def concurrent_gets(direct: Way, proxied: Way, res: Results) -> None:
    """n GETs at once on a fresh session (n new connections), then BURSTS more bursts on the same, now warm,
    connections, direct and proxied bursts alternating so that load from elsewhere hits both alike."""
    n = res.plan.concurrency

    async def burst(way: Way, session: aiohttp.ClientSession) -> tuple[float, int]:
        async def one() -> bool:
            try:
                status, _ = await way.get(SMALL_PATH, session)
                return status == 200
            except aiohttp.ClientError:
                return False

        t0 = time.perf_counter()
        ok = await asyncio.gather(*(one() for _ in range(n)))
        return (time.perf_counter() - t0) * 1000, ok.count(False)

    async with direct.new_session(limit=0) as ds, proxied.new_session(limit=0) as ps:
        sessions = ((direct, ds), (proxied, ps))
        for way, session in sessions:
            wall, errors = await burst(way, session)
            res.concurrent.append((f"{way.name}, new connections", wall, errors))
        for _ in range(BURSTS):
            for way, session in sessions:
                await asyncio.sleep(0.2)
                counted = accounted(res, "bursts", add=True) if way is proxied else contextlib.nullcontext()
                with counted:  # the hub's and agent's CPU over the proxied bursts
                    wall, errors = await burst(way, session)
                res.concurrent.append((f"{way.name}, warm connections", wall, errors))


async def concurrent_lists(direct: Way, proxied: Way, res: Results) -> None:
    """LIST_CONCURRENCY large LISTs at once on warm connections, alternating direct and proxied rounds: the
    aggregate MB/s of each round."""
    path = f"/api/v1/namespaces/{LIST_NS}/configmaps"

    async def round_of(way: Way, session: aiohttp.ClientSession) -> float:
        async def one() -> int:
            status, body = await way.get(path, session)
            if status != 200:
                raise RuntimeError(f"{way.name} LIST: HTTP {status}")
            return len(body)

        t0 = time.perf_counter()
        sizes = await asyncio.gather(*(one() for _ in range(LIST_CONCURRENCY)))
        return sum(sizes) / 1e6 / (time.perf_counter() - t0)

    async with direct.new_session(limit=0) as ds, proxied.new_session(limit=0) as ps:
        sessions = ((direct, ds), (proxied, ps))
        for way, session in sessions:
            await round_of(way, session)  # warm-up: the connections
        for _ in range(LIST_ROUNDS):
            for way, session in sessions:
                res.concurrent_list_mbps[way.name].append(await round_of(way, session))


async def create_namespace(way: Way, name: str) -> None:
    await way.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                   ok=(201, 409))


async def run_measurements(direct_base: str, child_ca: Path, proxied_base: str, hub_ca: Path, token: str,
                           res: Results, peer_base: str) -> None:
    async with (Way("direct", direct_base, child_ca, token) as direct,
                Way("proxied", proxied_base, hub_ca, token) as proxied,
                Way("peer", peer_base, hub_ca, token) as peer,
                Way("writer", direct_base, child_ca, token) as writer):
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("small GETs", lambda: small_gets(direct, proxied, res)),
            ("small GETs via the other replica", lambda: peer_gets(proxied, peer, res)),
            ("large LISTs", lambda: large_lists(direct, proxied, res)),
            ("watch first event", lambda: watch_first_event(direct, proxied, writer, res)),
            ("concurrent GETs", lambda: concurrent_gets(direct, proxied, res)),
            ("concurrent LISTs", lambda: concurrent_lists(direct, proxied, res)),
        ]
        for label, step in steps:
            t0 = time.monotonic()
            print(f"  {label} ...", end="", flush=True)
            await step()
            print(f" {time.monotonic() - t0:.1f} s", flush=True)


# --- reporting ---------------------------------------------------------------------------------------------


def report(res: Results) -> str:
    d, p = res.get_ms["direct"], res.get_ms["proxied"]
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in res.machine.items()), "",
             "| Measurement | Direct | Proxied | Proxied / direct | Target | Met |",
             "|---|---:|---:|---:|---|---|"]

    def row(what: str, dv: str, pv: str, ratio: str = "", target: str = "", met: bool | None = None) -> None:
        verdict = "" if met is None else ("yes" if met else "**NO**")
        lines.append(f"| {what} | {dv} | {pv} | {ratio} | {target} | {verdict} |")

    def throughput_row(what: str, direct: list[float], proxied: list[float]) -> None:
        dm, pm = percentile(direct, 50), percentile(proxied, 50)
        row(what, f"{dm:.1f} ({min(direct):.1f}-{max(direct):.1f})",
            f"{pm:.1f} ({min(proxied):.1f}-{max(proxied):.1f})", f"{pm / dm:.0%}",
            f"≥ {THROUGHPUT_SHARE:.0%} of direct", pm >= THROUGHPUT_SHARE * dm)

    n = len(d)
    for q in (50, 90, 99):
        dq, pq = percentile(d, q), percentile(p, q)
        limit = LATENCY_FACTOR * dq + LATENCY_SLACK_MS
        checked = q in (50, 99)
        row(f"GET {SMALL_PATH} P{q}, ms (n={n} each)", f"{dq:.2f}", f"{pq:.2f}", f"{pq / dq:.2f}x",
            f"≤ {LATENCY_FACTOR:g}xdirect+{LATENCY_SLACK_MS:g} = {limit:.2f}" if checked else "",
            pq <= limit if checked else None)
    row("GET errors", str(res.get_errors["direct"]), str(res.get_errors["proxied"]))
    hp, pp = res.peer_get_ms["proxied"], res.peer_get_ms["peer"]
    if hp and pp:
        for q in (50, 99):
            row(f"GET via the replica holding the tunnel (Direct column) vs the other replica (peer forwarding) "
                f"P{q}, ms (n={len(pp)} each)", f"{percentile(hp, q):.2f}", f"{percentile(pp, q):.2f}",
                f"+{percentile(pp, q) - percentile(hp, q):.2f} ms")
    dl, pl = res.list_mbps["direct"], res.list_mbps["proxied"]
    if dl and pl:
        throughput_row(f"LIST {res.plan.list_objects} ConfigMaps ({res.list_bytes / 1e6:.1f} MB), median MB/s "
                       f"(min-max, n={len(dl)} each)", dl, pl)
    for label, data in (("watch: POST → ADDED event", res.watch_event_ms),
                        ("watch: opening it (new connection)", res.watch_open_ms)):
        dw, pw = data["direct"], data["proxied"]
        if dw and pw:
            for q in (50, 99):
                row(f"{label} P{q}, ms (n={len(dw)} each)", f"{percentile(dw, q):.2f}", f"{percentile(pw, q):.2f}",
                    f"{percentile(pw, q) / percentile(dw, q):.2f}x")
    for name in res.pids:
        gets, lists = res.sched.get((name, "gets")), res.sched.get((name, "lists"))
        if gets and p:
            row(f"{name}: CPU / run-queue wait per proxied GET, ms", "-",
                f"{gets[0] * 1000 / len(p):.2f} / {gets[1] * 1000 / len(p):.2f}")
        if (bursts_cpu := res.sched.get((name, "bursts"))) is not None:
            n = BURSTS * res.plan.concurrency
            row(f"{name}: CPU / run-queue wait per proxied GET in warm bursts, ms", "-",
                f"{bursts_cpu[0] * 1000 / n:.2f} / {bursts_cpu[1] * 1000 / n:.2f}")
        if lists and pl and res.list_bytes:
            mb = len(pl) * res.list_bytes / 1e6
            row(f"{name}: CPU / run-queue wait per proxied LIST MB, ms", "-",
                f"{lists[0] * 1000 / mb:.2f} / {lists[1] * 1000 / mb:.2f}")
    def bursts(label: str) -> list[tuple[float, int]]:
        return [(wall, errors) for name, wall, errors in res.concurrent if name == label]

    dn, pn = bursts("direct, new connections"), bursts("proxied, new connections")
    if dn and pn:
        row(f"{res.plan.concurrency} concurrent GETs, new connections: wall ms (errors)", f"{dn[0][0]:.0f} "
            f"({dn[0][1]})", f"{pn[0][0]:.0f} ({pn[0][1]})", f"{pn[0][0] / dn[0][0]:.2f}x")
    dwarm, pwarm = bursts("direct, warm connections"), bursts("proxied, warm connections")
    if dwarm and pwarm:
        ratios = [pb[0] / db[0] for db, pb in zip(dwarm, pwarm, strict=True)]
        errors = sum(e for _, e in pwarm) + sum(e for _, e in dwarm)
        row(f"{res.plan.concurrency} concurrent GETs, warm connections: median wall ms (worst ratio of "
            f"{len(ratios)} pairs; errors {errors})", f"{percentile([w for w, _ in dwarm], 50):.0f}",
            f"{percentile([w for w, _ in pwarm], 50):.0f}", f"{percentile(ratios, 50):.2f}x ({max(ratios):.2f}x)",
            f"≤ {BURST_FACTOR:g}x direct, every pair", max(ratios) <= BURST_FACTOR and errors == 0)
    dcl, pcl = res.concurrent_list_mbps["direct"], res.concurrent_list_mbps["proxied"]
    if dcl and pcl:
        throughput_row(f"{LIST_CONCURRENCY} concurrent LISTs ({res.list_bytes / 1e6:.1f} MB each), median MB/s "
                       f"(min-max, n={len(dcl)} rounds each)", dcl, pcl)
    return "\n".join(lines)


# --- set-up ------------------------------------------------------------------------------------------------


def bring_up(parent: ControlPlane, child: ControlPlane, workdir: Path) -> dict[str, Any]:
    """CRDs, bootstrap token, hub and agent; returns what the measurements need once the tunnel carries."""
    install_parent(parent)
    # two replicas, as deploy/hub runs them: the agent's tunnel is on `hub`; `replica` forwards to it
    replicated = ["--leader-elect=true", "--peer-advertise-address=127.0.0.1"]
    hub = start_hub(parent, workdir, *replicated, f"--peer-port={free_port()}")
    replica = start_hub(parent, workdir, *replicated, f"--peer-port={free_port()}", tls=hub.tls, name="hub-replica")
    spawn(agent(child, parent, workdir, "bench", "--feature-gates=SocketConnection=true", *hub.tunnel_args))
    token = service_account_token(child, "bench", "bench", "cluster-admin")
    kube_system = child.request_json("GET", "/api/v1/namespaces/kube-system")
    cluster_id = str(kube_system["metadata"]["uid"])  # type: ignore[index]
    proxied_base = f"{hub.url}{SOCKETS}/{cluster_id}/proxy/direct"
    wait_until(lambda: https_status(child.url + SMALL_PATH, child.ca_file, token) == 200, "the child token",
               SPAWNED, timeout=120)
    wait_until(lambda: https_status(proxied_base + SMALL_PATH, hub.ca, token) == 200,
               "registration and the tunnel (a proxied GET)", SPAWNED, timeout=120)
    peer_base = f"{replica.url}{SOCKETS}/{cluster_id}/proxy/direct"
    wait_until(lambda: https_status(peer_base + SMALL_PATH, hub.ca, token) == 200,
               "the other replica forwarding (a proxied GET)", SPAWNED, timeout=60)
    return {"hub_ca": hub.ca, "proxied_base": proxied_base, "peer_base": peer_base, "token": token}


# --- main --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()

    def body(planes: list[ControlPlane], workdir: Path) -> None:
        parent, child = planes
        print("starting clusternet-hub and clusternet-agent, waiting for the tunnel ...", flush=True)
        env = bring_up(parent, child, workdir)
        res = Results(plan, machine_info(child, aiohttp=aiohttp.__version__),
                      pids={p.name: p.proc.pid for p in SPAWNED if p.proc is not None})
        print("measuring (direct and proxied alternate request by request):", flush=True)
        asyncio.run(run_measurements(child.url, child.ca_file, env["proxied_base"], env["hub_ca"], env["token"],
                                     res, env["peer_base"]))
        res.machine["load avg at end"] = loadavg()
        check_alive(SPAWNED)
        print()
        print(report(res))
        print(f"\n(total {time.monotonic() - started:.0f} s)")

    return run_bench(["parent", "child"], "a parent and a child control plane", "clusternet-bench-proxy-",
                     args.keep, body)


if __name__ == "__main__":
    raise SystemExit(main())
