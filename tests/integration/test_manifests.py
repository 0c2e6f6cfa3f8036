"""deploy/ is valid for a real apiserver, and the hub's ClusterRole really lets it do its job."""

from __future__ import annotations

import json
import uuid

import pytest

from clusternet_hub.registration import rbac_manifests
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import applied_below_pdb, kubectl
from clusternet_testing.processes import REPO, service_account_token

pytestmark = pytest.mark.integration


def test_deploy_manifests_pass_server_side_validation(parent: ControlPlane, child1: ControlPlane) -> None:
    for cp in (parent, child1):
        kubectl(cp, "create", "namespace", "clusternet-system", check=False)
    for how in ("-k", "-f"):  # kustomize, and the overview's `kubectl apply -f deploy/hub`
        hub = applied_below_pdb(kubectl(parent, "apply", "--dry-run=server", how, str(REPO / "deploy" / "hub"),
                                        check=False), parent)
        assert "deployment.apps/clusternet-hub" in hub and "apiservice" in hub
        assert "customresourcedefinition.apiextensions.k8s.io/managedclusters.clusters.clusternet.io" in hub
        agent = kubectl(child1, "apply", "--dry-run=server", how, str(REPO / "deploy" / "agent"))
        assert "deployment.apps/clusternet-agent" in agent.stdout


def test_hub_cluster_role_covers_what_it_grants_and_does(parent: ControlPlane) -> None:
    """Kubernetes lets a subject write RBAC only with permissions it holds: the hub must hold every rule
    it hands to a child, or approvals fail with 'attempting to grant RBAC permissions not currently held'."""
    kubectl(parent, "create", "namespace", "clusternet-system", check=False)
    kubectl(parent, "apply", "-f", str(REPO / "deploy" / "hub" / "02-rbac.yaml"))
    token = service_account_token(parent, "clusternet-system", "clusternet-hub")
    ns = f"clusternet-{uuid.uuid4().hex[:5]}"
    kubectl(parent, "create", "namespace", ns)
    for obj in rbac_manifests(str(uuid.uuid4()), ns, "probe"):
        result = kubectl(parent, "apply", "--server-side", "-f", "-", token=token,
                         input=json.dumps(obj), check=False)
        assert result.returncode == 0, (obj["kind"], result.stderr)
    for verb, resource in (("create", "tokenreviews.authentication.k8s.io"),
                           ("list", "managedclusters.clusters.clusternet.io"),
                           ("patch", "descriptions.apps.clusternet.io"),
                           ("get", "secrets/child-cluster-deployer")):
        can = kubectl(parent, "auth", "can-i", verb, resource, "-n", ns, token=token, check=False)
        assert can.stdout.strip() == "yes", (verb, resource)
    # the deployment pipeline: what it derives it writes, what users author it only reads
    for verb, resource in (("create", "descriptions.apps.clusternet.io"), ("delete", "bases.apps.clusternet.io"),
                           ("patch", "feedinventories.apps.clusternet.io"),
                           ("patch", "subscriptions.apps.clusternet.io"),
                           ("watch", "manifests.apps.clusternet.io"),
                           ("list", "localizations.apps.clusternet.io")):
        can = kubectl(parent, "auth", "can-i", verb, resource, "-n", ns, token=token, check=False)
        assert can.stdout.strip() == "yes", (verb, resource)
    # and nothing it does not need
    assert kubectl(parent, "auth", "can-i", "get", "secrets", "-n", "kube-system", token=token,
                   check=False).stdout.strip() == "no"
    # replicas follow each other's peer Leases with a watch: in the hub's namespace only
    for ns_, answer in (("clusternet-system", "yes"), ("kube-system", "no"), (ns, "no")):
        can = kubectl(parent, "auth", "can-i", "watch", "leases.coordination.k8s.io", "-n", ns_, token=token,
                      check=False)
        assert can.stdout.strip() == answer, (ns_, can.stdout)
    for verb, resource in (("create", "manifests.apps.clusternet.io"), ("delete", "subscriptions.apps.clusternet.io"),
                           ("patch", "localizations.apps.clusternet.io"),
                           ("update", "globalizations.apps.clusternet.io")):
        can = kubectl(parent, "auth", "can-i", verb, resource, "-n", ns, token=token, check=False)
        assert can.stdout.strip() == "no", (verb, resource)
