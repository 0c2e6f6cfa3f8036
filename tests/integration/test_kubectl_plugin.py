"""kubectl clusternet against a real parent: the CLI run as a process, and kubectl's plugin discovery.

The repo's examples/applications/ are applied with their names made unique (namespace, Subscription,
HelmChart), because other modules share the parent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import PLUGIN, kubectl, run_plugin

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Demo:
    parent: ControlPlane
    dir: Path
    ns: str  # where the workload templates live (never created on the parent)
    crns: str  # where the HelmChart and Subscription live (exists on the parent)
    sub: str
    chart: str
    cluster_id: str

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_plugin(self.parent, *args, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def manifest(self, name: str) -> dict[str, Any] | None:
        proc = kubectl(self.parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE, name,
                       "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None


def _copy_examples(target: Path, ns: str, crns: str, sub: str, chart: str, cluster_id: str) -> None:
    target.mkdir()
    for src in sorted((REPO / "examples" / "applications").glob("*.yaml")):
        text = src.read_text()
        text = re.sub(r"\bfoo\b", ns, text)
        text = text.replace("namespace: default", f"namespace: {crns}")
        text = text.replace("name: app-demo", f"name: {sub}").replace("name: mysql", f"name: {chart}")
        text = re.sub(r"cluster-id: \S+", f"cluster-id: {cluster_id}", text)
        (target / src.name).write_text(text)


@pytest.fixture(scope="module")
def demo(parent: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    suffix = uuid.uuid4().hex[:6]
    d = Demo(parent, tmp_path_factory.mktemp("kcn") / "applications", f"kcn-foo-{suffix}", f"kcn-apps-{suffix}",
             f"kcn-demo-{suffix}", f"kcn-mysql-{suffix}", str(uuid.uuid4()))
    _copy_examples(d.dir, d.ns, d.crns, d.sub, d.chart, d.cluster_id)
    kubectl(parent, "create", "namespace", d.crns)
    return d


@pytest.fixture(scope="module")
def applied(demo: Demo) -> subprocess.CompletedProcess[str]:
    return demo.run("apply", "-f", str(demo.dir))


def test_apply_examples(demo: Demo, applied: subprocess.CompletedProcess[str]) -> None:
    assert applied.returncode == 0, applied.stderr
    assert sorted(applied.stdout.splitlines()) == sorted([
        "deployment.apps/my-nginx created",
        f"helmchart.apps.clusternet.io/{demo.chart} created",
        f"namespace/{demo.ns} created",
        "service/my-nginx-svc created",
        f"subscription.apps.clusternet.io/{demo.sub} created",
    ])
    # Templates are Manifests in clusternet-reserved, named and labelled as Clusternet does.
    deploy = demo.manifest(f"deployments.{demo.ns}.my-nginx")
    assert deploy is not None
    assert deploy["metadata"]["labels"] == {
        "app": "my-nginx", known.LABEL_CONFIG_GROUP: "apps", known.LABEL_CONFIG_VERSION: "v1",
        known.LABEL_CONFIG_KIND: "Deployment", known.LABEL_CONFIG_NAME: "my-nginx",
        known.LABEL_CONFIG_NAMESPACE: demo.ns,
    }
    assert deploy["template"]["spec"]["replicas"] == 2
    assert deploy["template"]["metadata"] == {"name": "my-nginx", "namespace": demo.ns, "labels": {"app": "my-nginx"}}
    ns = demo.manifest(f"namespaces.{demo.ns}")
    assert ns is not None and ns["metadata"]["labels"][known.LABEL_CONFIG_NAMESPACE] == ""
    assert ns["metadata"]["labels"][known.LABEL_CONFIG_KIND] == "Namespace"
    assert demo.manifest(f"services.{demo.ns}.my-nginx-svc") is not None
    # ... and not created on the parent.
    assert kubectl(demo.parent, "get", "namespace", demo.ns, check=False).returncode != 0
    assert kubectl(demo.parent, "get", "deployments,services", "-A", "-o", "name",
                   "--field-selector", f"metadata.namespace={demo.ns}").stdout.strip() == ""
    # Clusternet objects are real CRs.
    sub = json.loads(kubectl(demo.parent, "get", "subscriptions.apps.clusternet.io", "-n", demo.crns, demo.sub,
                             "-o", "json").stdout)
    assert len(sub["spec"]["feeds"]) == 4
    chart = json.loads(kubectl(demo.parent, "get", "helmcharts.apps.clusternet.io", "-n", demo.crns, demo.chart,
                               "-o", "json", "--show-managed-fields").stdout)
    assert chart["spec"]["chart"] == "mysql"
    managers = {m["manager"] for m in chart["metadata"]["managedFields"]}
    assert "kubectl-clusternet" in managers


def test_get_tables(demo: Demo, applied: subprocess.CompletedProcess[str]) -> None:
    out = demo.ok("get", "ns").splitlines()
    assert out[0].split() == ["NAME", "CREATED", "AT"]
    assert any(line.split()[0] == demo.ns for line in out[1:])

    out = demo.ok("get", "deploy", "-n", demo.ns).splitlines()
    assert out[0].split() == ["NAME", "CREATED", "AT"] and out[1].split()[0] == "my-nginx" and len(out) == 2

    out = demo.ok("get", "svc", "-A").splitlines()
    assert out[0].split() == ["NAMESPACE", "NAME", "CREATED", "AT"]
    assert [demo.ns, "my-nginx-svc"] in [line.split()[:2] for line in out[1:]]

    out = demo.ok("get", "subs", "-A").splitlines()
    assert out[0].split()[:2] == ["NAMESPACE", "NAME"] and out[0].split()[-1] == "AGE"
    assert [demo.crns, demo.sub] in [line.split()[:2] for line in out[1:]]

    out = demo.ok("-n", demo.crns, "get", "chart").splitlines()
    assert out[0].split()[:4] == ["NAME", "CHART", "VERSION", "REPO"]
    assert out[1].split()[:3] == [demo.chart, "mysql", "8.6.2"]

    assert demo.ok("get", "deployments.apps", "my-nginx", "-n", demo.ns, "-o", "name").strip() == \
        "deployment.apps/my-nginx"
    template = yaml.safe_load(demo.ok("get", "deploy", "my-nginx", "-n", demo.ns, "-o", "yaml"))
    assert template["kind"] == "Deployment" and template["spec"]["replicas"] == 2

    missing = demo.run("get", "deploy", "nope", "-n", demo.ns)
    assert missing.returncode == 1 and 'deployments.apps "nope" not found' in missing.stderr

    # Clusternet objects are real: -l and -o jsonpath print what kubectl prints for them
    jsonpath = r'{range .items[*]}{.metadata.name}{"\t"}{.spec.feeds[0].kind}{"\n"}{end}'
    assert demo.ok("get", "subs", "-n", demo.crns, "-o", f"jsonpath={jsonpath}") == kubectl(
        demo.parent, "get", "subscriptions.apps.clusternet.io", "-n", demo.crns, "-o", f"jsonpath={jsonpath}").stdout
    none = demo.run("get", "subs", "-n", demo.crns, "-l", "kcn-nothing=1")
    assert none.returncode == 0 and none.stdout == "" and "No resources found" in none.stderr
    missing = demo.run("get", "subs", "nope", "-n", demo.crns)
    assert missing.returncode == 1 and "(NotFound)" in missing.stderr


def test_kubectl_finds_the_plugin(demo: Demo, applied: subprocess.CompletedProcess[str], tmp_path: Path) -> None:
    """kubectl runs the `kubectl-clusternet` it finds on PATH: here a wrapper of this checkout's CLI (that the
    console script points at the CLI is checked in tests/unit/test_kubectl_plugin.py)."""
    script = tmp_path / "kubectl-clusternet"
    script.write_text(f'#!/bin/sh\nexec {shlex.join(PLUGIN)} "$@"\n')
    script.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["kubectl", "clusternet", f"--kubeconfig={demo.parent.kubeconfig}", "get", "deploy",
                           "-n", demo.ns], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[0] == "my-nginx"


def test_reapply_is_idempotent(demo: Demo, applied: subprocess.CompletedProcess[str]) -> None:
    out = demo.ok("apply", "-f", str(demo.dir))
    assert all(line.endswith(" unchanged") for line in out.splitlines()), out
    assert len(out.splitlines()) == 5
    changed = (demo.dir / "deployment.yaml").read_text().replace("replicas: 2", "replicas: 3")
    assert demo.ok("apply", "-f", "-", input=changed).strip() == "deployment.apps/my-nginx configured"
    deploy = demo.manifest(f"deployments.{demo.ns}.my-nginx")
    assert deploy is not None and deploy["template"]["spec"]["replicas"] == 3
    names = kubectl(demo.parent, "get", "manifests.apps.clusternet.io", "-n", known.RESERVED_NAMESPACE, "-l",
                    f"{known.LABEL_CONFIG_NAMESPACE}={demo.ns}", "-o", "name").stdout.split()
    workload = sorted(n for n in names if n.split("/")[-1].startswith(("deployments.", "services.")))
    assert workload == [f"manifest.apps.clusternet.io/deployments.{demo.ns}.my-nginx",
                        f"manifest.apps.clusternet.io/services.{demo.ns}.my-nginx-svc"]  # no duplicates


def test_invalid_template_is_rejected(demo: Demo) -> None:
    bad = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: bad-nginx, namespace: {demo.ns}}}
spec:
  replicas: "three"
  selector: {{matchLabels: {{app: bad}}}}
  template:
    metadata: {{labels: {{app: bad}}}}
    spec: {{containers: [{{name: c, image: nginx}}]}}
"""
    proc = demo.run("apply", "-f", "-", input=bad)
    assert proc.returncode == 1
    assert "deployment.apps/bad-nginx" in proc.stderr and "rejected by the parent's validation" in proc.stderr
    assert "Replicas" in proc.stderr or "replicas" in proc.stderr
    assert demo.manifest(f"deployments.{demo.ns}.bad-nginx") is None
    # A later valid object in the same input is still applied.
    both = bad + f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ok-cm, namespace: {demo.ns}}}\n"
    proc = demo.run("apply", "-f", "-", input=both)
    assert proc.returncode == 1 and proc.stdout.strip() == "configmap/ok-cm created"
    assert demo.manifest(f"configmaps.{demo.ns}.ok-cm") is not None


