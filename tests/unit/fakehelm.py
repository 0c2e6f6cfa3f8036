"""An in-memory HelmDriver: releases by (namespace, name), charts by (name, version), and every call made."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    FetchedChart,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
)


class FakeHelm:
    def __init__(self, charts: tuple[tuple[str, str], ...] = (("mysql", "8.6.2"),)) -> None:
        self.charts = set(charts)
        self.releases: dict[tuple[str, str], ReleaseState] = {}
        self.calls: list[tuple[str, str]] = []
        self.sources: list[ChartSource] = []
        """Every fetch's source, credentials included."""
        self.fail: str | None = None
        """Helm's message for the next install or upgrade to fail with."""
        self.dead_repos: set[str] = set()
        """Repositories that do not answer."""
        self.failing_uninstalls: dict[tuple[str, str], str] = {}
        """Helm's message for every uninstall of the release at (namespace, name), until removed."""
        self.closed = False

    def close(self) -> None:
        self.closed = True

    async def fetch(self, source: ChartSource, refresh: bool = False) -> FetchedChart:
        self.calls.append(("fetch", f"{source.chart}@{source.version}"))
        self.sources.append(source)
        if source.repo in self.dead_repos:
            raise ChartError(f"cannot reach chart repository {source.repo}: connection refused")
        versions = sorted(v for c, v in self.charts if c == source.chart)
        version = source.version or (versions[-1] if versions else None)
        if version not in versions:
            raise ChartError(f'chart "{source.chart}" version "{source.version}" not found in {source.repo}')
        return FetchedChart(Path(f"/charts/{source.chart}-{version}.tgz"), source.chart, str(version))

    async def get(self, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
        return self.releases.get((namespace, name))

    def _run(self, verb: str, chart: FetchedChart, name: str, values: Mapping[str, Any],
             opts: ReleaseOptions) -> ReleaseState:
        self.calls.append((verb, f"{opts.namespace}/{name}"))
        old = self.releases.get((opts.namespace, name))
        revision = (old.revision if old else 0) + 1
        status = "failed" if self.fail else "deployed"
        state = ReleaseState(name, opts.namespace, revision, status, chart.name, chart.version,
                             self.fail or f"{verb.capitalize()} complete", "", "2026-12-03T10:00:00Z",
                             "2026-12-03T10:00:00Z", dict(opts.labels), dict(values))
        self.releases[(opts.namespace, name)] = state
        if self.fail:
            message, self.fail = self.fail, None
            if opts.atomic and old is None:
                del self.releases[(opts.namespace, name)]
            elif opts.upgrade_atomic and old is not None:  # Helm rolls back: a new revision, the old one again
                self.releases[(opts.namespace, name)] = replace(old, revision=revision + 1,
                                                                description=f"Rollback to {old.revision}")
            raise ReleaseError(message)
        return state

    async def install(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        return self._run("install", chart, name, values, opts)

    async def upgrade(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        return self._run("upgrade", chart, name, values, opts)

    async def uninstall(self, access: ClusterAccess, namespace: str, name: str, timeout_seconds: int) -> bool:
        self.calls.append(("uninstall", f"{namespace}/{name}"))
        if (namespace, name) in self.failing_uninstalls:
            raise ReleaseError(self.failing_uninstalls[(namespace, name)])
        return self.releases.pop((namespace, name), None) is not None

    async def rollback(self, access: ClusterAccess, namespace: str, name: str, revision: int,
                       timeout_seconds: int) -> None:
        """A new deployed revision; this fake keeps no history, so it restores the current one's chart."""
        self.calls.append(("rollback", f"{namespace}/{name}@{revision}"))
        old = self.releases[(namespace, name)]
        self.releases[(namespace, name)] = replace(old, revision=old.revision + 1, status="deployed",
                                                   description=f"Rollback to {revision}")

    def foreign(self, namespace: str, name: str) -> None:
        """A release someone installed by hand (no owner label)."""
        self.releases[(namespace, name)] = ReleaseState(name, namespace, 1, "deployed", "mysql", "8.6.2", "", "",
                                                        None, None, {}, {})

    def relabel(self, namespace: str, name: str, **changes: Any) -> None:
        self.releases[(namespace, name)] = replace(self.releases[(namespace, name)], **changes)
