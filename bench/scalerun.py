"""bench/scale.py's shared pieces: the scenario's names and objects, and `Run`, what one size's phases hand
on to each other (its set-up, watches and results). Split out so that the phases can live in more than one
module (scale.py: registration to steady state; scalefaults.py: outage, reconnect storm, final checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from clusternet_api import known
from clusternet_api.kube import Credentials, Kube, Obj
from clusternet_testing.controlplane import ControlPlane
from common import Hub
from feeds import feed_of
from scalefleet import Worker
from scalereport import SizeResult
from scalewatch import Cluster, DescState, Watcher

APPS = known.APPS_API_VERSION
CLUSTERS = known.CLUSTERS_API_VERSION
FEEDS = 2
WARMUP = 2  # clusters registered (and left running) before anything is timed
BUSY_MARGIN = 1.0  # a direct run whose 1-minute load average is this much above ours is invalid
SUB = "scale-app"
GLOBALIZATION = "scale-version"



# --- the scenario's objects -----------------------------------------------------------------------------
def app_namespace(i: int) -> str:
    return f"app-{i}"


def app_objects(namespace: str) -> list[Obj]:
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": namespace},
             "data": {"greeting": "hello from the scale bench"}}]


def globalization(objects: list[Obj], version: str) -> Obj:
    return {"apiVersion": APPS, "kind": "Globalization", "metadata": {"name": GLOBALIZATION},
            "spec": {"overridePolicy": "ApplyNow", "priority": 500, "feed": feed_of(objects[1]),
                     "clusterAffinity": {"matchLabels": {"bench": "scale"}},
                     "overrides": [{"name": "version", "type": "MergePatch",
                                    "value": json.dumps({"data": {"version": version}})}]}}


async def settle(seconds: float) -> None:
    """A pause for what the last step left behind (controllers creating per-namespace objects)."""
    await asyncio.sleep(seconds)


@dataclass
class Run:
    """One size's live set-up and what its phases hand on to each other."""

    n: int
    args: argparse.Namespace
    parent: ControlPlane
    child: ControlPlane
    hub: Hub
    workdir: Path
    pk: Kube  # the parent, as its admin
    ck: Kube  # the child, as its admin
    child_creds: Credentials
    hub_pid: int
    watcher: Watcher
    workers: list[Worker]
    by_id: dict[str, Cluster]
    res: SizeResult
    spy: tuple[asyncio.subprocess.Process, Path] | None = None
    cpu_hub_0: float = 0.0
    pids: dict[str, int] = field(default_factory=dict)  # processes whose CPU each timed phase counts
    live: list[Cluster] = field(default_factory=list)  # registered clusters (those with a namespace)
    objects: list[Obj] = field(default_factory=list)  # the Subscription's feeds
    silent: set[int] = field(default_factory=set)  # the outage's agents
    t_out: float = 0.0  # the outage began
    t_back: float = 0.0  # ... and ended

    @property
    def by_index(self) -> dict[int, Cluster]:
        return {c.index: c for c in self.by_id.values()}


def deployed_gen(r: Run, min_gen: dict[str, int]) -> int:
    """Live clusters whose Description was Success for at least the generation `min_gen` names (default 1)."""
    return sum(any(g >= min_gen.get(c.namespace, 1) for g in r.watcher.descs.get(c.namespace, DescState())
                   .success_at) for c in r.live)


async def override_to(r: Run, version: str) -> tuple[list[float], str]:
    """Set the Globalization's value to `version`: seconds until each Description is Success for its new
    generation, and what a sample of the child's ConfigMaps say."""
    n, pk, ck, watcher, live = r.n, r.pk, r.ck, r.watcher, r.live
    before = {c.namespace: watcher.descs[c.namespace].generation for c in live if c.namespace in watcher.descs}
    wanted = {ns: g + 1 for ns, g in before.items()}
    t_ov = time.monotonic()
    await pk.patch(APPS, "Globalization", GLOBALIZATION, {"spec": globalization(r.objects, version)["spec"]})
    try:
        await watcher.until(lambda: deployed_gen(r, wanted) == len(wanted), max(180.0, n * 1.0),
                            "all re-applied", lambda: f"({deployed_gen(r, wanted)}/{len(wanted)})")
    except TimeoutError as e:
        r.res.notes.append(str(e))
    times = [min(t for g, t in st.success_at.items() if g >= wanted[ns]) - t_ov
             for ns, st in watcher.descs.items() if ns in wanted and any(g >= wanted[ns] for g in st.success_at)]
    sample = live[:: max(1, len(live) // 10)]
    versions = [((await ck.get("v1", "ConfigMap", "config", app_namespace(c.index))) or {}).get("data", {})
                .get("version") for c in sample]
    return times, f"{sum(v == version for v in versions)}/{len(versions)} sampled ConfigMaps in the child say " \
                  f"version {version}"
