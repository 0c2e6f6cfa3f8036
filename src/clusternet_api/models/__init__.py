"""Pydantic models of every Clusternet CRD kind: the one source of truth for code, CRDs and validation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clusternet_api.models.apps import (
    AggregatedStatus,
    Base,
    BaseSpec,
    ChartReference,
    Description,
    DescriptionSpec,
    DescriptionStatus,
    DividingScheduling,
    DynamicDividing,
    FeedInventory,
    FeedInventorySpec,
    FeedOrder,
    FeedStatus,
    FeedStatusPerCluster,
    Globalization,
    GlobalizationSpec,
    Localization,
    LocalizationSpec,
    Manifest,
    ManifestStatus,
    OverrideConfig,
    ReplicaRequirements,
    ReplicaStatus,
    ResourceRequirements,
    SubGroupStrategy,
    Subscriber,
    Subscription,
    SubscriptionSpec,
    SubscriptionStatus,
)
from clusternet_api.models.clusters import (
    ClusterRegistrationRequest,
    ClusterRegistrationRequestSpec,
    ClusterRegistrationRequestStatus,
    ManagedCluster,
    ManagedClusterSpec,
    ManagedClusterStatus,
    NodeStatistics,
    PodStatistics,
    ResourceUsage,
)
from clusternet_api.models.common import (
    ApiModel,
    Condition,
    CRDInfo,
    Feed,
    KubeObject,
    LabelSelector,
    LabelSelectorRequirement,
    ObjectMeta,
    PrinterColumn,
    Taint,
    Toleration,
    decode_bytes,
    encode_bytes,
)
from clusternet_api.models.helm import (
    ChartPullSecret,
    HelmChart,
    HelmChartSpec,
    HelmChartStatus,
    HelmOptions,
    HelmRelease,
    HelmReleaseSpec,
    HelmReleaseStatus,
    ReleaseTarget,
)

ALL_KINDS: tuple[type[KubeObject], ...] = (
    ClusterRegistrationRequest,
    ManagedCluster,
    Subscription,
    Base,
    Description,
    Manifest,
    HelmChart,
    HelmRelease,
    Localization,
    Globalization,
    FeedInventory,
)
"""Every top-level kind we serve as a CRD, in a stable order."""

_BY_GVK: dict[tuple[str, str], type[KubeObject]] = {(m.crd.api_version, m.crd.kind): m for m in ALL_KINDS}


def model_for(api_version: str, kind: str) -> type[KubeObject] | None:
    """The model class for an apiVersion/kind, or None when it is not a Clusternet kind."""
    return _BY_GVK.get((api_version, kind))


def parse_object(obj: Mapping[str, Any]) -> KubeObject:
    """Parse any Clusternet object by its apiVersion and kind; ValueError for other kinds."""
    model = model_for(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if model is None:
        raise ValueError(f"not a Clusternet kind: {obj.get('apiVersion')}/{obj.get('kind')}")
    return model.model_validate(obj)


__all__ = [
    "ALL_KINDS",
    "AggregatedStatus",
    "ApiModel",
    "Base",
    "BaseSpec",
    "CRDInfo",
    "ChartPullSecret",
    "ChartReference",
    "ClusterRegistrationRequest",
    "ClusterRegistrationRequestSpec",
    "ClusterRegistrationRequestStatus",
    "Condition",
    "Description",
    "DescriptionSpec",
    "DescriptionStatus",
    "DividingScheduling",
    "DynamicDividing",
    "Feed",
    "FeedInventory",
    "FeedInventorySpec",
    "FeedOrder",
    "FeedStatus",
    "FeedStatusPerCluster",
    "Globalization",
    "GlobalizationSpec",
    "HelmChart",
    "HelmChartSpec",
    "HelmChartStatus",
    "HelmOptions",
    "HelmRelease",
    "HelmReleaseSpec",
    "HelmReleaseStatus",
    "KubeObject",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Localization",
    "LocalizationSpec",
    "ManagedCluster",
    "ManagedClusterSpec",
    "ManagedClusterStatus",
    "Manifest",
    "ManifestStatus",
    "NodeStatistics",
    "ObjectMeta",
    "OverrideConfig",
    "PodStatistics",
    "PrinterColumn",
    "ReleaseTarget",
    "ReplicaRequirements",
    "ReplicaStatus",
    "ResourceRequirements",
    "ResourceUsage",
    "SubGroupStrategy",
    "Subscriber",
    "Subscription",
    "SubscriptionSpec",
    "SubscriptionStatus",
    "Taint",
    "Toleration",
    "decode_bytes",
    "encode_bytes",
    "model_for",
    "parse_object",
]
