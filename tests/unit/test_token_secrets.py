"""Secrets an agent may read on the parent never hold a ServiceAccount token (audit F12).

An agent may create any Secret in its namespace and read two by name; created as type
`kubernetes.io/service-account-token` for its own ServiceAccount, the token controller fills one with a token that
never expires. The hub deletes such a Secret when it meets one (which revokes that token: the API server checks
the Secret still exists) and never uses it as push credentials.
"""

from __future__ import annotations

import base64

from clusternet_api import known
from clusternet_hub import registration
from clusternet_hub.controller import pusher
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import NS, cluster, primed


def token_secret(name: str) -> Obj:
    data = {"token": b"eyJ.never.expires", "ca.crt": b"CA", "namespace": NS.encode(),
            "apiserver-advertise-url": b"https://child.example:6443"}
    return {"apiVersion": "v1", "kind": "Secret", "type": known.SERVICE_ACCOUNT_TOKEN_TYPE,
            "metadata": {"name": name, "namespace": NS,
                         "annotations": {"kubernetes.io/service-account.name": "clusternet-agent"}},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


async def test_the_hub_deletes_token_secrets_its_agents_could_read_and_leaves_the_rest() -> None:
    opaque = {**token_secret(known.CHART_PULL_SECRET), "type": "Opaque"}
    kube = FakeKube(token_secret(known.DEPLOYER_SECRET), opaque, token_secret("unreadable-by-the-agent"))
    await registration.drop_token_secrets(kube, NS)  # type: ignore[arg-type]
    assert kube.find("Secret", NS, known.DEPLOYER_SECRET) is None
    assert kube.find("Secret", NS, known.CHART_PULL_SECRET) is not None
    assert kube.find("Secret", NS, "unreadable-by-the-agent") is not None


async def test_a_token_refresh_drops_them() -> None:
    crr = {"apiVersion": known.CLUSTERS_API_VERSION, "kind": "ClusterRegistrationRequest",
           "metadata": {"name": "clusternet-abc"},
           "status": {"result": "Approved", "dedicatedNamespace": NS, "managedClusterName": "child1"}}
    kube = FakeKube(token_secret(known.DEPLOYER_SECRET), crr)
    await registration.refresh_rbac(kube, crr)  # type: ignore[arg-type]
    assert kube.find("Secret", NS, known.DEPLOYER_SECRET) is None


async def test_a_token_secret_is_never_taken_for_push_credentials() -> None:
    c, parent, _ = await primed(cluster(), token_secret(known.DEPLOYER_SECRET))
    assert await c.pusher.child_client(cluster()) == pusher.DEPLOYER_CREDENTIALS_MISSING
    assert parent.find("Secret", NS, known.DEPLOYER_SECRET) is None


async def test_a_token_secret_in_place_of_the_chart_pull_secret_is_replaced_by_the_credentials() -> None:
    from tests.unit.test_chart_credentials import HR, chart, pull_cluster, rendered, shared

    c, parent, _ = await rendered(pull_cluster(), chart(chartPullSecret={"name": "repo-creds"}),
                                  token_secret(known.CHART_PULL_SECRET))
    await c.releases.push(HR)
    assert parent.find("Secret", NS, known.CHART_PULL_SECRET).get("type") == "Opaque"
    assert shared(parent) == {f"{HR[1]}.username": "ours", f"{HR[1]}.password": "OurPass"}


def test_the_optional_admission_policy_names_our_namespaces_and_agents() -> None:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "manifests/policies/agents_no_token_secrets.yaml"
    policy, binding = yaml.safe_load_all(path.read_text())
    spec = policy["spec"]
    assert spec["matchConstraints"]["namespaceSelector"]["matchExpressions"][0]["key"] == known.LABEL_CLUSTER_ID
    assert f"':{registration.AGENT_SERVICE_ACCOUNT}'" in spec["matchConditions"][0]["expression"]
    assert known.SERVICE_ACCOUNT_TOKEN_TYPE in spec["validations"][0]["expression"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
