"""Propagation, the Helm case: a 10-template chart to both children, compared with installing it directly.

Kept apart from bench/propagation.py (large already) but on its set-up, imported from there: a parent and two
child control planes, `clusternet-hub` and two agents, child1 in Dual mode with AppPusher and a tunnel (the hub
installs through a loopback TLS relay into the tunnel), child2 in Pull mode (its agent installs, reacting to
HelmRelease watch events). The chart (`build_chart`, 10 ConfigMap templates) is served by a classic Helm
repository on loopback (`ChartRepo`) in this process. Per iteration:

* Ours: a HelmChart (own name and targetNamespace), checked by the hub until Found (not timed: that is the
  repository check), then a Subscription feeding it to both children. Timed from the moment the Subscription
  exists (the earlier of the create call's return and its arrival on a watch) until both HelmReleases are
  deployed for their current generation, as watch events on HelmReleases arrive; per child too.
* Direct: the SDK the product uses (`SdkHelmDriver`, one for the run, as the hub and the agent keep theirs)
  fetches the same chart and installs it (other release and namespace) into both children at once with their
  admin credentials. The fetch is timed too, as both deployers also fetch.

Cache hits: the hub's HelmChart check fetches with refresh (untimed), so its install finds the chart cached;
the agent and the direct driver fetched it in the warm-up, and an exact version is served from the cache. The
repository's request count in every timed window shows it.

Both sides start from a quiet machine: the set-up's processes nearly idle (`until_quiet` in bench/measure.py), then
the rest of the machine too (/proc/stat minus the set-up's CPU). An iteration during which other processes used
more than FOREIGN_LIMIT of a core is thrown away and run again (listed, never averaged in). Each iteration
uninstalls both sides (Subscription deleted until its HelmReleases are gone, release Secrets gone from the
children, namespaces deleted) before the next; one untimed warm-up comes first; ours and direct alternate.

    .venv/bin/python bench/helm.py            # 10 iterations
    .venv/bin/python bench/helm.py --quick    # 3 iterations
    .venv/bin/python bench/helm.py --keep     # keep the work directory with all logs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version
from pathlib import Path

from clusternet_api import known
from clusternet_api.helm.driver import ChartSource, ClusterAccess, ReleaseOptions
from clusternet_api.helm.sdk import SdkHelmDriver
from clusternet_api.kube import Credentials, Kube, Obj
from clusternet_testing.charts import ChartRepo, build_chart
from clusternet_testing.controlplane import ControlPlane
from common import SPAWNED, busy_seconds, check_alive, loadavg, machine_info, percentile, run_bench
from measure import QUIET_WAITS, cpu_seconds, plane_pids, until_quiet
from observe import Observer, namespaces_gone
from propagation import start_processes, wait_real_clusters
from propagationreport import s

APPS = known.APPS_API_VERSION
CHART, VERSION, TEMPLATES = "bench-chart", "0.1.0", 10
TARGET_RATIO = 2.0
FOREIGN_LIMIT = 0.5  # cores used by processes outside the set-up during a timed phase: above, it is rerun
FOREIGN_QUIET = 0.25  # ... and what counts as quiet before one
LIMIT_S = 120.0
SETTLE_WAITS: list[float] = []  # seconds waited for the rest of the machine before each timed phase
INSTALLED = re.compile(r"^(\S+ \S+) .* clusternet_api\.helm\.releases installed release (\S+): ")


# --- the rest of the machine ----------------------------------------------------------------------------


@dataclass
class Foreign:
    share: float = 0.0  # cores used by processes outside `pids` during the block (average)


@contextlib.contextmanager
def foreign_cpu(pids: dict[str, int]) -> Iterator[Foreign]:
    out = Foreign()
    t0, all0, ours0 = time.monotonic(), busy_seconds(), sum(cpu_seconds(p) for p in pids.values())
    yield out
    wall = max(time.monotonic() - t0, 1e-3)
    out.share = max(0.0, (busy_seconds() - all0) - (sum(cpu_seconds(p) for p in pids.values()) - ours0)) / wall


async def settle(pids: dict[str, int], what: str) -> None:
    """The set-up's processes nearly idle, then the rest of the machine too (waits 3 minutes at most)."""
    await until_quiet(pids, what)
    t0 = time.monotonic()
    while time.monotonic() < t0 + 180:
        with foreign_cpu(pids) as f:
            await asyncio.sleep(1.0)
        if f.share < FOREIGN_QUIET:
            SETTLE_WAITS.append(time.monotonic() - t0 - 1.0)
            return
    SETTLE_WAITS.append(time.monotonic() - t0)
    print(f"  (other processes still busy before {what}: {f.share:.2f} cores; load {loadavg()})", flush=True)


