"""Propagation: a Subscription until every Description is Success, compared with applying directly.

Everything runs for real on this machine: a parent and two child control planes (etcd, kube-apiserver,
kube-controller-manager), the CRDs and bootstrap token installed as an admin would, `clusternet-hub` as a
process (own TLS certificate, `--resync-interval=30`) and two `clusternet-agent` processes:

* child1: `--cluster-sync-mode=Dual --feature-gates=AppPusher=true,SocketConnection=true` with a tunnel to
  the hub's port: the hub pushes its Descriptions through the tunnel;
* child2: `--cluster-sync-mode=Pull` (`--description-resync-frequency=30s`): its agent pulls.

Scenarios (the feeds are always a Namespace plus 3 ConfigMaps, 3 Services and 3 Deployments with 0 replicas):

1. Real children. Per iteration the feeds and a Subscription selecting `bench=real` are written to a
   directory and `kubectl-clusternet --kubeconfig <parent> apply -f <dir>` (as `python -m clusternet_kubectl`,
   this checkout's code, which the console script also runs) is run.
   Timed from the start of that command, and separately from the moment the Subscription exists on the
   parent, until both Descriptions have status.phase Success with all 10 objects. Interleaved with the
   direct baseline: the same 10 objects (other names) server-side applied with a plain client to both
   children at once (each child in order, Namespace first, like `kubectl apply`), and the same again with
   `kubectl apply --server-side -f <dir>` per child from the command line, which is what the figure that
   includes our CLI is compared with (command line against command line). One untimed warm-up
   iteration of each comes first; each timed iteration deletes its Subscription and waits for the
   clean-up before the next.
2. Simulated clusters. N ManagedClusters created on the parent by this bench (no agent), each in its own
   namespace `sim-<n>` with status Ready, appPusher true and a `child-cluster-deployer` Secret holding
   child1's admin credentials, so the hub pushes straight to child1's API server. One Localization per
   feed and cluster (JSONPatch, created before the Subscription) moves that cluster's copy into namespace
   `sim-<n>` of child1. Timed from the Subscription existing until each Description is Success (P50/P99
   over clusters, max = time to all). Direct baseline: the same N x 10 objects applied to child1 (namespaces
   `sim-<n>-direct`) by a plain client per simulated cluster (each cluster its own connections, as for
   separate clusters), 8 clusters at a time.

Times come from watches on the parent (Subscriptions and Descriptions), timestamped on arrival in this
process. Percentiles are nearest-rank (with 10 samples P99 is the maximum). For the largest simulated run
the bench also reports where the time goes: when the hub created the Descriptions versus when each became
Success, the parent's and child1's API requests (apiserver_request_total) and CPU per process.

    .venv/bin/python bench/propagation.py            # 10 iterations, 50 and 200 (or 100) simulated clusters
    .venv/bin/python bench/propagation.py --quick    # 3 iterations, 20 simulated clusters
    .venv/bin/python bench/propagation.py --keep     # keep the work directory with all logs
    .venv/bin/python bench/propagation.py --profile-hub   # py-spy the hub during the largest simulated run
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime
import functools
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube, Obj
from clusternet_testing.controlplane import ControlPlane
from common import (
    SPAWNED,
    agent,
    check_alive,
    install_parent,
    loadavg,
    machine_info,
    percentile,
    run_bench,
    spawn,
    start_hub,
)
from feeds import (
    DIRECT_CONCURRENCY,
    apply_in_order,
    feed_of,
    moved,
    run_kubectl_apply,
    run_plugin,
    subscription,
    write_feed_dir,
)
from measure import (
    QUIET_CPU,
    QUIET_WAITS,
    bounded,
    cpu_accounting,
    plane_pids,
    request_counts,
    start_profile,
    stop_profile,
    until_quiet,
)
from observe import Observer, namespaces_gone
from propagationreport import FEEDS, RealSample, Results, SimRun, report, s

APPS = known.APPS_API_VERSION
CLUSTERS = known.CLUSTERS_API_VERSION
DIRECT_SUFFIX, DIRECT_AFTER_SUFFIX = "-direct", "-direct2"  # namespaces of the direct runs in child1
TIME_BUDGET_S = 570.0  # full mode must finish within 10 minutes, teardown included


@dataclass(frozen=True)
class Plan:
    iterations: int
    sim_sizes: tuple[int, ...]  # the last one may shrink to fit the time budget
    fallback_size: int | None = None


FULL = Plan(iterations=10, sim_sizes=(50, 200), fallback_size=100)
QUICK = Plan(iterations=3, sim_sizes=(20,))
QUIET_AFTER_BULK_S = 90.0  # after hundreds of new namespaces child1's controllers need longer


# --- what is deployed ------------------------------------------------------------------------------------


def app_objects(namespace: str) -> list[Obj]:
    """A Namespace and 9 objects in it: 3 ConfigMaps, 3 Services, 3 Deployments scaled to 0."""
    objects: list[Obj] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for i in range(3):
        app = {"app": f"web-{i}"}
        objects += [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"config-{i}", "namespace": namespace},
             "data": {"index": str(i), "greeting": "hello from the propagation bench"}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"web-{i}", "namespace": namespace},
             "spec": {"selector": app, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"web-{i}", "namespace": namespace},
             "spec": {"replicas": 0, "selector": {"matchLabels": app},
                      "template": {"metadata": {"labels": app},
                                   "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                            "ports": [{"containerPort": 8080,
                                                                       "protocol": "TCP"}]}]}}}},
        ]
    return objects


# --- scenario 1: the two real children -------------------------------------------------------------------


async def real_iteration(name: str, parent: ControlPlane, parent_kube: Kube, children: list[Kube],
                         observer: Observer, workdir: Path, direct_first: bool,
                         child_planes: list[ControlPlane], quiet: dict[str, int]) -> RealSample:
    objects = app_objects(name)
    directory = write_feed_dir(workdir / "feeds" / name, objects, subscription(name, {"bench": "real"}, objects))
    direct_objects = app_objects(f"{name}-direct")
    cli_dir = write_feed_dir(workdir / "feeds" / f"{name}-kubectl", app_objects(f"{name}-kubectl"), None)

    async def direct_cli() -> float:
        await until_quiet(quiet, "kubectl apply")
        t0 = time.monotonic()
        await asyncio.gather(*(run_kubectl_apply(cli_dir, cp) for cp in child_planes))
        return time.monotonic() - t0

    async def clusternet() -> tuple[float, float, float, float, dict[str, float], dict[str, float]]:
        await until_quiet(quiet, "kubectl clusternet apply")
        t0 = time.monotonic()
        code, output = await run_plugin(directory, parent)
        t_exit = time.monotonic()
        if code != 0:
            raise RuntimeError(f"kubectl-clusternet apply failed ({code}):\n{output}")
        track = await observer.all_success(name, len(children), limit_s=90)
        assert track.seen is not None
        done = max(track.success.values())
        return done - t0, done - track.seen, track.seen - t0, t_exit - t0, {
            ns: t - track.seen for ns, t in track.success.items()}, {
            ns: t - track.seen for ns, t in track.created.items()}

    async def direct() -> float:
        await until_quiet(quiet, "direct (in-process)")
        t0 = time.monotonic()
        await asyncio.gather(*(apply_in_order(k, direct_objects) for k in children))
        return time.monotonic() - t0

    if direct_first:
        d, d_cli = await direct(), await direct_cli()
        total, from_sub, cli, cli_exit, per_cluster, created = await clusternet()
    else:
        total, from_sub, cli, cli_exit, per_cluster, created = await clusternet()
        d, d_cli = await direct(), await direct_cli()
    # clean up before the next iteration, so every iteration starts from the same state
    await parent_kube.delete(APPS, "Subscription", name, "default")
    for kube in children:
        await kube.delete("v1", "Namespace", f"{name}-direct")
        await kube.delete("v1", "Namespace", f"{name}-kubectl")
    await observer.all_gone(name, limit_s=90)
    await namespaces_gone(children, name, limit_s=60)
    return RealSample(total, from_sub, cli, cli_exit, per_cluster, created, d, d_cli)


# --- scenario 2: simulated clusters ----------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def create_sim_cluster(parent: Kube, ns: str, child1: Credentials, feeds: list[dict[str, str]],
                             tag: str) -> None:
    """A ManagedCluster with no agent: Ready, appPusher, push credentials of child1, Localizations to `ns`."""
    cluster_id = str(uuid.uuid4())
    await parent.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
        "bench": "sim"}}})
    await parent.create({"apiVersion": CLUSTERS, "kind": "ManagedCluster", "metadata": {
        "name": ns, "namespace": ns, "labels": {"bench": "sim", known.LABEL_CLUSTER_ID: cluster_id}},
        "spec": {"clusterId": cluster_id, "syncMode": "Push", "clusterType": "StandardCluster"}})
    await parent.patch(CLUSTERS, "ManagedCluster", ns, {"status": {
        "appPusher": True, "heartbeatFrequencySeconds": 3600, "lastObservedTime": now_rfc3339(),
        "k8sVersion": "v1.20.2", "healthz": True, "livez": True, "readyz": True,
        "conditions": [{"type": known.CONDITION_READY, "status": "True", "reason": known.REASON_READY,
                        "message": "simulated by bench/propagation.py", "lastTransitionTime": now_rfc3339()}]}},
        ns, subresource="status")
    data = {"token": (child1.token or "").encode(), "ca.crt": child1.ca_pem or b"",
            "apiserver-advertise-url": child1.server.encode()}
    await parent.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                         "metadata": {"name": "child-cluster-deployer", "namespace": ns},
                         "data": {k: base64.b64encode(v).decode() for k, v in data.items()}})
    for i, feed in enumerate(feeds):
        path = "/metadata/name" if feed["kind"] == "Namespace" else "/metadata/namespace"
        await parent.create({"apiVersion": APPS, "kind": "Localization",
                             "metadata": {"name": f"{tag}-{i}", "namespace": ns},
                             "spec": {"overridePolicy": "ApplyLater", "feed": feed, "overrides": [{
                                 "name": "own-namespace", "type": "JSONPatch",
                                 "value": json.dumps([{"op": "replace", "path": path, "value": ns}])}]}})


async def sim_round(size: int, first: int, tag: str, plan: Plan, parent: ControlPlane, parent_kube: Kube,
                    child1: ControlPlane, child1_kube: Kube, observer: Observer, workdir: Path,
                    pids: dict[str, int], quiet: dict[str, int], profile: bool) -> SimRun:
    names = [f"sim-{first + k}" for k in range(size)]
    source_ns = f"bench-{tag}"
    objects = app_objects(source_ns)
    feeds = [feed_of(o) for o in objects]
    t_setup = time.monotonic()
    # the templates, stored by the real plugin (no Subscription yet)
    code, output = await run_plugin(write_feed_dir(workdir / "feeds" / tag, objects, None), parent)
    if code != 0:
        raise RuntimeError(f"storing the templates failed:\n{output}")
    creds = Credentials.from_kubeconfig(child1.kubeconfig)
    await bounded([functools.partial(create_sim_cluster, parent_kube, ns, creds, feeds, tag) for ns in names],
                  DIRECT_CONCURRENCY)
    # the hub's caches are full; a direct run that starts before the machine is quiet is left out of the baseline
    waited = await until_quiet(quiet, f"direct to {size} (after set-up)", QUIET_AFTER_BULK_S)
    before_valid = waited <= QUIET_AFTER_BULK_S
    setup_s = time.monotonic() - t_setup
    print(f"    set-up of {size} clusters ({size * (4 + FEEDS)} objects) took {setup_s:.1f} s", flush=True)

    async def direct(suffix: str) -> tuple[float, list[float]]:
        async def direct_to(ns: str) -> None:
            # a client of its own per simulated cluster, as N separate clusters need N connections (the hub
            # pays the same); one shared client would reuse 8 warm connections for all N "clusters"
            async with Kube(creds, user_agent="bench-direct") as own:
                await apply_in_order(own, moved(objects, f"{ns}{suffix}"))

        t0 = time.monotonic()
        done = await bounded([functools.partial(direct_to, ns) for ns in names], DIRECT_CONCURRENCY)
        return time.monotonic() - t0, [t - t0 for t in done]

    # the direct baseline before and after ours, so that a machine getting slower or faster during the round
    # (this one is shared) weighs on both sides alike
    direct_cpu: dict[str, float] = {}
    with cpu_accounting(pids, direct_cpu):
        direct_total, direct_each = await direct(DIRECT_SUFFIX)
    print(f"    direct: {size * FEEDS} objects in {direct_total:.2f} s", flush=True)
    # child1's controllers create ReplicaSets, Endpoints and ServiceAccounts for the direct objects meanwhile
    quiet_s = await until_quiet(quiet, f"Clusternet to {size}", QUIET_AFTER_BULK_S)

    sub = f"sim-{tag}"
    metered = {"parent": parent_kube, "child1": child1_kube}
    before = {name: await request_counts(k) for name, k in metered.items()}
    cpu: dict[str, float] = {}
    spy = await start_profile(pids["hub"], workdir / f"hub-profile-{tag}.txt") if profile else None
    with cpu_accounting(pids, cpu):
        await parent_kube.create(subscription(sub, {"bench": "sim"}, objects))
        track = await observer.all_success(sub, size, limit_s=max(120.0, size * 1.5))
    profile_top = await stop_profile(spy) if spy else []
    after = {name: await request_counts(k) for name, k in metered.items()}
    assert track.seen is not None
    wrong = [ns for ns, statuses in track.statuses.items()
             if any((st.get("name") if st.get("kind") == "Namespace" else st.get("namespace")) != ns
                    for st in statuses)]
    run = SimRun(size=size, success=[t - track.seen for t in track.success.values()],
                 created=[t - track.seen for t in track.created.values()],
                 push=[track.success[ns] - track.created[ns] for ns in track.success],
                 direct_total=direct_total, direct_each=direct_each, setup_s=setup_s, quiet_s=quiet_s,
                 requests={name: after[name] - before[name] for name in metered}, cpu=cpu, direct_cpu=direct_cpu,
                 profile=profile_top, direct_valid=before_valid)
    if wrong:
        run.note = f"{len(wrong)} clusters got objects outside their own namespace (Localization missed)"
    print(f"    clusternet: {size} Descriptions Success, the last after {max(run.success):.2f} s", flush=True)
    waited = await until_quiet(quiet, f"direct to {size} (after Clusternet)", QUIET_AFTER_BULK_S)
    run.direct_after_valid = waited <= QUIET_AFTER_BULK_S
    run.direct_after, _ = await direct(DIRECT_AFTER_SUFFIX)
    print(f"    direct again: {size * FEEDS} objects in {run.direct_after:.2f} s"
          f"{'' if run.direct_after_valid else ' (started busy: left out of the baseline)'}", flush=True)
    return run


async def remove_sim_round(sub: str, size: int, first: int, parent_kube: Kube, child1_kube: Kube,
                           observer: Observer) -> float:
    """Delete the round's Subscription (the hub cleans child1 up), then its clusters; returns clean-up time."""
    t0 = time.monotonic()
    await parent_kube.delete(APPS, "Subscription", sub, "default")
    await observer.all_gone(sub, limit_s=max(120.0, size * 1.0))
    cleanup = time.monotonic() - t0
    names = [f"sim-{first + k}" for k in range(size)]
    await bounded([functools.partial(parent_kube.delete, CLUSTERS, "ManagedCluster", ns, ns) for ns in names],
                  DIRECT_CONCURRENCY)
    await bounded([functools.partial(parent_kube.delete, "v1", "Namespace", ns) for ns in names], DIRECT_CONCURRENCY)
    await bounded([functools.partial(child1_kube.delete, "v1", "Namespace", f"{ns}{suffix}") for ns in names
                   for suffix in (DIRECT_SUFFIX, DIRECT_AFTER_SUFFIX)], DIRECT_CONCURRENCY)
    deadline = time.monotonic() + 60
    while await parent_kube.list(CLUSTERS, "ManagedCluster", label_selector="bench=sim"):
        if time.monotonic() > deadline:
            raise TimeoutError("simulated ManagedClusters were not deleted within 60 s")
        await asyncio.sleep(0.3)
    t_ns = time.monotonic()
    gone = await namespaces_gone([child1_kube, parent_kube], "sim-", limit_s=240)
    print(f"    namespaces of the round {'gone' if gone else 'still there'} after {time.monotonic() - t_ns:.0f} s",
          flush=True)
    return cleanup