def test_namespace_defaults_like_kubectl(demo: Demo) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: defaulted}\ndata: {a: b}\n"
    assert demo.ok("apply", "-n", demo.ns, "-f", "-", input=cm).strip() == "configmap/defaulted created"
    stored = demo.manifest(f"configmaps.{demo.ns}.defaulted")
    assert stored is not None and stored["template"]["metadata"]["namespace"] == demo.ns


def test_unknown_kinds(demo: Demo) -> None:
    widget = f"apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w1, namespace: {demo.ns}}}\n"
    proc = demo.run("apply", "-f", "-", input=widget)
    assert proc.returncode == 1
    assert ("the parent does not know kind Widget (apiVersion example.com/v1); apply its CRD in the same command, "
            "install it on the parent, or annotate apps.clusternet.io/skip-validating=true") in proc.stderr
    assert demo.manifest(f"widgets.{demo.ns}.w1") is None

    annotated = widget.replace("namespace:", 'annotations: {apps.clusternet.io/skip-validating: "true"}, namespace:')
    assert demo.ok("apply", "-f", "-", input=annotated).strip() == "widget.example.com/w1 created"
    stored = demo.manifest(f"widgets.{demo.ns}.w1")
    assert stored is not None and stored["metadata"]["labels"][known.LABEL_CONFIG_GROUP] == "example.com"
    assert demo.ok("get", "widgets", "-n", demo.ns).splitlines()[1].split()[0] == "w1"
    assert demo.ok("delete", "Widget", "w1", "-n", demo.ns).strip() == 'widget.example.com "w1" deleted'
    assert demo.manifest(f"widgets.{demo.ns}.w1") is None


