"""Shared fixtures: real control planes for a parent and two children, started once per test session, each when a
test first needs it (parent and child1 together, child2 alone), so a module that needs two clusters runs two."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clusternet_api.kube import Credentials, Kube
from clusternet_testing.controlplane import ControlPlane, ControlPlaneError, find_binaries, start_many

REPO = Path(__file__).resolve().parents[1]


# The parent's service CIDR is inside 127.0.0.0/8 so an aggregated APIService can reach the hub.
SERVICE_CIDRS = {"parent": "127.1.0.0/16", "child1": "127.2.0.0/16", "child2": "127.3.0.0/16"}


class Planes:
    """parent, child1, child2: independent real clusters, started on first use; the parent gets the CRDs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.planes: dict[str, ControlPlane] = {}

    def __getitem__(self, name: str) -> ControlPlane:
        if name not in self.planes:
            wanted = ["parent", "child1"] if name in ("parent", "child1") else [name]
            names = [n for n in wanted if n not in self.planes]
            try:
                bins = find_binaries()
            except ControlPlaneError as e:
                pytest.fail(str(e), pytrace=False)
            for plane in start_many(names, self.root, bins, service_cidrs=[SERVICE_CIDRS[n] for n in names]):
                self.planes[plane.name] = plane
            if "parent" in names:
                self.planes["parent"].install_crds()
        return self.planes[name]

    def stop(self) -> None:
        for plane in self.planes.values():
            plane.stop()


@pytest.fixture(scope="session")
def control_planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Planes]:
    """Fails loudly when binaries are missing."""
    planes = Planes(tmp_path_factory.mktemp("cp"))
    try:
        yield planes
    finally:
        planes.stop()


@pytest.fixture(scope="session")
def parent(control_planes: Planes) -> ControlPlane:
    return control_planes["parent"]


@pytest.fixture(scope="session")
def child1(control_planes: Planes) -> ControlPlane:
    return control_planes["child1"]


@pytest.fixture(scope="session")
def child2(control_planes: Planes) -> ControlPlane:
    return control_planes["child2"]


@pytest.fixture
async def parent_kube(parent: ControlPlane) -> AsyncIterator[Kube]:
    async with Kube(Credentials.from_kubeconfig(parent.kubeconfig)) as kube:
        yield kube


@pytest.fixture
async def child1_kube(child1: ControlPlane) -> AsyncIterator[Kube]:
    async with Kube(Credentials.from_kubeconfig(child1.kubeconfig)) as kube:
        yield kube
