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


MEMHOOK = """
import os, signal, tracemalloc
if os.environ.get("SCALE_TRACE_OUT"):
    tracemalloc.start(int(os.environ.get("SCALE_TRACE_FRAMES", "1")))

    _first = []

    def _dump(signum, frame):
        snap = tracemalloc.take_snapshot()
        with open(os.environ["SCALE_TRACE_OUT"], "w") as out:
            total = sum(s.size for s in snap.statistics("filename"))
            out.write(f"traced {total / 1048576:.1f} MB\\n")
            for kind in ("filename", "lineno"):
                for stat in snap.statistics(kind)[:25]:
                    out.write(f"{kind} {stat.size / 1048576:8.1f} MB {stat.count:9d} {stat.traceback}\\n")
            if _first:  # what grew since the first dump (the steady window's start), largest first
                for stat in snap.compare_to(_first[0], "lineno")[:25]:
                    out.write(f"grew {stat.size_diff / 1048576:+8.2f} MB {stat.count_diff:+9d} {stat.traceback}\\n")
            else:
                _first.append(snap)

    signal.signal(signal.SIGUSR2, _dump)
"""


def memory_hook(workdir: Path) -> dict[str, str]:
    """Environment that makes a Python process trace its allocations (tracemalloc, via a sitecustomize on its
    PYTHONPATH) and write the top allocation sites to a file on SIGUSR2: where the hub's memory goes, without
    changing the hub. Tracing slows it down: numbers of such a run are not the bench's."""
    hook = workdir / "memhook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(MEMHOOK)
    return {"PYTHONPATH": str(hook), "SCALE_TRACE_OUT": str(workdir / "hub-memory.txt")}


async def memory_dump(hub_pid: int, dump: Path) -> list[str]:
    """Ask the hub (started with memory_hook) for its top allocation sites; the lines it wrote, [] if none came."""
    os.kill(hub_pid, signal.SIGUSR2)
    for _ in range(60):
        await asyncio.sleep(1.0)
        if _lines(dump):
            await asyncio.sleep(1.0)  # the hub may still be writing it
            return _lines(dump)
    return []


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# Where a kube-apiserver's CPU goes, by what it was doing: the first kind whose function is on a sample's stack
# takes the sample. The request handlers of k8s.io/apiserver/pkg/endpoints/handlers come first (a WATCH's
# events are sent under serveWatch, and a cached watch's are filtered and encoded for each watcher by the
# cacher); what no handler holds is split into the work around requests (TLS, authentication, ...).
REQUEST_KINDS = (
    ("WATCH (events sent to watchers)", ("handlers.serveWatch", "WatchServer).ServeHTTP", "cacheWatcher")),
    ("LIST", ("handlers.ListResource",)),
    ("GET", ("handlers.GetResource", "handlers.getResourceHandler")),
    ("POST (create)", ("handlers.createHandler", "handlers.CreateResource", "handlers.CreateNamedResource")),
    ("PATCH", ("handlers.PatchResource", "patcher).patchResource", "applyPatcher")),
    ("PUT (update)", ("handlers.UpdateResource",)),
    ("DELETE", ("handlers.DeleteResource", "handlers.DeleteCollection")),
)
PPROF_KINDS = (
    *REQUEST_KINDS,
    ("TLS handshakes", ("crypto/tls.(*Conn).Handshake", "crypto/tls.(*Conn).handshake")),
    ("authentication", ("k8s.io/apiserver/pkg/authentication/", "plugin/pkg/auth/authenticator", "serviceaccount.")),
    ("watch cache (storing events, dispatch)", ("cacher.(*Cacher)", "cacher.(*watchCache)", "cacher.(*Reflector",
                                                  "cache.(*Reflector)")),
    ("etcd client", ("go.etcd.io/", "google.golang.org/grpc", "etcd3.(*watcher", "etcd3.(*watchChan")),
    ("TLS and HTTP/2 framing", ("crypto/tls.", "crypto/aes", "crypto/cipher", "http2.")),
    ("request filters (metrics, fairness, routing, compression)", ("net/http.HandlerFunc.ServeHTTP",)),
    ("HTTP/1 connections", ("net/http.(*conn)",)),
    ("Go scheduler", ("runtime.mcall", "runtime.schedule", "runtime.findrunnable")),
    ("garbage collection", ("runtime.gcBgMarkWorker", "runtime.gcAssist", "runtime.bgsweep", "runtime.bgscavenge")),
)
VERBS = frozenset(k for k, _ in REQUEST_KINDS)  # split further by whose storage is on the stack
STORAGE = (("custom resources", "apiextensions-apiserver/"), ("built-in kinds", "k8s.io/kubernetes/pkg/registry/"))


def pprof_kinds(traces: str) -> tuple[float, list[tuple[str, float]]]:
    """Total seconds and seconds per PPROF_KINDS entry (and "other") of `go tool pprof -traces` output."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
    spent: dict[str, float] = collections.defaultdict(float)
    for block in re.split(r"^-+\+-+$", traces, flags=re.M)[1:]:
        lines = [ln.strip() for ln in block.strip().splitlines()]
        m = re.match(r"([\d.]+)(ns|us|µs|ms|s)\s+(.*)", lines[0]) if lines else None
        if m is None:
            continue
        frames = [m.group(3), *lines[1:]]
        kind = next((k for k, marks in PPROF_KINDS if any(mark in f for f in frames for mark in marks)), "other")
        if kind in VERBS:  # whose storage is on the stack (pprof keeps the innermost 64 frames: not always the handler)
            kind += next((f": {whose}" for whose, mark in STORAGE if any(mark in f for f in frames)), "")
        spent[kind] += float(m.group(1)) * units[m.group(2)]
    return sum(spent.values()), sorted(spent.items(), key=lambda kv: -kv[1])


async def api_server_profile(kubeconfig: Path, seconds: int, out: Path) -> list[str]:
    """A kube-apiserver's own CPU profile over the next `seconds` (net/http/pprof: `--profiling`, on by default),
    read with `go tool pprof`: its CPU by what it was doing (PPROF_KINDS: by request verb, watches included,
    then the work around requests). Where the parent's CPU goes at 1,000 clusters, which its request counts
    alone do not say."""
    kubectl, go = shutil.which("kubectl"), shutil.which("go")
    if kubectl is None or go is None:
        return ["(kubectl or go not found: no profile)"]
    with out.open("wb") as f:
        fetch = await asyncio.create_subprocess_exec(
            kubectl, f"--kubeconfig={kubeconfig}", "get", "--raw", f"/debug/pprof/profile?seconds={seconds}",
            stdout=f, stderr=asyncio.subprocess.PIPE)
        _, err = await fetch.communicate()
    if fetch.returncode:
        return [f"(no profile: {err.decode(errors='replace').strip()[:200]})"]
    show = await asyncio.create_subprocess_exec(go, "tool", "pprof", "-traces", str(out),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    text, _ = await show.communicate()
    total, kinds = pprof_kinds(text.decode(errors="replace"))
    if not total:
        return [f"(no samples in {out.name})"]
    return [f"{total:.1f} CPU-s in {seconds} s ({out.name}):", ""] + [
        f"{secs:7.2f} s {secs / total:6.1%}  {kind}" for kind, secs in kinds]