def test_a_crd_and_its_objects_in_one_apply(demo: Demo) -> None:
    """The day-2 audit: the CRD was stored and its object refused (the parent never serves a kind whose CRD is
    only a template). The CRD's own names and scope now place the object: its plural, its namespace."""
    crd = ("apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
           "metadata: {name: gadgets.example.com}\n"
           "spec: {group: example.com, scope: Namespaced, names: {kind: Gadget, plural: gadgets, singular: gadget},"
           " versions: [{name: v1, served: true, storage: true,"
           " schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}]}\n")
    gadget = "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {size: 3}\n"
    out = demo.ok("apply", "-n", demo.ns, "-f", "-", input=gadget + "---\n" + crd).splitlines()
    assert out == ["gadget.example.com/g1 created",
                   "customresourcedefinition.apiextensions.k8s.io/gadgets.example.com created"]
    stored = demo.manifest(f"gadgets.{demo.ns}.g1")
    assert stored is not None and stored["template"]["metadata"]["namespace"] == demo.ns  # Namespaced: defaulted
    assert demo.ok("delete", "gadgets", "g1", "-n", demo.ns).strip() == 'gadget.example.com "g1" deleted'


def test_render_for_a_cluster(demo: Demo, applied: subprocess.CompletedProcess[str]) -> None:
    cluster_ns = f"clusternet-kcn-{demo.cluster_id[:6]}"
    kubectl(demo.parent, "create", "namespace", cluster_ns)
    objects = f"""
apiVersion: clusters.clusternet.io/v1beta1
kind: ManagedCluster
metadata:
  name: kcn-cluster
  namespace: {cluster_ns}
  labels: {{clusters.clusternet.io/cluster-id: {demo.cluster_id}}}
spec: {{clusterId: {demo.cluster_id}, clusterType: StandardCluster, syncMode: Pull}}
---
apiVersion: apps.clusternet.io/v1alpha1
kind: Localization
metadata: {{name: kcn-scale, namespace: {cluster_ns}}}
spec:
  priority: 300
  feed: {{apiVersion: apps/v1, kind: Deployment, name: my-nginx, namespace: {demo.ns}}}
  overrides:
    - name: more-replicas
      type: MergePatch
      value: '{{"spec": {{"replicas": 7}}}}'
"""
    out = demo.ok("apply", "-f", "-", input=objects)
    assert "managedcluster.clusters.clusternet.io/kcn-cluster created" in out
    assert "localization.apps.clusternet.io/kcn-scale created" in out

    for ref in (demo.cluster_id, f"{cluster_ns}/kcn-cluster"):
        proc = demo.run("render", demo.sub, "-n", demo.crns, "--cluster", ref)
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        assert [d["kind"] for d in docs] == ["Namespace", "Service", "Deployment"]
        assert docs[2]["spec"]["replicas"] == 7
        chunk = proc.stdout.split("---")[-1]
        assert f"Localization {cluster_ns}/kcn-scale [more-replicas] MergePatch: /spec/replicas" in chunk
        assert "HelmChart" in proc.stderr  # rendered by the Helm deployer, said so

    proc = demo.run("render", demo.sub, "-n", demo.crns, "--cluster", str(uuid.uuid4()))
    assert proc.returncode == 1 and "no ManagedCluster" in proc.stderr


