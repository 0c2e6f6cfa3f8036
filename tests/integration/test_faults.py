"""Faults on real control planes (issue 15): each converges with nothing lost and nothing wrongly deleted.

Every test ends the same way (`settle` and `Health.check`): every Subscription of this module has exactly one
Base and one Description per cluster it selects, each Description Success for its current generation, and the
children themselves hold exactly the objects those Descriptions name, marked as theirs (what the child holds is
checked, not what a status claims); objects deployed before the fault keep their UIDs (a deleted and re-created
object has a new one); the hub and both agents run as the same processes (or restarted once, by the test), and
their logs have no traceback, no unretrieved task exception and no logging failure.

test_outages.py covers outages longer than the heartbeat grace period (parent killed, agents killed) and
test_tunnel.py a single agent kill under a watch; the faults here are the ones that hit work in flight.
child2's agent dials the hub through a `Balancer`, so its tunnel alone can be cut while the agent lives on.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from clusternet_api import known
from clusternet_core.rendering import manifest_labels, manifest_name
from clusternet_testing.balancer import Balancer
from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import KubectlWatch, feed, kubectl, wait_for
from clusternet_testing.processes import Proc, flag_value, service_account_token

pytestmark = pytest.mark.integration

BATCH = "faults.clusternet.io/batch"  # label of every ConfigMap made here: which Subscription it belongs to
ALL, PUSHED, PULLED = "faults-all", "faults-push", "faults-pull"  # cluster labels: both, child1 (push), child2 (pull)
MANY = 150  # objects of the mid-apply tests: enough that applying them takes longer than noticing the first
LOG_MARKERS = ("Traceback", "exception was never retrieved", "--- Logging error ---", "Unclosed ")
SOCKETS = "/apis/proxies.clusternet.io/v1alpha1/sockets"


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmaps(ns: str, prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": f"{prefix}-{i:03d}", "namespace": ns, "labels": {BATCH: prefix}},
             "data": {"index": str(i)}} for i in range(n)]


TEMPLATES = [namespace("faults-push"), *configmaps("faults-push", "push", MANY),
             namespace("faults-pull"), *configmaps("faults-pull", "pull", MANY)]
"""Stored with the first Subscription: the hub renders a Description from the Manifests it has seen, so one
created with its 150 Manifests goes through several generations as they arrive (each applied again)."""


def store_templates(parent: ControlPlane, objects: list[dict[str, Any]]) -> None:
    """What `kubectl clusternet apply` stores (helpers.store_template), in one request for all of them."""
    items = [{"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Manifest",
              "metadata": {"name": manifest_name(o["kind"].lower() + "s", o["metadata"].get("namespace"),
                                                 o["metadata"]["name"]),
                           "namespace": known.RESERVED_NAMESPACE, "labels": manifest_labels(o)},
              "template": o} for o in objects]
    kubectl(parent, "apply", "--server-side", "--force-conflicts", "-f", "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


class Plans:
    """The Subscriptions of this module: name -> (cluster label, objects), as last applied."""

    def __init__(self, parent: ControlPlane) -> None:
        self.parent = parent
        self.subs: dict[str, tuple[str, list[dict[str, Any]]]] = {}

    def subscribe(self, name: str, label: str, objects: list[dict[str, Any]], drift_correction: bool = True) -> None:
        """Without `drift_correction`, a deployed Description is not re-applied every resync (2 s here): the
        big ones must converge by retrying the interrupted work, not by the periodic re-apply, which would
        also re-apply their objects every 2 s for the rest of the module."""
        if new := [o for o in objects if o not in TEMPLATES]:
            store_templates(self.parent, new)
        annotations = {} if drift_correction else {known.ANNOTATION_DRIFT_CORRECTION: "false"}
        kubectl(self.parent, "apply", "-f", "-", input=json.dumps({
            "apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
            "metadata": {"name": name, "namespace": "default", "annotations": annotations},
            "spec": {"subscribers": [{"clusterAffinity": {"matchLabels": {label: "yes"}}}],
                     "feeds": [feed(o) for o in objects]}}))
        self.subs[name] = (label, objects)


def child_objects(child: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    """The child's Namespace `ns` and its ConfigMaps (made by us), by "Kind/name", read from the child itself."""
    found: dict[str, dict[str, Any]] = {}
    try:
        found[f"Namespace/{ns}"] = child.request_json("GET", f"/api/v1/namespaces/{ns}")
        items = child.request_json("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector={BATCH}")["items"]
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        return found
    for cm in items:  # type: ignore[attr-defined]
        found[f"ConfigMap/{cm['metadata']['name']}"] = cm
    return found


