"""The built-in predictor's cost: one question answered on a child holding many pods.

One real child control plane (etcd, kube-apiserver, kube-controller-manager) gets `--nodes` kubelet-less Nodes and
Deployments adding up to `--pods` pods (waiting for a node: no scheduler runs, which is the predictor's worst case,
every pod counted twice over: as waiting and through its workload). The agent's BuiltinPredictor, the real code, is
then asked `--asks` times in a row, each answer from five LISTs of the watch cache (Nodes, Pods, Deployments,
StatefulSets, ReplicaSets) and the arithmetic of clusternet_core/capacity.py. Reported: wall time per answer (P50
and max) and this process's CPU per answer, which bounds what a scale-up costs the agent and the hub's wait
(clusternet_hub/predictor.py gives a predictor PREDICT_TIMEOUT).

    .venv/bin/python bench/predictor.py                  # 1,000 pods on 10 nodes
    .venv/bin/python bench/predictor.py --pods 5000 --nodes 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from clusternet_agent.predictor import BuiltinPredictor
from clusternet_api.kube import Credentials, Kube
from clusternet_testing.controlplane import ControlPlane
from common import machine_busy, machine_info, percentile, run_bench, wait_until

PER_DEPLOYMENT = 100  # pods per Deployment: the ReplicaSet controller creates them in bursts of its own


def node(i: int) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"bench-node-{i}"},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"}}}


def deployment(i: int, replicas: int) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"bench-{i}", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": f"bench-{i}"}},
                     "template": {"metadata": {"labels": {"app": f"bench-{i}"}}, "spec": {"containers": [
                         {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "100m"}}}]}}}}


async def measure(child: ControlPlane, asks: int) -> tuple[list[float], float, int]:
    creds = Credentials.load(str(child.kubeconfig))
    async with Kube(creds, user_agent="bench-predictor") as kube:
        predictor = BuiltinPredictor(kube)
        # tolerating all: no kubelet runs, so the node lifecycle controller taints every Node not-ready
        requirements = {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                        "tolerations": [{"operator": "Exists"}]}
        await predictor.predict(requirements)  # discovery and the connection, once
        walls: list[float] = []
        cpu0 = time.process_time()
        answer = 0
        for _ in range(asks):
            t0 = time.perf_counter()
            answer = await predictor.predict(requirements)
            walls.append(time.perf_counter() - t0)
        return walls, (time.process_time() - cpu0) / asks, answer


def body(planes: list[ControlPlane], _workdir: Path, args: argparse.Namespace) -> None:
    child = planes[0]
    for i in range(args.nodes):
        child.apply_manifest(node(i))
    for i, start in enumerate(range(0, args.pods, PER_DEPLOYMENT)):
        child.apply_manifest(deployment(i, min(PER_DEPLOYMENT, args.pods - start)))
    def created() -> bool:
        items = child.request_json("GET", "/api/v1/pods?resourceVersion=0").get("items")
        return isinstance(items, list) and len(items) >= args.pods

    wait_until(created, f"{args.pods} pods", interval=1.0, timeout=600)
    busy = machine_busy(5.0)  # the controllers done: a baseline on a busy machine is invalid (bench/README.md)
    info = machine_info(child)
    walls, cpu, answer = asyncio.run(measure(child, args.asks))
    print(f"\nMachine: {json.dumps(info)}; cores busy before: {busy:.2f}")
    print("\n| nodes | pods | asks | answer | wall P50 (ms) | wall max (ms) | CPU per answer (ms) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.nodes} | {args.pods} | {args.asks} | {answer} | {percentile(walls, 50) * 1000:.1f} | "
          f"{max(walls) * 1000:.1f} | {cpu * 1000:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--asks", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    args = parser.parse_args()
    return run_bench(["child"], "one child", "clusternet-bench-predictor-", args.keep,
                     lambda planes, workdir: body(planes, workdir, args))


if __name__ == "__main__":
    raise SystemExit(main())
