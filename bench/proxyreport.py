"""bench/proxy.py's targets, plan, results and Markdown report (the measuring is in proxy.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from common import percentile

SMALL_PATH = "/api/v1/namespaces/default"
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
