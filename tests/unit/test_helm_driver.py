"""The Helm driver without a cluster: kubeconfig building, error messages, version detection, the chart cache,
release-state parsing and per-release serialisation. Charts are real (packaged offline with helm_python);
repository downloads are replaced by a function that copies them."""

from __future__ import annotations

import asyncio
import base64
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from clusternet_api.fence import WRITE_FENCE, LeadershipLost
from clusternet_api.helm import sdk
from clusternet_api.helm.configs import ConfigPool
from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    ClusterUnreachableError,
    FetchedChart,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
    is_exact_version,
)
from clusternet_api.helm.fetch import ChartCache
from clusternet_api.helm.kubeconfig import kubeconfig_yaml
from clusternet_api.helm.messages import chart_error, one_line, release_error
from clusternet_testing.charts import build_chart

TOKEN = "s3cr3t-token-value"
REPO = "http://127.0.0.1:8879"


# --- secrets and kubeconfig -------------------------------------------------------------------------------------


def test_secrets_stay_out_of_repr() -> None:
    access = ClusterAccess("https://127.0.0.1:6443", b"CA", token=TOKEN, cert_pem=b"CERT", key_pem=b"KEY-PEM")
    source = ChartSource(REPO, "demo", "1.0.0", username="u", password="hunter2")
    for text in (repr(access), str(access)):
        assert TOKEN not in text and "KEY-PEM" not in text
    for text in (repr(source), str(source)):
        assert "hunter2" not in text
    assert "username='u'" in repr(source)


def test_kubeconfig_with_token_ca_and_tls_server_name() -> None:
    access = ClusterAccess("https://127.0.0.1:40000", b"-----CA-----", token=TOKEN, tls_server_name="child.example")
    cfg = yaml.safe_load(kubeconfig_yaml(access, "apps"))
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster == {"server": "https://127.0.0.1:40000",
                       "certificate-authority-data": base64.b64encode(b"-----CA-----").decode(),
                       "tls-server-name": "child.example"}
    assert cfg["users"][0]["user"] == {"token": TOKEN}
    assert cfg["contexts"][0]["context"]["namespace"] == "apps"
    assert cfg["current-context"] == cfg["contexts"][0]["name"]


def test_kubeconfig_with_client_certificate_and_no_ca() -> None:
    cfg = yaml.safe_load(kubeconfig_yaml(ClusterAccess("https://k:6443", cert_pem=b"C", key_pem=b"K"), "ns"))
    assert "certificate-authority-data" not in cfg["clusters"][0]["cluster"]
    assert "insecure-skip-tls-verify" not in cfg["clusters"][0]["cluster"]
    assert cfg["users"][0]["user"] == {"client-certificate-data": base64.b64encode(b"C").decode(),
                                       "client-key-data": base64.b64encode(b"K").decode()}


def test_the_sdk_accepts_the_kubeconfig() -> None:
    """Parsing only: a Config contacts nothing until its first action."""
    access = ClusterAccess("https://127.0.0.1:1", b"not checked yet", token=TOKEN)
    with helm_python.Config(kubeconfig_content=kubeconfig_yaml(access, "ns"), namespace="ns") as cfg:
        assert TOKEN not in repr(cfg)


def test_configs_are_reused_per_credentials_and_namespace() -> None:
    pool = ConfigPool(size=2)
    access = ClusterAccess("https://127.0.0.1:1", token=TOKEN)
    with pool.use(access, "a") as first:
        pass
    with pool.use(access, "a") as again, pool.use(access, "b") as other:
        assert again is first and other is not first
    with pool.use(ClusterAccess("https://127.0.0.1:1", token="rotated"), "a") as rotated:
        assert rotated is not first
    assert len(pool) == 2 and first.closed  # least recently used, unused: closed at once
    assert not other.closed and not rotated.closed
    pool.close()
    assert other.closed and rotated.closed and len(pool) == 0


def test_a_config_in_use_is_closed_when_its_operation_ends() -> None:
    pool = ConfigPool(size=1)
    with pool.use(ClusterAccess("https://127.0.0.1:1", token="one"), "ns") as busy:
        with pool.use(ClusterAccess("https://127.0.0.1:1", token="two"), "ns") as newer:
            assert not busy.closed
        assert not busy.closed and not newer.closed
    assert busy.closed and not newer.closed
    pool.close()


# --- error messages ---------------------------------------------------------------------------------------------

