"""Helm charts to two real children: child1 pushed to by the hub (through its tunnel), child2 pulling.

Charts come from the test itself: a classic chart repository on loopback (one with basic auth) and Debian's
docker-registry as an OCI registry. Releases are real Helm v4 releases in Helm's storage in each child.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api import known
from clusternet_api.helm import ChartSource, ClusterAccess, ReleaseOptions
from clusternet_api.helm.sdk import SdkHelmDriver
from clusternet_api.kube import Credentials
from clusternet_testing.charts import ChartRepo, OciRegistry, build_chart
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import KubectlWatch, kubectl, plugin, run_plugin, wait_for

pytestmark = pytest.mark.integration

LABEL = "helm-test"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "applications"


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("charts")
    built = root / "built"
    built.mkdir()
    with ChartRepo(root / "repo") as repo, ChartRepo(root / "private", "user", "s3cret") as private, \
            OciRegistry(root / "oci") as oci:
        for name, version, extra in (("mysql", "8.6.2", {}), ("demo", "0.1.0", {}), ("demo", "0.2.0", {}),
                                     ("broken", "0.1.0", {"fail": True})):
            tgz = build_chart(built, name, version, templates=2, **extra)
            repo.add(tgz)
            if name == "demo":
                private.add(tgz)
                oci.push(tgz)
        yield {"repo": repo.url, "private": private.url, "oci": oci.url}


@pytest.fixture(scope="module")
def env(hub_and_agents: dict[str, Any], parent: ControlPlane, repos: dict[str, Any]) -> dict[str, Any]:
    for mc in (hub_and_agents["mc1"], hub_and_agents["mc2"]):
        kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                f"{LABEL}=yes", "--overwrite")
    return {**hub_and_agents, **repos}


def apply(parent: ControlPlane, *objs: dict[str, Any]) -> None:
    kubectl(parent, "apply", "-f", "-", input=yaml.safe_dump_all(objs))


def helm_chart(name: str, repo: str, chart: str, version: str | None, target: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "metadata": {"name": name,
                                                                                   "namespace": "default"},
            "spec": {"repo": repo, "chart": chart, **({"version": version} if version else {}),
                     "targetNamespace": target, **spec}}


def subscription(name: str, charts: list[str], selector: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription", "metadata": {"name": name,
                                                                                      "namespace": "default"},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": selector or {LABEL: "yes"}}}],
                     "feeds": [{"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart", "namespace": "default",
                                "name": c} for c in charts]}}


def chart_status(parent: ControlPlane, name: str) -> dict[str, Any]:
    out = kubectl(parent, "get", "chart", name, "-n", "default", "-o", "json")
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def releases(parent: ControlPlane, sub: str) -> dict[str, dict[str, Any]]:
    """The Subscription's HelmReleases by cluster namespace."""
    items = json.loads(kubectl(parent, "get", "hr", "-A", "-l", f"{known.LABEL_SUBS_NAME}={sub}",
                               "-o", "json").stdout)["items"]
    return {i["metadata"]["namespace"]: i for i in items}


def deployed(parent: ControlPlane, sub: str, namespaces: tuple[str, ...], revision: int | None = None) -> bool:
    found = releases(parent, sub)
    return all(ns in found and (found[ns].get("status") or {}).get("phase") == "deployed" and (
        found[ns]["status"].get("observedGeneration") == found[ns]["metadata"]["generation"]) and (
        revision is None or found[ns]["status"].get("version") == revision) for ns in namespaces)


def release_secrets(child: ControlPlane, namespace: str, release: str, status: str | None = None) -> list[str]:
    """Helm's release Secrets (optionally only the revisions in that Helm status)."""
    selector = f"owner=helm,name={release}" + (f",status={status}" if status else "")
    out = kubectl(child, "get", "secret", "-n", namespace, "-l", selector, "-o", "name", check=False)
    return sorted(out.stdout.split())


