"""What the benchmarks share: control planes, the parent's set-up, hub and agent processes, tear-down, statistics.

The scripts run as `.venv/bin/python bench/<name>.py`, so Python puts bench/ first on sys.path and they import
this module as `common`. Control planes and processes come from `clusternet_testing`, as in the integration
tests.

`run_bench` is the frame of every benchmark: it starts the control planes (SIGINT/SIGTERM held meanwhile, as
their handles exist only once start-up returns), runs the benchmark, and always tears down every process
started with `spawn` and every control plane, also on Ctrl-C or SIGTERM (exit code 130).
"""

from __future__ import annotations

import compileall
import contextlib
import datetime
import math
import os
import platform
import shutil
import signal
import ssl
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from clusternet_api import known
from clusternet_testing.controlplane import REPO_ROOT as REPO
from clusternet_testing.controlplane import ControlPlane, find_binaries, free_port, start_many
from clusternet_testing.processes import (
    BOOTSTRAP_TOKEN,
    Proc,
    agent_proc,
    hub_proc,
    hub_tls,
    install_bootstrap,
    service_account_token,
)

__all__ = [
    "BOOTSTRAP_TOKEN",
    "REPO",
    "SPAWNED",
    "Hub",
    "Proc",
    "agent",
    "busy_seconds",
    "check_alive",
    "deferred_interrupts",
    "fmt",
    "https_status",
    "install_parent",
    "loadavg",
    "machine_busy",
    "machine_info",
    "percentile",
    "run_bench",
    "service_account_token",
    "spawn",
    "start_hub",
    "stats",
    "stop_process",
    "wait_until",
    "without",
]

CLUSTERS = known.CLUSTERS_API_VERSION
STATUS_CADENCE = ("--cluster-status-collect-frequency", "--cluster-status-update-frequency")

SPAWNED: list[Proc] = []  # every process started with spawn(), stopped again at exit whatever happened


# --- processes ---------------------------------------------------------------------------------------------


def spawn(proc: Proc) -> Proc:
    """Start a process so that tear-down always finds it: it is listed first, and SIGINT/SIGTERM wait until
    Popen has returned (an interrupt inside it would leave a started process that nothing knows of)."""
    SPAWNED.append(proc)
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        return proc.start()
    with deferred_interrupts("once it has started") as interrupted:
        proc.start()
    if interrupted:
        raise KeyboardInterrupt
    return proc


def stop_process(proc: Proc) -> None:
    with contextlib.suppress(ProcessLookupError):  # its process group is gone already
        proc.stop()


def check_alive(procs: Sequence[Proc]) -> None:
    for proc in procs:
        if not proc.running():
            raise RuntimeError(f"{proc.name} exited; last lines of {proc.log}:\n{proc.output[-2000:]}")


def without(args: list[str], *prefixes: str) -> list[str]:
    return [a for a in args if not a.startswith(prefixes)]


@dataclass
class Hub:
    proc: Proc
    url: str  # https://127.0.0.1:<port>
    ca: Path  # the CA of its serving certificate
    tls: tuple[Path, Path, Path]  # (ca, cert, key): what another replica must serve too

    @property
    def tunnel_args(self) -> list[str]:
        """The agent flags of a direct tunnel to this hub's port."""
        return [f"--tunnel-url={self.url}", f"--tunnel-ca-file={self.ca}"]


def start_hub(parent: ControlPlane, workdir: Path, *extra: str, tls: tuple[Path, Path, Path] | None = None,
              name: str = "hub") -> Hub:
    """`clusternet-hub` on a free loopback port with a TLS certificate of its own (or `tls`, (ca, cert, key), which
    replicas share), once /healthz answers.

    Health checks run at the hub's default interval, not the integration tests' fast one, unless `extra` says
    otherwise."""
    ca, crt, key = tls or hub_tls(workdir / "hub-tls", ["127.0.0.1"], ["localhost"])
    port = free_port()
    proc = hub_proc(parent, workdir, f"--tls-cert-file={crt}", f"--tls-private-key-file={key}", port=port)
    proc.name, proc.log = name, workdir / f"{name}.log"
    proc.args = [*without(proc.args, "--health-check-interval"), *extra]
    hub = Hub(proc, f"https://127.0.0.1:{port}", ca, (ca, crt, key))
    spawn(proc)
    wait_until(lambda: https_status(f"{hub.url}/healthz", ca) == 200, "clusternet-hub /healthz", [proc],
               timeout=120)
    return hub


def agent(child: ControlPlane, parent: ControlPlane, workdir: Path, name: str, *extra: str,
          cadence: tuple[str, str] | None = None) -> Proc:
    """A `clusternet-agent` process for `child` (not started: see spawn), registering with the bootstrap token.

    `cadence` is (collect, update) of the status reports, e.g. ("5s", "10s"); None leaves the agent's defaults
    (20 s / 3 m). Never the integration tests' 1 s / 2 s, which would add background load."""
    proc = agent_proc(child, parent, workdir, name, *extra)
    proc.args = without(proc.args, *STATUS_CADENCE)
    if cadence is not None:
        proc.args += [f"{flag}={value}" for flag, value in zip(STATUS_CADENCE, cadence, strict=True)]
    return proc