# Shapes captured from helm-python 0.2.2 (Helm v4.2.3) against a loopback repository and docker-registry.
CHART_ERRORS = [
    ('chart "demo" version "9.9.9" not found in http://127.0.0.1:8879 repository', ChartSource(REPO, "demo", "9.9.9"),
     f"version 9.9.9 of chart demo not found in {REPO}"),
    ('chart "nope" not found in http://127.0.0.1:8879 repository', ChartSource(REPO, "nope"),
     f"chart nope not found in {REPO}"),
    ('looks like "http://127.0.0.1:8879" is not a valid chart repository or cannot be reached: Get '
     '"http://127.0.0.1:8879/index.yaml": dial tcp 127.0.0.1:8879: connect: connection refused',
     ChartSource(REPO, "demo", "1.0.0"),
     f"cannot reach chart repository {REPO}: dial tcp 127.0.0.1:8879: connect: connection refused"),
    ('looks like "http://127.0.0.1:8879" is not a valid chart repository or cannot be reached: failed to fetch '
     'http://127.0.0.1:8879/index.yaml : 401 Unauthorized', ChartSource(REPO, "demo", "1.0.0"),
     f"unauthorized: {REPO} refused anonymous access (no credentials given) for version 1.0.0 of chart demo"),
    ('looks like "http://127.0.0.1:8879/sub" is not a valid chart repository or cannot be reached: failed to fetch '
     'http://127.0.0.1:8879/sub/index.yaml : 404 File not found', ChartSource(REPO + "/sub", "demo"),
     f"{REPO}/sub is not a chart repository (no index.yaml): 404 File not found"),
    ('failed to perform "FetchReference" on source: GET "http://127.0.0.1:5000/v2/charts/demo/manifests/0.1.0": '
     'basic credential not found', ChartSource("oci://127.0.0.1:5000/charts", "demo", "0.1.0", username="u"),
     "unauthorized: oci://127.0.0.1:5000/charts refused the given credentials for version 0.1.0 of chart demo"),
    ('failed to perform "FetchReference" on source: 127.0.0.1:5000/charts/demo:9.9.9: not found',
     ChartSource("oci://127.0.0.1:5000/charts", "demo", "9.9.9"),
     "version 9.9.9 of chart demo not found in oci://127.0.0.1:5000/charts"),
    ('GET "http://127.0.0.1:5000/v2/charts/nope/tags/list": response status code 404: name unknown: repository '
     'name not known to registry: map[name:charts/nope]', ChartSource("oci://127.0.0.1:5000/charts", "nope"),
     "chart nope not found in oci://127.0.0.1:5000/charts"),
    ('failed to perform "FetchReference" on source: Get "http://127.0.0.1:1/v2/charts/demo/manifests/0.1.0": dial '
     'tcp 127.0.0.1:1: connect: connection refused', ChartSource("oci://127.0.0.1:1/charts", "demo", "0.1.0"),
     "cannot reach oci://127.0.0.1:1/charts: dial tcp 127.0.0.1:1: connect: connection refused"),
]


@pytest.mark.parametrize(("detail", "source", "expected"), CHART_ERRORS)
def test_chart_error_messages(detail: str, source: ChartSource, expected: str) -> None:
    assert str(chart_error(helm_python.HelmRepoError(detail), source)) == expected


def test_release_errors_keep_helms_words_on_one_line() -> None:
    err = release_error(helm_python.HelmReleaseError("create: failed\n  ConfigMap \"x\" is invalid:\tdata[bad]\n"))
    assert type(err) is ReleaseError and str(err) == 'create: failed; ConfigMap "x" is invalid: data[bad]'
    unreachable = release_error(helm_python.HelmKubeError(
        'kubernetes cluster unreachable: Get "https://127.0.0.1:1/version": dial tcp 127.0.0.1:1: connection refused'))
    assert isinstance(unreachable, ClusterUnreachableError) and isinstance(unreachable, ReleaseError)
    assert one_line("") == "unknown error"


# --- versions and the cache -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "exact"), [
    ("1.2.3", True), ("0.1.0-rc.1", True), ("1.0.0+build.5", True), ("10.20.30", True),
    ("~1.2", False), ("^1.2.3", False), (">=1.0 <2", False), ("1.2.x", False), ("1.2", False), ("*", False),
    ("v1.2.3", False), ("", False), (None, False), ("01.2.3", False), ("1.2.3 || 2.0.0", False),
])
def test_exact_versions(version: str | None, exact: bool) -> None:
    assert is_exact_version(version) is exact


class FakePull:
    """Stands in for helm_python.pull: resolves against packaged archives in a directory, counts calls."""

    def __init__(self, archives: Path) -> None:
        self.archives, self.calls = archives, 0

    def __call__(self, ref: str, *, destination: Path, version: str | None = None, **_: Any) -> dict[str, Any]:
        self.calls += 1
        name = ref.rsplit("/", 1)[-1]
        versions = sorted(p.name.removeprefix(f"{name}-").removesuffix(".tgz") for p in self.archives.glob("*.tgz"))
        if version and version.startswith("~"):
            versions = [v for v in versions if v.startswith(version[1:] + ".")]
        elif version:
            versions = [v for v in versions if v == version]
        if not versions:
            raise helm_python.HelmRepoError(f'chart "{name}" version "{version}" not found in {REPO} repository')
        shutil.copy(self.archives / f"{name}-{versions[-1]}.tgz", destination)
        return {"output": ""}