def uids(env: dict[str, Any]) -> dict[str, str]:
    """UID of every object this module deployed, in both children, by child/Kind/name."""
    out = {}
    for child in (env["child1"], env["child2"]):
        for _, (_, objects) in env["plans"].subs.items():
            ns = objects[0]["metadata"]["name"]
            for key, obj in child_objects(child, ns).items():
                out[f"{child.name}/{ns}/{key}"] = obj["metadata"]["uid"]
    return out


def listing(parent: ControlPlane, resource: str, sub: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(kubectl(parent, "get", resource, "-A", "-l",
                                                     f"{known.LABEL_SUBS_NAME}={sub}", "-o", "json").stdout)["items"]
    return items


def problems(env: dict[str, Any]) -> list[str]:
    """What still differs from every Subscription fully deployed, confirmed by the children (empty: converged)."""
    found: list[str] = []
    clusters = {env["ns1"]: (env["child1"], {ALL, PUSHED}), env["ns2"]: (env["child2"], {ALL, PULLED})}
    for sub, (label, objects) in env["plans"].subs.items():
        ns = objects[0]["metadata"]["name"]
        wanted = {cluster_ns for cluster_ns, (_, labels) in clusters.items() if label in labels}
        for resource in ("bases", "descriptions"):
            per_cluster = [i["metadata"]["namespace"] for i in listing(env["parent"], resource, sub)]
            if sorted(per_cluster) != sorted(wanted):
                found.append(f"{sub}: {resource} in {sorted(per_cluster)}, wanted one in each of {sorted(wanted)}")
        for desc in listing(env["parent"], "descriptions", sub):
            status, meta = desc.get("status") or {}, desc["metadata"]
            if status.get("phase") != "Success" or status.get("observedGeneration") != meta.get("generation"):
                found.append(f"{sub}: Description {meta['namespace']}/{meta['name']} is {status.get('phase')} "
                             f"for generation {status.get('observedGeneration')} of {meta.get('generation')}: "
                             f"{str(status.get('reason'))[:200]}")
            elif len(status.get("manifestStatuses") or []) != len(objects):
                found.append(f"{sub}: Description {meta['name']} reports {len(status['manifestStatuses'])} objects")
            if meta["namespace"] not in clusters:
                continue
            child = clusters[meta["namespace"]][0]
            held = child_objects(child, ns)
            expected = {f"{o['kind']}/{o['metadata']['name']}" for o in objects}
            owner = f"{meta['namespace']}.{meta['name']}"
            marked = {k for k, o in held.items()
                      if (o["metadata"].get("annotations") or {}).get(known.ANNOTATION_OWNED_BY_DESCRIPTION) == owner}
            if marked != expected or set(held) != expected:
                found.append(f"{sub} in {child.name}: missing {sorted(expected - marked)[:5]}, "
                             f"unexpected {sorted(set(held) - expected)[:5]}")
    return found


def settle(env: dict[str, Any], timeout: float, what: str) -> None:
    """Wait until `problems` is empty; fail with the last ones seen."""
    started = time.monotonic()
    shown = started
    while (left := problems(env)) and time.monotonic() < started + timeout:
        if time.monotonic() - shown >= 15:  # a slow convergence says what it waited for (pytest -s)
            print(f"{what}: after {time.monotonic() - started:.0f}s still {left[:3]}")
            shown = time.monotonic()
        time.sleep(0.5)
    assert not left, f"{what}: not converged within {timeout}s: {left[:6]}"
    print(f"{what}: converged in {time.monotonic() - started:.1f}s")


class Health:
    """The hub and the agents as they were when a test began: their processes, and where their logs stood."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.procs: dict[str, Proc] = {name: env[name] for name in ("hub", "pusher", "puller")}
        self.pids = {name: self._pid(p) for name, p in self.procs.items()}
        self.offsets = {name: Path(p.log).stat().st_size for name, p in self.procs.items()}

    @staticmethod
    def _pid(proc: Proc) -> int:
        assert proc.proc is not None and proc.running(), f"{proc.name} is not running"
        return proc.proc.pid

    def log(self, name: str) -> str:
        with open(self.procs[name].log, "rb") as f:
            f.seek(self.offsets[name])
            return f.read().decode(errors="replace")

    def check(self, restarted: tuple[str, ...] = ()) -> None:
        """Each process is the one the test began with, or (in `restarted`) the one the test started itself;
        nothing went wrong in their logs meanwhile."""
        for name, proc in self.procs.items():
            pid = self._pid(proc)
            assert (pid != self.pids[name]) == (name in restarted), f"{name}: pid {self.pids[name]} -> {pid}"
            text = self.log(name)
            for marker in LOG_MARKERS:
                assert marker not in text, f"{name} logged {marker!r}:\n{text[text.index(marker) - 2000:][:5000]}"


@pytest.fixture(scope="module")
def env(hub_and_agents: dict[str, Any], parent: ControlPlane, child1: ControlPlane,
        child2: ControlPlane) -> Iterator[dict[str, Any]]:
    """child2's agent moved behind a Balancer (where its tunnel is cut), clusters labelled, a first
    Subscription deployed to both. Afterwards this module's Subscriptions are deleted (and cleaned up from the
    children) so the modules after it do not carry their objects."""
    e = dict(hub_and_agents, parent=parent, child1=child1, child2=child2, plans=Plans(parent))
    port = int(flag_value(e["hub"], "secure-port"))
    e["hub_url"], e["ca"] = f"https://127.0.0.1:{port}", e["logdir"] / "tls" / "ca.crt"
    with Balancer([("127.0.0.1", port)]) as relay:
        e["relay"] = relay
        puller: Proc = e["puller"]
        puller.stop()
        puller.args = [f"--tunnel-url={relay.url}" if a.startswith("--tunnel-url=") else a
                       for a in puller.args]
        puller.start()
        for mc, labels in ((e["mc1"], (ALL, PUSHED)), (e["mc2"], (ALL, PULLED))):
            kubectl(parent, "label", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                    *(f"{label}=yes" for label in labels), "--overwrite")
        store_templates(parent, TEMPLATES)
        e["plans"].subscribe("faults-base", ALL, [namespace("faults-base"), *configmaps("faults-base", "base", 3)])
        settle(e, 90, "the first Subscription")
        wait_for(lambda: relay.live == 1, timeout=30, what="child2's tunnel through the relay")
        try:
            yield e
        finally:
            subs = list(e["plans"].subs)
            kubectl(parent, "delete", "subs", "-n", "default", *subs, "--wait=false", check=False)
            wait_for(lambda: not any(listing(parent, "descriptions", s) for s in subs), timeout=60,
                     what="this module's Descriptions cleaned up")


@pytest.fixture
def health(env: dict[str, Any]) -> Health:
    return Health(env)


def test_parent_apiserver_restart_hub_and_agents_recover_by_themselves(env: dict[str, Any], health: Health,
                                                                      parent: ControlPlane) -> None:
    """The parent's kube-apiserver stopped as for an upgrade (SIGTERM: for 5 s new connections are refused
    while open watches go on, then SIGKILL) and started again on the same etcd: nobody restarts the hub or
    the agents, and the hub's watches must be live again, which a Subscription created afterwards shows by
    reaching both children."""
    before = uids(env)
    parent.restart_apiserver(grace=5)
    env["plans"].subscribe("faults-after-parent", ALL,
                           [namespace("faults-after-parent"), *configmaps("faults-after-parent", "after-parent", 3)])
    settle(env, 90, "after the parent's restart")
    after = uids(env)
    assert {k: after.get(k) for k in before} == before
    assert len(after) == len(before) + 2 * 4
    health.check()


def apply_and_interrupt(child: ControlPlane, ns: str, prefix: str, start: Callable[[], object],
                        interrupt: Callable[[], object]) -> dict[str, str]:
    """Run `start()`, watch the child until the first of the new objects appears, then `interrupt()` at once.
    Returns the UIDs of the objects the child held then (a list straight from the child's API server)."""
    start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            items = child.request_json("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector={BATCH}%3D{prefix}")
        except urllib.error.HTTPError:
            items = {"items": []}  # the namespace is not there yet
        seen = {i["metadata"]["name"]: i["metadata"]["uid"] for i in items["items"]}  # type: ignore[attr-defined]
        if seen:
            interrupt()
            return seen
        time.sleep(0.02)
    raise AssertionError(f"nothing of {prefix} reached {child.name} within 60 s")


def test_child_apiserver_restart_while_the_hub_pushes(env: dict[str, Any], health: Health,
                                                      child1: ControlPlane) -> None:
    """child1 (Dual, AppPusher: the hub applies through its tunnel) loses its kube-apiserver (kill -9) while
    the hub applies a new Subscription of many objects, right after another was updated: both end Success,
    each object once, and what existed before (including what the interrupted push had created) keeps its UID."""
    before = uids(env)
    base_label, base_objects = env["plans"].subs["faults-base"]

    def start() -> None:
        env["plans"].subscribe("faults-base", base_label, [*base_objects, *configmaps("faults-base", "base-more", 1)])
        env["plans"].subscribe("faults-push", PUSHED, [namespace("faults-push"), *configmaps("faults-push", "push",
                                                                                              MANY)],
                               drift_correction=False)

    seen = apply_and_interrupt(child1, "faults-push", "push", start, lambda: child1.restart_apiserver(down_seconds=1))
    print(f"child1 held {len(seen)} of {MANY} when its kube-apiserver was killed")
    assert len(seen) < MANY, "the push had ended before the restart: make it bigger"
    settle(env, 120, "after child1's restart")
    after = uids(env)
    assert {k: after.get(k) for k in before} == before
    assert all(after[f"child1/faults-push/ConfigMap/{name}"] == uid for name, uid in seen.items())
    # the agent kept reporting throughout, and said what was down: its child, not itself
    assert "no heartbeat from the cluster agent" not in health.log("hub")
    health.check()


def ready_of(mc: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (mc.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), {})


def test_a_frozen_child_apiserver_is_reported_down_and_nothing_is_lost(env: dict[str, Any], health: Health,
                                                                       parent: ControlPlane,
                                                                       child2: ControlPlane) -> None:
    """child2's kube-apiserver stopped with SIGSTOP: it keeps its connections open and answers nothing. The
    agent's status collection hangs (one request may wait 2 min); the agent must still report, and report the
    API server down once the collection has stalled for 30 s (an audit saw Ready=True with fresh heartbeats
    for 2 minutes). The first status written after the freeze that changes Ready says so consistently; after
    SIGCONT the cluster is Ready again and every deployed object keeps its UID."""
    before = uids(env)
    mc = env["mc2"]["metadata"]
    watch = KubectlWatch(parent, "mcls", mc["name"], "-n", mc["namespace"])
    try:
        with child2.apiserver_frozen():
            frozen = time.monotonic()
            wait_for(lambda: any(ready_of(v).get("status") == "False" for v in watch.versions()), timeout=60,
                     interval=0.2, what="child2 reported down while its kube-apiserver is frozen")
            took = time.monotonic() - frozen
        print(f"child2 reported down {took:.1f}s after its kube-apiserver froze")
        versions = watch.versions()
        first_down = next(v for v in versions if ready_of(v).get("status") == "False")
        status = first_down["status"]
        assert (status["healthz"], status["livez"], status["readyz"]) == (False, False, False), status
        assert ready_of(first_down)["reason"] == known.REASON_NOT_READY, first_down
        assert not any(ready_of(v).get("status") == "Unknown" for v in versions)  # the agent never went silent
        wait_for(lambda: ready_of(watch.versions()[-1]).get("status") == "True", timeout=60,
                 what="child2 Ready again after SIGCONT")
    finally:
        watch.stop()
    settle(env, 90, "after child2's freeze")
    assert {k: uids(env).get(k) for k in before} == before
    health.check()


def batch_names(child: ControlPlane, ns: str, prefix: str) -> set[str]:
    """Names of the ConfigMaps of batch `prefix` the child holds in `ns`, read from the child itself."""
    items = child.request_json("GET", f"/api/v1/namespaces/{ns}/configmaps?labelSelector={BATCH}%3D{prefix}")
    return {i["metadata"]["name"] for i in items["items"]}  # type: ignore[attr-defined]


@pytest.mark.parametrize("which", ["child1", "child2"])
def test_child_apiserver_restart_while_a_subscription_is_cleaned_up(env: dict[str, Any], health: Health,
                                                                    which: str) -> None:
    """A Subscription of many objects is deleted and the child's kube-apiserver is killed while its objects are
    being deleted (child1: by the hub through the tunnel; child2: by its Pull agent). The deletes and reads the
    outage refuses must be tried again: in the end the child holds none of them and the Description is gone.
    Until 2026-12-06 an object that could not be read was taken as let go of, so the Description lost its
    finalizer and the rest kept running in the child with nothing tracking it (audit s35, unit-tested then).
    The namespace is the child's own: a Namespace among the feeds would take the leftovers with it when deleted."""
    child: ControlPlane = env[which]
    label, ns, sub = (PUSHED if which == "child1" else PULLED), f"faults-gone-{which}", f"faults-gone-{which}"
    if not child_objects(child, ns):
        child.request_json("POST", "/api/v1/namespaces", namespace(ns))
    env["plans"].subscribe(sub, label, configmaps(ns, "gone", MANY), drift_correction=False)
    env["plans"].subs.pop(sub)  # `settle` and `uids` check the Subscriptions that stay
    wait_for(lambda: len(batch_names(child, ns, "gone")) == MANY and [
        d for d in listing(env["parent"], "descriptions", sub) if (d.get("status") or {}).get("phase") == "Success"],
        timeout=120, what=f"{sub} deployed to {child.name}")
    before = uids(env)
    kubectl(env["parent"], "delete", "subs", "-n", "default", sub, "--wait=false")
    deadline = time.monotonic() + 60
    while len(held := batch_names(child, ns, "gone")) == MANY and time.monotonic() < deadline:
        time.sleep(0.02)
    child.restart_apiserver(down_seconds=2)
    print(f"{child.name} held {len(held)} of {MANY} when its kube-apiserver was killed, "
          f"{len(batch_names(child, ns, 'gone'))} once it was back")
    assert 0 < len(held) < MANY, "the cleanup had not begun, or had ended, at the restart: make it bigger"
    wait_for(lambda: not listing(env["parent"], "descriptions", sub) and not listing(env["parent"], "bases", sub),
             timeout=120, what=f"{sub}'s Description and Base gone")
    assert not batch_names(child, ns, "gone"), f"left behind in {child.name}, untracked"
    settle(env, 90, f"after {child.name}'s restart mid-cleanup")
    assert {k: uids(env).get(k) for k in before} == before
    health.check()


def test_pull_agent_killed_mid_apply(env: dict[str, Any], health: Health, child2: ControlPlane) -> None:
    """child2's agent (Pull: it applies itself) killed with SIGKILL while applying a Subscription of many
    objects, then started again: it finishes the job, each object once, and what it had applied keeps its UID."""
    before = uids(env)
    puller: Proc = env["puller"]
    seen = apply_and_interrupt(
        child2, "faults-pull", "pull",
        lambda: env["plans"].subscribe("faults-pull", PULLED, [namespace("faults-pull"),
                                                               *configmaps("faults-pull", "pull", MANY)],
                                       drift_correction=False),
        puller.kill)
    held = child_objects(child2, "faults-pull")
    print(f"child2 held {len(seen)} of {MANY} when its agent was killed, {len(held) - 1} once it was dead")
    assert len(held) - 1 < MANY, "the agent had applied everything before it was killed: make it bigger"
    (desc,) = listing(env["parent"], "descriptions", "faults-pull")
    assert (desc.get("status") or {}).get("phase") != "Success"  # the killed agent never reported
    puller.start()
    settle(env, 90, "after child2's agent was killed and started again")
    after = uids(env)
    assert {k: after.get(k) for k in before} == before
    assert all(after[f"child2/faults-pull/{key}"] == obj["metadata"]["uid"] for key, obj in held.items())
    assert set(seen) <= {k.split("/")[-1] for k in held}
    health.check(restarted=("puller",))


# --- tunnels cut under proxy load --------------------------------------------------------------------------

CLIENTS = 20
CUTS = 5
REQUEST_TIMEOUT = 20.0
BLOB = 100 * 1024
"""The LIST of 4 such ConfigMaps (the child sends it chunked) is streamed by the hub; the small ConfigMap's
answer (with a Content-Length) is relayed in one piece: both ways of relaying get cut."""


def expected_bodies(child: ControlPlane) -> dict[str, Any]:
    return {"small": child.request_json("GET", "/api/v1/namespaces/faults-proxy/configmaps/small")["data"],
            "large": sorted(i["metadata"]["name"] for i in child.request_json(  # type: ignore[attr-defined]
                "GET", "/api/v1/namespaces/faults-proxy/configmaps")["items"])}


def judge(kind: str, status: int, body: bytes, expected: dict[str, Any]) -> tuple[str, str]:
    """("ok" | "refused" | "truncated" | "unclear", detail) for a response the client received whole."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ("truncated" if status == 200 else "unclear"), f"{status}, {len(body)} bytes: {body[-80:]!r}"
    if status != 200:
        message = doc.get("message") if isinstance(doc, dict) else None
        return ("refused" if message else "unclear"), f"{status}: {message}"
    if kind == "small":
        return ("ok", "") if doc.get("data") == expected["small"] else ("truncated", "other data")
    names = sorted(i["metadata"]["name"] for i in doc.get("items") or [])
    return ("ok", "") if names == expected["large"] and all(
        len(i.get("data", {}).get("blob", "")) == BLOB for i in doc["items"] if i["metadata"]["name"].startswith(
            "blob-")) else ("truncated", f"{len(names)} items")


async def proxy_load(env: dict[str, Any], token: str, expected: dict[str, Any]) -> tuple[list[tuple[str, str, str]],
                                                                                          list[int]]:
    """CLIENTS clients GET through the hub's proxy (the small ConfigMap, or the LIST), each right after its
    last answer (50 ms after a failed one), while the balancer cuts child2's tunnel CUTS times, each time once
    the tunnel is back and has served another CLIENTS requests.
    Returns (kind, outcome, detail) of every request and the number of connections each cut reset."""
    relay: Balancer = env["relay"]
    base = f"{env['hub_url']}{SOCKETS}/{env['mc2']['spec']['clusterId']}/proxy/direct/api/v1/namespaces/faults-proxy"
    paths = {"small": f"{base}/configmaps/small", "large": f"{base}/configmaps"}
    outcomes: list[tuple[str, str, str]] = []
    cut_sizes: list[int] = []
    stop = asyncio.Event()
    ctx = ssl.create_default_context(cafile=str(env["ca"]))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=0), timeout=timeout,
                                     headers={"Authorization": f"Bearer {token}"}) as session:
        async def client(i: int) -> None:
            n = i
            while not stop.is_set():
                kind = "large" if n % 2 else "small"
                n += 1
                try:
                    async with session.get(paths[kind]) as r:
                        body = await r.read()
                    outcome, detail = judge(kind, r.status, body, expected)
                except TimeoutError:
                    outcome, detail = "timeout", f"no answer within {REQUEST_TIMEOUT}s"
                except aiohttp.ClientPayloadError as e:  # the body broke off, and the client knows it
                    outcome, detail = "aborted", repr(e)
                except aiohttp.ClientConnectionError as e:  # connection closed before or during the answer
                    outcome, detail = "aborted", repr(e)
                outcomes.append((kind, outcome, detail))
                if outcome != "ok":  # as any client does: no busy loop against a proxy that just said no
                    await asyncio.sleep(0.05)

        async def cutter() -> None:
            for _ in range(CUTS):
                await asyncio.to_thread(wait_for, lambda: relay.live == 1, 20, 0.05, "the tunnel back up")
                served = len([o for o in outcomes if o[1] == "ok"])
                await asyncio.to_thread(wait_for, lambda n=served: len([o for o in outcomes if o[1] == "ok"]) >=
                                        n + CLIENTS, 20, 0.05, "requests served through the new tunnel")
                cut_sizes.append(await asyncio.to_thread(relay.cut))
            await asyncio.to_thread(wait_for, lambda: relay.live == 1, 20, 0.05, "the tunnel back up")
            stop.set()

        try:
            await asyncio.gather(cutter(), *(client(i) for i in range(CLIENTS)))
        finally:
            stop.set()
    return outcomes, cut_sizes


def test_tunnel_cut_repeatedly_under_proxy_load(env: dict[str, Any], health: Health, parent: ControlPlane,
                                                child2: ControlPlane) -> None:
    """Every request ends in time, either whole (200 and the complete body) or with an error the client can
    tell (a Status with a message, or an aborted body): never a 200 whose body stops short. The agent
    reconnects by itself each time; afterwards the proxy serves again and the cluster's socket condition is
    True, with one tunnel per cluster on the hub."""
    if not child_objects(child2, "faults-proxy"):
        child2.request_json("POST", "/api/v1/namespaces", namespace("faults-proxy"))
    for name, data in [(f"blob-{i}", {"blob": "x" * BLOB}) for i in range(4)] + [("small", {"small": "yes"})]:
        child2.apply_manifest({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "namespace": "faults-proxy"}, "data": data})
    token = service_account_token(child2, "faults-proxy", "reader", "cluster-admin")
    expected = expected_bodies(child2)
    connections = env["relay"].connections
    started = time.monotonic()
    outcomes, cut_sizes = asyncio.run(proxy_load(env, token, expected))
    took = time.monotonic() - started
    counts: dict[str, int] = {}
    for kind, outcome, _ in outcomes:
        counts[f"{kind}/{outcome}"] = counts.get(f"{kind}/{outcome}", 0) + 1
    print(f"{len(outcomes)} requests in {took:.1f}s, {counts}, cuts reset {cut_sizes} connections")
    bad = [o for o in outcomes if o[1] not in ("ok", "refused", "aborted")]
    assert not bad, bad[:10]
    refusals = {detail for _, outcome, detail in outcomes if outcome == "refused"}
    assert all(d.startswith("503: the agent of cluster") for d in refusals), refusals
    assert cut_sizes == [1] * CUTS  # one tunnel each time: the agent never held two
    assert env["relay"].connections >= connections + CUTS  # it reconnected after every cut
    assert counts.get("small/ok", 0) and counts.get("large/ok", 0)
    in_flight = [d for _, outcome, d in outcomes if outcome == "aborted" or (
        outcome == "refused" and "is disconnected" not in d)]  # the others came while the tunnel was down
    print(f"requests cut in flight: {len(in_flight)}: {sorted({d[:90] for d in in_flight})}")
    assert in_flight, "no cut hit a request in flight"

    # the agent reconnects by itself after the last cut (its handshake may still be under way)
    wait_for(lambda: proxied(env, token) == (200, expected["small"]), timeout=30, what="proxying through the tunnel")
    mc = env["mc2"]

    def socket_up() -> bool:
        got = json.loads(kubectl(parent, "get", "mcls", mc["metadata"]["name"], "-n", mc["metadata"]["namespace"],
                                 "-o", "json").stdout)
        return any(c["type"] == known.CONDITION_SOCKET and c["status"] == "True"
                   for c in (got.get("status") or {}).get("conditions") or [])

    wait_for(socket_up, timeout=10, what="the ManagedCluster's socket condition True")
    assert "clusternet_socket_connections 2.0" in metrics(env)
    health.check()


def proxied(env: dict[str, Any], token: str) -> tuple[int, Any]:
    """(status, data) of one GET of the small ConfigMap through the hub's proxy."""
    import urllib.request

    url = f"{env['hub_url']}{SOCKETS}/{env['mc2']['spec']['clusterId']}/proxy/direct" \
          "/api/v1/namespaces/faults-proxy/configmaps/small"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(env["ca"])),
                                    timeout=REQUEST_TIMEOUT) as r:
            return r.status, json.loads(r.read())["data"]
    except urllib.error.HTTPError as e:
        return e.code, None


def metrics(env: dict[str, Any]) -> str:
    import urllib.request

    ctx = ssl.create_default_context(cafile=str(env["ca"]))
    with urllib.request.urlopen(f"{env['hub_url']}/metrics", context=ctx, timeout=10) as r:
        return str(r.read().decode())

