"""Chart repository credentials come from the HelmChart the parent's users wrote, never from what an agent may edit.

An agent may patch its cluster's HelmReleases and Descriptions on the parent; the hub reads chartPullSecrets with its
own identity, so a child naming another team's Secret there must get nothing (audit F1).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.rawobjects import encode_raw
from clusternet_core import chartcredentials, helmrender
from clusternet_hub.controller import Controller
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube, Obj
from tests.unit.test_controller import NS, SUB, cluster, push_secret, subscription
from tests.unit.test_helm import FEED, HELM_DESC, HR, chart, helm_controller, override

TEAMB = {"name": "teamb-repo", "namespace": "default"}


def secret(name: str, username: str, password: str, namespace: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {"username": base64.b64encode(username.encode()).decode(),
                     "password": base64.b64encode(password.encode()).decode()}}


def pull_cluster() -> Obj:
    mc = cluster()
    return {**mc, "spec": {**mc["spec"], "syncMode": "Pull"}, "status": {**mc["status"], "appPusher": False}}


async def rendered(*objects: Obj) -> tuple[Controller, FakeKube, FakeHelm]:
    """The Subscription rendered to its Helm Description and HelmRelease, nothing deployed yet."""
    c, parent, helm = await helm_controller(secret("teamb-repo", "teamb", "S3cretTeamB"),
                                            secret("repo-creds", "ours", "OurPass"), subscription(feeds=[FEED]),
                                            *objects)
    await c.subscriptions.reconcile(SUB, force=False)
    await c.helm_descriptions.sync(HELM_DESC)
    return c, parent, helm


async def agent_patches(c: Controller, parent: FakeKube, kind: str, key: tuple[str, str], spec: Obj) -> Obj:
    """What the agent's parent identity may do: patch the object's spec; the hub sees the watch event."""
    obj = await parent.patch(known.APPS_API_VERSION, kind, key[1], {"spec": spec}, key[0])
    (c.store.on_helmrelease if kind == "HelmRelease" else c.store.on_description)("MODIFIED", obj)
    return obj


def shared(parent: FakeKube) -> dict[str, str]:
    found = parent.find("Secret", NS, known.CHART_PULL_SECRET) or {}
    return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}


async def test_a_pull_agent_naming_another_teams_secret_in_its_helmrelease_gets_nothing() -> None:
    c, parent, _ = await rendered(pull_cluster(), chart())
    await agent_patches(c, parent, "HelmRelease", HR, {"chartPullSecret": TEAMB})
    await c.releases.push(HR)
    assert "S3cretTeamB" not in shared(parent).values()


async def test_a_pull_cluster_gets_its_charts_credentials_whatever_its_helmrelease_names() -> None:
    c, parent, _ = await rendered(pull_cluster(), chart(chartPullSecret={"name": "repo-creds"}))
    await c.releases.push(HR)
    assert shared(parent) == {f"{HR[1]}.username": "ours", f"{HR[1]}.password": "OurPass"}
    await agent_patches(c, parent, "HelmRelease", HR, {"chartPullSecret": TEAMB})
    await c.releases.push(HR)
    assert shared(parent) == {f"{HR[1]}.username": "ours", f"{HR[1]}.password": "OurPass"}


async def test_a_chart_an_agent_adds_to_its_description_gets_no_credentials() -> None:
    c, parent, _ = await rendered(pull_cluster(), chart())
    desc = parent.find("Description", *HELM_DESC)
    stolen = chart(chartPullSecret=TEAMB)
    stolen["metadata"]["name"] = "teamb"
    spec = desc["spec"]
    await agent_patches(c, parent, "Description", HELM_DESC, {
        "charts": [*spec["charts"], {"namespace": "default", "name": "teamb"}],
        "raw": [*spec["raw"], *encode_raw([{}])], "chartRaw": [*spec["chartRaw"], *encode_raw([stolen])]})
    await c.helm_descriptions.sync(HELM_DESC)
    injected = (NS, helmrender.release_name(HELM_DESC[1], "default", "teamb"))
    assert parent.find("HelmRelease", *injected)["spec"]["chartPullSecret"] == TEAMB  # what the hub wrote ...
    await c.releases.push(injected)
    assert "S3cretTeamB" not in shared(parent).values()  # ... but never reads


async def test_the_hub_fetches_with_its_charts_credentials_and_only_from_the_charts_repository() -> None:
    c, parent, helm = await rendered(cluster(), push_secret(), chart(chartPullSecret={"name": "repo-creds"}))
    await agent_patches(c, parent, "HelmRelease", HR, {"chartPullSecret": TEAMB})
    await c.releases.push(HR)
    assert [(s.username, s.password) for s in helm.sources] == [("ours", "OurPass")]
    # (a new version too: a release running its exact version is not fetched for)
    await agent_patches(c, parent, "HelmRelease", HR, {"repo": "https://listener.example", "version": "8.6.3"})
    await c.releases.push(HR)
    assert (helm.sources[-1].repo, helm.sources[-1].username, helm.sources[-1].password) == (
        "https://listener.example", None, None)


async def test_a_chart_pull_secret_an_agent_adds_to_its_helmrelease_is_taken_out_again() -> None:
    c, parent, _ = await rendered(pull_cluster(), chart())
    c.store.queue.drain()
    await agent_patches(c, parent, "HelmRelease", HR, {"chartPullSecret": TEAMB})
    assert c.store.queue.waiting(("helm", *HELM_DESC))
    await c.helm_descriptions.sync(HELM_DESC)
    assert "chartPullSecret" not in parent.find("HelmRelease", *HR)["spec"]


async def test_a_chart_pull_secret_an_agent_changes_in_its_helmrelease_is_put_back() -> None:
    c, parent, _ = await rendered(pull_cluster(), chart(chartPullSecret={"name": "repo-creds"}))
    await agent_patches(c, parent, "HelmRelease", HR, {"chartPullSecret": TEAMB})
    await c.helm_descriptions.sync(HELM_DESC)
    assert parent.find("HelmRelease", *HR)["spec"]["chartPullSecret"] == {"name": "repo-creds",
                                                                          "namespace": "default"}


def test_override_chart_never_changes_the_chart_pull_secret() -> None:
    patch: dict[str, Any] = {"spec": {"version": "9.0.0", "chartPullSecret": TEAMB}}
    loc = override("Localization", "v", 100, patch, namespace=NS, chart_override=True)
    key = "apps.clusternet.io/v1alpha1/HelmChart/default/mysql"
    [item] = helmrender.render_helm([FEED], {key: chart(chartPullSecret={"name": "repo-creds"})}, cluster(),
                                    [], [loc]).items
    assert item.chart["spec"]["version"] == "9.0.0"
    assert item.chart["spec"]["chartPullSecret"] == {"name": "repo-creds"}
    assert json.loads(json.dumps(item.chart))  # still plain JSON


async def test_a_release_no_subscription_accounts_for_names_no_chart() -> None:
    c, _, _ = await rendered(pull_cluster(), chart(chartPullSecret={"name": "repo-creds"}))
    caches = c.store.caches
    assert chartcredentials.release_chart(*HR, caches) is not None
    assert chartcredentials.release_chart("clusternet-other", HR[1], caches) is None  # not bound there
    del caches.descriptions[HELM_DESC]
    assert chartcredentials.release_chart(*HR, caches) is None


async def test_two_releases_of_one_pull_cluster_keep_each_others_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two private charts to one Pull cluster: their workers each read the shared Secret, then applied it whole
    without the other's keys (which server-side apply removes); they now take turns."""
    c, parent, _ = await rendered(pull_cluster(), chart(chartPullSecret={"name": "repo-creds"}))
    hr = parent.find("HelmRelease", *HR)
    other = {**hr, "metadata": {**hr["metadata"], "name": "other"}}

    async def read_slowly(*_: Any) -> tuple[str, str]:
        await asyncio.sleep(0)  # another worker runs here, between the read of the Secret and its apply
        return "ours", "OurPass"

    monkeypatch.setattr("clusternet_hub.controller.helmpusher.pull_credentials", read_slowly)
    monkeypatch.setattr(chartcredentials, "pull_secret_ref", lambda *_: {"name": "repo-creds"})
    await asyncio.gather(c.releases._share_pull_credentials(hr, False),
                         c.releases._share_pull_credentials(other, False))
    last = [b for w, b in zip(parent.writes, parent.bodies, strict=True) if w[:2] == ("apply", "Secret")][-1]
    assert sorted(last["data"]) == sorted(f"{n}.{k}" for n in (HR[1], "other") for k in ("username", "password"))