@pytest.fixture
def fake_pull(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePull:
    archives = tmp_path / "archives"
    for version in ("0.1.0", "0.1.1", "0.2.0"):
        build_chart(archives, "demo", version)
    fake = FakePull(archives)
    monkeypatch.setattr(helm_python, "pull", fake)
    return fake


def test_exact_versions_come_from_the_cache(tmp_path: Path, fake_pull: FakePull) -> None:
    cache = ChartCache(tmp_path / "cache")
    first = cache.fetch(ChartSource(REPO, "demo", "0.1.0"))
    assert (first.name, first.version, first.path.name) == ("demo", "0.1.0", "demo-0.1.0.tgz")
    assert first.path.parent.parent == tmp_path / "cache"
    again = cache.fetch(ChartSource(REPO, "demo", "0.1.0"))
    assert again == first and fake_pull.calls == 1
    # A fresh cache object on the same directory (a restarted process) still hits.
    assert ChartCache(tmp_path / "cache").fetch(ChartSource(REPO, "demo", "0.1.0")) == first
    assert fake_pull.calls == 1
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".pull-")]


def test_constraints_and_latest_always_ask_the_repository(tmp_path: Path, fake_pull: FakePull) -> None:
    cache = ChartCache(tmp_path / "cache")
    assert cache.fetch(ChartSource(REPO, "demo", "~0.1")).version == "0.1.1"
    assert cache.fetch(ChartSource(REPO, "demo", "~0.1")).version == "0.1.1"
    assert cache.fetch(ChartSource(REPO, "demo", "")).version == "0.2.0"
    assert fake_pull.calls == 3
    # ...and what they resolved to is cached for the exact version.
    assert cache.fetch(ChartSource(REPO, "demo", "0.1.1")).version == "0.1.1" and fake_pull.calls == 3


def test_credentials_get_their_own_cache(tmp_path: Path, fake_pull: FakePull) -> None:
    cache = ChartCache(tmp_path / "cache")
    private = cache.fetch(ChartSource(REPO, "demo", "0.1.0", username="u", password="hunter2"))
    anonymous = cache.fetch(ChartSource(REPO, "demo", "0.1.0"))
    other = cache.fetch(ChartSource(REPO, "demo", "0.1.0", username="u", password="other"))
    assert len({private.path.parent, anonymous.path.parent, other.path.parent}) == 3
    assert fake_pull.calls == 3
    assert "hunter2" not in str(private.path)


def test_a_corrupt_cached_archive_is_fetched_again(tmp_path: Path, fake_pull: FakePull) -> None:
    cache = ChartCache(tmp_path / "cache")
    path = cache.fetch(ChartSource(REPO, "demo", "0.1.0")).path
    path.write_bytes(b"not a chart")
    assert cache.fetch(ChartSource(REPO, "demo", "0.1.0")).version == "0.1.0" and fake_pull.calls == 2


def test_fetch_refusals(tmp_path: Path, fake_pull: FakePull) -> None:
    cache = ChartCache(tmp_path / "cache")
    with pytest.raises(ChartError, match=r"^version 9\.9\.9 of chart demo not found in http://127\.0\.0\.1:8879$"):
        cache.fetch(ChartSource(REPO, "demo", "9.9.9"))
    with pytest.raises(ChartError, match="invalid chart name"):
        cache.fetch(ChartSource(REPO, "../demo", "0.1.0"))
    with pytest.raises(ChartError, match="unsupported chart repository 'ftp://x'"):
        cache.fetch(ChartSource("ftp://x", "demo", "0.1.0"))


# --- release state ----------------------------------------------------------------------------------------------


def test_release_state_from_get_all() -> None:
    state = sdk.release_state({
        "config": None,
        "info": {"first_deployed": "2026-12-03T10:32:05.179161775Z", "last_deployed": "0001-01-01T00:00:00Z",
                 "description": 'Release "b1" failed: boom', "status": "failed", "notes": "Hi\n"},
        "summary": {"name": "b1", "namespace": "demo", "revision": 1, "status": "failed", "chart_name": "broken",
                    "chart_version": "0.1.0", "labels": {"clusternet.io/owner": "x", "modifiedAt": "1796293925",
                                                         "name": "b1", "owner": "helm", "status": "failed",
                                                         "version": "1"}},
    })
    assert state == ReleaseState(name="b1", namespace="demo", revision=1, status="failed", chart_name="broken",
                                 chart_version="0.1.0", description='Release "b1" failed: boom', notes="Hi\n",
                                 first_deployed="2026-12-03T10:32:05.179161775Z", last_deployed=None,
                                 labels={"clusternet.io/owner": "x"}, values={})


