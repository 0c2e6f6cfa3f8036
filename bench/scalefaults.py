"""bench/scale.py's last phases: a 10 % agent outage and return, a reconnect storm, the checks over the whole
run (no live cluster ever left Ready, exactly one Description per cluster), then the hub killed and started
again."""

from __future__ import annotations

import asyncio
import time

from clusternet_api import known
from common import Hub
from measure import cpu_seconds, request_counts
from scalefleet import all_workers, rss_kb
from scalereport import p, s
from scalerun import APPS, SUB, WARMUP, Run, app_namespace, override_to, settle
from scalewatch import DescState, hub_healthy, hub_metric, seconds_until, tunnels_held


async def outage(r: Run) -> None:
    """5. A 10 % outage and return: every 10th agent stops, then starts again with its stored credentials."""
    n, args, hub, ck, watcher, workers = r.n, r.args, r.hub, r.ck, r.watcher, r.workers
    by_index, res, live = r.by_index, r.res, r.live
    r.silent = silent = {c.index for c in live if c.index % 10 == 0}
    res.outage_n = len(silent)
    print(f"  outage: {len(silent)} agents stop for {args.outage:.0f} s ...", flush=True)
    r.t_out = t_out = time.monotonic()
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
    r.t_back = t_back = time.monotonic()
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


async def storm(r: Run) -> None:
    """6. Reconnect storm: every relay cuts all tunnels at once. The conditions count as back once every live
    cluster's SocketConnected is True and the hub has no mark left to write (clusternet_socket_marks_pending 0):
    a cut whose tunnel is back before the hub wrote it is never written (clusternet_hub/socketmarks.py), so the
    condition of such a cluster never turns False and back."""
    n, args, hub, workers, res = r.n, r.args, r.hub, r.workers, r.res
    live = r.live
    await settle(args.settle)
    downs = {c.index: len(c.socket_down_at) for c in live}
    reconnects = await asyncio.to_thread(hub_metric, hub, "clusternet_socket_reconnects_total") or 0.0
    print(f"  reconnect storm: all {n} tunnels cut at once ...", flush=True)
    t_storm = time.monotonic()
    dropped = await all_workers(workers, "drop")
    res.storm_dropped = sum(d["dropped"] for d in dropped)
    await asyncio.sleep(0.5)
    res.storm_tunnels_s = await tunnels_held(hub, len(live) + WARMUP, t_storm, max(120.0, n * 0.3))

    async def final() -> bool:
        """Every cut tunnel attached again (its return recorded: the tunnel count alone may not have dropped while
        the hub had not seen the cuts yet), no mark left to write, every condition True."""
        back = await asyncio.to_thread(hub_metric, hub, "clusternet_socket_reconnects_total")
        pending = await asyncio.to_thread(hub_metric, hub, "clusternet_socket_marks_pending")
        return (back or 0.0) - reconnects >= res.storm_dropped and pending == 0 and all(
            c.socket == "True" for c in live)

    res.storm_conditions_s = await seconds_until(final, t_storm, max(120.0, n * 0.3), 0.25)
    if res.storm_conditions_s is None:
        res.notes.append("the SocketConnected conditions were not all True with no mark pending in time "
                         f"({sum(c.socket == 'True' for c in live)}/{len(live)} True)")
    res.storm_marked_down = sum(len(c.socket_down_at) > downs[c.index] for c in live)
    print(f"    hub holds all tunnels after {s(res.storm_tunnels_s)}, every SocketConnected=True with no mark "
          f"pending after {s(res.storm_conditions_s)} ({res.storm_dropped} connections cut, "
          f"SocketConnected left True on {res.storm_marked_down} clusters meanwhile)", flush=True)


async def final_checks(r: Run) -> None:
    """Checks over the whole run: no live cluster left Ready, one Description per cluster."""
    pk, hub_pid, watcher, res, cpu_hub_0 = r.pk, r.hub_pid, r.watcher, r.res, r.cpu_hub_0
    live, silent, t_out, t_back = r.live, r.silent, r.t_out, r.t_back
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


