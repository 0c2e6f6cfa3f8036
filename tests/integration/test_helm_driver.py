"""The Helm driver against one real control plane and loopback chart sources: what HelmRelease handling in
the hub (push) and the agent (pull) relies on — revisions, release labels and values read back, Helm's storage
Secrets, the API server's refusal reaching the caller, atomic installs, uninstall, fetch and its cache."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import helm_python
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    ClusterUnreachableError,
    FetchedChart,
    ReleaseError,
    ReleaseOptions,
)
from clusternet_api.helm.sdk import SdkHelmDriver
from clusternet_api.pki import issue_cert
from clusternet_testing.charts import BAD_KEY, ChartRepo, OciRegistry, build_chart
from clusternet_testing.controlplane import ControlPlane, find_binaries
from clusternet_testing.helpers import kubectl

pytestmark = pytest.mark.integration

OWNER = {"clusternet.io/owner": "sub-1"}
T = TypeVar("T")


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One control plane of its own: these tests need no parent/child pair."""
    plane = ControlPlane("helm", find_binaries(), tmp_path_factory.mktemp("helm-cp"))
    with plane:
        yield plane


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    root = tmp_path_factory.mktemp("charts")
    with ChartRepo(root / "repo") as served:
        for version in ("0.1.0", "0.1.1", "0.2.0"):
            served.add(build_chart(root / "build", "demo", version))
        served.add(build_chart(root / "build", "broken", "0.1.0", fail=True))
        yield served


@pytest.fixture
async def driver(tmp_path: Path) -> AsyncIterator[SdkHelmDriver]:
    helm = SdkHelmDriver(tmp_path / "cache")
    yield helm
    helm.close()


def admin(cp: ControlPlane) -> ClusterAccess:
    return ClusterAccess(cp.url, cp.ca_pem, token=cp.admin_token)


def configmap(cp: ControlPlane, namespace: str, name: str) -> dict[str, str] | None:
    out = kubectl(cp, "get", "configmap", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout)["data"] if out.returncode == 0 else None


def release_secrets(cp: ControlPlane, namespace: str, release: str) -> list[str]:
    return kubectl(cp, "get", "secret", "-n", namespace, "-l", f"owner=helm,name={release}",
                   "-o", "name").stdout.split()


async def timed(what: str, timings: dict[str, float], coro: Awaitable[T]) -> T:
    started = time.monotonic()
    result = await coro
    timings[what] = time.monotonic() - started
    return result


async def test_install_upgrade_uninstall(cp: ControlPlane, repo: ChartRepo, driver: SdkHelmDriver) -> None:
    access, ns, timings = admin(cp), "lifecycle", dict[str, float]()
    v1 = await timed("fetch (pull)", timings, driver.fetch(ChartSource(repo.url, "demo", "0.1.0")))
    await timed("fetch (cached)", timings, driver.fetch(ChartSource(repo.url, "demo", "0.1.0")))
    opts = ReleaseOptions(namespace=ns, labels=OWNER, description="from sub-1", wait=True, timeout_seconds=30)
    state = await timed("install", timings, driver.install(access, v1, "web", {"greeting": "hi"}, opts))
    assert state == await driver.get(access, ns, "web")
    assert (state.revision, state.status, state.chart_name, state.chart_version) == (1, "deployed", "demo", "0.1.0")
    assert state.labels == OWNER and state.values == {"greeting": "hi"} and state.description == "from sub-1"
    assert state.first_deployed and state.first_deployed == state.last_deployed
    assert configmap(cp, ns, "web-cm-0") == {"greeting": "hi", "index": "0", "chartVersion": "0.1.0"}
    await timed("get", timings, driver.get(access, ns, "web"))

    opts2 = ReleaseOptions(namespace=ns, labels={**OWNER, "extra": "1"})
    state = await timed("upgrade (values)", timings, driver.upgrade(access, v1, "web", {"greeting": "yo"}, opts2))
    assert (state.revision, state.status, state.description) == (2, "deployed", "Upgrade complete")
    assert state.labels == {**OWNER, "extra": "1"} and state.values == {"greeting": "yo"}
    assert state.first_deployed != state.last_deployed
    assert kubectl(cp, "get", "secret", "-n", ns, "sh.helm.release.v1.web.v2", check=False).returncode == 0
    assert configmap(cp, ns, "web-cm-0") == {"greeting": "yo", "index": "0", "chartVersion": "0.1.0"}

    v2 = await driver.fetch(ChartSource(repo.url, "demo", "0.2.0"))
    state = await timed("upgrade (chart)", timings, driver.upgrade(access, v2, "web", {}, ReleaseOptions(
        namespace=ns, labels=OWNER)))
    # Exactly the values given (none), not Helm's reuse of the previous ones; the dropped label is gone.
    assert (state.revision, state.chart_version, state.values, state.labels) == (3, "0.2.0", {}, OWNER)
    assert configmap(cp, ns, "web-cm-0") == {"greeting": "hello", "index": "0", "chartVersion": "0.2.0"}
    assert len(release_secrets(cp, ns, "web")) == 3

    assert await timed("uninstall", timings, driver.uninstall(access, ns, "web", 60)) is True
    assert configmap(cp, ns, "web-cm-0") is None and release_secrets(cp, ns, "web") == []
    assert await driver.get(access, ns, "web") is None
    assert await driver.uninstall(access, ns, "web", 60) is False
    print("timings against the local API server:", {k: f"{v:.2f}s" for k, v in timings.items()})


