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
from dataclasses import dataclass
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
    run_bench,
    service_account_token,
    spawn,
    start_hub,
    wait_until,
)
from proxyreport import BURSTS, FULL, LIST_CONCURRENCY, LIST_ROUNDS, QUICK, SMALL_PATH, Results, report

SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"
LIST_NS = "bench-list"
WATCH_NS = "bench-watch"
CM_BYTES = 1_000_000  # one ConfigMap's payload; the apiserver caps a ConfigMap at 1 MiB
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
