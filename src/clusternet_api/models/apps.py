"""apps.clusternet.io/v1alpha1: what to deploy, where, and with which per-cluster overrides."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clusternet_api import known
from clusternet_api.models.common import (
    AGE_COLUMN,
    ApiModel,
    Base64Str,
    Condition,
    CRDInfo,
    Feed,
    FreeForm,
    KubeObject,
    LabelSelector,
    PrinterColumn,
    Quantity,
    Toleration,
)

__all__ = [
    "AggregatedStatus",
    "Base",
    "BaseSpec",
    "ChartReference",
    "Description",
    "DescriptionSpec",
    "DescriptionStatus",
    "DividingScheduling",
    "DynamicDividing",
    "FeedInventory",
    "FeedInventorySpec",
    "FeedOrder",
    "FeedStatus",
    "FeedStatusPerCluster",
    "Globalization",
    "GlobalizationSpec",
    "Localization",
    "LocalizationSpec",
    "Manifest",
    "ManifestStatus",
    "OverrideConfig",
    "ReplicaRequirements",
    "ReplicaStatus",
    "ResourceRequirements",
    "SubGroupStrategy",
    "Subscriber",
    "Subscription",
    "SubscriptionSpec",
    "SubscriptionStatus",
]

SchedulingStrategy = Literal["Replication", "Dividing"]
DividingType = Literal["Static", "Dynamic"]
DynamicDividingStrategy = Literal["Spread", "Binpack"]
# Clusternet's Go constant is "Never" while its CRD enum says "PreemptNever"; accept both so objects
# valid under either stay valid here.
PreemptionPolicy = Literal["PreemptLowerPriority", "PreemptNever", "Never"]
DeployerType = Literal["Helm", "Generic"]
DescriptionPhase = Literal[
    "Pending", "Success", "Failure", "Installing", "Upgrading", "Uninstalling", "Superseded", "Unknown"
]
OverrideType = Literal["Helm", "JSONPatch", "MergePatch", "FieldJSONPatch", "FieldMergePatch"]
OverridePolicy = Literal["ApplyNow", "ApplyLater"]
FieldFormat = Literal["YAML", "JSON"]


# ---------------------------------------------------------------------------------------------------------
# Subscription
# ---------------------------------------------------------------------------------------------------------


class SubGroupStrategy(ApiModel):
    """How many clusters to pick from a subscriber's group when scheduling by subgroup."""

    min_clusters: int = Field(ge=0)
    """Minimum number of clusters to select from this group."""


class Subscriber(ApiModel):
    """A group of clusters that receives the feeds."""

    cluster_affinity: LabelSelector
    """Selects ManagedClusters by their labels."""
    weight: int | None = Field(default=None, ge=0)
    """Share of replicas for static dividing."""
    sub_group_strategy: SubGroupStrategy | None = None


class DynamicDividing(ApiModel):
    """Settings for dividing replicas by what clusters can hold."""

    strategy: DynamicDividingStrategy = "Spread"
    topology_spread_constraints: list[FreeForm] | None = None
    """corev1.TopologySpreadConstraint items (declared, unused by Clusternet)."""
    preferred_clusters: list[FreeForm] | None = None
    """corev1.PreferredSchedulingTerm items (declared, unused by Clusternet)."""
    min_clusters: int | None = Field(default=None, ge=0)
    max_clusters: int | None = Field(default=None, ge=0)


class DividingScheduling(ApiModel):
    """How replicas are divided among clusters when schedulingStrategy is Dividing."""

    type: DividingType = "Static"
    dynamic_dividing: DynamicDividing | None = None


class SubscriptionSpec(ApiModel):
    """Which feeds go to which clusters, and how they are scheduled."""

    scheduler_name: str = "default"
    """Scheduler profile that schedules this Subscription."""
    scheduling_by_sub_group: bool | None = None
    """Pick clusters per subscriber group, honouring each group's subGroupStrategy."""
    scheduling_strategy: SchedulingStrategy = "Replication"
    """Replication gives every cluster a full copy; Dividing splits replicas."""
    dividing_scheduling: DividingScheduling | None = None
    priority: int | None = None
    """Scheduling priority among Subscriptions."""
    preemption_policy: PreemptionPolicy | None = None
    subscribers: list[Subscriber]
    """Clusters to deploy to."""
    cluster_tolerations: list[Toleration] | None = None
    """Tolerations for ManagedCluster taints."""
    feeds: list[Feed] = Field(min_length=1)
    """Objects to deploy."""


class ReplicaStatus(ApiModel):
    """Replica counters copied from a workload's status."""

    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    current_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    active: int | None = None
    succeeded: int | None = None
    failed: int | None = None