# --- watching the parent: Subscriptions and HelmReleases ------------------------------------------------


class ReleaseObserver(Observer):
    """The Observer (bench/observe.py), following HelmReleases instead of Descriptions: `created` is when a
    cluster's HelmRelease appeared, `success` when it was first deployed for its current generation."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube, feeds=1)  # Descriptions are not followed here; one release per cluster
        self.ready = {kind: asyncio.Event() for kind in ("Subscription", "HelmRelease")}

    def _on(self, kind: str, event: str, obj: Obj) -> None:
        if kind == "Subscription":
            super()._on(kind, event, obj)
            return
        now, meta = time.monotonic(), obj["metadata"]
        sub = (meta.get("labels") or {}).get(known.LABEL_SUBS_NAME)
        if not sub:
            return
        track, ns, status = self.tracks[sub], meta["namespace"], obj.get("status") or {}
        if event == "DELETED":
            track.live.discard(ns)
        else:
            track.live.add(ns)
            track.created.setdefault(ns, now)
            current = status.get("observedGeneration") == meta.get("generation")
            if current and status.get("phase") == "deployed":
                track.success.setdefault(ns, now)
            elif current and status.get("phase") == "failed":
                track.failures[ns] = str(status.get("description"))
        track.changed.set()


# --- one iteration --------------------------------------------------------------------------------------


@dataclass
class Env:
    parent: Kube
    children: dict[str, Kube]  # child1, child2
    access: dict[str, ClusterAccess]  # their admin credentials, for the direct installs
    names: dict[str, str]  # cluster namespace on the parent -> child name
    observer: ReleaseObserver
    driver: SdkHelmDriver
    repo: ChartRepo
    quiet: dict[str, int]
    logs: dict[str, Path]  # child -> the log of its deployer (the hub, child2's agent)


def installed_at(log: Path, release: str) -> float:
    """When the deployer logged that it installed `release` (<namespace>/<name>): time.time(), ms resolution."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        m = INSTALLED.match(line)
        if m and m.group(2) == release:
            return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return float("nan")


def helm_chart(name: str, repo: str, target: str) -> Obj:
    return {"apiVersion": APPS, "kind": "HelmChart", "metadata": {"name": name, "namespace": "default"},
            "spec": {"repo": repo, "chart": CHART, "version": VERSION, "targetNamespace": target}}


def subscription(name: str, chart: str) -> Obj:
    return {"apiVersion": APPS, "kind": "Subscription", "metadata": {"name": name, "namespace": "default"},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {"bench": "real"}}}],
                     "feeds": [{"apiVersion": APPS, "kind": "HelmChart", "namespace": "default", "name": chart}]}}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {limit_s:.0f} s")
        await asyncio.sleep(0.2)


async def until_found(kube: Kube, name: str) -> None:
    async def found() -> bool:
        return ((await kube.get(APPS, "HelmChart", name, "default") or {}).get("status") or {}).get("phase") == "Found"
    await eventually(found, f"HelmChart {name} Found")


async def secrets_gone(children: list[Kube], namespace: str) -> None:
    """Helm's storage (`sh.helm.release.v1.*` Secrets, label owner=helm) gone from `namespace` in the children."""
    async def gone() -> bool:
        return not any([await k.list("v1", "Secret", namespace, label_selector="owner=helm") for k in children])
    await eventually(gone, f"release Secrets gone from {namespace}")


