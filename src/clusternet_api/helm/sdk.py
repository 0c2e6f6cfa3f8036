"""HelmDriver on helm-python, the Helm v4 Go SDK called through ctypes: no helm binary, no subprocess.

Three things shape this module:

* Every SDK call blocks (a ctypes call into Go; ctypes releases the GIL). They run on a thread pool of the
  driver's own rather than asyncio's default executor: an install with `wait` holds a thread for up to its
  timeout, and the default executor also serves DNS lookups (aiohttp) and kopf's sync handlers.
* The SDK documents that concurrent writes to one release corrupt its history, so install, upgrade and
  uninstall of one (server, namespace, release) are serialised by an asyncio.Lock (reads are not). A
  cancelled caller cannot stop its thread; it cancels Helm's context (install/upgrade stop waiting and the
  release is marked failed) and keeps the lock until the thread is done.
* SDK Configs (built from an inline kubeconfig) are kept per (credentials, namespace) in a ConfigPool: a reused
  Config skips API discovery, which is most of an upgrade's time against a nearby API server.

NATIVE_ONLY options (`disable_hooks`, `skip_crds`, `wait_for_jobs`, install's `replace`, upgrade's
`force_replace`): helm-python 0.2.2's Config.install/upgrade do not take them, though the C library's options
JSON does (checked: helm_install and helm_upgrade take them all, but `replace` on installs only; unknown keys
are refused). With one of them set, the call goes through helm_python._native with the same options
plus those keys; without, only the public API is used. Uninstall always runs hooks (the Protocol's uninstall has
no options).
"""

from __future__ import annotations

import asyncio
import functools
import json
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import helm_python
from helm_python import _native

from clusternet_api import fence
from clusternet_api.helm.configs import ConfigPool
from clusternet_api.helm.driver import (
    ChartSource,
    ClusterAccess,
    FetchedChart,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
)
from clusternet_api.helm.fetch import ChartCache
from clusternet_api.helm.messages import one_line, release_error

T = TypeVar("T")

SYSTEM_LABELS = frozenset({"name", "owner", "status", "version", "createdAt", "modifiedAt"})
"""Labels Helm's storage driver puts on the release Secret itself; status() mixes them into the release
labels, and Helm refuses them as user labels."""

_REMOVE = "null"  # Helm's upgrade merges labels with the previous revision's; this value deletes a key.
_GO_ZERO_TIME = "0001-01-01"


