"""Helm for HelmReleases: the driver contract (`driver`) and its implementation on the Helm Go SDK (`sdk`).

The hub uses it in push mode (installing into a child through its tunnel), the agent in pull mode (installing
into its own cluster). Importing this package does not load the SDK's native library; `sdk` does.
"""

from clusternet_api.helm.driver import (
    ChartError,
    ChartSource,
    ClusterAccess,
    ClusterUnreachableError,
    FetchedChart,
    HelmDriver,
    ReleaseError,
    ReleaseOptions,
    ReleaseState,
)


def default_driver() -> HelmDriver:
    """Helm v4 in-process (helm-python-sdk), imported on first use: its native library is ~85 MB."""
    from clusternet_api.helm.sdk import SdkHelmDriver

    return SdkHelmDriver()


__all__ = [
    "ChartError",
    "ChartSource",
    "ClusterAccess",
    "ClusterUnreachableError",
    "FetchedChart",
    "HelmDriver",
    "ReleaseError",
    "ReleaseOptions",
    "ReleaseState",
    "default_driver",
]