@dataclass
class Timed:
    """One timed phase, seconds from its start: all done (`total`), each child done (`per`), when each child's
    HelmRelease appeared (`created`) and when its deployer logged the install done (`returned`)."""

    total: float
    per: dict[str, float]
    created: dict[str, float] = field(default_factory=dict)
    returned: dict[str, float] = field(default_factory=dict)
    requests: int = 0  # chart repository requests meanwhile
    foreign: float = 0.0  # cores used by other processes meanwhile


async def ours(env: Env, name: str) -> Timed:
    await env.parent.create(helm_chart(name, env.repo.url, name))
    await until_found(env.parent, name)
    await settle(env.quiet, f"ours {name}")
    before = env.repo.requests
    with foreign_cpu(env.quiet) as f:
        await env.parent.create(subscription(name, name))
        t_created = time.monotonic()
        env.observer.tracks[name].expected = len(env.children)
        track = await env.observer.until(name, lambda t: len(t.success) >= len(env.children) and t.seen is not None,
                                         LIMIT_S, f"Subscription {name}")
    assert track.seen is not None
    t0 = min(t_created, track.seen)
    wall0 = t0 + time.time() - time.monotonic()
    return Timed(max(track.success.values()) - t0, {env.names[ns]: t - t0 for ns, t in track.success.items()},
                 {env.names[ns]: t - t0 for ns, t in track.created.items()},
                 {c: installed_at(log, f"{name}/{name}") - wall0 for c, log in env.logs.items()},
                 env.repo.requests - before, f.share)


async def direct(env: Env, name: str) -> Timed:
    await settle(env.quiet, f"direct {name}")
    before = env.repo.requests
    opts = ReleaseOptions(namespace=name, create_namespace=True)

    async def install(child: str) -> tuple[str, float]:
        await env.driver.install(env.access[child], chart, name, {}, opts)
        return child, time.monotonic() - t0

    with foreign_cpu(env.quiet) as f:
        t0 = time.monotonic()
        chart = await env.driver.fetch(ChartSource(env.repo.url, CHART, VERSION))
        done = dict(await asyncio.gather(*(install(c) for c in env.access)))
    return Timed(max(done.values()), done, requests=env.repo.requests - before, foreign=f.share)


@dataclass
class Sample:
    ours: Timed  # from the Subscription
    direct: Timed  # from the start of the fetch
    cleanup: float  # Subscription deleted -> both HelmReleases gone (uninstalled)

    @property
    def foreign(self) -> float:
        return max(self.ours.foreign, self.direct.foreign)


async def iteration(env: Env, i: int, direct_first: bool) -> Sample:
    name, dname = f"bench-helm-{i}", f"bench-helm-{i}-direct"
    if direct_first:
        d = await direct(env, dname)
        o = await ours(env, name)
    else:
        o = await ours(env, name)
        d = await direct(env, dname)
    kubes = list(env.children.values())
    t0 = time.monotonic()
    await env.parent.delete(APPS, "Subscription", name, "default")
    await env.observer.all_gone(name, LIMIT_S)
    cleanup = time.monotonic() - t0
    await secrets_gone(kubes, name)
    await env.parent.delete(APPS, "HelmChart", name, "default")
    for access in env.access.values():
        await env.driver.uninstall(access, dname, dname, 60)
    await secrets_gone(kubes, dname)
    for kube in kubes:
        for ns in (name, dname):
            await kube.delete("v1", "Namespace", ns)
    await namespaces_gone(kubes, name, 60)
    return Sample(o, d, cleanup)


# --- the run and its report -----------------------------------------------------------------------------


