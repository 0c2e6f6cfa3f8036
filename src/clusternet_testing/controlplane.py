"""Real local Kubernetes control planes (etcd + kube-apiserver + kube-controller-manager) on loopback.

Integration tests and the local sandbox both need several independent clusters without Docker, so each
`ControlPlane` runs the three real processes on free 127.0.0.1 ports with certificates made here. The
binaries come from `hack/control-plane-binaries.sh` (envtest assets, PATH, a cache, or a Debian build).

Each control plane is also set up as an aggregation layer (front-proxy CA and client certificate) and can
be given a service CIDR inside 127.0.0.0/8, so a Service's ClusterIP is a loopback address the apiserver
itself can dial: that is how the hub's aggregated API is registered for real in tests.

Like a kubeadm cluster, each publishes ConfigMap kube-public/cluster-info (its URL and CA, readable by
system:anonymous), which the bootstrapsigner controller signs with every bootstrap token that allows it: agents
given only a bootstrap token learn the parent's CA from it (clusternet_agent.discovery).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization

from clusternet_api.kube import Credentials
from clusternet_api.pki import issue_cert, key_pem, make_ca, new_key

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this runs from: the testing package is a development extra, used from a checkout only."""
BINARIES_SCRIPT = REPO_ROOT / "hack" / "control-plane-binaries.sh"
ADMIN_USER = "admin"
STOP_GRACE_SECONDS = 3.0
"""How long all of a control plane's processes get together to exit on SIGTERM before SIGKILL. Alone each
exits within ~1.2 s; a parent kube-apiserver with an aggregated API whose server is gone was seen to take
10 s (the old per-process limit). Nothing of a test cluster is kept, so a kill loses nothing."""
FRONT_PROXY_CLIENT = "front-proxy-client"


class ControlPlaneError(RuntimeError):
    """A control plane could not be provided or started; the message says what to do."""


