"""A release left pending by a dead operation is repaired, judged on the judging deployer's own clock (review F9).

Helm's `last_deployed` is written by whoever ran the operation: in Dual mode or a Push/Pull switch, another
machine, whose clock may be far off. Here only how long this deployer itself has seen the same pending revision
counts (helm/stuck.py), so these tests move a fake monotonic clock and make Helm's timestamp say anything.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from clusternet_agent.helmpuller import ReleasePuller
from clusternet_api import known
from clusternet_api.helm.driver import ReleaseError
from clusternet_api.helm.stuck import FORGET_SECONDS, STALE_MARGIN, PendingReleases
from tests.unit.fakehelm import FakeHelm
from tests.unit.fakekube import FakeKube
from tests.unit.test_controller import NS, cluster, push_secret, subscription
from tests.unit.test_helm import FEED, HR, Deployer, chart, deploy, helm_controller, reconciled, release, released


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


def ago(seconds: float) -> str:
    """An RFC 3339 time `seconds` before now by this machine's clock (negative: in the future)."""
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=seconds)).isoformat()


def pending_tracker() -> tuple[PendingReleases, Clock]:
    clock = Clock()
    return PendingReleases(clock), clock


async def deployed(hr: dict[str, Any]) -> tuple[FakeHelm, dict[str, Any], PendingReleases, Clock]:
    """A FakeHelm with `hr`'s release installed and reported, and the deployer's tracker with its clock."""
    helm, (pending, clock) = FakeHelm(), pending_tracker()
    hr["status"] = (await reconciled(helm, hr, pending)).status
    return helm, hr, pending, clock


def non_fetch(helm: FakeHelm) -> list[tuple[str, str]]:
    return [c for c in helm.calls if c[0] != "fetch"]


async def test_a_release_pending_within_its_timeout_is_left_to_the_operation_under_way() -> None:
    helm, hr, pending, clock = await deployed(release(timeoutSeconds=600))
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=2, last_deployed=ago(600))
    await reconciled(helm, hr, pending)
    clock.now += 600 + STALE_MARGIN  # not more than that
    outcome = await reconciled(helm, hr, pending)
    assert outcome.status is not None and outcome.status["phase"] == "pending-upgrade"
    assert non_fetch(helm) == [("install", "abc/mysql")]


async def test_helms_start_time_from_a_clock_far_ahead_does_not_make_a_live_operation_stuck() -> None:
    """The hub started the install; the agent, its clock an hour ahead of the hub's, looks next (a Dual switch):
    it uninstalled the live install at once. It waits, on its own clock, for as long as any fresh look would."""
    helm, hr, pending, clock = await deployed(release(timeoutSeconds=30))
    helm.relabel("abc", "mysql", status="pending-install", last_deployed=ago(3600))
    for _ in range(3):  # resyncs within its timeout plus the margin, as this deployer counts
        outcome = await reconciled(helm, hr, pending)
        assert outcome.status is not None and outcome.status["phase"] == "pending-install"
        clock.now += (30 + STALE_MARGIN) / 3
    assert non_fetch(helm) == [("install", "abc/mysql")]


@pytest.mark.parametrize("started", [-3600, 60 + STALE_MARGIN + 5], ids=["helm-clock-ahead", "helm-clock-right"])
async def test_a_release_left_pending_install_by_a_dead_operation_is_uninstalled_and_installed_again(
        started: int) -> None:
    """Whatever Helm's start time says (an hour from now, written by a clock far ahead; or long enough ago), the
    release is repaired once this deployer has seen it pending for its timeout and the margin, and not before."""
    helm, hr, pending, clock = await deployed(release(timeoutSeconds=60))
    helm.relabel("abc", "mysql", status="pending-install", last_deployed=ago(started))
    waiting = await reconciled(helm, hr, pending)
    assert waiting.status is not None and waiting.status["phase"] == "pending-install"
    clock.now += 60 + STALE_MARGIN + 1
    outcome = await reconciled(helm, hr, pending)
    assert outcome.status is not None and outcome.status["phase"] == "deployed"
    assert non_fetch(helm) == [("install", "abc/mysql"), ("uninstall", "abc/mysql"), ("install", "abc/mysql")]


async def test_a_release_left_pending_upgrade_by_a_dead_operation_is_rolled_back_then_upgraded() -> None:
    helm, hr, pending, clock = await deployed(release())  # the default timeout: 300 s
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=2, values={"interrupted": True},
                 last_deployed=ago(3600))
    await reconciled(helm, hr, pending)
    clock.now += 300 + STALE_MARGIN + 1
    outcome = await reconciled(helm, hr, pending)
    assert outcome.status is not None and outcome.status["phase"] == "deployed"
    assert non_fetch(helm) == [("install", "abc/mysql"), ("rollback", "abc/mysql@1"), ("upgrade", "abc/mysql")]
    assert helm.releases[("abc", "mysql")].values == {}


async def test_another_operation_meanwhile_starts_the_wait_again() -> None:
    """A new pending revision is a new operation (Helm writes one per operation): the wait is for the one seen."""
    helm, hr, pending, clock = await deployed(release(timeoutSeconds=60))
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=2, last_deployed=ago(0))
    await reconciled(helm, hr, pending)
    clock.now += 60 + STALE_MARGIN - 10
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=3, last_deployed=ago(0))
    await reconciled(helm, hr, pending)
    clock.now += 20  # revision 2 would be past its wait; revision 3 has been seen for 20 s
    outcome = await reconciled(helm, hr, pending)
    assert outcome.status is not None and outcome.status["phase"] == "pending-upgrade"
    clock.now += 60 + STALE_MARGIN
    outcome = await reconciled(helm, hr, pending)
    assert outcome.status is not None and outcome.status["phase"] == "deployed"
    assert non_fetch(helm) == [("install", "abc/mysql"), ("rollback", "abc/mysql@2")]


