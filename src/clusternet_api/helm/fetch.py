"""Resolving and downloading charts into a local cache (blocking: the driver runs this in a worker thread).

Controllers reconcile often and a chart archive for an exact version never changes, so an exact version found
in the cache is returned without asking the repository. A constraint ("~1.2") or "latest" always goes to the
repository, since a newly published version changes its answer; the archive it resolves to is cached too.

Layout: `<cache>/<sha256(repo)[:16]>/<chart>-<version>.tgz`. Charts fetched with credentials live in a
directory of their own (the repository hash plus a keyed hash of the credentials), so a chart that needed a
password is never served from the cache to a source without it. Files arrive by rename from a private
temporary directory under the cache, so a half-written archive is never visible.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import helm_python

from clusternet_api.helm.driver import ChartError, ChartSource, FetchedChart, is_exact_version
from clusternet_api.helm.messages import chart_error, one_line

# Chart names end up in file names: no separators, no "..".
_CHART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SALT_FILE = ".credentials-salt"


class ChartCache:
    """Chart archives under `root`, fetched with helm_python.pull."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._salt = self._load_salt()

    def _load_salt(self) -> bytes:
        """A random key for hashing credentials into directory names, created once per cache directory (so a
        restarted process finds its cache) and readable by its owner only."""
        path = self.root / _SALT_FILE
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".salt-")
            try:
                os.write(fd, secrets.token_bytes(32))
                os.close(fd)
                os.link(tmp, path)  # atomic: another process may have won the race, then its salt stands
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        return path.read_bytes()

    def repo_dir(self, source: ChartSource) -> Path:
        name = hashlib.sha256(source.repo.encode()).hexdigest()[:16]
        if source.username or source.password:
            creds = f"{source.username or ''}\0{source.password or ''}".encode()
            name += "-" + hmac.new(self._salt, creds, hashlib.sha256).hexdigest()[:16]
        return self.root / name

    def cached(self, source: ChartSource) -> FetchedChart | None:
        """The cached archive of an exact version, or None (constraint, not cached, or unreadable: refetch)."""
        version = (source.version or "").strip()
        if not is_exact_version(version):
            return None
        path = self.repo_dir(source) / f"{source.chart}-{version}.tgz"
        if not path.is_file():
            return None
        try:
            return _describe(path)
        except helm_python.HelmError:
            path.unlink(missing_ok=True)
            return None

    def fetch(self, source: ChartSource, refresh: bool = False) -> FetchedChart:
        """From the cache when the version is exact and present (unless `refresh`: ask the repository), else
        pull, verify it loads, and cache it."""
        if not _CHART_NAME.fullmatch(source.chart):
            raise ChartError(f"invalid chart name {source.chart!r}")
        hit = None if refresh else self.cached(source)
        if hit is not None:
            return hit
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".pull-"))
        try:
            archive = _pull(source, tmp)
            try:
                fetched = _describe(archive)
            except helm_python.HelmError as e:
                raise ChartError(f"{source.repo} served an invalid archive for chart {source.chart}: "
                                 f"{one_line(e.detail)}") from e
            target = self.repo_dir(source) / f"{source.chart}-{fetched.version}.tgz"
            target.parent.mkdir(mode=0o700, exist_ok=True)
            os.replace(archive, target)
            return FetchedChart(target, fetched.name, fetched.version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _describe(path: Path) -> FetchedChart:
    """Load the archive (which also checks it) for its name and version."""
    with helm_python.Chart.load(path) as chart:
        return FetchedChart(path, chart.name, chart.version)


def _pull(source: ChartSource, dest: Path) -> Path:
    """Download into `dest`; returns the archive. SDK failures become ChartError.

    For OCI, helm_python.pull ignores username/password (found with helm-python 0.2.2), so a registry client
    logs in with a credentials file inside `dest`, gone with it.
    """
    version = (source.version or "").strip() or None
    try:
        if source.repo.startswith("oci://"):
            ref = f"{source.repo.rstrip('/')}/{source.chart}"
            if source.username or source.password:
                host = source.repo.removeprefix("oci://").split("/", 1)[0]
                with helm_python.RegistryClient(plain_http=source.plain_http,
                                                credentials_file=dest / ".registry.json") as client:
                    client.login(host, source.username or "", source.password or "", plain_http=source.plain_http)
                    helm_python.pull(ref, client=client, destination=dest, version=version,
                                     plain_http=source.plain_http)
            else:
                helm_python.pull(ref, destination=dest, version=version, plain_http=source.plain_http)
        elif source.repo.startswith(("http://", "https://")):
            helm_python.pull(source.chart, repo_url=source.repo, destination=dest, version=version,
                             username=source.username, password=source.password)
        else:
            raise ChartError(f"unsupported chart repository {source.repo!r}: want http(s)://… or oci://…")
    except helm_python.HelmError as e:
        raise chart_error(e, source) from e
    archives = sorted(dest.glob("*.tgz"))
    if len(archives) != 1:
        raise ChartError(f"pulling chart {source.chart} from {source.repo} gave {len(archives)} archives")
    return archives[0]