def find_binaries() -> Path:
    """Directory holding etcd, kube-apiserver and kube-controller-manager, building them if needed."""
    if not BINARIES_SCRIPT.exists():
        raise ControlPlaneError(f"{BINARIES_SCRIPT} is missing; run from a checkout of the project")
    proc = subprocess.run(["bash", str(BINARIES_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ControlPlaneError(
            "No control-plane binaries (etcd, kube-apiserver, kube-controller-manager) are available. "
            "Set KUBEBUILDER_ASSETS to a directory holding them, put them on PATH, or run on Debian so "
            f"that {BINARIES_SCRIPT} can build them (exit code {proc.returncode})."
        )
    return Path(lines[-1])


def default_signal_mask() -> None:
    """In a child before exec: no blocked signals. A parent that blocks SIGINT/SIGTERM to take them with
    sigwait (hack/sandbox.py) would otherwise hand the block on, and its children would never stop."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


@functools.cache
def binary_version(binary: Path) -> tuple[int, int]:
    """(major, minor) of a Kubernetes binary, from `--version` ("Kubernetes v1.20.2")."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"v(\d+)\.(\d+)", out)
    if not match:
        raise ControlPlaneError(f"cannot tell the version of {binary} from {out!r}")
    return int(match.group(1)), int(match.group(2))


def insecure_port_off(bin_dir: Path) -> list[str]:
    """kube-controller-manager's insecure port: off with --port=0 up to 1.23; the flag is gone from 1.24 (and
    the port with it), so newer binaries from KUBEBUILDER_ASSETS start with the same harness."""
    return ["--port=0"] if binary_version(bin_dir / "kube-controller-manager") < (1, 24) else []


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# --- the control plane -------------------------------------------------------------------------------------


def _established(crd: dict[str, object]) -> bool:
    status = crd.get("status")
    conditions = status.get("conditions") if isinstance(status, dict) else None
    return any(isinstance(c, dict) and c.get("type") == "Established" and c.get("status") == "True"
               for c in conditions or [])


@dataclass
class ControlPlane:
    """One real cluster's control plane on loopback. Use `start()`/`stop()` or as a context manager."""

    name: str
    bin_dir: Path
    workdir: Path
    service_cidr: str = "10.0.0.0/24"
    host: str = "127.0.0.1"
    admin_token: str = field(default_factory=lambda: os.urandom(16).hex())
    port: int = 0
    _procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _args: dict[str, list[str]] = field(default_factory=dict)

    # paths filled by start()
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    @property
    def front_proxy_ca_file(self) -> Path:
        return self.workdir / "pki" / "front-proxy-ca.crt"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write(self, rel: str, data: bytes, mode: int = 0o600) -> Path:
        p = self.workdir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        p.chmod(mode)
        return p

    def _make_pki(self) -> None:
        ca, ca_key, ca_cert = make_ca(f"{self.name}-ca")
        self._write("pki/ca.crt", ca.cert_pem, 0o644)
        self._write("pki/ca.key", ca.key_pem)
        svc_ip = str(next(ipaddress.ip_network(self.service_cidr).hosts()))
        serving = issue_cert(
            ca_key, ca_cert, "kube-apiserver",
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"],
            ips=[self.host, svc_ip], server=True,
        )
        self._write("pki/apiserver.crt", serving.cert_pem, 0o644)
        self._write("pki/apiserver.key", serving.key_pem)
        sa_key = new_key()
        self._write("pki/sa.key", key_pem(sa_key))
        self._write("pki/sa.pub", sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
        fp, fp_key, fp_cert = make_ca(f"{self.name}-front-proxy-ca")
        self._write("pki/front-proxy-ca.crt", fp.cert_pem, 0o644)
        self._write("pki/front-proxy-ca.key", fp.key_pem)
        client = issue_cert(fp_key, fp_cert, FRONT_PROXY_CLIENT, client=True)
        self._write("pki/front-proxy-client.crt", client.cert_pem, 0o644)
        self._write("pki/front-proxy-client.key", client.key_pem)
        self._write("pki/tokens.csv", f"{self.admin_token},{ADMIN_USER},admin-uid,system:masters\n".encode())

    def _spawn(self, label: str, args: list[str]) -> None:
        log = open(self.workdir / f"{label}.log", "ab")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=default_signal_mask)
        log.close()
        self._procs.append((label, proc))
        self._args[label] = args

    def restart_apiserver(self, down_seconds: float = 0.0, timeout: float = 60.0, grace: float | None = None) -> None:
        """Kill kube-apiserver (SIGKILL, as a crash would), leave it down, start it with the same flags; etcd
        and everything stored are kept.

        Outage tests use this to show that nothing deployed is lost when the parent goes away. With `grace`,
        it is stopped as a rolling upgrade stops it: SIGTERM, then SIGKILL after `grace` seconds. It stops
        listening at once but keeps serving the watches already open (1.20 does not end them itself), so
        until it is killed old connections work and new ones are refused."""
        label = "kube-apiserver"
        proc = next(p for lbl, p in self._procs if lbl == label)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL if grace is None else signal.SIGTERM)
        try:
            proc.wait(timeout=10 if grace is None else grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self._procs.remove((label, proc))
        time.sleep(down_seconds)
        self._spawn(label, self._args[label])
        self._wait(lambda: self.get("/readyz") == 200, time.monotonic() + timeout, "kube-apiserver /readyz")

    @contextlib.contextmanager
    def apiserver_frozen(self) -> Iterator[None]:
        """kube-apiserver stopped (SIGSTOP) inside, continued (SIGCONT) after: a hung process or a frozen VM,
        which keeps every connection open and answers nothing, unlike a crash (restart_apiserver)."""
        proc = next(p for lbl, p in self._procs if lbl == "kube-apiserver")
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(proc.pid, signal.SIGCONT)

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._make_pki()
        etcd_port, peer_port = free_port(), free_port()
        self.port = free_port()
        etcd_env_args = [
            str(self.bin_dir / "etcd"), "--name", "default", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://{self.host}:{etcd_port}",
            "--advertise-client-urls", f"http://{self.host}:{etcd_port}",
            "--listen-peer-urls", f"http://{self.host}:{peer_port}",
            "--initial-advertise-peer-urls", f"http://{self.host}:{peer_port}",
            "--initial-cluster", f"default=http://{self.host}:{peer_port}",
            "--quota-backend-bytes", str(2 * 1024**3), "--log-level", "warn",
        ]
        self._spawn("etcd", etcd_env_args)
        p = self.pki
        self._spawn("kube-apiserver", [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://{self.host}:{etcd_port}",
            f"--secure-port={self.port}", f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--cert-dir={p}", f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}", f"--client-ca-file={p / 'ca.crt'}",
            f"--token-auth-file={p / 'tokens.csv'}", "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--api-audiences=https://kubernetes.default.svc",
            f"--service-cluster-ip-range={self.service_cidr}",
            "--enable-bootstrap-token-auth=true",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=false",
            "--max-requests-inflight=800", "--max-mutating-requests-inflight=400",
            "--v=1",
        ])
        self.kubeconfig.write_text(yaml.safe_dump(
            Credentials(self.url, self.ca_pem, self.admin_token).kubeconfig_dict(self.name)))
        self.kubeconfig.chmod(0o600)
        deadline = time.monotonic() + timeout
        self._wait(lambda: self.get("/readyz") == 200, deadline, "kube-apiserver /readyz")
        self._spawn("kube-controller-manager", [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            "--controllers=*,-nodeipam,-nodelifecycle,bootstrapsigner,tokencleaner",
            "--leader-elect=false", *insecure_port_off(self.bin_dir), "--secure-port=0",
            "--use-service-account-credentials=true",
            "--concurrent-gc-syncs=5", "--concurrent-namespace-syncs=5",
            "--v=1",
        ])
        # The controller manager is up once it has created the default ServiceAccount.
        self._wait(lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
                   deadline, "kube-controller-manager (default ServiceAccount)")
        self.publish_cluster_info()

    def publish_cluster_info(self) -> None:
        """What `kubeadm init` (phase bootstrap-token) creates: ConfigMap kube-public/cluster-info holding a
        kubeconfig with this cluster's URL and CA, and a Role and RoleBinding that let system:anonymous get it."""
        kubeconfig = yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "clusters": [{"name": "", "cluster": {
                "certificate-authority-data": base64.b64encode(self.ca_pem).decode(), "server": self.url}}],
            "contexts": None, "current-context": "", "preferences": {}, "users": None})
        role = "kubeadm:bootstrap-signer-clusterinfo"
        self._wait(lambda: self.get("/api/v1/namespaces/kube-public") == 200, time.monotonic() + 30,
                   "namespace kube-public")
        objects: list[dict[str, object]] = [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"},
             "data": {"kubeconfig": kubeconfig}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": role, "namespace": "kube-public"},
             "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"],
                        "verbs": ["get"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": role, "namespace": "kube-public"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}]},
        ]
        for obj in objects:
            self.apply_manifest(obj)

    def _wait(self, check: object, deadline: float, what: str) -> None:
        assert callable(check)
        while time.monotonic() < deadline:
            for label, proc in self._procs:
                if proc.poll() is not None:
                    tail = (self.workdir / f"{label}.log").read_text(errors="replace")[-3000:]
                    raise ControlPlaneError(f"{self.name}: {label} exited ({proc.returncode}):\n{tail}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                if check():
                    return
            time.sleep(0.2)
        raise ControlPlaneError(f"{self.name}: timed out waiting for {what}; logs in {self.workdir}")

    def _ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def get(self, path: str) -> int:
        """Status code of an admin GET (used for readiness checks)."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(req, context=self._ssl(), timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def request_json(self, method: str, path: str, body: object | None = None,
                     content_type: str = "application/json") -> dict[str, object]:
        """Admin request for harness set-up (install CRDs, tokens); tests use real clients instead."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.admin_token}", "Content-Type": content_type})
        with urllib.request.urlopen(req, context=self._ssl(), timeout=30) as resp:
            result: dict[str, object] = json.loads(resp.read() or b"{}")
            return result

    def apply_manifest(self, obj: dict[str, object], field_manager: str = "clusternet-harness") -> None:
        """Server-side apply one object with the admin identity."""
        from clusternet_api.restpaths import object_path

        path = object_path(obj) + f"?fieldManager={field_manager}&force=true"
        self.request_json("PATCH", path, obj, content_type="application/apply-patch+yaml")

    def install_crds(self, timeout: float = 30.0) -> None:
        """Every CRD of ours (clusternet_api.crdgen), then wait until each is Established."""
        from clusternet_api.crdgen import all_crds

        crds = all_crds()
        for crd in crds:
            self.apply_manifest(crd)
        deadline = time.monotonic() + timeout
        for crd in crds:
            path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}"
            while not _established(self.request_json("GET", path)):
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {crd['metadata']['name']} not Established within {timeout:g}s")
                time.sleep(0.2)

    def stop(self) -> None:
        for _label, proc in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _label, proc in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._procs.clear()


