"""The agents' report period, as a ManagedCluster's status states it (`heartbeatFrequencySeconds`): the hub judges a
cluster silent after three of them (clusternet_hub/health.py) and trusts a returning cluster's reports one of them
after it reports again (clusternet_core/failover.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_HEARTBEAT_SECONDS = 180  # Clusternet's default --cluster-status-update-frequency (3m)


def heartbeat_seconds(mc: Mapping[str, Any]) -> int:
    """The cluster's report period, as its agent states it."""
    return int((mc.get("status") or {}).get("heartbeatFrequencySeconds") or DEFAULT_HEARTBEAT_SECONDS)
