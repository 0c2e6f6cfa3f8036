"""bench/scale.py's results: one SizeResult per size, and the Markdown report with its targets."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from common import percentile
from scalefleet import AGENTS_PER_WORKER

TARGET_RSS_MB, TARGET_RATIO, TARGET_REG_P99_S = 500.0, 2.0, 2.0


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
    steady_rss: list[tuple[float, float]] = field(default_factory=list)  # (s into the steady window, hub RSS MB)
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
    storm_marked_down: int = 0  # live clusters whose SocketConnected left True during the storm
    live_not_ready: int = 0
    restart_serving_s: float | None = None  # hub killed and started again (scalefaults.hub_restart)
    restart_leading_s: float | None = None
    restart_tunnels_s: float | None = None
    restart_override: list[float] = field(default_factory=list)
    restart_ok: str = ""
    desc_problems: str = ""
    notes: list[str] = field(default_factory=list)
    profile: list[tuple[str, float]] = field(default_factory=list)
    profile_window: str = ""
    parent_profiles: dict[str, list[str]] = field(default_factory=dict)  # phase -> measure.api_server_profile's lines
    # CPU seconds per process group during each timed deployment ("direct before", "propagation", ...): our
    # path and the direct one share this machine's cores, so what each costs in all bounds the ratio
    phase_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    memory: list[str] = field(default_factory=list)  # tracemalloc's top sites in the hub (--trace-hub-memory)
    wall_s: float = 0.0


def s(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} s"


def p(values: list[float], q: float) -> float | None:
    return percentile(values, q) if values else None


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
             "storm: tunnels / conditions | live ever not Ready | Descriptions | hub killed: serving / leading / "
             "all tunnels / override re-applied |",
             "|---:|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
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
            f"{s(r.storm_conditions_s)} | {r.live_not_ready} | {r.desc_problems} | {s(r.restart_serving_s)} / "
            f"{s(r.restart_leading_s)} / {s(r.restart_tunnels_s)} / "
            f"{s(max(r.restart_override) if r.restart_override else None)} |")
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
            f"{verdict(r.desc_problems.endswith('0 lost, 0 duplicated'))}; hub killed and restarted, nothing "
            f"replaced and no live cluster left Ready: "
            f"{verdict(r.restart_ok.startswith('every') if r.restart_ok else None)}; "
            f"hub RSS {r.hub_idle_mb:.0f} MB idle, "
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
                     + rss_trend(r.steady_rss)
                     + f"; all tunnels up "
                     f"{s(r.tunnels_up_s)} after the start; override: {r.override_checked}; outage of {r.outage_n}: "
                     f"{r.outage_ok}; storm cut {r.storm_dropped} connections, SocketConnected left True on "
                     f"{r.storm_marked_down} clusters meanwhile; hub restart: "
                     f"{r.restart_ok or 'not run'}; steady state {r.steady_s:.0f} s: hub "
                     f"{r.hub_cpu_s:.1f} CPU-s, workers' RSS {r.worker_rss_mb:.0f} MB; parent requests in that window: "
                     + ", ".join(f"{k} {v}" for k, v in r.parent_requests.items())
                     + "".join(f"; {note}" for note in r.notes) + ".")
        if r.phase_cpu:
            lines += ["", f"  CPU seconds per process during each timed phase, N={r.n} (agents: all worker "
                      "processes; the direct applies run in the bench process; registration: from the start to the "
                      "last Ready):", "", *cpu_table(r.phase_cpu), ""]
        if r.profile:
            lines += ["", f"  py-spy of the hub, N={r.n}, {r.profile_window} (share of samples in or under):",
                      ""] + [f"      {share:5.1%}  {frame}" for frame, share in r.profile[:20]] + [""]
        for phase, profile in r.parent_profiles.items():
            lines += ["", f"  CPU profile of the parent's kube-apiserver, N={r.n}, {args.profile_seconds} s from "
                      f"{args.profile_after:g} s into {phase}:", ""] + [f"      {line}" for line in profile] + [""]
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


def rss_trend(samples: list[tuple[float, float]]) -> str:
    """The hub's RSS through the steady window: first, last and least-squares slope per hour (a leak shows as a
    slope that does not shrink with a longer window; allocator growth levels off)."""
    if len(samples) < 3:
        return ""
    ts, mbs = [t for t, _ in samples], [mb for _, mb in samples]
    t_mean, mb_mean = sum(ts) / len(ts), sum(mbs) / len(mbs)
    var = sum((t - t_mean) ** 2 for t in ts)
    slope = sum((t - t_mean) * (mb - mb_mean) for t, mb in samples) / var * 3600 if var else 0.0
    fifths = " / ".join(f"{mbs[round(i * (len(mbs) - 1) / 5)]:.1f}" for i in range(6))
    return (f"; hub RSS through the steady window ({len(samples)} samples over {ts[-1]:.0f} s): {mbs[0]:.1f} -> "
            f"{mbs[-1]:.1f} MB (at each fifth: {fifths}; min {min(mbs):.1f}, max {max(mbs):.1f}), slope "
            f"{slope:+.1f} MB per hour")
