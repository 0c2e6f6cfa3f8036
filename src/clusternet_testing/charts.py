"""Helm charts and the two kinds of chart source (a classic HTTP repository, an OCI registry), on loopback.

Tests and benchmarks of HelmRelease handling need charts whose rendered objects they can predict, and
sources that behave like the real thing (index.yaml, version constraints, basic auth, OCI tags) without
network access. Charts are written and packaged with helm_python (the same Helm SDK the product uses), the
HTTP repository is an in-process server, and the OCI registry is Debian's docker-registry (distribution 2.8).
"""

from __future__ import annotations

import base64
import hmac
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import helm_python
import yaml

from clusternet_testing.controlplane import free_port

DOCKER_REGISTRY = Path("/usr/bin/docker-registry")
REGISTRY_START_SECONDS = 20.0
REGISTRY_STOP_SECONDS = 5.0
BAD_KEY = "bad key!"
"""A ConfigMap data key the API server refuses ("a valid config key must consist of alphanumeric
characters, '-', '_' or '.'"); Helm's offline rendering does not check it, so only an install fails."""


def _configmap(name: str, data: dict[str, str]) -> str:
    """A ConfigMap template; `data` values are template text, written as they are."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata:", f"  name: {name}",
             "  namespace: {{ .Release.Namespace }}", "data:"]
    lines += [f"  {json.dumps(key)}: {value}" for key, value in data.items()]
    return "\n".join(lines) + "\n"


def build_chart(workdir: Path, name: str = "demo", version: str = "0.1.0", *, templates: int = 1,
                fail: bool = False, values: dict[str, Any] | None = None) -> Path:
    """Write and package a chart; returns the .tgz path (in workdir, file `<name>-<version>.tgz`).

    The chart has `templates` ConfigMaps `{{ .Release.Name }}-cm-<i>` (i from 0) in the release namespace,
    with data `greeting` (from values), `index` ("<i>") and `chartVersion` (the chart's version), so a test
    can tell which release, values and version produced an object. Default values are {"greeting": "hello"}
    updated with `values`. `fail=True` adds a ConfigMap `{{ .Release.Name }}-cm-bad` whose data key the API
    server rejects, so rendering succeeds but an install fails with the API server's message.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=f".{name}-{version}-") as tmp:
        chart = Path(tmp) / name
        (chart / "templates").mkdir(parents=True)
        meta = {"apiVersion": "v2", "name": name, "version": version, "description": "clusternet test chart",
                "type": "application"}
        (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        (chart / "values.yaml").write_text(yaml.safe_dump({"greeting": "hello", **(values or {})}))
        for i in range(templates):
            data = {"greeting": "{{ .Values.greeting | quote }}", "index": f'"{i}"',
                    "chartVersion": "{{ .Chart.Version | quote }}"}
            (chart / "templates" / f"cm-{i}.yaml").write_text(_configmap(f"{{{{ .Release.Name }}}}-cm-{i}", data))
        if fail:
            (chart / "templates" / "cm-bad.yaml").write_text(
                _configmap("{{ .Release.Name }}-cm-bad", {BAD_KEY: '"refused by the API server"'}))
        return Path(helm_python.package(chart, destination=workdir, version=version))


class ChartRepo:
    """A classic Helm chart repository (index.yaml + .tgz files in `root`) on a loopback HTTP server.

    Use as a context manager: `url` is set and the server thread runs inside the `with`. With `username`
    and `password`, every request needs HTTP basic auth (401 otherwise), as for a private repository.
    `requests` counts every request received (refused ones too), so tests can assert caching.
    """

    def __init__(self, root: Path, username: str | None = None, password: str | None = None) -> None:
        self.root = root
        self.url = ""
        self.requests = 0
        self._auth = None if username is None else "Basic " + base64.b64encode(
            f"{username}:{password or ''}".encode()).decode()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        root.mkdir(parents=True, exist_ok=True)
        self._reindex()

    def add(self, tgz: Path) -> None:
        """Copy a packaged chart into the repository and regenerate index.yaml (earlier versions are kept)."""
        if tgz.resolve().parent != self.root.resolve():
            shutil.copy2(tgz, self.root / tgz.name)
        self._reindex()

    def _reindex(self) -> None:
        """index.yaml from every .tgz in root; under the lock so that no request reads it half written."""
        with self._lock:
            helm_python.repo_index_generate(self.root)

    def _serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        """Answer one GET/HEAD: 401 without the right credentials, else the file named by the path."""
        with self._lock:
            self.requests += 1
            if self._auth is not None and not hmac.compare_digest(
                    handler.headers.get("Authorization", ""), self._auth):
                handler.send_response(401)
                handler.send_header("WWW-Authenticate", 'Basic realm="charts"')
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            name = handler.path.split("?", 1)[0].lstrip("/")
            path = self.root / name
            if not name or "/" in name or name.startswith(".") or not path.is_file():
                handler.send_error(404)
                return
            data = path.read_bytes()
        kind = "application/x-yaml" if name.endswith(".yaml") else "application/gzip"
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    def __enter__(self) -> ChartRepo:
        repo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                repo._serve(self, body=True)

            def do_HEAD(self) -> None:
                repo._serve(self, body=False)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: test output is for the tests."""

        # Port 0: the kernel picks a free port at bind time, so no other process can take it in between.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"chart-repo-{self.url}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None


class OciRegistry:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage under `root`: an OCI chart registry.

    Charts pushed with `push` are at `oci://<host>/charts/<name>`, tagged with their version. Plain HTTP,
    no auth: every helm_python call against it needs `plain_http=True`.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = ""
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def push(self, tgz: Path) -> None:
        """Upload a packaged chart; name and tag come from the archive."""
        helm_python.push(tgz, self.url, plain_http=True)

    def __enter__(self) -> OciRegistry:
        if not DOCKER_REGISTRY.exists():
            raise RuntimeError(f"{DOCKER_REGISTRY} is missing: `apt-get install docker-registry` "
                               "(`make tools` does it) to test charts from an OCI registry")
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = f"127.0.0.1:{free_port()}"
        self.url = f"oci://{self.host}/charts"
        config = {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "storage")}, "delete": {"enabled": True}},
            "http": {"addr": self.host},
        }
        (self.root / "config.yml").write_text(yaml.safe_dump(config))
        log = (self.root / "registry.log").open("wb")
        with log:
            self._proc = subprocess.Popen([str(DOCKER_REGISTRY), "serve", str(self.root / "config.yml")],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self._stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Until GET /v2/ answers (200), failing early with the log if the process exits."""
        deadline = time.monotonic() + REGISTRY_START_SECONDS
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self._proc.returncode}: "
                                   f"{(self.root / 'registry.log').read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry on {self.host} did not answer within "
                                   f"{REGISTRY_START_SECONDS:.0f} s; see {self.root / 'registry.log'}")
            time.sleep(0.05)

    def _stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; always reaped, so no zombie outlives the fixture."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(REGISTRY_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop()
