"""Two hub replicas on one parent: exactly one holds the Lease and approves; kill -9 it and the other takes over.

One fresh control plane of its own (the shared parent runs the module hubs of other tests, which would approve
the requests made here). The hubs run with short lease settings so a takeover fits in seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusternet_api import known
from clusternet_testing.controlplane import ControlPlane, find_binaries
from clusternet_testing.helpers import kubectl, new_registration_request, wait_for
from clusternet_testing.processes import hub_proc

pytestmark = pytest.mark.integration

LEASE = ["--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
         "--leader-elect-retry-period=1s"]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane("election", find_binaries(), tmp_path_factory.mktemp("election"),
                      service_cidr="127.32.0.0/16") as cp:
        cp.install_crds()
        yield cp


def lease(cp: ControlPlane) -> dict[str, Any] | None:
    out = kubectl(cp, "get", "lease", "-n", known.SYSTEM_NAMESPACE, "clusternet-hub", "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def holder(cp: ControlPlane) -> str:
    return str(((lease(cp) or {}).get("spec") or {}).get("holderIdentity") or "")


def new_request(cp: ControlPlane) -> str:
    return new_registration_request(cp, "le")


def approved(cp: ControlPlane, cid: str) -> bool:
    out = kubectl(cp, "get", "clsrr", f"clusternet-{cid}", "-o", "jsonpath={.status.result}").stdout
    return out == "Approved"


def test_one_leader_approves_and_the_standby_takes_over_after_kill_9(plane: ControlPlane, tmp_path: Path) -> None:
    hubs = []
    for name in ("hub-a", "hub-b"):
        h = hub_proc(plane, tmp_path, *LEASE)
        h.name, h.log = name, tmp_path / f"{name}.log"
        hubs.append(h.start())
    try:
        wait_for(lambda: holder(plane), timeout=30, what="a Lease holder")
        time.sleep(3)  # both have tried several times: still one holder, the same one
        first = holder(plane)
        assert first and holder(plane) == first
        acquired = [h for h in hubs if "acquired Lease" in h.output]
        assert len(acquired) == 1, [h.output[-2000:] for h in hubs]
        leader, standby = acquired[0], next(h for h in hubs if h is not acquired[0])
        assert "waits for Lease" in standby.output
        for h in hubs:  # every replica serves, leading or not
            assert "hub serving on" in h.output

        cid = new_request(plane)
        wait_for(lambda: approved(plane, cid), timeout=30, what="the request approved by the leader")
        ns = kubectl(plane, "get", "ns", "-l", f"{known.LABEL_CLUSTER_ID}={cid}", "-o", "name").stdout.split()
        assert len(ns) == 1  # approved once: one dedicated namespace
        assert f"clusternet-{cid}" not in standby.output  # the standby's kopf never ran

        leader.kill()
        killed_at = time.monotonic()
        wait_for(lambda: "acquired Lease" in standby.output, timeout=15, what="the standby takes the Lease")
        took = time.monotonic() - killed_at
        assert took <= 4 + 2 * 1.2 + 1, took  # lease duration + a jittered retry or two (+ slack for a busy box)
        assert holder(plane) != first and holder(plane)
        assert (lease(plane) or {})["spec"]["leaseTransitions"] >= 1

        cid2 = new_request(plane)
        wait_for(lambda: approved(plane, cid2), timeout=30, what="a new request approved by the new leader")
        assert not leader.running()  # the killed one stays dead: nothing restarts it here

        rc = standby.stop()  # a clean shutdown releases the Lease at once
        assert "released Lease" in standby.output, (rc, standby.output[-3000:])
        spec = (lease(plane) or {})["spec"]
        assert spec.get("holderIdentity", "") == "" and spec["leaseDurationSeconds"] == 1
        assert "released Lease" in standby.output
    finally:
        for h in hubs:
            h.stop()
        for h in hubs:
            assert "Traceback" not in h.output, h.output[-3000:]


def test_leader_elect_false_runs_without_a_lease(plane: ControlPlane, tmp_path: Path) -> None:
    kubectl(plane, "delete", "lease", "-n", known.SYSTEM_NAMESPACE, "clusternet-hub", "--ignore-not-found")
    hub = hub_proc(plane, tmp_path, "--leader-elect=false").start()
    try:
        cid = new_request(plane)
        wait_for(lambda: approved(plane, cid), timeout=30, what="approved without leader election")
        assert lease(plane) is None
        assert "Lease" not in hub.output
    finally:
        hub.stop()


def test_unsupported_lock_is_refused_in_one_line(plane: ControlPlane, tmp_path: Path) -> None:
    hub = hub_proc(plane, tmp_path, "--leader-elect=true", "--leader-elect-resource-lock=endpoints").start()
    assert hub.proc is not None
    assert hub.proc.wait(timeout=30) == 2
    assert "only 'leases' is supported" in hub.output


def test_a_leader_that_sees_another_holder_stops_and_exits(plane: ControlPlane, tmp_path: Path) -> None:
    """Fencing: the Lease taken from under a running leader (as after a long pause) makes it exit at once."""
    kubectl(plane, "delete", "lease", "-n", known.SYSTEM_NAMESPACE, "clusternet-hub", "--ignore-not-found")
    hub = hub_proc(plane, tmp_path, *LEASE).start()
    try:
        wait_for(lambda: "acquired Lease" in hub.output, timeout=30, what="the hub leading")
        kubectl(plane, "patch", "lease", "-n", known.SYSTEM_NAMESPACE, "clusternet-hub", "--type=merge",
                "-p", json.dumps({"spec": {"holderIdentity": "someone-else"}}))
        assert hub.proc is not None
        assert hub.proc.wait(timeout=15) == 1
        assert "leaderelection lost" in hub.output
        assert holder(plane) == "someone-else"  # it did not write the Lease back
        assert "Traceback" not in hub.output, hub.output[-3000:]  # kopf's watches end without noise
    finally:
        hub.stop()