async def test_max_history_prunes_old_revisions(cp: ControlPlane, repo: ChartRepo, driver: SdkHelmDriver) -> None:
    access, ns = admin(cp), "history"
    chart = await driver.fetch(ChartSource(repo.url, "demo", "0.1.0"))
    opts = ReleaseOptions(namespace=ns, max_history=2)
    await driver.install(access, chart, "hist", {}, opts)
    for i in range(3):
        state = await driver.upgrade(access, chart, "hist", {"greeting": f"v{i}"}, opts)
    assert state.revision == 4
    assert sorted(release_secrets(cp, ns, "hist")) == ["secret/sh.helm.release.v1.hist.v3",
                                                      "secret/sh.helm.release.v1.hist.v4"]
    await driver.uninstall(access, ns, "hist", 60)


async def test_failures_carry_the_api_servers_message(cp: ControlPlane, repo: ChartRepo,
                                                      driver: SdkHelmDriver) -> None:
    access, ns = admin(cp), "failing"
    broken = await driver.fetch(ChartSource(repo.url, "broken", "0.1.0"))
    good = await driver.fetch(ChartSource(repo.url, "demo", "0.1.0"))
    opts = ReleaseOptions(namespace=ns, labels=OWNER)

    with pytest.raises(ReleaseError) as failed:
        await driver.install(access, broken, "bad", {}, opts)
    message = str(failed.value)
    assert "\n" not in message and not isinstance(failed.value, ClusterUnreachableError)
    assert 'ConfigMap "bad-cm-bad" is invalid' in message and BAD_KEY in message
    state = await driver.get(access, ns, "bad")
    assert state is not None and (state.revision, state.status, state.labels) == (1, "failed", OWNER)
    assert 'ConfigMap "bad-cm-bad" is invalid' in state.description

    # A release whose only revision failed can be upgraded (how a fixed HelmRelease recovers).
    state = await driver.upgrade(access, good, "bad", {}, opts)
    assert (state.revision, state.status) == (2, "deployed")

    # upgrade_atomic: the failed revision is rolled back, which is itself a new revision.
    with pytest.raises(ReleaseError, match="rolled back due to rollback-on-failure"):
        await driver.upgrade(access, broken, "bad", {}, ReleaseOptions(namespace=ns, upgrade_atomic=True))
    state = await driver.get(access, ns, "bad")
    assert state is not None and (state.revision, state.status, state.chart_name) == (4, "deployed", "demo")

    # atomic: a failed install leaves nothing behind.
    with pytest.raises(ReleaseError, match="uninstalled due to rollback-on-failure") as atomic:
        await driver.install(access, broken, "bad-atomic", {}, ReleaseOptions(namespace=ns, atomic=True))
    assert BAD_KEY in str(atomic.value)
    assert await driver.get(access, ns, "bad-atomic") is None and release_secrets(cp, ns, "bad-atomic") == []
    assert configmap(cp, ns, "bad-atomic-cm-0") is None

    with pytest.raises(ReleaseError, match="cannot reuse a name that is still in use"):
        await driver.install(access, good, "bad", {}, opts)
    with pytest.raises(ReleaseError, match='"nothing" has no deployed releases'):
        await driver.upgrade(access, good, "nothing", {}, opts)
    with pytest.raises(ReleaseError, match='namespaces "absent" not found'):
        await driver.install(access, good, "x", {}, ReleaseOptions(namespace="absent", create_namespace=False))
    assert await driver.uninstall(access, ns, "bad", 60) is True