def test_upgrade_labels_replace_the_previous_ones() -> None:
    class Cfg:
        def get_metadata(self, name: str) -> dict[str, Any]:
            return {"labels": {"keep": "1", "drop": "2", "owner": "helm", "status": "deployed"}}

    labels = sdk._replacing_labels(Cfg(), "r", {"keep": "1", "new": "3"})  # type: ignore[arg-type]
    assert labels == {"keep": "1", "new": "3", "drop": "null"}


# --- concurrency ------------------------------------------------------------------------------------------------

ACCESS = ClusterAccess("https://127.0.0.1:6443", token=TOKEN)
CHART = FetchedChart(Path("/nonexistent/demo-0.1.0.tgz"), "demo", "0.1.0")


class Recorder:
    """Replaces the blocking install: records how many run at once per release."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.done = seconds, 0
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, pool: Any, context: Any, access: ClusterAccess, chart: FetchedChart, name: str,
                 values: Any, opts: ReleaseOptions) -> ReleaseState:
        with self.lock:
            self.running[name] = self.running.get(name, 0) + 1
            self.peak[name] = max(self.peak.get(name, 0), self.running[name])
        time.sleep(self.seconds)
        with self.lock:
            self.running[name] -= 1
            self.done += 1
        return ReleaseState(name, opts.namespace, 1, "deployed", "demo", "0.1.0", "", "", None, None, {}, values)


async def test_one_release_at_a_time_different_releases_in_parallel(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(0.1)
    monkeypatch.setattr(sdk, "_install", recorder)
    driver = sdk.SdkHelmDriver(tmp_path)
    opts = ReleaseOptions(namespace="apps")
    try:
        started = time.monotonic()
        await asyncio.gather(*(driver.install(ACCESS, CHART, name, {}, opts) for name in ("a", "a", "a", "b", "c")))
        elapsed = time.monotonic() - started
    finally:
        driver.close()
    assert recorder.peak == {"a": 1, "b": 1, "c": 1}
    assert 0.3 <= elapsed < 0.5  # the three "a" in a row; "b" and "c" alongside


async def test_a_cancelled_call_keeps_the_release_locked_until_helm_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(0.3)
    monkeypatch.setattr(sdk, "_install", recorder)
    driver = sdk.SdkHelmDriver(tmp_path)
    opts = ReleaseOptions(namespace="apps")
    try:
        first = asyncio.create_task(driver.install(ACCESS, CHART, "a", {}, opts))
        await asyncio.sleep(0.05)
        first.cancel()
        second = asyncio.create_task(driver.install(ACCESS, CHART, "a", {}, opts))
        with pytest.raises(asyncio.CancelledError):
            await first
        assert recorder.done == 1  # the cancelled caller waited for its thread
        await second
    finally:
        driver.close()
    assert recorder.peak == {"a": 1} and recorder.done == 2


async def test_leader_work_that_lost_its_lease_starts_no_helm_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs, upgrades, uninstalls and rollbacks are refused by the fence (clusternet_api.fence); reads are not."""
    recorder = Recorder(0.0)
    monkeypatch.setattr(sdk, "_install", recorder)
    monkeypatch.setattr(sdk, "_uninstall", recorder)
    monkeypatch.setattr(sdk, "_get", lambda *_: None)
    driver = sdk.SdkHelmDriver(tmp_path)

    def lost() -> None:
        raise LeadershipLost("lease expired")

    token = WRITE_FENCE.set(lost)
    try:
        with pytest.raises(LeadershipLost):
            await driver.install(ACCESS, CHART, "a", {}, ReleaseOptions(namespace="apps"))
        with pytest.raises(LeadershipLost):
            await driver.uninstall(ACCESS, "apps", "a", 30)
        assert await driver.get(ACCESS, "apps", "a") is None
    finally:
        WRITE_FENCE.reset(token)
        driver.close()
    assert recorder.done == 0


def test_close_removes_the_private_cache_directory_but_never_a_given_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process and leadership term left its private directory (charts, credential salt) behind, made
    whether or not it ever fetched a chart."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    unused = sdk.SdkHelmDriver()
    unused.close()
    assert list(tmp_path.iterdir()) == []
    private = sdk.SdkHelmDriver()
    given = sdk.SdkHelmDriver(tmp_path / "cache")
    assert private.cache.root.is_dir() and given.cache.root.is_dir()
    private.close()
    given.close()
    assert not private.cache.root.exists()
    assert (tmp_path / "cache").is_dir()
