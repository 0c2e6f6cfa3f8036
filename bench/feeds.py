"""The objects benchmarks deploy, as feeds of a Subscription or applied directly: feed references, feed
directories for `kubectl clusternet apply`, and the direct appliers (kubectl and an in-process client)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import yaml

from clusternet_api import known
from clusternet_api.kube import Kube, Obj
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import PLUGIN

DIRECT_MANAGER = "bench-direct"
DIRECT_CONCURRENCY = 8
APPS = known.APPS_API_VERSION


def feed_of(obj: Obj) -> dict[str, str]:
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


def subscription(name: str, selector: dict[str, str], objects: list[Obj]) -> Obj:
    return {"apiVersion": APPS, "kind": "Subscription", "metadata": {"name": name, "namespace": "default"},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": selector}}],
                     "feeds": [feed_of(o) for o in objects]}}


def write_feed_dir(directory: Path, objects: list[Obj], sub: Obj | None) -> Path:
    """What a user hands to `kubectl clusternet apply -f`: feeds first, the Subscription last (sorted names)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "10-feeds.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
    if sub is not None:
        (directory / "20-subscription.yaml").write_text(yaml.safe_dump(sub, sort_keys=False))
    return directory


def moved(objects: list[Obj], namespace: str) -> list[Obj]:
    """The same objects with their namespace (and the Namespace's name) replaced."""
    out: list[Obj] = json.loads(json.dumps(objects))
    for obj in out:
        obj["metadata"]["name" if obj["kind"] == "Namespace" else "namespace"] = namespace
    return out


async def run_command(*argv: str) -> tuple[int, str]:
    """Run a command line to its end; (exit code, stdout and stderr). Killed if the bench is interrupted."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    return int(proc.returncode or 0), out.decode(errors="replace")


async def run_plugin(directory: Path, parent: ControlPlane) -> tuple[int, str]:
    return await run_command(*PLUGIN, "--kubeconfig", str(parent.kubeconfig), "apply", "-f", str(directory))


async def run_kubectl_apply(directory: Path, child: ControlPlane) -> None:
    """A plain client from the command line: what a user runs to apply to one cluster without Clusternet."""
    code, output = await run_command("kubectl", "--kubeconfig", str(child.kubeconfig), "apply", "--server-side",
                                     f"--field-manager={DIRECT_MANAGER}", "-f", str(directory))
    if code:
        raise RuntimeError(f"kubectl apply failed ({code}):\n{output}")


async def apply_in_order(kube: Kube, objects: list[Obj]) -> None:
    for obj in objects:
        await kube.apply(obj, DIRECT_MANAGER)
