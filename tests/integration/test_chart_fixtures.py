"""The chart fixtures behave like the real chart sources HelmRelease tests rely on (no control plane needed).

If these fail, HelmRelease integration tests and the chart benchmark would fail for reasons that have
nothing to do with the product: charts render as documented, the HTTP repository serves an index Helm
accepts (constraints, basic auth), and the OCI registry takes pushes and answers tag listings and pulls.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import helm_python
import pytest
import yaml

from clusternet_testing.charts import ChartRepo, OciRegistry, build_chart

VERSIONS = ("0.1.0", "0.1.5", "0.2.0")


def pulled(destination: Path) -> list[str]:
    """File names in a pull's destination: `pull` returns no name or version, so the file tells."""
    return sorted(p.name for p in destination.iterdir())


def test_chart_renders_configmaps_with_values_and_version(tmp_path: Path) -> None:
    tgz = build_chart(tmp_path, "web", "1.2.3", templates=3, values={"extra": 1})
    assert tgz == tmp_path / "web-1.2.3.tgz" and pulled(tmp_path) == ["web-1.2.3.tgz"]
    chart = helm_python.Chart.load(tgz)
    assert chart.values == {"greeting": "hello", "extra": 1}
    docs = [yaml.safe_load(text) for text in chart.render({"greeting": "hi"}, name="rel", namespace="ns1").values()]
    assert sorted(d["metadata"]["name"] for d in docs) == ["rel-cm-0", "rel-cm-1", "rel-cm-2"]
    for d in docs:
        index = d["metadata"]["name"].rsplit("-", 1)[1]
        assert d["kind"] == "ConfigMap" and d["metadata"]["namespace"] == "ns1"
        assert d["data"] == {"greeting": "hi", "index": index, "chartVersion": "1.2.3"}
    defaults = chart.render(name="r", namespace="n")
    assert all(yaml.safe_load(t)["data"]["greeting"] == "hello" for t in defaults.values())


def test_failing_chart_renders_an_object_the_api_server_refuses(tmp_path: Path) -> None:
    chart = helm_python.Chart.load(build_chart(tmp_path, fail=True))
    docs = [yaml.safe_load(t) for t in chart.render(name="r", namespace="n").values()]
    bad = next(d for d in docs if d["metadata"]["name"] == "r-cm-bad")
    assert "bad key!" in bad["data"] and len(docs) == 2


@pytest.fixture(scope="module")
def charts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    workdir = tmp_path_factory.mktemp("charts")
    return [build_chart(workdir, version=v) for v in VERSIONS]


def test_repo_serves_index_and_pulls_by_version_and_constraint(charts: list[Path], tmp_path: Path) -> None:
    with ChartRepo(tmp_path / "repo") as repo:
        assert helm_python.repo_index(repo.url)["entries"] == {}
        for tgz in charts:
            repo.add(tgz)
        index = helm_python.repo_index(repo.url)
        assert sorted(e["version"] for e in index["entries"]["demo"]) == sorted(VERSIONS)
        for version, expected in [(None, "0.2.0"), ("0.1.0", "0.1.0"), ("~0.1", "0.1.5"), (">=0.1.0", "0.2.0")]:
            dest = tmp_path / f"pull-{version}"
            dest.mkdir()
            before = repo.requests
            helm_python.pull("demo", repo_url=repo.url, version=version, destination=dest)
            assert pulled(dest) == [f"demo-{expected}.tgz"]
            assert repo.requests - before == 2  # index.yaml and the archive: no cache between pulls
        with pytest.raises(helm_python.HelmRepoError, match=r'version "9.9.9" not found'):
            helm_python.pull("demo", repo_url=repo.url, version="9.9.9", destination=tmp_path)


def test_repo_with_basic_auth_refuses_without_credentials(charts: list[Path], tmp_path: Path) -> None:
    with ChartRepo(tmp_path / "repo", username="alice", password="s3cret") as repo:
        repo.add(charts[0])
        # Seen: 'looks like "http://127.0.0.1:<port>" is not a valid chart repository or cannot be reached:
        # failed to fetch http://127.0.0.1:<port>/index.yaml : 401 Unauthorized' (repo_index: the part after
        # the colon only). Wrong credentials give the same message.
        for username, password in [(None, None), ("alice", "wrong")]:
            with pytest.raises(helm_python.HelmRepoError, match="401 Unauthorized"):
                helm_python.pull("demo", repo_url=repo.url, destination=tmp_path, username=username,
                                 password=password)
        with pytest.raises(helm_python.HelmRepoError, match="401 Unauthorized"):
            helm_python.repo_index(repo.url)
        assert helm_python.repo_index(repo.url, username="alice", password="s3cret")["entries"]["demo"]
        helm_python.pull("demo", repo_url=repo.url, version="~0.1", destination=tmp_path,
                         username="alice", password="s3cret")
        assert pulled(tmp_path) == ["demo-0.1.0.tgz", "repo"]


@pytest.fixture(scope="module")
def registry(charts: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    with OciRegistry(tmp_path_factory.mktemp("oci")) as reg:
        for tgz in charts:
            reg.push(tgz)
        yield reg


def test_oci_registry_lists_tags_and_pulls(registry: OciRegistry, tmp_path: Path) -> None:
    ref = f"oci://{registry.host}/charts/demo"
    assert registry.url == f"oci://{registry.host}/charts"
    assert helm_python.RegistryClient(plain_http=True).tags(ref) == ["0.2.0", "0.1.5", "0.1.0"]
    # No version: Helm lists the tags and takes the highest stable semver (there is no "latest" tag).
    for version, expected in [("0.1.0", "0.1.0"), ("~0.1", "0.1.5"), (None, "0.2.0")]:
        dest = tmp_path / f"pull-{version}"
        dest.mkdir()
        helm_python.pull(ref, version=version, destination=dest, plain_http=True)
        assert pulled(dest) == [f"demo-{expected}.tgz"]
        assert helm_python.Chart.load(dest / f"demo-{expected}.tgz").version == expected
    with pytest.raises(helm_python.HelmRepoError, match="not found"):
        helm_python.pull(ref, version="9.9.9", destination=tmp_path, plain_http=True)