class SdkHelmDriver:
    """The HelmDriver both operators use. `cache_dir` keeps fetched charts (a private temporary directory
    when None, removed by close()); `max_workers` bounds concurrent SDK calls; `max_configs` bounds the open SDK
    Configs (one per cluster credentials and namespace in use)."""

    def __init__(self, cache_dir: Path | None = None, max_workers: int = 8, max_configs: int = 32) -> None:
        self._cache_dir = cache_dir
        self.configs = ConfigPool(max_configs)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="helm-sdk")
        self._locks: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Lock] = weakref.WeakValueDictionary()

    @functools.cached_property
    def cache(self) -> ChartCache:
        """Made at the first fetch: most agents never fetch a chart, and a bench process runs hundreds of them."""
        return ChartCache(self._cache_dir or Path(tempfile.mkdtemp(prefix="clusternet-helm-")))

    def close(self) -> None:
        """Stop the worker threads once the calls in flight are done (queued calls are dropped), close the
        SDK Configs, and remove the private cache directory: every process and every leadership term left one
        behind before (8,833 of them in a day of tests and benchmarks here), charts and credential salt included.
        A fetch still running on a thread then fails, which no one is waiting for."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.configs.close()
        cache: ChartCache | None = self.__dict__.get("cache")
        if self._cache_dir is None and cache is not None:
            shutil.rmtree(cache.root, ignore_errors=True)

    def _lock(self, *key: str) -> asyncio.Lock:
        """One lock per key while anyone holds or awaits it (weak values: no growth with past releases)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _run(self, fn: Callable[..., T], *args: Any, context: helm_python.HelmContext | None = None,
                   write: bool = False) -> T:
        """`fn(*args)` on a worker thread. On cancellation, cancel Helm's context and wait for the thread, so
        the caller's lock outlives the Helm operation; a second cancellation stops waiting. A `write` by leader
        work that lost its Lease is refused before it starts (clusternet_api.fence)."""
        if write:
            fence.check()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, functools.partial(fn, *args))
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception not retrieved"
        if context is not None:
            future.add_done_callback(lambda _: context.close())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if context is not None:
                context.cancel()
            await asyncio.wait({future})
            raise

    async def fetch(self, source: ChartSource, refresh: bool = False) -> FetchedChart:
        async with self._lock("fetch", source.repo, source.chart, source.version or "", source.username or ""):
            return await self._run(self.cache.fetch, source, refresh)

    async def get(self, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
        """Not behind the release's lock: reading cannot corrupt history, and a reader during a long install
        with `wait` should see pending-install now rather than the outcome minutes later."""
        return await self._run(_get, self.configs, access, namespace, name)

    async def install(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        async with self._lock(access.server, opts.namespace, name):
            context = helm_python.HelmContext()
            return await self._run(_install, self.configs, context, access, chart, name, dict(values), opts,
                                   context=context, write=True)

    async def upgrade(self, access: ClusterAccess, chart: FetchedChart, name: str, values: Mapping[str, Any],
                      opts: ReleaseOptions) -> ReleaseState:
        async with self._lock(access.server, opts.namespace, name):
            context = helm_python.HelmContext()
            return await self._run(_upgrade, self.configs, context, access, chart, name, dict(values), opts,
                                   context=context, write=True)

    async def uninstall(self, access: ClusterAccess, namespace: str, name: str, timeout_seconds: int) -> bool:
        async with self._lock(access.server, namespace, name):
            return await self._run(_uninstall, self.configs, access, namespace, name, timeout_seconds, write=True)

    async def rollback(self, access: ClusterAccess, namespace: str, name: str, revision: int,
                       timeout_seconds: int) -> None:
        async with self._lock(access.server, namespace, name):
            await self._run(_rollback, self.configs, access, namespace, name, revision, timeout_seconds, write=True)


# --- blocking halves, run on the worker threads ---------------------------------------------------------------


@contextmanager
def _config(pool: ConfigPool, access: ClusterAccess, namespace: str) -> Iterator[helm_python.Config]:
    """An SDK Config for one operation, SDK failures raised as ReleaseError."""
    try:
        with pool.use(access, namespace) as cfg:
            yield cfg
    except helm_python.HelmError as e:
        raise release_error(e) from e


def _get(pool: ConfigPool, access: ClusterAccess, namespace: str, name: str) -> ReleaseState | None:
    with _config(pool, access, namespace) as cfg:
        return _read(cfg, name)


def _install(pool: ConfigPool, context: helm_python.HelmContext, access: ClusterAccess, chart: FetchedChart,
             name: str, values: dict[str, Any], opts: ReleaseOptions) -> ReleaseState:
    options: dict[str, Any] = {
        "namespace": opts.namespace, "timeout_seconds": opts.timeout_seconds, "wait": _wait(opts),
        "create_namespace": opts.create_namespace, "rollback_on_failure": opts.atomic,
        "description": opts.description, "labels": dict(opts.labels) or None,
        "disable_hooks": opts.disable_hooks, "skip_crds": opts.skip_crds, "wait_for_jobs": opts.wait_for_jobs,
        "replace": opts.replace,
    }
    with _config(pool, access, opts.namespace) as cfg:
        _act(cfg, context, "install", chart, name, values, options)
        return _read_after(cfg, name)


def _upgrade(pool: ConfigPool, context: helm_python.HelmContext, access: ClusterAccess, chart: FetchedChart,
             name: str, values: dict[str, Any], opts: ReleaseOptions) -> ReleaseState:
    """reset_values: the new revision gets exactly `values`. (Helm's default reuses the previous values when
    none are given, so a HelmRelease whose values were removed would keep them.)"""
    with _config(pool, access, opts.namespace) as cfg:
        options: dict[str, Any] = {
            "namespace": opts.namespace, "timeout_seconds": opts.timeout_seconds, "wait": _wait(opts),
            "max_history": opts.max_history, "reset_values": True, "rollback_on_failure": opts.upgrade_atomic,
            "description": opts.description, "labels": _replacing_labels(cfg, name, opts.labels) or None,
            "disable_hooks": opts.disable_hooks, "skip_crds": opts.skip_crds, "wait_for_jobs": opts.wait_for_jobs,
            # Helm 4 refuses to force-replace while applying server-side (its default): `force` is Helm 3's client-side
            # replace, so such a revision is applied client-side, as Clusternet's Helm 3 applies every revision
            "force_replace": opts.force, "server_side_apply": "false" if opts.force else None,
        }
        _act(cfg, context, "upgrade", chart, name, values, options)
        return _read_after(cfg, name)


def _uninstall(pool: ConfigPool, access: ClusterAccess, namespace: str, name: str, timeout_seconds: int) -> bool:
    with _config(pool, access, namespace) as cfg:
        result = cfg.uninstall(name, timeout=timeout_seconds, ignore_not_found=True)
        return result.get("release") is not None  # absent when there was nothing to uninstall


def _rollback(pool: ConfigPool, access: ClusterAccess, namespace: str, name: str, revision: int,
              timeout_seconds: int) -> None:
    with _config(pool, access, namespace) as cfg:
        cfg.rollback(name, version=revision, timeout=timeout_seconds)


def _wait(opts: ReleaseOptions) -> str | None:
    """Helm 4's kstatus watcher when waiting (readiness by the objects' status), else the SDK's default."""
    return "watcher" if opts.wait else None


NATIVE_ONLY = frozenset({"disable_hooks", "skip_crds", "wait_for_jobs", "replace", "force_replace"})
"""Options only the C library takes (see the module docstring); sent only when true."""


def _act(cfg: helm_python.Config, context: helm_python.HelmContext, action: str, chart: FetchedChart, name: str,
         values: dict[str, Any], options: dict[str, Any]) -> None:
    """Install or upgrade; see the module docstring for the path of NATIVE_ONLY options."""
    options = {k: v for k, v in options.items() if v is not None and not (k in NATIVE_ONLY and not v)}
    if NATIVE_ONLY & options.keys():
        _native.call_string(f"helm_{action}", cfg._raw(), context._raw(), _native.HANDLE(0), str(chart.path),
                            name, json.dumps(values), json.dumps(options))
        return
    timeout = options.pop("timeout_seconds")
    if action == "install":
        cfg.install(chart.path, name, values, context=context, timeout=timeout, **options)
    else:
        cfg.upgrade(chart.path, name, values, context=context, timeout=timeout, **options)


def _replacing_labels(cfg: helm_python.Config, name: str, desired: Mapping[str, str]) -> dict[str, str]:
    """Labels for an upgrade that replace the previous revision's: Helm merges them, "null" removes a key."""
    try:
        current = cfg.get_metadata(name).get("labels") or {}
    except helm_python.HelmNotFoundError:
        current = {}  # Helm's upgrade will say there is no release
    removed = {k: _REMOVE for k in current if k not in SYSTEM_LABELS and k not in desired}
    return {**removed, **desired}


def _read(cfg: helm_python.Config, name: str) -> ReleaseState | None:
    try:
        return release_state(cfg.get_all(name))
    except helm_python.HelmNotFoundError:
        return None


def _read_after(cfg: helm_python.Config, name: str) -> ReleaseState:
    state = _read(cfg, name)
    if state is None:
        raise ReleaseError(f"release {name} not found right after it was written")
    return state


def _time(value: Any) -> str | None:
    return str(value) if value and not str(value).startswith(_GO_ZERO_TIME) else None


def release_state(release: Mapping[str, Any]) -> ReleaseState:
    """A ReleaseState from helm_python's get_all(): `summary` (as status()), `info` (timestamps, description,
    status, notes) and `config` (the user-supplied values; null when there were none). The description is
    flattened to one line like ReleaseError's message (Helm joins a failure's causes with newlines)."""
    summary: Mapping[str, Any] = release.get("summary") or {}
    info: Mapping[str, Any] = release.get("info") or {}
    labels = summary.get("labels") or {}
    return ReleaseState(
        name=str(summary.get("name", "")),
        namespace=str(summary.get("namespace", "")),
        revision=int(summary.get("revision") or 0),
        status=str(info.get("status") or summary.get("status") or "unknown"),
        chart_name=str(summary.get("chart_name", "")),
        chart_version=str(summary.get("chart_version", "")),
        description=one_line(str(info["description"])) if info.get("description") else "",
        notes=str(info.get("notes") or summary.get("notes") or ""),
        first_deployed=_time(info.get("first_deployed")),
        last_deployed=_time(info.get("last_deployed") or summary.get("deployed_at")),
        labels={str(k): str(v) for k, v in labels.items() if k not in SYSTEM_LABELS},
        values=dict(release.get("config") or {}),
    )
