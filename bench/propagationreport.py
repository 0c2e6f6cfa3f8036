"""bench/propagation.py's results and its Markdown report (split out of propagation.py to keep both readable).

The simulated rounds' baseline is the faster of the direct runs before and after ours that started on a quiet
machine, never their mean: a run that began while the machine was still busy (the bench gave up waiting for
quiet) is reported and left out, as the issue asks of every baseline.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from common import percentile

FEEDS = 10
TARGET_P99_S, TARGET_RATIO, KARMADA_P99_S = 1.0, 2.0, 1.3


# --- statistics ------------------------------------------------------------------------------------------


def s(v: float) -> str:
    return f"{v:.2f} s"


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class RealSample:
    total: float  # `kubectl-clusternet apply` start -> every Description Success
    from_sub: float  # Subscription observed -> every Description Success
    cli: float  # command start -> Subscription observed
    cli_exit: float  # command start -> command exited
    per_cluster: dict[str, float]  # cluster namespace -> Success, from the Subscription
    created: dict[str, float]  # cluster namespace -> its Description appeared, from the Subscription
    direct: float  # the same 10 objects applied directly to both children (a warm in-process client)
    direct_cli: float  # ... and with `kubectl apply --server-side -f` per child, from the commands' start


@dataclass
class SimRun:
    size: int
    success: list[float]  # per cluster, seconds after the Subscription was observed
    created: list[float]  # per cluster, when its Description appeared
    push: list[float]  # per cluster, Description appeared -> Success
    direct_total: float  # the direct baseline run before ours ...
    direct_each: list[float]
    setup_s: float
    quiet_s: float  # waited for a quiet machine between the direct baseline and the Subscription
    direct_after: float = 0.0  # ... and the same again right after ours
    cleanup_s: float | None = None
    requests: dict[str, collections.Counter[str]] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    direct_cpu: dict[str, float] = field(default_factory=dict)
    profile: list[tuple[str, float]] = field(default_factory=list)
    note: str = ""

    direct_valid: bool = True  # the run before ours started on a quiet machine
    direct_after_valid: bool = False  # ... and the one after (False until it ran)

    @property
    def direct(self) -> float:
        """The baseline: the faster of the valid direct runs (the stricter for us); the one before ours when
        neither started quiet (`baseline_valid` then says so)."""
        valid = [t for t, ok in ((self.direct_total, self.direct_valid), (self.direct_after, self.direct_after_valid))
                 if ok]
        return min(valid) if valid else self.direct_total

    @property
    def baseline_valid(self) -> bool:
        return self.direct_valid or self.direct_after_valid


@dataclass
class Results:
    machine: dict[str, str]
    real: list[RealSample] = field(default_factory=list)
    warmup: RealSample | None = None
    cluster_names: dict[str, str] = field(default_factory=dict)  # namespace -> child1/child2
    sims: list[SimRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _validity(run: SimRun) -> str:
    busy = [name for name, ok in (("before", run.direct_valid), ("after", run.direct_after_valid)) if not ok]
    return "both did" if not busy else f"busy at the start, left out: {' and '.join(busy)}"


# --- reporting -------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def report(res: Results) -> str:
    lines = ["Machine: " + ", ".join(f"{k} {v}" for k, v in res.machine.items()), "",
             "| Scenario | Clusters | Feeds | P50 | P99 | Time to all (max) | Direct | Ratio | Target | Met |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    if res.real:
        n = len(res.real)
        in_process = [r.direct for r in res.real]
        by_kubectl = [r.direct_cli for r in res.real]
        for label, values, direct in (
                (f"2 real children, `kubectl-clusternet apply` start → all Success (incl. CLI), n={n}; direct: "
                 "`kubectl apply --server-side` to both, from its start", [r.total for r in res.real], by_kubectl),
                (f"2 real children, Subscription exists → all Success, n={n}; direct: a warm in-process client",
                 [r.from_sub for r in res.real], in_process)):
            dp50, dp99 = percentile(direct, 50), percentile(direct, 99)
            p50, p99 = percentile(values, 50), percentile(values, 99)
            r50, r99 = p50 / dp50, p99 / dp99
            ok = p99 <= TARGET_P99_S and r50 <= TARGET_RATIO and r99 <= TARGET_RATIO
            lines.append(f"| {label} | 2 | {FEEDS} | {s(p50)} | {s(p99)} | {s(max(values))} | "
                         f"{s(dp50)} / {s(dp99)} | {r50:.1f}x / {r99:.1f}x | P99 ≤ {TARGET_P99_S:g} s, "
                         f"≤ {TARGET_RATIO:g}x direct | {verdict(ok)} |")
    for run in res.sims:
        p50, p99, top = percentile(run.success, 50), percentile(run.success, 99), max(run.success)
        ratio = top / run.direct
        # the target here is the ratio; Karmada's P99 is measured on real, separate clusters, while
        # these N share one apiserver and 2 cores with everything else (compared in the details below)
        lines.append(f"| {run.size} simulated clusters (pushed to child1), Subscription exists → each Success"
                     f"{' (' + run.note + ')' if run.note else ''} | {run.size} | {FEEDS} | {s(p50)} | {s(p99)} | "
                     f"{s(top)} | {s(run.direct)}{'' if run.baseline_valid else ' (busy: invalid)'} | {ratio:.1f}x | "
                     f"≤ {TARGET_RATIO:g}x direct | "
                     f"{verdict(ratio <= TARGET_RATIO) if run.baseline_valid else 'no valid baseline'} |")
    lines += ["", "Details:"]
    if res.real:
        cli = [r.cli for r in res.real]
        exits = [r.cli_exit for r in res.real]
        lines.append(f"* `kubectl-clusternet apply` start → Subscription exists: P50 {s(percentile(cli, 50))}, "
                     f"max {s(max(cli))}; the command exits after P50 {s(percentile(exits, 50))}.")
        totals = [r.total for r in res.real]
        lines.append(f"* incl. CLI against the warm in-process client instead: "
                     f"{percentile(totals, 50) / percentile(in_process, 50):.1f}x P50, "
                     f"{percentile(totals, 99) / percentile(in_process, 99):.1f}x P99 (in-process direct P50 "
                     f"{s(percentile(in_process, 50))}, P99 {s(percentile(in_process, 99))}; kubectl apply P50 "
                     f"{s(percentile(by_kubectl, 50))}, P99 {s(percentile(by_kubectl, 99))}).")
        for ns, who in sorted(res.cluster_names.items(), key=lambda kv: kv[1]):
            per = [r.per_cluster[ns] for r in res.real if ns in r.per_cluster]
            created = [r.created[ns] for r in res.real if ns in r.created]
            pushed = [r.per_cluster[ns] - r.created[ns] for r in res.real if ns in r.per_cluster and ns in r.created]
            if per and created and pushed:
                lines.append(f"* {who}: Subscription exists → its Description Success P50 {s(percentile(per, 50))}, "
                             f"P99 {s(percentile(per, 99))}; of which Subscription → Description created P50 "
                             f"{s(percentile(created, 50))}, created → Success P50 {s(percentile(pushed, 50))}.")
        if res.warmup:
            w = res.warmup
            lines.append(f"* Warm-up iteration (not counted; first push through the tunnel, first pull): "
                         f"incl. CLI {s(w.total)}, from Subscription {s(w.from_sub)}, direct {s(w.direct)}.")
    for run in res.sims:
        lines.append(f"* {run.size} simulated: Descriptions created by the hub between "
                     f"{s(min(run.created))} and {s(max(run.created))} after the Subscription (P50 "
                     f"{s(percentile(run.created, 50))}); Description created → Success P50 "
                     f"{s(percentile(run.push, 50))}, P99 {s(percentile(run.push, 99))}; direct per namespace "
                     f"P50 {s(percentile(run.direct_each, 50))}; direct before ours {s(run.direct_total)}, after "
                     f"{s(run.direct_after)} (the table's direct: the faster of those that started quiet; "
                     f"{_validity(run)}); set-up {run.setup_s:.0f} s"
                     + (f"; delete Subscription → all Descriptions gone {s(run.cleanup_s)}"
                        if run.cleanup_s is not None else "") + ".")
        lines.append(f"  Against Karmada's published P99 of ~1.0-{KARMADA_P99_S:g} s at 100 real clusters: P99 "
                     f"{s(percentile(run.success, 99))} here, where all {run.size} share child1's one apiserver and "
                     f"2 cores with the hub and the parent, so that applying the same objects directly, with no "
                     f"manager at all, already takes {s(run.direct)}.")
    big = max(res.sims, key=lambda r: r.size) if res.sims else None
    if big and big.requests:
        lines += ["", f"API requests while {big.size} simulated clusters were deployed (apiserver_request_total, "
                  "watches excluded), per cluster:", "",
                  "| API server | Request | Count | Per cluster |", "|---|---|---:|---:|"]
        for where, counts in big.requests.items():
            for what, count in counts.most_common(10):
                if count > 0:
                    lines.append(f"| {where} | {what} | {count} | {count / big.size:.1f} |")
        wall = max(big.success)
        objects = big.size * FEEDS
        lines += ["", f"CPU seconds per process while the {objects} objects were deployed: through Clusternet "
                  f"({wall:.1f} s wall) and directly ({big.direct_total:.1f} s wall):", "",
                  "| Process | Clusternet: CPU s | CPU / wall | Direct: CPU s | CPU / wall |",
                  "|---|---:|---:|---:|---:|"]
        for name, sec in sorted(big.cpu.items(), key=lambda kv: -kv[1]):
            d = big.direct_cpu.get(name, 0.0)
            lines.append(f"| {name} | {sec:.1f} | {sec / wall:.0%} | {d:.1f} | {d / big.direct_total:.0%} |")
        total, direct_total = sum(big.cpu.values()), sum(big.direct_cpu.values())
        lines.append(f"| all of the above, per object | {total * 1000 / objects:.1f} ms | {total / wall:.0%} | "
                     f"{direct_total * 1000 / objects:.1f} ms | {direct_total / big.direct_total:.0%} |")
    if big and big.profile:
        lines += ["", f"py-spy of the hub during the {big.size}-cluster run (share of samples in or under):", ""]
        lines += [f"    {share:5.1%}  {frame}" for frame, share in big.profile]
    lines += [f"* {note}" for note in res.notes]
    return "\n".join(lines)
