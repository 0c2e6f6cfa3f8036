"""What the hub (push mode) and the agent (pull mode) need from Helm, as plain types and one Protocol.

Both sides deploy HelmReleases the same way: fetch the chart once, then install, upgrade, read or uninstall a
release in some cluster. Keeping the contract here, free of the SDK, lets controllers be tested against a fake
driver and lets the implementation (`clusternet_api.helm.sdk`) change without touching them.

Secrets (repository passwords, bearer tokens, client keys) are excluded from `repr()`, and so from logs and
tracebacks that print these objects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# Strict semver 2.0 (no leading "v", no ranges): the only versions that name one archive forever.
_EXACT = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?")


def is_exact_version(version: str | None) -> bool:
    """True for a plain semver version ("1.2.3", "1.0.0-rc.1"); False for constraints, "v1.2.3", "" and None."""
    return bool(version) and _EXACT.fullmatch((version or "").strip()) is not None


@dataclass(frozen=True)
class ChartSource:
    """Where a chart comes from.

    `repo` is a classic chart repository (`http(s)://…`, serving index.yaml) or an OCI location
    (`oci://host/path`, the chart name is appended). `version` is an exact version, a Helm semver constraint
    ("~1.2", ">=1.0 <2", "1.2.x"), or None/"" for the latest. Only exact versions are served from the cache
    without asking the repository: a constraint's answer changes when a new version is published.
    """

    repo: str
    chart: str
    version: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    plain_http: bool = False


@dataclass(frozen=True)
class FetchedChart:
    """A chart archive on local disk, with the version the source resolved to."""

    path: Path
    name: str
    version: str


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one cluster's API server.

    `tls_server_name` is the name to verify the server certificate against when `server` is not that name,
    e.g. a loopback relay (the hub's tunnel) in front of the child's real API server.
    """

    server: str
    ca_pem: bytes | None = None
    token: str | None = field(default=None, repr=False)
    cert_pem: bytes | None = None
    key_pem: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None


@dataclass(frozen=True)
class ReleaseOptions:
    """How to install or upgrade, mirroring HelmRelease's options.

    `atomic` rolls a failed install back (uninstalls it); `upgrade_atomic` rolls a failed upgrade back to the
    previous revision. `max_history` applies to upgrades (an install has no history to prune).
    `disable_hooks` skips the chart's hooks on install and upgrade; uninstall always runs them. `labels` are
    Helm release labels, stored with the release (on its storage Secret) and read back by `get`. An upgrade
    replaces them: a label not given any more is removed. As Clusternet's InstallRelease/UpgradeRelease:
    `skip_crds` and `wait_for_jobs` (with `wait`) on both, `replace` (reuse the name of a failed or uninstalled
    release) on install, `force` (replace what cannot be patched: Helm 4's --force-replace) on upgrade.
    """

    namespace: str
    create_namespace: bool = True
    timeout_seconds: int = 300
    wait: bool = False
    atomic: bool = False
    upgrade_atomic: bool = False
    disable_hooks: bool = False
    skip_crds: bool = False
    wait_for_jobs: bool = False
    replace: bool = False
    force: bool = False
    max_history: int = 5
    labels: Mapping[str, str] = field(default_factory=dict)
    description: str | None = None


@dataclass(frozen=True)
class ReleaseState:
    """A release's latest revision, as Helm stored it.

    `status` is Helm's: deployed, failed, pending-install, pending-upgrade, pending-rollback, uninstalling,
    superseded, uninstalled. `description` is Helm's description of the last operation; for a failed release
    it holds the error. Timestamps are RFC 3339. `labels` are the release labels without Helm's own storage
    labels (name, owner, status, version, createdAt, modifiedAt). `values` are the user-supplied values the last
    install or upgrade got, as `helm get values` shows them (not merged with the chart's defaults).
    """

    name: str
    namespace: str
    revision: int
    status: str
    chart_name: str
    chart_version: str
    description: str
    notes: str
    first_deployed: str | None
    last_deployed: str | None
    labels: dict[str, str]
    values: dict[str, Any]


class ChartError(Exception):
    """The chart cannot be resolved or fetched. str() is one line a user can act on, e.g.
    'version 9.9.9 of chart demo not found in http://…', 'unauthorized: …', 'cannot reach …'."""


class ReleaseError(Exception):
    """Helm refused or failed an install, upgrade, uninstall or read. str() is Helm's own message, one line."""


class ClusterUnreachableError(ReleaseError):
    """Helm could not talk to the cluster at all (connection refused, TLS, credentials rejected).

    A ReleaseError, so callers that do not care need not catch it apart; callers that do can retry it without
    recording a failed release, since nothing was attempted.
    """


class HelmDriver(Protocol):
    """The Helm operations both operators use. Every method is safe to call concurrently: writes to one
    release (install, upgrade, uninstall, rollback) are serialised, everything else runs in parallel; `get` does not
    wait for a write in progress (it shows pending-install/pending-upgrade meanwhile)."""

    def close(self) -> None:
        """Let the worker threads go once the calls in flight are done; no new call is taken."""
        ...

    async def fetch(self, source: ChartSource, refresh: bool = False) -> FetchedChart:
        """Resolve `source.version` and download the chart (or take it from the cache, unless `refresh`: the
        hub's HelmChart check asks the repository every time). Raises ChartError."""
        ...

    async def get(self, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
        """The release's latest revision, whatever its status; None when there is no release."""
        ...

    async def install(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        """Install a new release (revision 1). Raises ReleaseError, e.g. when the name is in use."""
        ...

    async def upgrade(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        """Make a new revision with exactly these values (not merged with the previous ones). Works on a
        release whose revisions all failed; raises ReleaseError when there is no release."""
        ...

    async def uninstall(self, access: ClusterAccess, namespace: str, name: str, timeout_seconds: int) -> bool:
        """Delete the release's objects and its history. False when there was no release."""
        ...

    async def rollback(self, access: ClusterAccess, namespace: str, name: str, revision: int,
                       timeout_seconds: int) -> None:
        """Make a new revision from `revision` (Helm's `rollback`, which also takes a release stuck in a
        pending-* state). Raises ReleaseError."""
        ...