def config_map(child: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    out = kubectl(child, "get", "cm", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def ready(parent: ControlPlane, sub: str) -> dict[str, Any]:
    status = json.loads(kubectl(parent, "get", "subs", sub, "-o", "json").stdout).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def test_charts_are_found_or_not_found_with_the_reason(env: dict[str, Any], parent: ControlPlane) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong-creds", "namespace": "default"},
              "stringData": {"username": "user", "password": "nope"}}
    good = {**secret, "metadata": {"name": "good-creds", "namespace": "default"},
            "stringData": {"username": "user", "password": "s3cret"}}
    apply(parent, secret, good,
          helm_chart("found-http", env["repo"], "demo", "0.1.0", "x"),
          helm_chart("found-oci", env["oci"], "demo", "~0.1", "x", plainHTTP=True),
          helm_chart("found-private", env["private"], "demo", None, "x", chartPullSecret={"name": "good-creds"}),
          helm_chart("wrong-version", env["repo"], "demo", "9.9.9", "x"),
          helm_chart("unreachable", "http://127.0.0.1:9", "demo", "0.1.0", "x"),
          helm_chart("bad-creds", env["private"], "demo", "0.1.0", "x", chartPullSecret={"name": "wrong-creds"}))
    expect = {"found-http": ("Found", "0.1.0"), "found-oci": ("Found", "0.1.0"), "found-private": ("Found", "0.2.0"),
              "wrong-version": ("NotFound", "9.9.9"), "unreachable": ("NotFound", "connect"),
              "bad-creds": ("NotFound", "refused the given credentials")}

    def checked() -> bool:
        return all(chart_status(parent, n).get("phase") == phase for n, (phase, _) in expect.items())

    wait_for(checked, timeout=60, what="every chart checked")
    for name, (_, word) in expect.items():
        assert word in chart_status(parent, name)["reason"], (name, chart_status(parent, name))
    table = plugin(parent, "get", "chart", "-n", "default")
    row = next(r.split() for r in table.splitlines() if r.startswith("wrong-version"))
    assert row[1:5] == ["demo", "9.9.9", env["repo"], "NotFound"], table
    # the private chart to both children: the hub fetches for child1 (push), child2's agent with the
    # credentials the hub copied into the one Secret of its namespace it may read
    apply(parent, subscription("private", ["found-private"]))
    wait_for(lambda: deployed(parent, "private", (env["ns1"], env["ns2"])), timeout=90,
             what="the private chart deployed in both children")
    copied = json.loads(kubectl(parent, "get", "secret", known.CHART_PULL_SECRET, "-n", env["ns2"], "-o",
                                "json").stdout)["data"]
    assert sorted(copied) == [f"{releases(parent, 'private')[env['ns2']]['metadata']['name']}.{k}"
                              for k in ("password", "username")]
    kubectl(parent, "delete", "subs", "private")
    wait_for(lambda: not releases(parent, "private"), timeout=60, what="the private releases removed")
    copied = json.loads(kubectl(parent, "get", "secret", known.CHART_PULL_SECRET, "-n", env["ns2"], "-o",
                                "json").stdout).get("data") or {}
    assert copied == {}


def test_the_overview_walkthrough_with_a_chart_reaches_both_children_and_turns_ready(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """examples/applications/ as written, but for the chart's repository (ours) and the subscriber (both
    children), and no replicas (these control planes have no nodes to run pods on)."""
    docs = [d for f in sorted(EXAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "HelmChart":
            doc["spec"]["repo"] = env["repo"]
        elif doc["kind"] == "Subscription":
            doc["spec"]["subscribers"] = [{"clusterAffinity": {"matchLabels": {LABEL: "yes"}}}]
        elif doc["kind"] == "Deployment":
            doc["spec"]["replicas"] = 0
    # the overview applies the folder with `kubectl clusternet apply` (templates become Manifests)
    out = run_plugin(parent, "apply", "-f", "-", input=yaml.safe_dump_all(docs))
    assert out.returncode == 0, out.stderr
    namespaces = (env["ns1"], env["ns2"])
    wait_for(lambda: deployed(parent, "app-demo", namespaces), timeout=90, what="both mysql releases deployed")
    table = kubectl(parent, "get", "hr", "-A").stdout
    rows = [r.split() for r in table.splitlines() if "-helm-default-mysql" in r]
    assert len(rows) == 2 and all(r[2:4] == ["mysql", "8.6.2"] and r[5] == "deployed" for r in rows), table
    for child in (child1, child2):
        assert release_secrets(child, "abc", "mysql") == ["secret/sh.helm.release.v1.mysql.v1"]
        assert (config_map(child, "abc", "mysql-cm-0") or {}).get("data", {}).get("greeting") == "hello"
    assert plugin(parent, "get", "chart", "mysql", "-n", "default").splitlines()[1].split()[4] == "Found"
    wait_for(lambda: ready(parent, "app-demo").get("status") == "True", timeout=90, what="app-demo Ready")
    table = kubectl(parent, "get", "subs", "app-demo").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "REASON", "AGE"] and table[1].split()[1:3] == [
        "True", "AllReleasesReady"], table
    # the hub installed in child1 (push), child2's agent in child2 (pull)
    events = json.loads(kubectl(parent, "get", "events", "-A", "--field-selector=reason=Installed",
                                "-o", "json").stdout)["items"]
    sources = {(e["metadata"]["namespace"], e["source"].get("component")) for e in events}
    assert (env["ns1"], known.CREATED_BY_HUB) in sources and (env["ns2"], known.CREATED_BY_AGENT) in sources


def test_values_per_cluster_a_values_only_change_and_a_version_change_upgrade(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    apply(parent, helm_chart("values-demo", env["oci"], "demo", "0.1.0", "values-demo", plainHTTP=True,
                             values={"greeting": "from-chart"}),
          subscription("values-demo", ["values-demo"]))
    namespaces = (env["ns1"], env["ns2"])
    wait_for(lambda: deployed(parent, "values-demo", namespaces, 1), timeout=90, what="revision 1 in both")
    uids = {c.name: config_map(c, "values-demo", "values-demo-cm-0")["metadata"]["uid"] for c in (child1, child2)}
    assert all(config_map(c, "values-demo", "values-demo-cm-0")["data"]["greeting"] == "from-chart"
               for c in (child1, child2))
    # a Localization for child1 only: only child1's release changes (revision 2), values only
    apply(parent, {"apiVersion": known.APPS_API_VERSION, "kind": "Localization",
                   "metadata": {"name": "hola", "namespace": env["ns1"]},
                   "spec": {"overridePolicy": "ApplyNow", "priority": 300,
                            "feed": {"apiVersion": known.APPS_API_VERSION, "kind": "HelmChart",
                                     "namespace": "default", "name": "values-demo"},
                            "overrides": [{"name": "greeting", "type": "Helm", "value": "greeting: hola"}]}})
    wait_for(lambda: deployed(parent, "values-demo", (env["ns1"],), 2), timeout=60, what="child1 at revision 2")
    assert config_map(child1, "values-demo", "values-demo-cm-0")["data"]["greeting"] == "hola"
    assert config_map(child2, "values-demo", "values-demo-cm-0")["data"]["greeting"] == "from-chart"
    assert deployed(parent, "values-demo", (env["ns2"],), 1)
    rendered = plugin(parent, "render", "values-demo", "-n", "default", "--cluster",
                      f"{env['ns1']}/{env['mc1']['metadata']['name']}")
    assert "greeting: hola" in rendered and f"override Localization {env['ns1']}/hola" in rendered, rendered
    # a new chart version upgrades both; objects are updated in place
    apply(parent, helm_chart("values-demo", env["oci"], "demo", "0.2.0", "values-demo", plainHTTP=True,
                             values={"greeting": "from-chart"}))
    wait_for(lambda: deployed(parent, "values-demo", (env["ns1"],), 3) and deployed(
        parent, "values-demo", (env["ns2"],), 2), timeout=90, what="both upgraded to 0.2.0")
    for child in (child1, child2):
        cm = config_map(child, "values-demo", "values-demo-cm-0")
        assert cm is not None and cm["data"]["chartVersion"] == "0.2.0" and cm["metadata"]["uid"] == uids[child.name]
    # relabel child2: its release is uninstalled, child1's is kept as it is
    mc2 = env["mc2"]
    kubectl(parent, "label", "mcls", mc2["metadata"]["name"], "-n", env["ns2"], f"{LABEL}-")
    try:
        wait_for(lambda: not release_secrets(child2, "values-demo", "values-demo"), timeout=60,
                 what="child2's release uninstalled")
        assert config_map(child2, "values-demo", "values-demo-cm-0") is None
        assert config_map(child1, "values-demo", "values-demo-cm-0")["metadata"]["uid"] == uids[child1.name]
        assert deployed(parent, "values-demo", (env["ns1"],), 3)
    finally:
        kubectl(parent, "label", "mcls", mc2["metadata"]["name"], "-n", env["ns2"], f"{LABEL}=yes", "--overwrite")
    # deleting the Subscription uninstalls everywhere
    wait_for(lambda: deployed(parent, "values-demo", namespaces), timeout=90, what="child2 back")
    kubectl(parent, "delete", "subs", "values-demo", "--wait=false")
    wait_for(lambda: not any(release_secrets(c, "values-demo", "values-demo") for c in (child1, child2)),
             timeout=60, what="both releases uninstalled")
    wait_for(lambda: not releases(parent, "values-demo"), timeout=60, what="HelmReleases gone")


def test_a_failing_chart_reports_helms_own_message(env: dict[str, Any], parent: ControlPlane) -> None:
    apply(parent, helm_chart("broken", env["repo"], "broken", "0.1.0", "broken-ns"),
          subscription("broken", ["broken"]))

    def failed() -> dict[str, Any]:
        found = releases(parent, "broken")
        return found if len(found) == 2 and all((hr.get("status") or {}).get("phase") == "failed"
                                                for hr in found.values()) else {}

    for hr in wait_for(failed, timeout=90, what="both releases failed").values():
        assert "bad key!" in hr["status"]["description"], hr["status"]
    condition = wait_for(lambda: ready(parent, "broken") if ready(parent, "broken").get("status") == "False" and
                         "bad key" in ready(parent, "broken").get("message", "") else None, timeout=60,
                         what="Subscription not Ready with Helm's message")
    assert condition["status"] == "False"
    kubectl(parent, "delete", "subs", "broken", "--wait=false")


def test_a_hub_restart_mid_rollout_and_a_dead_repository_leave_one_revision(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    hub = env["hub"]
    apply(parent, helm_chart("restart-demo", env["repo"], "demo", "0.1.0", "restart-demo"),
          subscription("restart-demo", ["restart-demo"]))
    wait_for(lambda: env["ns1"] in releases(parent, "restart-demo"), timeout=60, what="child1's HelmRelease")
    hub.kill()
    hub.start()
    wait_for(lambda: deployed(parent, "restart-demo", (env["ns1"], env["ns2"])), timeout=120,
             what="both deployed after the restart")
    assert release_secrets(child1, "restart-demo", "restart-demo") == ["secret/sh.helm.release.v1.restart-demo.v1"]
    overrides = releases(parent, "restart-demo")[env["ns1"]]["spec"]["overrides"]
    assert json.loads(base64.b64decode(overrides)) == {}
    a_dead_repository_and_its_return(env, parent, (child1, child2), "restart-demo")
    kubectl(parent, "delete", "subs", "restart-demo", "--wait=false")


def released(hr: dict[str, Any]) -> dict[str, Any]:
    status = hr.get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Released"), {})


def a_dead_repository_and_its_return(env: dict[str, Any], parent: ControlPlane, children: tuple[ControlPlane, ...],
                                     name: str) -> None:
    """The HelmChart's repo set to an address nobody answers, then back (the audit's case), in Push (child1)
    and Pull (child2). The new spec is checked before it reaches any cluster: the HelmChart turns NotFound for
    its new generation, the Subscription says so and that the deployed release is kept, and no HelmRelease
    ever carries the dead address (the audit saw it reach them, and their status read `failed`); every status
    says the child runs revision 1 `deployed`, and the way back is no upgrade."""
    namespaces = (env["ns1"], env["ns2"])
    watch = KubectlWatch(parent, "hr", "-A", "-l", f"{known.LABEL_SUBS_NAME}={name}")
    try:
        kubectl(parent, "patch", "chart", name, "-n", "default", "--type=merge", "-p",
                json.dumps({"spec": {"repo": "http://127.0.0.1:9"}}))

        def not_found() -> dict[str, Any] | None:
            chart = json.loads(kubectl(parent, "get", "chart", name, "-n", "default", "-o", "json").stdout)
            status = chart.get("status") or {}
            done = status.get("phase") == "NotFound" and status.get("observedGeneration") == chart["metadata"][
                "generation"]
            return status if done else None

        wait_for(not_found, timeout=60, what="the HelmChart NotFound for its new spec")

        def kept() -> str | None:
            sub = json.loads(kubectl(parent, "get", "subs", name, "-n", "default", "-o", "json").stdout)
            ready = next((c for c in (sub.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"),
                         {})
            message = str(ready.get("message"))
            return message if ready.get("status") == "False" and f"{name} is NotFound" in message else None

        message = wait_for(kept, timeout=30, what="the Subscription saying the deployed release is kept")
        assert message.count(f"HelmChart default/{name} is NotFound") == 1, message  # once, not per cluster
        time.sleep(5)  # a few resyncs (every 2 s): nothing reaches the HelmReleases
        for ns in namespaces:
            hr = releases(parent, name)[ns]
            assert hr["spec"]["repo"] == env["repo"] and released(hr).get("status") == "True", hr
        kubectl(parent, "patch", "chart", name, "-n", "default", "--type=merge", "-p",
                json.dumps({"spec": {"repo": env["repo"]}}))
        wait_for(lambda: (not_found() is None) and deployed(parent, name, namespaces, 1) and all(
            released(hr).get("status") == "True" for hr in releases(parent, name).values()), timeout=60,
            what="both HelmReleases released again")
        versions = watch.versions()
        assert not any(v["spec"]["repo"] == "http://127.0.0.1:9" for v in versions), "the dead repo reached a release"
        assert all(v["status"]["phase"] == "deployed" for v in versions if v.get("status")), [
            v["status"] for v in versions]
    finally:
        watch.stop()
    for child in children:
        assert release_secrets(child, name, name) == [f"secret/sh.helm.release.v1.{name}.v1"]


def child_access(child: ControlPlane) -> ClusterAccess:
    creds = Credentials.from_kubeconfig(child.kubeconfig)
    return ClusterAccess(server=creds.server, ca_pem=creds.ca_pem, token=creds.token, cert_pem=creds.cert_pem,
                         key_pem=creds.key_pem)


def test_a_release_removed_by_hand_comes_back_and_one_we_did_not_install_is_never_touched(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane,
        tmp_path: Path) -> None:
    driver = SdkHelmDriver(cache_dir=tmp_path / "cache")

    async def theirs() -> None:
        """Someone's own release in child1, with the name a HelmChart below will ask for; installed before the
        HelmChart exists (installed after it, the hub could be first: the CI saw "release: already exists")."""
        chart = await driver.fetch(ChartSource(repo=env["repo"], chart="demo", version="0.1.0"))
        await driver.install(child_access(child1), chart, "mine", {"greeting": "by-hand"},
                             ReleaseOptions(namespace="theirs"))

    async def uninstalled_by_hand() -> None:
        """The walkthrough's mysql release uninstalled by hand in both children: `helm uninstall --keep-history`
        in child1 (its history stays, status uninstalled), `helm uninstall` in child2."""
        with driver.configs.use(child_access(child1), "abc") as cfg:
            cfg.uninstall("mysql", keep_history=True)
        assert await driver.uninstall(child_access(child2), "abc", "mysql", 60)

    asyncio.run(theirs())
    apply(parent, helm_chart("mine", env["repo"], "demo", "0.2.0", "theirs"), subscription("mine", ["mine"]))
    asyncio.run(uninstalled_by_hand())
    wait_for(lambda: all(release_secrets(c, "abc", "mysql", "deployed") == ["secret/sh.helm.release.v1.mysql.v1"]
                         for c in (child1, child2)), timeout=60, what="mysql installed again in both children")
    assert release_secrets(child1, "abc", "mysql") == ["secret/sh.helm.release.v1.mysql.v1"]  # history purged

    def refused() -> dict[str, Any] | None:
        hr = releases(parent, "mine").get(env["ns1"])
        status = (hr or {}).get("status") or {}
        return status if "not installed by this HelmRelease" in str(status.get("description")) else None

    wait_for(refused, timeout=60, what="child1's HelmRelease refusing the foreign release")
    assert release_secrets(child1, "theirs", "mine") == ["secret/sh.helm.release.v1.mine.v1"]
    assert config_map(child1, "theirs", "mine-cm-0")["data"] == {
        "greeting": "by-hand", "index": "0", "chartVersion": "0.1.0"}
    kubectl(parent, "delete", "subs", "mine")
    wait_for(lambda: not releases(parent, "mine"), timeout=60, what="its HelmReleases gone")
    assert release_secrets(child1, "theirs", "mine") == ["secret/sh.helm.release.v1.mine.v1"]  # still theirs
    driver.close()


def left_pending(child: ControlPlane, namespace: str, release: str, status: str, revision: int,
                 started_hours_ago: float) -> None:
    """What a process killed mid-operation leaves in Helm's storage: revision `revision` of the release in
    `status` (pending-install, pending-upgrade), its operation started `started_hours_ago` by Helm's timestamp
    (negative: in the future, as a machine whose clock runs behind would write it). Written from revision 1's
    Secret (Helm's data: base64 of gzip'd JSON, inside the Secret's own base64)."""
    first = json.loads(kubectl(child, "get", "secret", "-n", namespace, f"sh.helm.release.v1.{release}.v1",
                               "-o", "json").stdout)
    record = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(first["data"]["release"]))))
    started = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=started_hours_ago)).isoformat()
    record["info"].update(status=status, last_deployed=started, description=f"{status} (interrupted)")
    record["version"] = revision
    name = f"sh.helm.release.v1.{release}.v{revision}"
    meta = first["metadata"]
    secret = {"apiVersion": "v1", "kind": "Secret", "type": first["type"],
              "metadata": {"name": name, "namespace": namespace,
                           "labels": {**meta["labels"], "status": status, "version": str(revision)}},
              "data": {"release": base64.b64encode(base64.b64encode(gzip.compress(
                  json.dumps(record).encode()))).decode()}}
    kubectl(child, "apply", "-f", "-", input=json.dumps(secret))


def test_a_release_left_pending_by_a_killed_operation_is_recovered_in_both_modes(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """A hub or agent killed mid-install (or mid-upgrade) leaves the release pending-install (pending-upgrade)
    for ever: Helm refuses every later operation. Once it has itself seen the same pending revision for the
    release's timeout plus STALE_MARGIN (60 s) on its own clock, the hub (child1, Push) and the agent (child2,
    Pull) uninstall and reinstall it (an install) or roll it back (an upgrade). Helm's own start time, written by
    whichever machine ran the operation, plays no part (review F9): an hour ago does not make it recovered early,
    an hour ahead does not keep it pending. timeoutSeconds 10 (no wait, no hooks: ConfigMaps) keeps the wait at
    about 70 s."""
    apply(parent, helm_chart("stuck-demo", env["repo"], "demo", "0.1.0", "stuck-demo", timeoutSeconds=10),
          subscription("stuck-demo", ["stuck-demo"]))
    namespaces = (env["ns1"], env["ns2"])
    wait_for(lambda: deployed(parent, "stuck-demo", namespaces), timeout=90, what="both deployed")
    left_pending(child1, "stuck-demo", "stuck-demo", "pending-install", 1, started_hours_ago=1)
    left_pending(child2, "stuck-demo", "stuck-demo", "pending-upgrade", 2, started_hours_ago=-1)
    time.sleep(20)  # both deployers have looked (every 2 s) and neither judges it stuck yet
    assert release_secrets(child1, "stuck-demo", "stuck-demo", "pending-install") == [
        "secret/sh.helm.release.v1.stuck-demo.v1"]
    assert release_secrets(child2, "stuck-demo", "stuck-demo", "pending-upgrade") == [
        "secret/sh.helm.release.v1.stuck-demo.v2"]
    wait_for(lambda: release_secrets(child1, "stuck-demo", "stuck-demo", "deployed") == [
        "secret/sh.helm.release.v1.stuck-demo.v1"] and release_secrets(child2, "stuck-demo", "stuck-demo",
                                                                       "deployed") == [
        "secret/sh.helm.release.v1.stuck-demo.v3"], timeout=150, what="both releases deployed again")
    wait_for(lambda: deployed(parent, "stuck-demo", namespaces), timeout=60, what="both HelmReleases deployed")
    assert releases(parent, "stuck-demo")[env["ns2"]]["status"]["version"] == 3  # v2 rolled back: v3 is v1 again
    assert config_map(child1, "stuck-demo", "stuck-demo-cm-0") is not None
    kubectl(parent, "delete", "subs", "stuck-demo", "--wait=false")


def test_a_release_moved_to_another_namespace_leaves_nothing_behind_in_both_modes(
        env: dict[str, Any], parent: ControlPlane, child1: ControlPlane, child2: ControlPlane) -> None:
    """The third audit: changing a deployed HelmChart's targetNamespace installed a second release and left the
    first in every child, for ever (deleting the Subscription removed only the new one)."""
    children = (child1, child2)
    namespaces = (env["ns1"], env["ns2"])
    apply(parent, helm_chart("mover", env["repo"], "demo", "0.1.0", "move-a"), subscription("mover", ["mover"]))
    wait_for(lambda: deployed(parent, "mover", namespaces), timeout=90, what="both releases in move-a")
    assert all(release_secrets(c, "move-a", "mover") == ["secret/sh.helm.release.v1.mover.v1"] for c in children)
    kubectl(parent, "patch", "chart", "mover", "-n", "default", "--type=merge",
            "-p", '{"spec": {"targetNamespace": "move-b"}}')
    wait_for(lambda: all(release_secrets(c, "move-b", "mover", "deployed") and not release_secrets(
        c, "move-a", "mover") for c in children), timeout=90, what="the releases moved to move-b in both children")

    def settled() -> bool:
        found = releases(parent, "mover")
        return all((found[ns].get("status") or {}).get("targets") == [{"namespace": "move-b", "name": "mover"}]
                   and all(c["type"] != "PreviousReleaseRemoved" for c in found[ns]["status"].get("conditions") or [])
                   for ns in namespaces)

    wait_for(settled, timeout=60, what="both HelmReleases recording move-b alone")
    kubectl(parent, "delete", "subs", "mover")
    wait_for(lambda: not any(release_secrets(c, ns, "mover") for c in children for ns in ("move-a", "move-b")),
             timeout=90, what="no release of it left in either child")