async def test_disable_hooks(cp: ControlPlane, driver: SdkHelmDriver, tmp_path: Path) -> None:
    chart_dir = tmp_path / "hooked"
    build = build_chart(tmp_path / "build", "hooked", "0.1.0")
    helm_python.expand(chart_dir, build)
    (chart_dir / "hooked" / "templates" / "hook.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hook\n"
        "  annotations: {helm.sh/hook: pre-install}\ndata: {ran: \"yes\"}\n")
    tgz = Path(helm_python.package(chart_dir / "hooked", destination=tmp_path))
    chart, access, ns = FetchedChart(tgz, "hooked", "0.1.0"), admin(cp), "hooks"
    await driver.install(access, chart, "with", {}, ReleaseOptions(namespace=ns))
    await driver.install(access, chart, "without", {}, ReleaseOptions(namespace=ns, disable_hooks=True))
    assert configmap(cp, ns, "with-hook") == {"ran": "yes"}
    assert configmap(cp, ns, "without-hook") is None and configmap(cp, ns, "without-cm-0") is not None
    state = await driver.upgrade(access, chart, "without", {"greeting": "x"},
                                 ReleaseOptions(namespace=ns, disable_hooks=True, labels=OWNER))
    assert (state.revision, state.labels, state.values) == (2, OWNER, {"greeting": "x"})


CRD = """apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.skip.example}
spec:
  group: skip.example
  names: {kind: Widget, plural: widgets, singular: widget}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
"""


async def test_clusternets_other_helm_options_reach_helm(cp: ControlPlane, driver: SdkHelmDriver,
                                                          tmp_path: Path) -> None:
    """skipCRDs, waitForJob, replace (install) and force (upgrade) were accepted and never reached Helm until
    2026-12-06; the C library refuses an option it does not know, so each being taken is checked here too."""
    build = build_chart(tmp_path / "build", "crds", "0.1.0")
    helm_python.expand(tmp_path / "chart", build)
    (tmp_path / "chart" / "crds" / "crds").mkdir(parents=True)
    (tmp_path / "chart" / "crds" / "crds" / "widget.yaml").write_text(CRD)
    chart = FetchedChart(Path(helm_python.package(tmp_path / "chart" / "crds", destination=tmp_path)), "crds",
                         "0.1.0")
    access, ns = admin(cp), "options"

    def crd_exists() -> bool:
        return kubectl(cp, "get", "crd", "widgets.skip.example", check=False).returncode == 0

    state = await driver.install(access, chart, "skipped", {}, ReleaseOptions(
        namespace=ns, skip_crds=True, replace=True, wait=True, wait_for_jobs=True, timeout_seconds=60))
    assert state.status == "deployed" and not crd_exists()
    assert configmap(cp, ns, "skipped-cm-0") is not None
    state = await driver.upgrade(access, chart, "skipped", {"greeting": "x"}, ReleaseOptions(
        namespace=ns, skip_crds=True, force=True, wait=True, wait_for_jobs=True, timeout_seconds=60))
    assert (state.status, state.revision) == ("deployed", 2) and not crd_exists()
    assert configmap(cp, ns, "skipped-cm-0") == {"greeting": "x", "index": "0", "chartVersion": "0.1.0"}
    await driver.install(access, chart, "with-crds", {}, ReleaseOptions(namespace=ns))
    assert crd_exists()  # Helm's default: crds/ installed with the first revision