class FeedStatus(ApiModel):
    """Summary of one feed over all bound clusters."""

    available: bool | None = None
    replica_status: ReplicaStatus | None = None


class FeedStatusPerCluster(FeedStatus):
    """Status of one feed in one cluster."""

    cluster_id: str | None = None
    cluster_name: str | None = None


class AggregatedStatus(Feed):
    """Status of one feed, summed and per cluster."""

    feed_status_summary: FeedStatus | None = None
    feed_status_details: list[FeedStatusPerCluster] | None = None


class SubscriptionStatus(ApiModel):
    """Scheduling result and aggregated status of a Subscription."""

    binding_clusters: list[str] | None = None
    """Bound clusters as `<namespace>/<managedcluster-name>`."""
    replicas: dict[str, list[int]] | None = None
    """Replicas per feed key (`apiVersion/Kind[/ns]/name`), one entry per bound cluster."""
    spec_hash: int | None = Field(default=None, ge=0)
    """Hash of the spec last scheduled (a 32-bit FNV hash in Clusternet; must fit in int64 on the wire)."""
    desired_releases: int | None = None
    completed_releases: int | None = None
    aggregated_statuses: list[AggregatedStatus] | None = None
    conditions: list[Condition] | None = None
    """Ours: a Ready condition saying what is still missing (Clusternet has none)."""
    failed_over_clusters: list[str] | None = None
    """Ours (the FailOver gate): silent bound clusters whose divided replicas the other clusters took on."""
    failing_back_clusters: list[str] | None = None
    """Ours (the FailOver gate): clusters back from silence whose share the others keep until they run it."""


class Subscription(KubeObject):
    """Deploys a set of feeds to the clusters its subscribers select."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Subscription",
        plural="subscriptions",
        scope="Namespaced",
        short_names=("sub", "subs"),
        # Clusternet shows AGE alone: whether a Subscription is deployed everywhere took -o jsonpath or describe
        printer_columns=(
            PrinterColumn("READY", ".status.conditions[?(@.type=='Ready')].status",
                          description="Deployed and ready in every bound cluster"),
            PrinterColumn("REASON", ".status.conditions[?(@.type=='Ready')].reason",
                          description="Why it is (not) ready"),
            PrinterColumn("MESSAGE", ".status.conditions[?(@.type=='Ready')].message", priority=1,
                          description="The Ready condition's message: how many clusters are done, what is awaited"),
            AGE_COLUMN,
        ),
        has_status=True,
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Subscription"] = "Subscription"
    spec: SubscriptionSpec
    status: SubscriptionStatus | None = None


# ---------------------------------------------------------------------------------------------------------
# Base, Description, Manifest
# ---------------------------------------------------------------------------------------------------------


class BaseSpec(ApiModel):
    """The feeds of a Subscription, copied for one bound cluster."""

    feeds: list[Feed] = Field(min_length=1)


class Base(KubeObject):
    """One Subscription's feeds for one cluster, in that cluster's dedicated namespace."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Base",
        plural="bases",
        scope="Namespaced",
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Base"] = "Base"
    spec: BaseSpec


class ChartReference(ApiModel):
    """A HelmChart by namespace and name."""

    namespace: str
    name: str


class DescriptionSpec(ApiModel):
    """The rendered objects (overrides applied) to deploy to one cluster."""

    deployer: DeployerType
    """Generic applies `raw`; Helm installs `charts`."""
    charts: list[ChartReference] | None = None
    raw: list[Base64Str] | None = None
    """Rendered objects as JSON (Generic), or Helm values per chart (Helm); base64."""
    chart_raw: list[Base64Str] | None = None
    """HelmChart objects after overrides; base64."""


class ManifestStatus(Feed):
    """The observed `.status` of one deployed object."""

    observed_status: FreeForm | None = None
    generation: int | None = None
    """The object's metadata.generation as its status was read (ours): an older observedGeneration = old spec."""


class DescriptionStatus(ApiModel):
    """Result of deploying a Description."""

    phase: DescriptionPhase | None = None
    reason: str | None = None
    manifest_statuses: list[ManifestStatus] | None = None
    observed_generation: int | None = None
    """Generation this status reports on (ours; Clusternet has none): Success for the current one = deployed."""


class Description(KubeObject):
    """The final, per-cluster set of resources that the hub or agent applies."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Description",
        plural="descriptions",
        scope="Namespaced",
        short_names=("desc",),
        printer_columns=(
            PrinterColumn("DEPLOYER", ".spec.deployer", description="The type of deployer"),
            PrinterColumn("STATUS", ".status.phase", description="The status of current description"),
            AGE_COLUMN,
        ),
        has_status=True,
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Description"] = "Description"
    spec: DescriptionSpec
    status: DescriptionStatus | None = None


class Manifest(KubeObject):
    """A stored copy of any object to deploy (shadow API), kept in clusternet-reserved."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Manifest",
        plural="manifests",
        scope="Namespaced",
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Manifest"] = "Manifest"
    template: FreeForm
    """The object itself."""