# --- set-up ----------------------------------------------------------------------------------------------


def start_processes(parent: ControlPlane, child1: ControlPlane, child2: ControlPlane, workdir: Path) -> None:
    """CRDs, bootstrap token, clusternet-reserved, the hub and both agents (as the integration tests do)."""
    install_parent(parent)
    parent.apply_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": known.RESERVED_NAMESPACE}})
    hub = start_hub(parent, workdir, "--resync-interval=30")
    # Heartbeats every 10 s instead of the tests' 1 s / 2 s (less background load) or the default 3 min: the hub's
    # SocketConnected patch can overwrite the agent's first Ready condition, and the next heartbeat restores it.
    spawn(agent(child1, parent, workdir, "child1", "--cluster-sync-mode=Dual",
                "--feature-gates=AppPusher=true,SocketConnection=true", *hub.tunnel_args, cadence=("5s", "10s")))
    spawn(agent(child2, parent, workdir, "child2", "--cluster-sync-mode=Pull", "--feature-gates=SocketConnection=true",
                "--description-resync-frequency=30s", *hub.tunnel_args, cadence=("5s", "10s")))


async def wait_real_clusters(parent_kube: Kube, children: list[ControlPlane]) -> dict[str, Obj]:
    """Both ManagedClusters Ready, child1 pushed to (appPusher, tunnel up, Secret), child2 pulling."""
    ids = {c.name: str(c.request_json("GET", "/api/v1/namespaces/kube-system")["metadata"]["uid"])  # type: ignore[index]
           for c in children}
    deadline = time.monotonic() + 120

    def condition(mc: Obj, ctype: str) -> bool:
        return any(c.get("type") == ctype and c.get("status") == "True"
                   for c in (mc.get("status") or {}).get("conditions") or [])

    while True:
        check_alive(SPAWNED)
        mcs = {str(mc["spec"]["clusterId"]): mc for mc in await parent_kube.list(CLUSTERS, "ManagedCluster")}
        found = {name: mcs.get(cid) for name, cid in ids.items()}
        mc1, mc2 = found.get("child1"), found.get("child2")
        if mc1 and mc2 and condition(mc1, known.CONDITION_READY) and condition(mc2, known.CONDITION_READY) and \
                condition(mc1, known.CONDITION_SOCKET) and (mc1.get("status") or {}).get("appPusher") is True and \
                not (mc2.get("status") or {}).get("appPusher") and await parent_kube.get(
                    "v1", "Secret", "child-cluster-deployer", mc1["metadata"]["namespace"]):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("clusters not ready within 120 s: " + json.dumps(
                {name: (mc or {}).get("status") for name, mc in found.items()}))
        await asyncio.sleep(0.5)
    result: dict[str, Obj] = {}
    for name, mc in found.items():
        assert mc is not None
        await parent_kube.patch(CLUSTERS, "ManagedCluster", mc["metadata"]["name"],
                                {"metadata": {"labels": {"bench": "real"}}}, mc["metadata"]["namespace"])
        result[name] = mc
    return result


