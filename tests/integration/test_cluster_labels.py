"""Changing a cluster's labels after registration goes through the hub, under the parent admin's policy.

A real hub started with `--cluster-label-prefixes=site.example.com/` and a real agent (its own namespace and
cluster ID in child1) that is restarted with other `--cluster-labels`: changes inside the prefix are applied
to the ManagedCluster, others are refused with a Warning event naming the key and the flag, the agent logs the
refusal, and labels an administrator set on the ManagedCluster are never removed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import kubectl, parent_token, wait_for
from clusternet_testing.processes import BOOTSTRAP_TOKEN, Proc, hub_proc, install_bootstrap, namespaced_agent_proc

pytestmark = pytest.mark.integration

PREFIX = "site.example.com/"
RACK, ZONE, PINNED = f"{PREFIX}rack", f"{PREFIX}zone", f"{PREFIX}pinned"
FROM_REQUEST = "clusters.clusternet.io/labels-from-request"
VERDICT = "clusters.clusternet.io/cluster-labels-verdict"


@dataclass
class Env:
    parent: ControlPlane
    child: ControlPlane
    logdir: Path
    cluster_id: str
    agent_ns: str
    hub: Proc
    agent: Proc | None = None
    starts: int = 0

    @property
    def crr(self) -> str:
        return f"clusternet-{self.cluster_id}"

    def start_agent(self, labels: dict[str, str]) -> Proc:
        """(Re)start the agent with these --cluster-labels; each start logs to a file of its own."""
        if self.agent is not None:
            self.agent.stop()
        self.starts += 1
        self.agent = namespaced_agent_proc(
            f"labels-{self.starts}", self.logdir, kubeconfig=str(self.child.kubeconfig), parent_url=self.parent.url,
            reg_token=BOOTSTRAP_TOKEN, parent_ca_file=str(self.parent.ca_file), cluster_name="labelled",
            cluster_id=self.cluster_id, namespace=self.agent_ns, cluster_labels=labels, collect_frequency=1.0,
            update_frequency=2.0, deploys=False).start()
        return self.agent

    def mc(self) -> dict[str, Any] | None:
        items = json.loads(kubectl(self.parent, "get", "mcls", "-A", "-l",
                                   f"{known.LABEL_CLUSTER_ID}={self.cluster_id}", "-o", "json").stdout)["items"]
        return items[0] if len(items) == 1 else None

    def labels(self) -> dict[str, str]:
        return dict(((self.mc() or {}).get("metadata") or {}).get("labels") or {})

    def verdict(self) -> dict[str, Any]:
        crr = json.loads(kubectl(self.parent, "get", "clsrr", self.crr, "-o", "json").stdout)
        v: dict[str, Any] = json.loads(crr["metadata"].get("annotations", {}).get(VERDICT) or "{}")
        return v if v.get("observedGeneration") == crr["metadata"]["generation"] else {}

    def refusal_events(self, key: str) -> list[dict[str, Any]]:
        items = json.loads(kubectl(self.parent, "get", "events", "-A", "-o", "json",
                                   "--field-selector=reason=ClusterLabelsRefused").stdout)["items"]
        return [e for e in items if key in e["message"]]


@pytest.fixture(scope="module")
def env(parent: ControlPlane, child1: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    logdir = tmp_path_factory.mktemp("cluster-labels")
    install_bootstrap(parent)
    hub = hub_proc(parent, logdir, f"--cluster-label-prefixes={PREFIX}")
    e = Env(parent, child1, logdir, str(uuid.uuid4()), "labels-agent", hub)
    kubectl(child1, "create", "namespace", e.agent_ns, check=False)
    hub.start()
    try:
        yield e
    finally:
        if e.agent is not None:
            e.agent.stop()
        selector = f"{known.LABEL_CLUSTER_ID}={e.cluster_id}"
        kubectl(parent, "delete", "clsrr", e.crr, "--ignore-not-found", check=False)
        kubectl(parent, "delete", "clusterrolebinding,clusterrole", "-l", selector, "--ignore-not-found", check=False)
        kubectl(parent, "delete", "namespace", "-l", selector, "--ignore-not-found", "--wait=false", check=False)
        kubectl(child1, "delete", "namespace", e.agent_ns, "--ignore-not-found", "--wait=false", check=False)
        hub.stop()


def test_registration_labels_land_on_the_managed_cluster(env: Env) -> None:
    # `env` is outside the allowed prefix: at registration that does not matter (as in Clusternet)
    env.start_agent({RACK: "r1", ZONE: "z1", "env": "dev"})
    wait_for(lambda: env.mc() is not None, timeout=60, what="the cluster registered")
    labels = env.labels()
    assert {RACK: "r1", ZONE: "z1", "env": "dev"}.items() <= labels.items()
    assert labels[known.LABEL_CLUSTER_ID] == env.cluster_id
    mc = env.mc()
    assert mc is not None
    assert json.loads(mc["metadata"]["annotations"][FROM_REQUEST]) == {RACK: "r1", ZONE: "z1", "env": "dev"}
    # an administrator labels the cluster directly, inside the children's prefix and outside it
    kubectl(env.parent, "label", "mcls", "-n", mc["metadata"]["namespace"], mc["metadata"]["name"],
            "owner=platform", f"{PINNED}=admin")


def test_allowed_changes_apply_and_the_rest_is_refused_and_reported(env: Env) -> None:
    agent = env.start_agent({RACK: "r2", f"{PREFIX}row": "7", "env": "dev", "secret-team": "yes"})

    def applied() -> dict[str, str] | None:
        labels = env.labels()
        return labels if labels.get(RACK) == "r2" and labels.get(f"{PREFIX}row") == "7" else None

    labels = wait_for(applied, timeout=60, what="the allowed change and addition applied")
    assert "secret-team" not in labels
    assert ZONE not in labels  # left out of the flag: an allowed removal...
    assert {"owner": "platform", PINNED: "admin", "env": "dev"}.items() <= labels.items()  # ...admin labels stay
    verdict = wait_for(env.verdict, timeout=30, what="the hub's verdict")
    assert [(r["key"], r["change"], r["reason"]) for r in verdict["refused"]] == [("secret-team", "add", "prefix")]

    events = wait_for(lambda: env.refusal_events("secret-team"), timeout=30, what="a ClusterLabelsRefused event")
    assert {e["involvedObject"]["kind"] for e in events} == {"ClusterRegistrationRequest", "ManagedCluster"}
    for e in events:
        assert e["type"] == "Warning" and e["source"]["component"] == "clusternet-hub"
        assert "add secret-team=yes" in e["message"] and "--cluster-label-prefixes" in e["message"]
    wait_for(lambda: "did not apply all of --cluster-labels" in agent.output, timeout=30, what="the agent's warning")
    line = next(x for x in agent.output.splitlines() if "did not apply all of --cluster-labels" in x)
    assert "secret-team" in line and "--cluster-label-prefixes" in line
    assert agent.output.count("did not apply all of --cluster-labels") == 1


def test_removals_outside_the_prefix_are_refused_and_admin_labels_survive(env: Env) -> None:
    mc = env.mc()
    assert mc is not None
    # the child asks for everything else to go, and for an admin's label in its own prefix to change
    agent = env.start_agent({RACK: "r2", PINNED: "mine"})
    wait_for(lambda: f"{PREFIX}row" not in env.labels(), timeout=60, what="the allowed removal applied")
    verdict = wait_for(lambda: env.verdict() if len(env.verdict().get("refused", [])) == 2 else None,
                       timeout=30, what="the hub's verdict")
    refused = {r["key"]: (r["change"], r["reason"]) for r in verdict["refused"]}
    assert refused == {"env": ("remove", "prefix"), PINNED: ("change", "admin")}
    labels = env.labels()
    assert labels["env"] == "dev"  # not removed: outside the prefix
    assert labels["owner"] == "platform" and labels[PINNED] == "admin"  # the admin's, untouched
    assert labels[RACK] == "r2"
    wait_for(lambda: env.refusal_events("remove env"), timeout=30, what="an event naming the refused removal")
    wait_for(lambda: "did not apply all of --cluster-labels" in agent.output, timeout=30, what="the agent's warning")
    # what the hub recorded as the request's is exactly what it applied from requests
    mc = env.mc()
    assert mc is not None
    assert json.loads(mc["metadata"]["annotations"][FROM_REQUEST]) == {RACK: "r2", "env": "dev"}
    # the agent did all this with its own token and never held more: it may not touch the ManagedCluster
    can = kubectl(env.parent, "auth", "can-i", "patch", "managedclusters.clusters.clusternet.io",
                  "-n", mc["metadata"]["namespace"], token=parent_token(env.child, env.agent_ns), check=False)
    assert can.stdout.strip() == "no"


def test_hub_start_takes_rights_of_older_versions_away(env: Env) -> None:
    """A child approved by an older hub kept `patch` on its ManagedCluster; the hub re-applies its RBAC on start.

    An older hub wrote a Role of its own and no `status.rbacDigest` (or another one): the digest is what tells a
    starting leader the RBAC it would write differs from what was applied (registration.refresh_rbac)."""
    mc = env.mc()
    assert mc is not None
    ns, before = mc["metadata"]["namespace"], env.labels()
    user = f"system:serviceaccount:{ns}:clusternet-agent"

    def can_patch() -> str:
        return str(kubectl(env.parent, "auth", "can-i", "patch", "managedclusters.clusters.clusternet.io", "-n", ns,
                           f"--as={user}", check=False).stdout.strip())

    role = json.loads(kubectl(env.parent, "get", "role", "clusternet-managedcluster-role", "-n", ns, "-o", "json")
                      .stdout)
    index = next(i for i, r in enumerate(role["rules"]) if r["resources"] == ["managedclusters"])
    kubectl(env.parent, "patch", "role", "clusternet-managedcluster-role", "-n", ns, "--type=json", "-p",
            json.dumps([{"op": "add", "path": f"/rules/{index}/verbs/-", "value": "patch"}]))
    assert can_patch() == "yes"  # as the old hub granted it
    crr = f"clusternet-{mc['spec']['clusterId']}"
    kubectl(env.parent, "patch", "clsrr", crr, "--subresource=status", "--type=json", "-p",
            json.dumps([{"op": "remove", "path": "/status/rbacDigest"}]))
    env.hub.stop()
    env.hub.start()
    wait_for(lambda: can_patch() == "no", timeout=60, what="the restarted hub re-applied the child's Role")
    assert env.labels() == before  # and changed no label
    wait_for(lambda: json.loads(kubectl(env.parent, "get", "clsrr", crr, "-o", "json").stdout)["status"].get(
        "rbacDigest"), timeout=30, what="the digest of the RBAC it applied recorded")


def test_no_tokens_in_logs(env: Env) -> None:
    token = parent_token(env.child, env.agent_ns)
    logs = env.hub.output + "".join(p.read_text() for p in env.logdir.glob("agent-*.log"))
    assert "asked the parent for cluster labels" in logs  # the logs are real
    assert token not in logs and "eyJ" not in logs and BOOTSTRAP_TOKEN not in logs
