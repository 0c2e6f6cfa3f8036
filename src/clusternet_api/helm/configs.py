"""Open SDK Configs, kept per (credentials, namespace) and shared by operations on any release.

A fresh Config costs nothing to create, but its first install or upgrade runs API discovery: measured against
a local kube-apiserver 1.20, an upgrade of a one-ConfigMap chart took ~190 ms with a fresh Config and ~45 ms
with a reused one. Reconcilers upgrade the same clusters over and over, so Configs are kept, at most `size`
of them, least recently used closed first. The SDK allows one Config to serve actions on different releases
at once (only one release's writes must be serialised, which the driver does).

A kept Config also keeps its client-side rate limiter, which a fresh Config would start full: client-go's
default (5 requests/s) throttled six parallel upgrades on one kept Config to 8 s and an uninstall to 1.4 s
(klog: "Waited before sending request … client-side throttling"). So kept Configs get `qps` and `burst`
close to kubectl's own (50/s), per cluster and namespace.

The key is a digest of the inline kubeconfig, so new credentials (a rotated token, a renewed client
certificate, another relay address) get a new Config and the old one ages out. A Config evicted while an
operation still uses it is closed when that operation ends. While open, a Config keeps its kubeconfig
(credentials included) in a private temporary file of the SDK's; closing removes it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import helm_python

from clusternet_api.helm.driver import ClusterAccess
from clusternet_api.helm.kubeconfig import kubeconfig_yaml


class _Entry:
    __slots__ = ("config", "retired", "users")

    def __init__(self, config: helm_python.Config) -> None:
        self.config, self.users, self.retired = config, 0, False


class ConfigPool:
    """At most `size` open Configs; thread-safe (operations run on worker threads)."""

    def __init__(self, size: int = 32, qps: float = 50.0, burst: int = 100) -> None:
        self.size, self.qps, self.burst = size, qps, burst
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def use(self, access: ClusterAccess, namespace: str) -> Iterator[helm_python.Config]:
        """A Config for `access` whose storage (and default) namespace is `namespace`. Raises HelmError when the
        SDK refuses the kubeconfig."""
        text = kubeconfig_yaml(access, namespace)
        key = (hashlib.sha256(text.encode()).hexdigest(), namespace)
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                entry = _Entry(helm_python.Config(kubeconfig_content=text, namespace=namespace,
                                                  storage_driver="secret", qps=self.qps, burst_limit=self.burst))
            entry.users += 1
            self._entries[key] = entry
            while len(self._entries) > self.size:
                self._retire(self._entries.popitem(last=False)[1])
        try:
            yield entry.config
        finally:
            with self._lock:
                entry.users -= 1
                if entry.retired and entry.users == 0:
                    entry.config.close()

    def _retire(self, entry: _Entry) -> None:
        """Close now when unused, else when its last user is done (under the lock)."""
        entry.retired = True
        if entry.users == 0:
            entry.config.close()

    def close(self) -> None:
        """Close every Config (those in use once their operation ends)."""
        with self._lock:
            while self._entries:
                self._retire(self._entries.popitem()[1])