async def test_wait_timeout_and_cancellation(cp: ControlPlane, driver: SdkHelmDriver, tmp_path: Path) -> None:
    """A Deployment never becomes available here (no nodes): waiting times out, or the caller gives up."""
    chart_dir = tmp_path / "never-ready"
    (chart_dir / "templates").mkdir(parents=True)
    (chart_dir / "Chart.yaml").write_text("apiVersion: v2\nname: never-ready\nversion: 0.1.0\n")
    (chart_dir / "templates" / "deployment.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: '{{ .Release.Name }}'}\nspec:\n"
        "  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n"
        "    spec: {containers: [{name: c, image: registry.invalid/none}]}\n")
    chart = FetchedChart(Path(helm_python.package(chart_dir, destination=tmp_path)), "never-ready", "0.1.0")
    access, ns = admin(cp), "waiting"

    with pytest.raises(ReleaseError, match=r"Deployment/waiting/slow not ready.*context deadline exceeded"):
        await driver.install(access, chart, "slow", {}, ReleaseOptions(namespace=ns, wait=True, timeout_seconds=2))
    state = await driver.get(access, ns, "slow")
    assert state is not None and state.status == "failed" and "\n" not in state.description

    # The caller gives up: Helm's context is cancelled, the release is failed (not stuck pending-install),
    # and the lock was held until Helm returned, so the next operation finds a consistent release.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(driver.install(access, chart, "given-up", {}, ReleaseOptions(
            namespace=ns, wait=True, timeout_seconds=60)), 1)
    state = await driver.get(access, ns, "given-up")
    assert state is not None and (state.status, state.description) == ("failed",
                                                                        'Release "given-up" failed: context canceled')
    state = await driver.upgrade(access, chart, "given-up", {}, ReleaseOptions(namespace=ns))
    assert (state.revision, state.status) == (2, "deployed")


