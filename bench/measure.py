"""What the benchmarks measure besides time: the API servers' request counts, CPU seconds per process,
waiting for a quiet set-up, running many jobs at once, and py-spy profiles of the hub."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from clusternet_api.kube import Kube
from clusternet_testing.controlplane import ControlPlane

QUIET_CPU = 0.25  # "quiet": all processes of the set-up together use less than this share of one core
QUIET_LIMIT_S = 20.0
QUIET_WAITS: list[tuple[str, float, bool]] = []  # (before what, how long, gave up) for every wait of this run


METRIC = re.compile(r'^apiserver_request_total\{(.*)\} (\S+)$')


async def request_counts(kube: Kube) -> collections.Counter[str]:
    """apiserver_request_total summed by verb, resource and subresource (watches left out).

    kube-apiserver 1.20 counts a GET of one custom resource as a LIST (verb and scope both as for a LIST of the
    namespace: checked against a real one), so "LIST managedclusters" includes the GETs of single
    ManagedClusters; built-in kinds are counted right."""
    status, text = await kube.raw("GET", "/metrics")
    counts: collections.Counter[str] = collections.Counter()
    if status != 200 or not isinstance(text, str):
        return counts
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if labels.get("verb") in ("WATCH", "CONNECT"):
            continue
        what = labels.get("resource", "") + ("/" + labels["subresource"] if labels.get("subresource") else "")
        counts[f"{labels.get('verb')} {what or '(non-resource)'}"] += int(float(m.group(2)))
    return counts


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plane_pids(plane: ControlPlane) -> dict[str, int]:
    """etcd, kube-apiserver and kube-controller-manager of one control plane, found by its work directory."""
    found: dict[str, int] = {}
    marker = str(plane.workdir) + "/"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            binary = Path(argv[0].decode()).name
            if binary in ("etcd", "kube-apiserver", "kube-controller-manager") and any(
                    marker.encode() in a for a in argv):
                found[f"{plane.name} {binary}"] = int(entry.name)
    return found


async def until_quiet(pids: dict[str, int], what: str, limit_s: float = QUIET_LIMIT_S) -> float:
    """Wait until the control planes, hub and agents are nearly idle (controllers done with what the last
    step created or deleted, the hub's caches filled), so every timed phase, ours or the direct one,
    starts from the same quiet machine; returns how long that took (`limit_s` at most)."""
    t0 = time.monotonic()
    while True:
        before = sum(cpu_seconds(pid) for pid in pids.values())
        await asyncio.sleep(0.5)
        used = sum(cpu_seconds(pid) for pid in pids.values()) - before
        waited = time.monotonic() - t0
        if used < QUIET_CPU * 0.5 or waited > limit_s:
            QUIET_WAITS.append((what, waited, waited > limit_s))
            return waited


@contextlib.contextmanager
def cpu_accounting(pids: dict[str, int], into: dict[str, float]) -> Iterator[None]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    yield
    for name, pid in pids.items():
        into[name] = cpu_seconds(pid) - before[name]


async def bounded(jobs: Iterable[Callable[[], Awaitable[Any]]], limit: int) -> list[float]:
    """Run jobs at most `limit` at a time; returns each job's completion time (monotonic)."""
    gate = asyncio.Semaphore(limit)
    t_done: list[float] = []

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await job()
            t_done.append(time.monotonic())

    await asyncio.gather(*(one(j) for j in jobs))
    return t_done


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


async def start_profile(pid: int, out: Path) -> tuple[asyncio.subprocess.Process, Path] | None:
    spy = py_spy()
    if spy is None:
        print("    (py-spy not found: no profile)", flush=True)
        return None
    proc = await asyncio.create_subprocess_exec(spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "100",
                                                "--output", str(out), "--nonblocking",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.sleep(0.5)
    return proc, out


async def stop_profile(spy: tuple[asyncio.subprocess.Process, Path]) -> list[tuple[str, float]]:
    """Stop py-spy and sum its collapsed stacks: share of samples spent in (or under) each function."""
    proc, out = spy
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 15)
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = {re.sub(r" \(.*?/(site-packages|src)/", " (", f) for f in stack.split(";")}
            for frame in frames:
                if "clusternet" in frame or "aiohttp" in frame or "kubernetes_asyncio" in frame or "json" in frame:
                    inclusive[frame] += n
    return [(frame, n / total) for frame, n in inclusive.most_common(25)] if total else []