# --- set-up ------------------------------------------------------------------------------------------------


def wait_until(check: Callable[[], bool], what: str, procs: Sequence[Proc] = (), timeout: float = 60.0,
               interval: float = 0.2) -> None:
    """Poll `check` (OSError and ValueError count as "not yet") until it holds; fail early if one of `procs`
    exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive(procs)
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def https_status(url: str, ca: Path, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    context=ssl.create_default_context(cafile=str(ca)), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def install_parent(parent: ControlPlane) -> None:
    """What an admin installs on the parent: the CRDs (until Established), then the bootstrap token and its RBAC
    (deploy/hub/03-bootstrap_rbac.yaml, manifests/samples/cluster_bootstrap_token.yaml) until the token is accepted."""
    parent.install_crds()
    install_bootstrap(parent)
    # The bootstrap authenticator reads its Secret through an informer: the token works a moment later.
    probe = f"{parent.url}/apis/{CLUSTERS}/clusterregistrationrequests/clusternet-probe"
    wait_until(lambda: https_status(probe, parent.ca_file, BOOTSTRAP_TOKEN) in (200, 404),
               "the bootstrap token to be accepted")


# --- start and tear-down -----------------------------------------------------------------------------------


@contextlib.contextmanager
def deferred_interrupts(until: str = "once the control planes have finished starting") -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM (the signals received are listed) until the block ends."""
    received: list[int] = []

    def hold(signum: int, _: FrameType | None) -> None:
        received.append(signum)
        print(f"\ninterrupted: stopping {until}", file=sys.stderr)

    old = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def tear_down(planes: Sequence[ControlPlane]) -> None:
    """Every spawned process (last started first), then the control planes; a second Ctrl-C waits for it."""
    with deferred_interrupts("once the tear-down is done"):
        for proc in reversed(SPAWNED):
            stop_process(proc)
        for plane in planes:
            plane.stop()


def byte_compile() -> None:
    """Byte-compile the checkout's modules, as pip does when it installs a wheel. The hub and the agents start
    from src/, and where PYTHONDONTWRITEBYTECODE is set (as on the machines these benches ran on) every process
    compiled every one of our modules again at its start: 50 ms of an agent's 0.39 s from start to first request
    on an idle machine, counted in bench/registration.py's start → request (py-spy of a process agent)."""
    compileall.compile_dir(str(REPO / "src"), quiet=1)


def run_bench(names: Sequence[str], what: str, prefix: str, keep: bool,
              body: Callable[[list[ControlPlane], Path], None]) -> int:
    """Start the control planes `names` ("starting <what> in <workdir> ...") in a new work directory named
    <prefix>..., run `body(planes, workdir)`, and tear everything down. Ctrl-C or SIGTERM tears down too and
    returns 130. The work directory (all logs) is removed after a successful run unless `keep`."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM tears down like Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    planes: list[ControlPlane] = []
    ok = False
    try:
        print(f"starting {what} in {workdir} ...", flush=True)
        byte_compile()
        bins = find_binaries()
        with deferred_interrupts() as interrupted:
            planes = start_many(list(names), workdir, bins)
        if interrupted:
            raise KeyboardInterrupt
        body(planes, workdir)
        ok = True
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", file=sys.stderr)
        return 130
    finally:
        tear_down(planes)
        if ok and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)
    return 0


# --- statistics and reporting ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile, not interpolated: with fewer than 100 samples P99 is the maximum."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def stats(values: list[float]) -> tuple[float, float, float, float] | None:
    """P50, P90, P99 and max, or None without values."""
    if not values:
        return None
    return percentile(values, 50), percentile(values, 90), percentile(values, 99), max(values)


def fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def busy_seconds() -> float:
    """CPU seconds all processes of the machine used so far (user, nice, system; not irq or steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(v) for v in fields[1:4]) / os.sysconf("SC_CLK_TCK")


def machine_busy(seconds: float = 1.0) -> float:
    """Cores the whole machine used, on average, over the next `seconds` (blocks)."""
    t0, b0 = time.monotonic(), busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - b0) / max(time.monotonic() - t0, 1e-3)


def loadavg() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def machine_info(plane: ControlPlane, *, load: bool = True, **extra: str) -> dict[str, str]:
    """The "Machine:" line of a report: date, usable CPUs, CPU model, Python, `extra` (e.g. library versions),
    the kube-apiserver version of `plane` and, with `load`, the load average now."""
    model = ""
    with contextlib.suppress(OSError):
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), "")
    version = plane.request_json("GET", "/version").get("gitVersion", "?")
    info = {"date": datetime.date.today().isoformat(), "nproc": str(len(os.sched_getaffinity(0))),
            "cpu": model or "?", "python": platform.python_version(), **extra, "kube-apiserver": str(version)}
    if load:
        info["load avg at start"] = loadavg()
    return info