async def test_cluster_access_variants(cp: ControlPlane, repo: ChartRepo, driver: SdkHelmDriver) -> None:
    chart = await driver.fetch(ChartSource(repo.url, "demo", "0.1.0"))
    ca_key = serialization.load_pem_private_key((cp.pki / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(cp.ca_pem)
    client = issue_cert(ca_key, ca_cert, "helm-tester", organizations=["system:masters"], client=True)  # type: ignore[arg-type]
    # Client certificate, and a server name that is not the address (as behind the hub's loopback relay).
    by_cert = ClusterAccess(cp.url, cp.ca_pem, cert_pem=client.cert_pem, key_pem=client.key_pem,
                            tls_server_name="kubernetes.default.svc")
    state = await driver.install(by_cert, chart, "cert", {}, ReleaseOptions(namespace="access"))
    assert state.status == "deployed"
    assert await driver.get(admin(cp), "access", "cert") == state

    wrong_name = ClusterAccess(cp.url, cp.ca_pem, token=cp.admin_token, tls_server_name="not-the-apiserver")
    with pytest.raises(ClusterUnreachableError, match="not-the-apiserver"):
        await driver.get(wrong_name, "access", "cert")
    with pytest.raises(ClusterUnreachableError, match="provide credentials"):
        await driver.get(ClusterAccess(cp.url, cp.ca_pem, token="wrong"), "access", "cert")
    with pytest.raises(ClusterUnreachableError, match="connection refused"):
        await driver.install(ClusterAccess("https://127.0.0.1:1", cp.ca_pem, token=cp.admin_token), chart, "x", {},
                             ReleaseOptions(namespace="access"))
    assert await driver.uninstall(by_cert, "access", "cert", 60) is True


async def test_fetch_from_a_classic_repository(repo: ChartRepo, driver: SdkHelmDriver, tmp_path: Path) -> None:
    exact = await driver.fetch(ChartSource(repo.url, "demo", "0.1.0"))
    assert (exact.name, exact.version, exact.path.name) == ("demo", "0.1.0", "demo-0.1.0.tgz")
    assert exact.path.is_file() and exact.path.is_relative_to(driver.cache.root)
    before = repo.requests
    assert await driver.fetch(ChartSource(repo.url, "demo", "0.1.0")) == exact
    assert repo.requests == before  # from the cache, no request

    assert (await driver.fetch(ChartSource(repo.url, "demo", "~0.1"))).version == "0.1.1"
    assert (await driver.fetch(ChartSource(repo.url, "demo", ">=0.1 <0.2"))).version == "0.1.1"
    assert (await driver.fetch(ChartSource(repo.url, "demo", "0.1.x"))).version == "0.1.1"
    assert (await driver.fetch(ChartSource(repo.url, "demo", None))).version == "0.2.0"
    assert (await driver.fetch(ChartSource(repo.url, "demo", ""))).version == "0.2.0"

    with pytest.raises(ChartError, match=rf"^version 9\.9\.9 of chart demo not found in {re.escape(repo.url)}$"):
        await driver.fetch(ChartSource(repo.url, "demo", "9.9.9"))
    with pytest.raises(ChartError, match=rf"^chart nope not found in {re.escape(repo.url)}$"):
        await driver.fetch(ChartSource(repo.url, "nope"))
    with pytest.raises(ChartError, match=r"^cannot reach chart repository http://127\.0\.0\.1:1: .*connection refused"):
        await driver.fetch(ChartSource("http://127.0.0.1:1", "demo", "0.1.0"))

    with ChartRepo(tmp_path / "private", username="u", password="hunter2") as private:
        private.add(exact.path)
        with pytest.raises(ChartError, match=r"^unauthorized: .* refused anonymous access") as refused:
            await driver.fetch(ChartSource(private.url, "demo", "0.1.0"))
        with pytest.raises(ChartError, match=r"^unauthorized: .* refused the given credentials"):
            await driver.fetch(ChartSource(private.url, "demo", "0.1.0", username="u", password="wrong"))
        assert "hunter2" not in str(refused.value)
        fetched = await driver.fetch(ChartSource(private.url, "demo", "~0.1", username="u", password="hunter2"))
        assert fetched.version == "0.1.0"


async def test_fetch_from_an_oci_registry(driver: SdkHelmDriver, tmp_path: Path) -> None:
    with OciRegistry(tmp_path / "registry") as registry:
        for version in ("0.1.0", "0.1.1", "0.2.0"):
            registry.push(build_chart(tmp_path / "build", "demo", version))
        source = ChartSource(registry.url, "demo", "0.1.0", plain_http=True)
        exact = await driver.fetch(source)
        assert (exact.name, exact.version) == ("demo", "0.1.0")
        assert (await driver.fetch(ChartSource(registry.url, "demo", "~0.1", plain_http=True))).version == "0.1.1"
        assert (await driver.fetch(ChartSource(registry.url, "demo", None, plain_http=True))).version == "0.2.0"
        url = re.escape(registry.url)
        with pytest.raises(ChartError, match=rf"^version 9\.9\.9 of chart demo not found in {url}$"):
            await driver.fetch(ChartSource(registry.url, "demo", "9.9.9", plain_http=True))
        with pytest.raises(ChartError, match=rf"^chart nope not found in {url}$"):
            await driver.fetch(ChartSource(registry.url, "nope", None, plain_http=True))
    # The registry is gone: an exact version still comes from the cache.
    assert await driver.fetch(source) == exact
    with pytest.raises(ChartError, match=r"^cannot reach oci://"):
        await driver.fetch(ChartSource(registry.url, "demo", "~0.1", plain_http=True))
