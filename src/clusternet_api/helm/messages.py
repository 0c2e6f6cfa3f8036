"""Helm's error texts turned into the one-line messages ChartError and ReleaseError promise, and the Released
condition's message kept within its limit with what it adds about credentials and replaceCRDs.

Helm's messages are written for a terminal: wrapped Go errors ('looks like "…" is not a valid chart repository
or cannot be reached: Get "…/index.yaml": dial tcp …'), sometimes several lines. They end up in a HelmRelease's
status and in events, where a user needs the cause and the thing to fix, on one line. Chart errors are
rephrased (the shapes are few and stable); release errors keep Helm's own words, only flattened, because the
API server's reason inside them (e.g. 'ConfigMap "x" is invalid: …') is what the user acts on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import helm_python

from clusternet_api import known
from clusternet_api.helm.driver import ChartError, ChartSource, ClusterUnreachableError, ReleaseError

# 'chart "demo" version "9.9.9" not found in http://… repository' / 'chart "demo" not found in http://… repository'
_REPO_NOT_FOUND = re.compile(r'chart "(?P<chart>[^"]*)"(?: version "(?P<version>[^"]*)")? not found in ')
# 'looks like "http://…" is not a valid chart repository or cannot be reached: <cause>'
_REPO_UNREACHABLE = re.compile(r'looks like "(?P<url>[^"]*)" is not a valid chart repository or cannot be reached: ')
# Go's HTTP client prefix 'Get "http://…": ' (or 'GET "…": ' from the OCI client): the URL is said elsewhere.
_GO_REQUEST = re.compile(r'\b(?:Get|GET|HEAD|Head) "[^"]*": ')
# oras: 'failed to perform "FetchReference" on source: '
_ORAS_OP = re.compile(r'failed to perform "[^"]*" on (?:source|destination): ')
# Helm's repository getter: 'failed to fetch http://…/index.yaml : 401 Unauthorized'
_FAILED_FETCH = re.compile(r"failed to fetch \S+ : ")
_UNAUTHORIZED = re.compile(r"\b401\b|unauthorized|basic credential not found|authentication required|\b403\b|"
                           r"forbidden|denied", re.IGNORECASE)
_OCI_MISSING_TAG = re.compile(r": (?P<ref>[^ ]+):(?P<version>[^ :]+): not found$")
_OCI_MISSING_REPO = re.compile(r"name unknown|repository name not known", re.IGNORECASE)
_UNREACHABLE = re.compile(r"dial tcp|connection refused|no such host|i/o timeout|timeout|tls:|x509:|"
                          r"connection reset|EOF", re.IGNORECASE)


def one_line(text: str) -> str:
    """Collapse a possibly multi-line message into one line ('; ' between lines, single spaces)."""
    parts = [re.sub(r"\s+", " ", line).strip() for line in text.splitlines()]
    return "; ".join(p for p in parts if p) or "unknown error"


def strip_go_noise(text: str) -> str:
    """Drop the request and operation prefixes Go wraps around a cause; the URL is named by the caller."""
    for pattern in (_ORAS_OP, _GO_REQUEST, _FAILED_FETCH):
        text = pattern.sub("", text)
    return text


def chart_error(exc: helm_python.HelmError, source: ChartSource) -> ChartError:
    """The SDK's pull/login failure as a ChartError naming the chart, version and repository."""
    detail = one_line(exc.detail or str(exc))
    where, chart = source.repo, source.chart
    version = (source.version or "").strip()
    wanted = f"version {version} of chart {chart}" if version else f"chart {chart}"
    if _UNAUTHORIZED.search(detail) and not _REPO_NOT_FOUND.search(detail):
        who = "the given credentials" if source.username else "anonymous access (no credentials given)"
        return ChartError(f"unauthorized: {where} refused {who} for {wanted}")
    if m := _REPO_NOT_FOUND.search(detail):
        found = f"version {m['version']} of chart {m['chart']}" if m["version"] else f"chart {m['chart']}"
        return ChartError(f"{found} not found in {where}")
    if _OCI_MISSING_TAG.search(detail) or _OCI_MISSING_REPO.search(detail):
        return ChartError(f"{wanted} not found in {where}")
    if m := _REPO_UNREACHABLE.search(detail):
        cause = strip_go_noise(detail[m.end():])
        if "404" in cause:
            return ChartError(f"{where} is not a chart repository (no index.yaml): {cause}")
        return ChartError(f"cannot reach chart repository {where}: {cause}")
    cause = strip_go_noise(detail)
    if _UNREACHABLE.search(cause):
        return ChartError(f"cannot reach {where}: {cause}")
    return ChartError(f"cannot fetch {wanted} from {where}: {cause}")


def release_error(exc: helm_python.HelmError) -> ReleaseError:
    """The SDK's failure as a ReleaseError with Helm's message on one line; a cluster Helm could not talk to
    becomes ClusterUnreachableError (nothing was attempted, so the caller may simply retry)."""
    detail = one_line(exc.detail or str(exc))
    if isinstance(exc, helm_python.HelmKubeError):
        return ClusterUnreachableError(detail)
    return ReleaseError(detail)


MAX_CONDITION_MESSAGE = 4096
"""Characters of a Released message: the CRD allows 32768 (a longer one made the status write fail every time),
and a Helm wait timeout lists every resource not ready, which a large chart takes past that."""


def shortened(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: its start and its last quarter, which says what the child keeps
    (`release ... stays at revision N`) and, for a fetch, whether credentials were missing."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    return text[:limit - tail - 1] + "…" + text[-tail:]


REPLACE_CRDS_UNSUPPORTED = ("; replaceCRDs is not supported here: the chart's CRDs are as Helm left them "
                            "(installed with the release's first revision, never updated)")
"""Clusternet updates a chart's crds/ in the child before each install and upgrade; Helm itself never does, and
our deployers leave CRDs to Helm. Said in the Released message rather than refused: the rest of the chart deploys."""


def credentials_missing(hr: Mapping[str, Any], source: ChartSource) -> str:
    """What a fetch without credentials should add when the HelmChart has a chartPullSecret: that the deployer had
    none to send (a Pull cluster before the hub's copy of them arrived, or a Secret the hub could not read). The
    repository's "refused anonymous access" alone pointed at the Secret's absence, not at its arrival."""
    if source.username is not None or not (hr.get("spec") or {}).get("chartPullSecret"):
        return ""
    return ("; the chart's chartPullSecret names credentials this deployer did not have to send (in Pull mode the "
            f"hub copies them into Secret {known.CHART_PULL_SECRET} of the cluster's namespace; retried)")
