"""Shared fixtures: real control planes for a parent and two children, started once per test session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clusternet_api.kube import Credentials, Kube
from clusternet_testing.controlplane import ControlPlane, ControlPlaneError, find_binaries, start_many

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def control_planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ControlPlane]]:
    """parent, child1, child2: three independent real clusters. Fails loudly when binaries are missing."""
    try:
        bins = find_binaries()
    except ControlPlaneError as e:
        pytest.fail(str(e), pytrace=False)
    root = tmp_path_factory.mktemp("cp")
    # The parent's service CIDR is inside 127.0.0.0/8 so an aggregated APIService can reach the hub.
    planes = start_many(["parent", "child1", "child2"], root, bins,
                        service_cidrs=["127.1.0.0/16", "127.2.0.0/16", "127.3.0.0/16"])
    from clusternet_api.crdgen import all_crds

    for crd in all_crds():
        planes[0].apply_manifest(crd)
    for crd in all_crds():
        name = crd["metadata"]["name"]
        _wait_established(planes[0], name)
    try:
        yield {p.name: p for p in planes}
    finally:
        for p in planes:
            p.stop()


def _wait_established(cp: ControlPlane, crd_name: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = cp.request_json("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd_name}")
        conds = crd.get("status", {}).get("conditions", [])  # type: ignore[union-attr]
        if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {crd_name} not established")


@pytest.fixture(scope="session")
def parent(control_planes: dict[str, ControlPlane]) -> ControlPlane:
    return control_planes["parent"]


@pytest.fixture(scope="session")
def child1(control_planes: dict[str, ControlPlane]) -> ControlPlane:
    return control_planes["child1"]


@pytest.fixture(scope="session")
def child2(control_planes: dict[str, ControlPlane]) -> ControlPlane:
    return control_planes["child2"]


@pytest.fixture
async def parent_kube(parent: ControlPlane) -> AsyncIterator[Kube]:
    async with Kube(Credentials.from_kubeconfig(parent.kubeconfig)) as kube:
        yield kube


@pytest.fixture
async def child1_kube(child1: ControlPlane) -> AsyncIterator[Kube]:
    async with Kube(Credentials.from_kubeconfig(child1.kubeconfig)) as kube:
        yield kube