def test_delete(demo: Demo, applied: subprocess.CompletedProcess[str]) -> None:
    svc = (demo.dir / "service.yaml").read_text().replace("my-nginx-svc", "kcn-del-svc")
    demo.ok("apply", "-f", "-", input=svc)
    assert demo.manifest(f"services.{demo.ns}.kcn-del-svc") is not None
    assert demo.ok("delete", "svc", "kcn-del-svc", "-n", demo.ns).strip() == 'service "kcn-del-svc" deleted'
    assert demo.manifest(f"services.{demo.ns}.kcn-del-svc") is None
    again = demo.run("delete", "svc", "kcn-del-svc", "-n", demo.ns)
    assert again.returncode == 1
    assert 'Error from server (NotFound): services "kcn-del-svc" not found' in again.stderr

    chart = (demo.dir / "helm-chart.yaml").read_text().replace(demo.chart, f"{demo.chart}-del")
    demo.ok("apply", "-f", "-", input=chart)
    assert demo.ok("delete", "-f", "-", input=chart).strip() == \
        f'helmchart.apps.clusternet.io "{demo.chart}-del" deleted'
    assert kubectl(demo.parent, "get", "helmcharts.apps.clusternet.io", "-n", demo.crns, f"{demo.chart}-del",
                   check=False).returncode != 0
    gone = demo.run("delete", "chart", f"{demo.chart}-del", "-n", demo.crns)
    assert gone.returncode == 1 and "(NotFound)" in gone.stderr


def test_a_template_with_owner_references_is_stored_without_them_and_says_so(demo: Demo) -> None:
    """As the shadow API's Warning header does for the same write (the fifth audit found the plugin silent)."""
    owned = f"""
apiVersion: v1
kind: ConfigMap
metadata:
  name: owned-cm
  namespace: {demo.ns}
  ownerReferences: [{{apiVersion: v1, kind: Node, name: n1, uid: 0f5c4ad0-0000-0000-0000-000000000001}}]
data: {{k: v}}
"""
    proc = demo.run("apply", "-f", "-", input=owned)
    assert proc.returncode == 0 and proc.stdout.strip() == "configmap/owned-cm created", proc
    assert "Warning: configmap/owned-cm: metadata.ownerReferences dropped" in proc.stderr, proc.stderr
    stored = demo.manifest(f"configmaps.{demo.ns}.owned-cm")
    assert stored is not None and "ownerReferences" not in stored["template"]["metadata"]