@dataclass
class Results:
    machine: dict[str, str]
    samples: list[Sample] = field(default_factory=list)
    warmup: Sample | None = None
    discarded: list[tuple[int, Sample]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def bench(iterations: int, planes: list[ControlPlane], repo: ChartRepo) -> Results:
    parent, child1, child2 = planes
    res = Results(machine_info(parent, load=False))
    res.machine.update({"helm-python-sdk": dist_version("helm-python-sdk"), "load avg at start": loadavg()})
    quiet = {p.name: p.proc.pid for p in SPAWNED if p.proc is not None}
    for plane in planes:
        quiet.update(plane_pids(plane))
    quiet["bench"] = os.getpid()  # the direct installs run here; so does the chart repository
    logs = {"child1": next(p.log for p in SPAWNED if p.name == "hub"),
            "child2": next(p.log for p in SPAWNED if p.name == "agent-child2")}
    creds = {c.name: Credentials.from_kubeconfig(c.kubeconfig) for c in (child1, child2)}
    access = {n: ClusterAccess(server=c.server, ca_pem=c.ca_pem, cert_pem=c.cert_pem, key_pem=c.key_pem,
                               token=c.token) for n, c in creds.items()}
    driver = SdkHelmDriver()
    try:
        async with (Kube(Credentials.from_kubeconfig(parent.kubeconfig), user_agent="bench") as parent_kube,
                    Kube(creds["child1"], user_agent="bench") as k1, Kube(creds["child2"], user_agent="bench") as k2):
            print("waiting for both clusters (child1 pushed to through the tunnel, child2 pulling) ...", flush=True)
            mcs = await wait_real_clusters(parent_kube, [child1, child2])
            observer = ReleaseObserver(parent_kube)
            async with observer:
                names = {mc["metadata"]["namespace"]: n for n, mc in mcs.items()}
                env = Env(parent_kube, {"child1": k1, "child2": k2}, access, names, observer, driver, repo, quiet, logs)
                print(f"1 warm-up + {iterations} iterations, alternating with the direct SDK install ...", flush=True)
                kept: list[Sample] = []  # the warm-up, then the timed iterations
                for attempt in range(3 * iterations + 1):
                    i = len(kept)
                    sample = await iteration(env, attempt, direct_first=i % 2 == 1)
                    check_alive(SPAWNED)
                    busy = sample.foreign > FOREIGN_LIMIT
                    print(f"  {'warm-up' if i == 0 else f'#{i}'}: {line(sample)}"
                          + (": BUSY, thrown away and run again" if busy else ""), flush=True)
                    if busy:
                        res.discarded.append((i, sample))
                    else:
                        kept.append(sample)
                    if len(kept) > iterations:
                        break
                else:
                    raise RuntimeError("too many iterations thrown away: the machine is not quiet")
                res.warmup, res.samples = kept[0], kept[1:]
                if observer.relists:
                    res.notes.append(f"the bench's watches were re-listed {observer.relists} time(s)")
    finally:
        driver.close()
    waits = [w for _, w, _ in QUIET_WAITS]
    res.notes.append(f"before each timed phase the bench waited for the set-up's processes to go quiet (P50 "
                     f"{percentile(waits, 50):.1f} s, max {max(waits):.1f} s), then for other processes to use < "
                     f"{FOREIGN_QUIET:g} core over 1 s (extra wait P50 {percentile(SETTLE_WAITS, 50):.1f} s, max "
                     f"{max(SETTLE_WAITS):.1f} s)")
    res.machine["load avg at end"] = loadavg()
    return res


def line(x: Sample) -> str:
    o, d = x.ours, x.direct
    return (f"ours {s(o.total)} (child1 {s(o.per['child1'])}, child2 {s(o.per['child2'])}), direct {s(d.total)}; "
            f"other processes {o.foreign:.2f} / {d.foreign:.2f} cores, chart repository requests {o.requests} / "
            f"{d.requests}")


def p50(values: list[float]) -> str:
    return s(percentile(values, 50))


def report(res: Results) -> str:
    n = len(res.samples)
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in res.machine.items()), "",
             f"Chart: {CHART} {VERSION}, {TEMPLATES} ConfigMap templates, to 2 children; n={n} (+1 warm-up).", "",
             "| Iteration | Ours: Subscription → both deployed | child1 (hub pushes) | child2 (agent pulls) | "
             "Direct: SDK fetch + install to both | Ratio ours/direct | ≤ 2x |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for k, x in enumerate(res.samples, 1):
        ratio = x.ours.total / x.direct.total
        lines.append(f"| #{k} | {s(x.ours.total)} | {s(x.ours.per['child1'])} | {s(x.ours.per['child2'])} | "
                     f"{s(x.direct.total)} | "
                     f"{ratio:.1f}x | {'yes' if ratio <= TARGET_RATIO else '**NO**'} |")
    col = {"ours": [x.ours.total for x in res.samples], "c1": [x.ours.per["child1"] for x in res.samples],
           "c2": [x.ours.per["child2"] for x in res.samples], "direct": [x.direct.total for x in res.samples]}
    for label, pick in (("median", lambda v: percentile(v, 50)), ("worst", max)):
        v = {k: pick(vals) for k, vals in col.items()}
        lines.append(f"| **{label}** | {s(v['ours'])} | {s(v['c1'])} | {s(v['c2'])} | {s(v['direct'])} | "
                     f"{v['ours'] / v['direct']:.1f}x | |")
    ratios = [x.ours.total / x.direct.total for x in res.samples]
    met = all(r <= TARGET_RATIO for r in ratios)
    lines += ["", f"Median ours / median direct: {percentile(col['ours'], 50) / percentile(col['direct'], 50):.2f}x; "
              f"worst ours / worst direct: {max(col['ours']) / max(col['direct']):.2f}x; per-iteration ratios "
              f"{min(ratios):.2f}x to {max(ratios):.2f}x.",
              f"Target ≤ {TARGET_RATIO:g}x direct (met only if every run meets it): "
              + ("**met**" if met else f"**missed** ({sum(r > TARGET_RATIO for r in ratios)} of {n} over)"), "",
              "Details:"]
    for child, who in (("child1", "the hub"), ("child2", "its agent")):
        c, r, d = ([getattr(x.ours, a)[child] for x in res.samples] for a in ("created", "returned", "per"))
        lines.append(f"* {child}, P50 from the Subscription: its HelmRelease created by the hub after "
                     f"{p50(c)}; {who} logged the install done {p50([b - a for a, b in zip(c, r, strict=True)])} "
                     f"later (watch, Helm get, cached fetch, Helm install); status written and seen "
                     f"{p50([b - a for a, b in zip(r, d, strict=True)])} after that; total {p50(d)}. The direct "
                     f"install into {child} returned after {p50([x.direct.per[child] for x in res.samples])} "
                     "(fetch included).")
    cleanup = [x.cleanup for x in res.samples]
    lines.append(f"* Delete the Subscription → both releases uninstalled and their HelmReleases gone: P50 "
                 f"{s(percentile(cleanup, 50))}, max {s(max(cleanup))}.")
    lines.append(f"* Chart repository requests during the timed windows: ours "
                 f"{sum(x.ours.requests for x in res.samples)}, direct {sum(x.direct.requests for x in res.samples)} "
                 "(0: every fetch was a cache hit).")
    foreign = [f for x in res.samples for f in (x.ours.foreign, x.direct.foreign)]
    lines.append(f"* Other processes during the timed phases: P50 {percentile(foreign, 50):.2f}, max "
                 f"{max(foreign):.2f} cores (limit {FOREIGN_LIMIT:g}).")
    if res.warmup:
        lines.append(f"* Warm-up (not counted; first fetch by the agent and the direct driver, first push through "
                     f"the relay): {line(res.warmup)}.")
    for k, x in res.discarded:
        lines.append(f"* Thrown away as the machine was busy, then run again: {'warm-up' if k == 0 else f'#{k}'}: "
                     f"{line(x)}.")
    lines += [f"* {note}" for note in res.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 iterations instead of 10")
    parser.add_argument("--iterations", type=int, help="timed iterations (overrides the mode's)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = parser.parse_args(argv)
    iterations = args.iterations or (3 if args.quick else 10)
    started = time.monotonic()

    def body(planes: list[ControlPlane], workdir: Path) -> None:
        print(f"  up after {time.monotonic() - started:.0f} s; starting clusternet-hub and two agents ...", flush=True)
        start_processes(planes[0], planes[1], planes[2], workdir)
        with ChartRepo(workdir / "chart-repo") as repo:
            repo.add(build_chart(workdir / "chart-build", CHART, VERSION, templates=TEMPLATES))
            res = asyncio.run(bench(iterations, planes, repo))
        print()
        print(report(res))
        print(f"\n(total {time.monotonic() - started:.0f} s)")

    return run_bench(["parent", "child1", "child2"], "a parent and two child control planes",
                     "clusternet-bench-helm-", args.keep, body)


if __name__ == "__main__":
    raise SystemExit(main())