async def test_a_failed_recovery_keeps_helms_phase_and_is_retried() -> None:
    helm, hr, pending, clock = await deployed(release())
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=2, last_deployed=ago(3600))
    await reconciled(helm, hr, pending)
    clock.now += 300 + STALE_MARGIN + 1

    async def refused(*args: Any) -> None:
        raise ReleaseError('release "mysql" failed: etcdserver: request timed out')

    helm.rollback = refused  # type: ignore[method-assign]
    outcome = await reconciled(helm, hr, pending)
    assert outcome.retry and outcome.status is not None and outcome.status["phase"] == "pending-upgrade"
    assert "recovering it failed: release" in released(outcome.status)["message"]
    assert released(outcome.status)["reason"] == "ReleaseStuck"
    assert outcome.event is not None and outcome.event[1] == "ReleaseStuck"


def test_what_a_deployer_has_not_looked_at_for_long_is_forgotten_and_waited_for_afresh() -> None:
    helm, (pending, clock) = FakeHelm(), pending_tracker()
    helm.foreign("abc", "mysql")
    helm.relabel("abc", "mysql", status="pending-install")
    state, hr, other = helm.releases[("abc", "mysql")], release(), release() | {"metadata": {"name": "o",
                                                                                          "namespace": NS}}
    assert not pending.stuck(hr, state, 30)
    clock.now += FORGET_SECONDS + 1
    assert not pending.stuck(other, None, 30)  # any look sweeps what has not been looked at for that long
    assert not pending.stuck(hr, state, 30) and pending.waited(hr) == 0.0
    clock.now += 30 + STALE_MARGIN + 1
    assert pending.stuck(hr, state, 30)


# --- the deployers keep what they saw from one look to the next -------------------------------------------------


async def test_the_hub_judges_on_what_it_saw_at_its_earlier_pushes() -> None:
    c, parent, helm = await helm_controller(cluster(), chart(timeoutSeconds=30), push_secret(),
                                            subscription(feeds=[FEED]))
    await deploy(c)
    clock = Clock()
    c.releases.pending.clock = clock
    helm.relabel("abc", "mysql", status="pending-install", last_deployed=ago(3600))
    await c.releases.push(HR)
    assert parent.find("HelmRelease", *HR)["status"]["phase"] == "pending-install"
    clock.now += 30 + STALE_MARGIN + 1
    await c.releases.push(HR)
    assert parent.find("HelmRelease", *HR)["status"]["phase"] == "deployed"
    assert non_fetch(helm) == [("install", "abc/mysql"), ("uninstall", "abc/mysql"), ("install", "abc/mysql")]


async def test_the_agent_judges_on_what_it_saw_at_its_earlier_resyncs() -> None:
    helm = FakeHelm()
    parent = FakeKube(release(timeoutSeconds=30) | {"apiVersion": known.APPS_API_VERSION, "kind": "HelmRelease"})
    agent = ReleasePuller(parent, Deployer(), NS, "child2", 30, helm)  # type: ignore[arg-type]
    clock = Clock()
    agent.pending.clock = clock
    pull_mode = {"spec": {"syncMode": "Pull"}, "status": {"appPusher": False}}

    async def process() -> str:
        await agent.process(parent.objects[("HelmRelease", NS, "r")], pull_mode)
        return str(parent.objects[("HelmRelease", NS, "r")]["status"]["phase"])

    assert await process() == "deployed"
    helm.relabel("abc", "mysql", status="pending-upgrade", revision=2, last_deployed=ago(3600))
    assert await process() == "pending-upgrade"
    clock.now += 30 + STALE_MARGIN + 1
    assert await process() == "deployed"
    assert non_fetch(helm) == [("install", "abc/mysql"), ("rollback", "abc/mysql@1")]


async def test_the_waiting_status_says_when_the_release_is_taken_for_interrupted_and_stays_the_same() -> None:
    """The fifth audit: "waiting for it" said neither why nor until when. The time is this deployer's first sighting
    plus the timeout and the margin, the same at every look (no status write per resync)."""
    helm, clock = FakeHelm(), Clock()
    pending = PendingReleases(clock, wall_clock=lambda: 1_780_000_000.0 + clock.now - 5000.0)
    hr = release(timeoutSeconds=300)
    hr["status"] = (await reconciled(helm, hr, pending)).status
    helm.relabel("abc", "mysql", status="pending-install", revision=1, last_deployed=ago(-3600))
    messages = []
    for _ in range(3):
        outcome = await reconciled(helm, hr, pending)
        assert outcome.status is not None
        messages.append(outcome.status["conditions"][0]["message"])
        clock.now += 30
    assert len(set(messages)) == 1, messages
    at = datetime.datetime.fromtimestamp(1_780_000_000.0 + 300 + STALE_MARGIN, datetime.UTC)
    assert f"if it is still so at {at.strftime('%Y-%m-%dT%H:%M:%SZ')}" in messages[0], messages[0]
