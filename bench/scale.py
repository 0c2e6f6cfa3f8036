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
   (its clusternet_socket_connections gauge), and until every cut tunnel attached again, the hub has no
   SocketConnected mark left to write (clusternet_socket_marks_pending) and every ManagedCluster says True: a
   cut whose tunnel is back before its mark is written is not written (since 2026-12-08; before, every
   cut turned the condition False and the measure waited for each one's True).

Throughout: no live cluster may ever show Ready other than True, and there must be exactly one Description
per cluster (none lost, none duplicated). With Clusternet's default 3-minute heartbeat the hub's grace
period is 9 minutes, longer than a round: a silent cluster is not expected to turn Unknown within it.

    .venv/bin/python bench/scale.py                      # --sizes 20,100 (make bench: ~7 min)
    .venv/bin/python bench/scale.py --sizes 500          # one size (1000: see bench/README.md)
    .venv/bin/python bench/scale.py --sizes 100 --profile-hub   # py-spy the hub during registration+deploy
    .venv/bin/python bench/scale.py --sizes 1000 --profile-parent registration   # the parent's kube-apiserver
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube
from clusternet_testing.controlplane import ControlPlane
from common import (
    Hub,
    check_alive,
    install_parent,
    loadavg,
    machine_info,
    run_bench,
    start_hub,
)
from feeds import DIRECT_CONCURRENCY, apply_in_order, feed_of, moved, run_plugin, write_feed_dir
from measure import (
    api_server_profile,
    bounded,
    cpu_accounting,
    cpu_seconds,
    memory_dump,
    memory_hook,
    plane_pids,
    request_counts,
    start_profile,
    stop_profile,
)
from scalefaults import final_checks, hub_restart, outage, storm
from scalefleet import AGENTS_PER_WORKER, Worker, agent_namespace, all_workers, rss_kb, seed_agents
from scalereport import SizeResult, p, report, s
from scalerun import (
    APPS,
    BUSY_MARGIN,
    FEEDS,
    SUB,
    WARMUP,
    Run,
    app_namespace,
    app_objects,
    deployed_gen,
    globalization,
    override_to,
    settle,
)
from scalewatch import Cluster, Watcher, created_despite_overload, tunnels_held

log = logging.getLogger("bench.scale")


async def direct_run(child_creds: Credentials, n: int, suffix: str) -> float:
    async def one(i: int) -> None:
        async with Kube(child_creds, user_agent="bench-direct") as own:
            await apply_in_order(own, moved(app_objects("x"), f"{app_namespace(i)}{suffix}"))

    t0 = time.monotonic()
    await bounded([functools.partial(one, i) for i in range(n)], DIRECT_CONCURRENCY)
    return time.monotonic() - t0


async def start_workers(n: int, args: argparse.Namespace, parent: ControlPlane, child: ControlPlane, hub: Hub,
                        workdir: Path, ck: Kube, watcher: Watcher) -> list[Worker]:
    """The worker processes with their agents (none started), after a warm-up (not counted): two clusters of their
    own register first, as a hub that has been running for a while has its watches, discovery and connections
    to the parent up already."""
    n_workers = max(1, -(-n // AGENTS_PER_WORKER))
    agents = [{"index": c.index, "cluster_id": c.cluster_id, "name": f"scale-{c.index}",
               "namespace": agent_namespace(c.index)} for c in watcher.by_id.values()]
    base = {"parent_url": parent.url, "parent_ca": str(parent.ca_file), "hub_port": hub.url.rsplit(":", 1)[1],
            "hub_ca": str(hub.ca), "child_kubeconfig": str(child.kubeconfig), "collect": args.collect,
            "report": args.report}
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
    return workers


# --- the phases of one size ----------------------------------------------------------------------------------


async def register(r: Run) -> None:
    """1. Registration: every agent starts at once; then tunnels and push credentials, before anything is deployed."""
    n, hub, pk, hub_pid, watcher, workers = r.n, r.hub, r.pk, r.hub_pid, r.watcher, r.workers
    by_id, res = r.by_id, r.res
    print(f"  registration: {n} agents start at once ...", flush=True)
    # where registration's time goes: every process's CPU and the parent's requests, from the start to the last
    # Ready (at 1,000 on 2 cores the approvals took 4 times their 50-QPS floor: the cores, or the hub?)
    r.pids = {**plane_pids(r.parent), **plane_pids(r.child), "hub": hub_pid,
              **{f"worker {w.proc.name}": w.popen.pid for w in workers}, "bench": os.getpid()}

    def registered() -> int:
        return sum(c.ready_at is not None for c in by_id.values())

    requests0 = await request_counts(pk)
    profiling = parent_profile(r, "registration")
    t0 = time.monotonic()
    with cpu_accounting(r.pids, res.phase_cpu.setdefault("registration", {})):
        await all_workers(workers, "start")
        try:
            await watcher.until(lambda: registered() == n, max(120.0, n * 0.6), "all clusters Ready",
                                lambda: f"({registered()}/{n})")
        except TimeoutError as e:
            res.notes.append(str(e))
    requests = await request_counts(pk) - requests0
    res.notes.append(f"parent requests from the start to the last Ready: {sum(requests.values())} (" + ", ".join(
        f"{k} {v}" for k, v in requests.most_common(8)) + ")")
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
        # the window runs from now: timed from t0, it ran out with the registrations that took longer (1,000
        # clusters: P99 302 s), which the report took for tunnels missing
        res.tunnels_up_s = await tunnels_held(hub, n + WARMUP, t0, time.monotonic() - t0 + max(120.0, n * 0.3))
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
    if profiling is not None:  # after the tunnels' time is taken: awaiting it may outlast the phase
        res.parent_profiles["registration"] = await profiling


def parent_profile(r: Run, phase: str) -> asyncio.Task[list[str]] | None:
    """The parent kube-apiserver's CPU profile over --profile-seconds from --profile-after into `phase`, if asked."""
    if phase not in r.args.profile_parent:
        return None
    out = r.workdir / f"parent-{phase}-{r.n}.pprof"

    async def later() -> list[str]:
        await asyncio.sleep(r.args.profile_after)
        return await api_server_profile(r.parent.kubeconfig, r.args.profile_seconds, out)

    return asyncio.create_task(later())


async def propagate(r: Run) -> None:
    """2. Propagation: the Subscription to every cluster, between two direct runs of the same objects."""
    n, args, parent, workdir, pk = r.n, r.args, r.parent, r.workdir, r.pk
    child_creds, hub_pid, watcher, by_id, res = r.child_creds, r.hub_pid, r.watcher, r.by_id, r.res
    r.objects = objects = app_objects("scale-src")
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

    r.live = live = [c for c in by_id.values() if c.namespace]
    await bounded([functools.partial(localize, c) for c in live], DIRECT_CONCURRENCY)
    await settle(args.settle)

    pids = r.pids

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
        r.spy = await start_profile(hub_pid, workdir / f"hub-profile-{n}.txt")
        res.profile_window = "propagation (Subscription to the last Description Success)"
    profiling = parent_profile(r, "propagation")
    with cpu_accounting(pids, res.phase_cpu.setdefault("propagation", {})):
        t_sub = time.monotonic()
        await pk.create({"apiVersion": APPS, "kind": "Subscription", "metadata": {"name": SUB, "namespace": "default"},
                         "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"bench": "scale"}}}],
                                  "feeds": [feed_of(o) for o in objects]}})
        try:
            await watcher.until(lambda: deployed_gen(r, {}) == len(live), max(180.0, n * 1.0),
                                "all Descriptions Success", lambda: f"({deployed_gen(r, {})}/{len(live)})")
        except TimeoutError as e:
            res.notes.append(str(e))
    if r.spy is not None and args.profile_hub == "propagation":
        res.profile, r.spy = await stop_profile(r.spy), None
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
    if profiling is not None:  # ends before the direct run after ours starts
        res.parent_profiles["propagation"] = await profiling
    await settle(args.settle)
    await direct("after", "-direct2")


async def change_override(r: Run) -> None:
    """3. Override change: the Globalization's value changes; until every Description is re-applied."""
    res = r.res
    await settle(r.args.settle)
    print("  override change: the Globalization's value 1 -> 2 ...", flush=True)
    res.override, res.override_checked = await override_to(r, "2")
    print(f"    {len(res.override)}/{len(r.live)} re-applied; P50 {s(p(res.override, 50))}, "
          f"all {s(max(res.override) if res.override else None)}; {res.override_checked}", flush=True)
    res.rss_phases["override re-applied"] = rss_kb(r.hub_pid) / 1024
    if r.spy is not None:
        res.profile = await stop_profile(r.spy)


STEADY_RSS_EVERY = 10.0  # seconds between the hub's RSS samples in the steady window


async def steady_state(r: Run) -> None:
    """4. Steady state: the hub's RSS and CPU, the parent's requests per cluster."""
    n, args, workdir, pk = r.n, r.args, r.workdir, r.pk
    hub_pid, workers, by_id, res = r.hub_pid, r.workers, r.by_id, r.res
    await settle(args.settle)
    print(f"  steady state for {args.steady:.0f} s ...", flush=True)
    counts0 = await request_counts(pk)
    dump = workdir / "hub-memory.txt"
    if args.trace_hub_memory:  # the baseline the end of the window is compared with
        await memory_dump(hub_pid, dump)
        dump.unlink(missing_ok=True)
    cpu0, t_st = cpu_seconds(hub_pid), time.monotonic()
    while (left := t_st + args.steady - time.monotonic()) > 0:  # RSS sampled through the window: a leak's slope
        res.steady_rss.append((time.monotonic() - t_st, rss_kb(hub_pid) / 1024))
        await asyncio.sleep(min(STEADY_RSS_EVERY, left))
    res.steady_rss.append((time.monotonic() - t_st, rss_kb(hub_pid) / 1024))
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
        res.memory = await memory_dump(hub_pid, dump)
    status = await all_workers(workers, "status")
    res.worker_rss_mb = sum(st["rss_kb"] for st in status) / 1024
    print(f"    hub RSS {res.hub_rss_mb:.0f} MB (peak {res.hub_peak_mb:.0f}), hub CPU "
          f"{res.hub_cpu_per_cluster_min * 1000:.1f} ms per cluster per minute; parent: "
          f"{res.parent_heartbeat_per_cluster_min:.2f} heartbeat requests per cluster per minute "
          f"({res.parent_total_per_cluster_min:.2f} in all)", flush=True)


async def run_size(n: int, args: argparse.Namespace, parent: ControlPlane, child: ControlPlane, hub: Hub,
                   workdir: Path) -> SizeResult:
    t_begin = time.monotonic()
    res = SizeResult(n, max(1, -(-n // AGENTS_PER_WORKER)), loadavg())
    by_id = {cid: Cluster(i, cid) for i, cid in enumerate(str(uuid.uuid4()) for _ in range(n))}
    assert hub.proc.proc is not None
    child_creds = Credentials.from_kubeconfig(child.kubeconfig)
    async with (Kube(Credentials.from_kubeconfig(parent.kubeconfig), user_agent="bench") as pk,
                Kube(child_creds, user_agent="bench") as ck):
        print(f"  seeding {n} agent namespaces and keys in the child ...", flush=True)
        await seed_agents(ck, n)
        watcher = Watcher(pk, by_id, SUB, FEEDS)
        await watcher.start()
        workers = await start_workers(n, args, parent, child, hub, workdir, ck, watcher)
        r = Run(n, args, parent, child, hub, workdir, pk, ck, child_creds, hub.proc.proc.pid, watcher, workers, by_id,
                res)
        if args.profile_hub == "all":
            r.spy = await start_profile(r.hub_pid, workdir / f"hub-profile-{n}.txt")
            res.profile_window = "registration to override"
        r.cpu_hub_0 = cpu_seconds(r.hub_pid)
        res.hub_idle_mb = rss_kb(r.hub_pid) / 1024
        for phase in (register, propagate, change_override, steady_state, outage, storm, final_checks, hub_restart):
            await phase(r)
        await all_workers(workers, "exit")
        await watcher.stop()
    res.wall_s = time.monotonic() - t_begin
    return res


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
    parser.add_argument("--profile-parent", action="append", default=[], choices=("registration", "propagation"),
                        help="the parent kube-apiserver's CPU profile (go tool pprof) during this phase (repeatable)")
    parser.add_argument("--profile-seconds", type=int, default=60, help="... over S seconds (60)")
    parser.add_argument("--profile-after", type=float, default=0.0, help="... from S seconds into the phase (0)")
    parser.add_argument("--out", help="also write the report here (make bench: bench/results/<date>-scale.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work directories (logs)")
    parser.add_argument("--trace-hub-memory", action="store_true",
                        help="tracemalloc in the hub; its top allocation sites at steady state (slows the hub)")
    parser.add_argument("--hub-arg", action="append", default=[], help="an extra clusternet-hub flag (repeatable)")
    args = parser.parse_args(argv)
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