# --- main ------------------------------------------------------------------------------------------------


async def bench(plan: Plan, planes: list[ControlPlane], workdir: Path, started: float, profile: bool) -> Results:
    parent, child1, child2 = planes
    res = Results(machine_info(parent))
    pids = {p.name: p.proc.pid for p in SPAWNED if p.proc is not None}
    for plane in (parent, child1):
        pids.update(plane_pids(plane))
    # what must be idle before a timed phase: every process of the set-up but this one
    quiet = {**pids, **plane_pids(child2)}
    pids["bench"] = os.getpid()
    async with (Kube(Credentials.from_kubeconfig(parent.kubeconfig), user_agent="bench") as parent_kube,
                Kube(Credentials.from_kubeconfig(child1.kubeconfig), user_agent="bench") as k1,
                Kube(Credentials.from_kubeconfig(child2.kubeconfig), user_agent="bench") as k2):
        print("waiting for both clusters to register (child1 pushed to through the tunnel, child2 pulling) ...",
              flush=True)
        mcs = await wait_real_clusters(parent_kube, [child1, child2])
        how = {"child1": "hub pushes through the tunnel", "child2": "agent pulls"}
        res.cluster_names = {mc["metadata"]["namespace"]: f"{name} ({how[name]})" for name, mc in mcs.items()}
        async with Observer(parent_kube, FEEDS) as observer:
            print(f"real children: 1 warm-up + {plan.iterations} iterations, alternating with the direct "
                  "baseline ...", flush=True)
            for i in range(plan.iterations + 1):
                sample = await real_iteration(f"bench-app-{i}", parent, parent_kube, [k1, k2], observer, workdir,
                                              direct_first=i % 2 == 1, child_planes=[child1, child2],
                                              quiet=quiet)
                check_alive(SPAWNED)
                if i == 0:
                    res.warmup = sample
                else:
                    res.real.append(sample)
                print(f"  {'warm-up' if i == 0 else f'#{i}'}: incl. CLI {s(sample.total)}, from Subscription "
                      f"{s(sample.from_sub)}, direct {s(sample.direct)}, kubectl apply {s(sample.direct_cli)}",
                      flush=True)
            first = 0
            sizes = list(plan.sim_sizes)
            for k, size in enumerate(sizes):
                if k == len(sizes) - 1 and k > 0 and plan.fallback_size:
                    # each round costs about (clusters x a per-cluster cost) and grows faster than linearly
                    previous = res.sims[-1]
                    spent = (previous.setup_s + previous.direct_total + previous.direct_after + 2 * previous.quiet_s
                             + max(previous.success))
                    predicted = spent * size / previous.size * 1.25  # the last round is not cleaned up
                    left = TIME_BUDGET_S - (time.monotonic() - started)
                    if predicted > left:
                        res.notes.append(f"{size} simulated clusters would take about {predicted:.0f} s, "
                                         f"{left:.0f} s of the 10-minute budget were left: ran "
                                         f"{plan.fallback_size} instead")
                        size = plan.fallback_size
                    else:
                        res.notes.append(f"{size} simulated clusters fitted the time budget "
                                         f"(predicted {predicted:.0f} s, {left:.0f} s left)")
                    print(f"  {res.notes[-1]}", flush=True)
                tag = f"sim{size}"
                print(f"{size} simulated clusters ...", flush=True)
                run = await sim_round(size, first, tag, plan, parent, parent_kube, child1, k1, observer, workdir,
                                      pids, quiet, profile and k == len(sizes) - 1)
                res.sims.append(run)
                check_alive(SPAWNED)
                if k < len(sizes) - 1:
                    run.cleanup_s = await remove_sim_round(f"sim-{tag}", size, first, parent_kube, k1, observer)
                    print(f"    clean-up: {run.cleanup_s:.1f} s", flush=True)
                first += size
            if observer.relists:
                res.notes.append(f"the bench's watches were re-listed {observer.relists} time(s)")
    if QUIET_WAITS:
        waits = [w for _, w, _ in QUIET_WAITS]
        late = [f"{what} ({w:.0f} s)" for what, w, gave_up in QUIET_WAITS if gave_up]
        res.notes.append(
            f"before each of the {len(waits)} timed phases the bench waited until all processes together used "
            f"< {QUIET_CPU:.0%} of a core: P50 {percentile(waits, 50):.1f} s, max {max(waits):.1f} s"
            + (f"; still busy when it stopped waiting: {', '.join(late)}" if late else ""))
    res.machine["load avg at end"] = loadavg()
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 iterations and 20 simulated clusters (< 2 min)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    parser.add_argument("--profile-hub", action="store_true", help="py-spy the hub during the largest simulated run")
    parser.add_argument("--iterations", type=int, help="real-children iterations (overrides the mode's)")
    parser.add_argument("--sim", type=int, nargs="*", help="simulated cluster counts (overrides the mode's)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.iterations is not None or args.sim is not None:
        plan = dataclasses.replace(plan, iterations=plan.iterations if args.iterations is None else args.iterations,
                                   sim_sizes=plan.sim_sizes if args.sim is None else tuple(args.sim),
                                   fallback_size=None if args.sim is not None else plan.fallback_size)
    started = time.monotonic()

    def body(planes: list[ControlPlane], workdir: Path) -> None:
        print(f"  up after {time.monotonic() - started:.0f} s; starting clusternet-hub and two agents ...", flush=True)
        start_processes(planes[0], planes[1], planes[2], workdir)
        res = asyncio.run(bench(plan, planes, workdir, started, args.profile_hub))
        print()
        print(report(res))
        print(f"\n(total {time.monotonic() - started:.0f} s)")

    return run_bench(["parent", "child1", "child2"], "a parent and two child control planes",
                     "clusternet-bench-propagation-", args.keep, body)


if __name__ == "__main__":
    raise SystemExit(main())