async def hub_restart(r: Run) -> None:
    """7. The hub is killed (SIGKILL: no Lease released, no tunnel closed) and started again with the same flags,
    as a crashed pod's container restarts: how long until it serves, leads (with --leader-elect: once the dead
    process's Lease expires), holds every tunnel again and re-applies an override change everywhere. Meanwhile
    no live cluster may leave Ready and nothing deployed may be replaced (the UIDs of every Description and of
    every deployed ConfigMap compared). A new leader resumes every approved registration at once: the burst that
    starved its Lease renewals (review 6, finding 1) happens here at N clusters."""
    n, args, hub, res, live = r.n, r.args, r.hub, r.res, r.live
    assert hub.proc.proc is not None
    await settle(args.settle)
    descs = await description_uids(r)
    config_maps = await config_map_uids(r)
    log_from = len(hub.proc.output)
    counts = [await request_counts(r.pk)]
    print(f"  hub restart: SIGKILL, then the same process started again, {n} clusters ...", flush=True)
    t_kill = time.monotonic()
    await asyncio.to_thread(hub.proc.kill)
    hub.proc.start()
    assert hub.proc.proc is not None
    r.hub_pid = hub.proc.proc.pid
    res.restart_serving_s = await hub_healthy(hub, t_kill, 120.0)
    res.restart_tunnels_s = await tunnels_held(hub, len(live) + WARMUP, t_kill, max(180.0, n * 0.5))
    res.restart_leading_s = await logged(hub, log_from, "acquired Lease", t_kill, 60.0) \
        if any(a.startswith("--leader-elect=true") or a == "--leader-elect" for a in hub.proc.args) else None
    counts.append(await request_counts(r.pk))
    await settle(args.settle)
    res.restart_override, checked = await override_to(r, "3")
    counts.append(await request_counts(r.pk))
    for (label, a, b) in (("until it led", counts[0], counts[1]), ("from then to the override re-applied",
                                                                    counts[1], counts[2])):
        delta = b - a
        res.notes.append(f"parent requests after the hub's restart, {label}: {sum(delta.values())} ("
                         + ", ".join(f"{k} {v}" for k, v in delta.most_common(6)) + ")")
    problems = []
    after = await description_uids(r)
    if after != descs:
        problems.append(f"Descriptions replaced or added: {len(set(after.items()) ^ set(descs.items()))} differ")
    replaced = sum(1 for ns, uid in (await config_map_uids(r)).items() if config_maps.get(ns) != uid)
    if replaced or len(config_maps) != len(live):
        problems.append(f"{replaced} of {len(config_maps)} deployed ConfigMaps replaced")
    left = sum(1 for c in live for (t, _) in c.not_ready if t >= t_kill)
    if left:
        problems.append(f"{left} times a live cluster left Ready")
    lost = hub.proc.output[log_from:].count("leaderelection lost")
    if lost or not hub.proc.running():
        problems.append(f"the new hub lost its Lease {lost} time(s)" + ("" if hub.proc.running() else " and exited"))
    res.restart_ok = "; ".join(problems) or (
        f"every Description ({len(descs)}) and deployed ConfigMap ({len(config_maps)}) kept its UID, no live "
        f"cluster left Ready, {checked}" + ("" if res.restart_leading_s is None else ", the Lease held throughout"))
    print(f"    serving after {s(res.restart_serving_s)}, leading after {s(res.restart_leading_s)}, all tunnels "
          f"after {s(res.restart_tunnels_s)}; override re-applied P50 {s(p(res.restart_override, 50))}, all "
          f"{s(max(res.restart_override) if res.restart_override else None)}; {res.restart_ok}", flush=True)


async def description_uids(r: Run) -> dict[str, str]:
    listed = await r.pk.list(APPS, "Description", label_selector=f"{known.LABEL_SUBS_NAME}={SUB}")
    return {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d["metadata"]["uid"] for d in listed}


async def config_map_uids(r: Run) -> dict[str, str]:
    """The deployed ConfigMap of every live cluster, by namespace (one LIST of the child)."""
    wanted = {app_namespace(c.index) for c in r.live}
    return {cm["metadata"]["namespace"]: cm["metadata"]["uid"] for cm in await r.ck.list("v1", "ConfigMap")
            if cm["metadata"]["name"] == "config" and cm["metadata"]["namespace"] in wanted}


async def logged(hub: Hub, offset: int, text: str, since: float, limit_s: float) -> float | None:
    """Seconds from `since` until the hub's log shows `text` after `offset`."""
    async def shown() -> bool:
        return text in hub.proc.output[offset:]

    return await seconds_until(shown, since, limit_s, 0.25, ())