# ---------------------------------------------------------------------------------------------------------
# Localization, Globalization
# ---------------------------------------------------------------------------------------------------------


class OverrideConfig(ApiModel):
    """One override applied while rendering a feed."""

    name: str | None = None
    """Name of the override, for humans."""
    value: str | None = None
    """The patch or Helm values, as YAML or JSON text."""
    type: OverrideType
    """How `value` is applied."""
    override_chart: bool | None = None
    """For Helm overrides: patch the HelmChart object instead of the chart values."""
    field_path: str | None = None
    """For Field* overrides: path of the string field holding embedded YAML or JSON."""
    field_format: FieldFormat | None = None
    """For Field* overrides: format of that embedded field."""


class LocalizationSpec(ApiModel):
    """Overrides for one feed, with a priority and a policy."""

    override_policy: OverridePolicy = "ApplyLater"
    """ApplyNow re-renders matching objects at once; ApplyLater waits for the next change."""
    priority: int = Field(default=known.DEFAULT_PRIORITY, ge=0, le=1000)
    """Lower priorities are applied first, so higher ones win."""
    feed: Feed
    """The object to override."""
    overrides: list[OverrideConfig] | None = None
    """Applied in order."""


# Clusternet shows NAME and AGE alone: which override wins (priority) and what it targets took -o yaml
OVERRIDE_COLUMNS = (
    PrinterColumn("PRIORITY", ".spec.priority", "integer", description="Lower ones are applied first"),
    PrinterColumn("POLICY", ".spec.overridePolicy", description="ApplyNow or ApplyLater"),
    PrinterColumn("KIND", ".spec.feed.kind", description="The kind of the feed it overrides"),
    PrinterColumn("FEED", ".spec.feed.name", description="The name of the feed it overrides"),
    AGE_COLUMN,
)


class Localization(KubeObject):
    """Overrides for one cluster, living in that cluster's dedicated namespace."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Localization",
        plural="localizations",
        scope="Namespaced",
        short_names=("loc", "local"),
        printer_columns=OVERRIDE_COLUMNS,
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Localization"] = "Localization"
    spec: LocalizationSpec


class GlobalizationSpec(LocalizationSpec):
    """Overrides for one feed in every cluster matching `clusterAffinity`."""

    cluster_affinity: LabelSelector | None = None
    """Selects ManagedClusters; empty means all clusters."""


class Globalization(KubeObject):
    """Overrides for many clusters; applied before any Localization."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="Globalization",
        plural="globalizations",
        scope="Cluster",
        short_names=("glob", "global"),
        printer_columns=(
            *OVERRIDE_COLUMNS[:-1],
            PrinterColumn("CLUSTERS", ".spec.clusterAffinity", priority=1,
                          description="Which clusters (empty: all)"),
            AGE_COLUMN,
        ),
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["Globalization"] = "Globalization"
    spec: GlobalizationSpec


# ---------------------------------------------------------------------------------------------------------
# FeedInventory
# ---------------------------------------------------------------------------------------------------------


class ResourceRequirements(ApiModel):
    """corev1.ResourceRequirements of one replica."""

    limits: dict[str, Quantity] | None = None
    requests: dict[str, Quantity] | None = None


class ReplicaRequirements(ApiModel):
    """What one replica needs, for predicting how many fit in a cluster."""

    node_selector: dict[str, str] | None = None
    tolerations: list[Toleration] | None = None
    affinity: FreeForm | None = None
    """corev1.Affinity."""
    resources: ResourceRequirements | None = None


class FeedOrder(Feed):
    """A feed with its replica count and per-replica requirements."""

    desired_replicas: int | None = Field(default=None, ge=0)
    replica_requirements: ReplicaRequirements | None = None
    replica_json_path: str | None = None
    """JSON pointer to the replica count, e.g. `/spec/replicas`."""


class FeedInventorySpec(ApiModel):
    """Replica information for every feed of a Subscription."""

    feeds: list[FeedOrder]


class FeedInventory(KubeObject):
    """Replica counts and requirements of a Subscription's feeds, for dividing scheduling."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="FeedInventory",
        plural="feedinventories",
        scope="Namespaced",
        short_names=("finv",),
        printer_columns=(),
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["FeedInventory"] = "FeedInventory"
    spec: FeedInventorySpec