def start_many(names: Sequence[str], root: Path, bin_dir: Path | None = None,
               service_cidrs: Sequence[str] | None = None) -> list[ControlPlane]:
    """Start several control planes in parallel (start-up is mostly waiting)."""
    bins = bin_dir or find_binaries()
    cidrs = list(service_cidrs) if service_cidrs else [f"127.{10 + i}.0.0/16" for i in range(len(names))]
    planes = [ControlPlane(n, bins, root / n, service_cidr=c) for n, c in zip(names, cidrs, strict=True)]
    with ThreadPoolExecutor(max_workers=len(planes)) as pool:
        futures = [pool.submit(p.start) for p in planes]
        errors = []
        for f in futures:
            try:
                f.result()
            except Exception as e:  # collect all, then clean up all
                errors.append(e)
    if errors:
        for p in planes:
            p.stop()
        raise ControlPlaneError("; ".join(str(e) for e in errors))
    return planes


@contextlib.contextmanager
def control_planes(names: Sequence[str], root: Path | None = None) -> Iterator[list[ControlPlane]]:
    tmp = Path(tempfile.mkdtemp(prefix="clusternet-cp-")) if root is None else root
    planes = start_many(names, tmp)
    try:
        yield planes
    finally:
        for p in planes:
            p.stop()
        if root is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m clusternet_testing.controlplane up`: start a parent and children until interrupted."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["up", "binaries"])
    parser.add_argument("--children", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / ".sandbox")
    args = parser.parse_args(argv)
    if args.command == "binaries":
        print(find_binaries())
        return 0
    from clusternet_api.crdgen import all_crds

    names = ["parent"] + [f"child{i + 1}" for i in range(args.children)]
    shutil.rmtree(args.dir, ignore_errors=True)
    with control_planes(names, args.dir) as planes:
        for crd in all_crds():
            planes[0].apply_manifest(crd)
        for p in planes:
            print(f"{p.name}: {p.url}  KUBECONFIG={p.kubeconfig}", flush=True)
        print("Control planes are up; press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())
