"""kubectl clusternet get -l / -o / -w and apply -k on templates, against a real parent.

JSONPath and custom-columns outputs are compared with the real kubectl's for the equivalent live objects: the
same ConfigMaps created for real in a scratch namespace of the parent, and stored as templates there.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from clusternet_testing.controlplane import ControlPlane
from clusternet_testing.helpers import PLUGIN, kubectl, run_plugin

pytestmark = pytest.mark.integration


@dataclass
class Scratch:
    parent: ControlPlane
    ns: str

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_plugin(self.parent, "-n", self.ns, *args, input=input)

    def ok(self, *args: str, input: str | None = None) -> str:
        proc = self.run(*args, input=input)
        assert proc.returncode == 0, f"{args} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def live(self, *args: str) -> str:
        return kubectl(self.parent, "-n", self.ns, *args).stdout


def configmap(name: str, labels: dict[str, str], data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": data}


OBJECTS = [
    configmap("cm-a", {"app": "web", "tier": "front"}, {"greeting": "hello world", "count": "1"}),
    configmap("cm-b", {"app": "db"}, {"x": "<&>"}),
]


@pytest.fixture(scope="module")
def scratch(parent: ControlPlane) -> Scratch:
    """The ConfigMaps as templates and, for comparison, as real objects in the same (real) namespace."""
    s = Scratch(parent, f"kcn-out-{uuid.uuid4().hex[:6]}")
    kubectl(parent, "create", "namespace", s.ns)
    text = yaml.safe_dump_all(OBJECTS)
    kubectl(parent, "-n", s.ns, "create", "-f", "-", input=text)
    assert sorted(s.ok("apply", "-f", "-", input=text).splitlines()) == \
        ["configmap/cm-a created", "configmap/cm-b created"]
    return s


def test_selector_on_the_templates_own_labels(scratch: Scratch) -> None:
    assert scratch.ok("get", "cm", "-l", "app=web", "-o", "name").split() == ["configmap/cm-a"]
    assert scratch.ok("get", "cm", "-l", "app in (web,db)", "-o", "name").split() == \
        ["configmap/cm-a", "configmap/cm-b"]
    assert scratch.ok("get", "cm", "-l", "app,!tier", "-o", "name").split() == ["configmap/cm-b"]
    table = scratch.ok("get", "configmaps", "--selector=tier=front").splitlines()
    assert table[0].split() == ["NAME", "CREATED", "AT"] and [line.split()[0] for line in table[1:]] == ["cm-a"]
    none = scratch.run("get", "cm", "-l", "app=nothing")
    assert none.returncode == 0 and none.stdout == ""
    assert f"No resources found in {scratch.ns} namespace." in none.stderr
    assert [line.split()[:2] for line in scratch.ok("get", "cm", "-A", "-l", "app=db").splitlines()[1:]] == \
        [[scratch.ns, "cm-b"]]
    # kubectl's one-line errors
    both = scratch.run("get", "cm", "cm-a", "-l", "app=web")
    assert both.returncode == 1 and both.stderr.strip().splitlines() == [
        "error: selectors and the all flag cannot be used when passing resource/name arguments"]
    bad = scratch.run("get", "cm", "-l", "app==(")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "BadRequest" in bad.stderr


@pytest.mark.parametrize("template", [
    "{.metadata.name}",
    "{.data}",
    "{.metadata.labels}",
    '{.data.greeting}{"\\n"}',
    "{.kind}/{.apiVersion}",
])
def test_jsonpath_of_one_template_equals_kubectls_of_the_live_object(scratch: Scratch, template: str) -> None:
    assert scratch.ok("get", "cm", "cm-a", "-o", f"jsonpath={template}") == \
        scratch.live("get", "cm", "cm-a", "-o", f"jsonpath={template}")


@pytest.mark.parametrize("template", [
    "{.items[*].metadata.name}",
    '{range .items[*]}{.metadata.name}{"\\t"}{.metadata.labels.app}{"\\n"}{end}',
    "{.items[*].data}",
    "{.kind}",
    '{.items[?(@.metadata.labels.app=="db")].data.x}',
])
def test_jsonpath_of_a_list_equals_kubectls(scratch: Scratch, template: str) -> None:
    args = ("get", "cm", "-l", "app", "-o", f"jsonpath={template}")
    assert scratch.ok(*args) == scratch.live(*args)


def test_custom_columns_equal_kubectls(scratch: Scratch) -> None:
    args = ("get", "cm", "-l", "app", "-o", "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,"
            "TIER:.metadata.labels.tier")
    assert [line.split() for line in scratch.ok(*args).splitlines()] == \
        [line.split() for line in scratch.live(*args).splitlines()]


def test_yaml_json_name_wide(scratch: Scratch) -> None:
    one = yaml.safe_load(scratch.ok("get", "cm", "cm-a", "-o", "yaml"))
    assert one["kind"] == "ConfigMap" and one["data"] == OBJECTS[0]["data"]
    listed = json.loads(scratch.ok("get", "cm", "-o", "json"))
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["cm-a", "cm-b"]
    two = yaml.safe_load(scratch.ok("get", "cm", "cm-a", "cm-b", "-o", "yaml"))
    assert two["kind"] == "List" and len(two["items"]) == 2
    assert scratch.ok("get", "cm", "-o", "name").split() == scratch.live(
        "get", "cm", "-l", "app", "-o", "name").split() == ["configmap/cm-a", "configmap/cm-b"]
    wide = scratch.ok("get", "cm", "-o", "wide").splitlines()
    assert wide[0].split() == ["NAME", "CREATED", "AT", "MANIFEST"]
    assert wide[1].split()[2] == f"configmaps.{scratch.ns}.cm-a"
    bad = scratch.run("get", "cm", "-o", "jsonpath={.metadata.name")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "error: error parsing jsonpath {.metadata.name, unclosed action"
    unknown = scratch.run("get", "cm", "-o", "table")
    assert unknown.returncode == 1 and "unable to match a printer" in unknown.stderr


def test_watch_prints_the_table_then_each_change(scratch: Scratch) -> None:
    proc = subprocess.Popen([*PLUGIN, f"--kubeconfig={scratch.parent.kubeconfig}", "-n", scratch.ns, "get", "cm",
                             "-l", "app", "-w"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines: list[str] = []
    received: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # a thread: select() does not see lines already in the pipe reader's buffer
        for line in proc.stdout:  # type: ignore[union-attr]
            received.put(line.rstrip("\n"))
        received.put(None)

    threading.Thread(target=pump, daemon=True).start()

    def read_until(predicate: Callable[[str], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(predicate(line) for line in lines):
            try:
                line = received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out; got {lines}") from None
            assert line is not None, f"the watch ended: {lines} {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line)

    try:
        read_until(lambda line: line.startswith("cm-b"))
        assert lines[0].split() == ["NAME", "CREATED", "AT"]
        assert [line.split()[0] for line in lines[1:3]] == ["cm-a", "cm-b"]
        time.sleep(1)  # the watch is open once the list is printed; give it a moment anyway
        added = configmap("cm-watched", {"app": "new"}, {"a": "b"})
        unlabelled = configmap("cm-ignored", {}, {"a": "b"})
        scratch.ok("apply", "-f", "-", input=yaml.safe_dump_all([unlabelled, added]))
        read_until(lambda line: line.startswith("cm-watched"))
        assert not any(line.startswith("cm-ignored") for line in lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    scratch.ok("delete", "cm", "cm-watched")
    scratch.ok("delete", "cm", "cm-ignored")


def test_apply_kustomize(scratch: Scratch, tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(configmap("kcm", {"app": "kz"}, {"a": "b"})))
    (tmp_path / "kustomization.yaml").write_text(
        f"namespace: {scratch.ns}\nnamePrefix: k-\ncommonLabels: {{made-by: kustomize}}\nresources: [cm.yaml]\n")
    assert scratch.ok("apply", "-k", str(tmp_path)).strip() == "configmap/k-kcm created"
    assert scratch.ok("get", "cm", "-l", "made-by=kustomize", "-o", "name").split() == ["configmap/k-kcm"]
    stored = yaml.safe_load(scratch.ok("get", "cm", "k-kcm", "-o", "yaml"))
    assert stored["metadata"]["labels"] == {"app": "kz", "made-by": "kustomize"}
    assert scratch.ok("apply", "-k", str(tmp_path)).strip() == "configmap/k-kcm unchanged"
    bad = scratch.run("apply", "-k", str(tmp_path / "nope"))
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith(f"error: kustomize {tmp_path / 'nope'} failed: ")
    scratch.ok("delete", "cm", "k-kcm")
