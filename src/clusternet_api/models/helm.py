"""apps.clusternet.io/v1alpha1 HelmChart and HelmRelease: a chart to deploy, and one release of it per cluster."""

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
    FreeForm,
    KubeObject,
    PrinterColumn,
)

__all__ = [
    "ChartPullSecret",
    "HelmChart",
    "HelmChartSpec",
    "HelmChartStatus",
    "HelmOptions",
    "HelmRelease",
    "HelmReleaseSpec",
    "HelmReleaseStatus",
    "ReleaseTarget",
]

HelmChartPhase = Literal["Found", "NotFound"]
# http, https or oci URL with a host part.
REPO_PATTERN = r"^(https?|oci)://[^\s/?#]+[^\s]*$"


class ChartPullSecret(ApiModel):
    """Secret with credentials for a private chart repository."""

    name: str
    namespace: str | None = None


class HelmOptions(ApiModel):
    """Where a chart comes from and how Helm installs it."""

    repo: str = Field(pattern=REPO_PATTERN)
    """Chart repository URL (http, https or oci)."""
    chart: str
    """Chart name."""
    version: str | None = None
    """Chart version; latest when empty."""
    chart_pull_secret: ChartPullSecret | None = None
    plain_http: bool | None = Field(default=None, alias="plainHTTP")
    """Use plain HTTP for an OCI registry."""
    create_namespace: bool = True
    """Create the target namespace if it does not exist."""
    timeout_seconds: int = Field(default=300, ge=0)
    """Timeout for each Helm operation."""
    wait: bool | None = None
    wait_for_job: bool | None = None
    replace: bool | None = None
    atomic: bool | None = None
    upgrade_atomic: bool | None = None
    skip_crds: bool | None = Field(default=None, alias="skipCRDs")
    replace_crds: bool | None = Field(default=None, alias="replaceCRDs")
    disable_hooks: bool | None = None
    force: bool | None = None


class HelmChartSpec(HelmOptions):
    """A chart to deploy as a feed."""

    target_namespace: str
    """Namespace to install the release into in child clusters."""
    values: FreeForm | None = None
    """Values for every cluster, over the chart's defaults and under Helm-type overrides (ours: Clusternet's
    HelmChart has no values, so every value had to be a Globalization)."""


class HelmChartStatus(ApiModel):
    """Whether the chart was found in its repository."""

    phase: HelmChartPhase | None = None
    reason: str | None = None
    observed_generation: int | None = None
    """The chart's metadata.generation the check was made for (ours; Clusternet's status has phase and reason
    only): after a spec change, the old spec's Found must not let the new spec reach clusters unchecked."""


class HelmChart(KubeObject):
    """A Helm chart usable as a Subscription feed."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="HelmChart",
        plural="helmcharts",
        scope="Namespaced",
        short_names=("chart", "charts"),
        printer_columns=(
            PrinterColumn("CHART", ".spec.chart", description="The helm chart name"),
            PrinterColumn("VERSION", ".spec.version", description="The helm chart version"),
            PrinterColumn("REPO", ".spec.repo", description="The helm repo url"),
            PrinterColumn("STATUS", ".status.phase", description="The helm chart status"),
            AGE_COLUMN,
        ),
        has_status=True,
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["HelmChart"] = "HelmChart"
    spec: HelmChartSpec
    status: HelmChartStatus | None = None


class HelmReleaseSpec(HelmOptions):
    """One chart installation in one cluster."""

    release_name: str | None = None
    """Helm release name."""
    target_namespace: str
    """Namespace to install the release into."""
    overrides: Base64Str | None = None
    """Helm values after overrides, as JSON; base64."""


class ReleaseTarget(ApiModel):
    """Where a release is in the child."""

    namespace: str
    name: str
    """Helm release name."""


class HelmReleaseStatus(ApiModel):
    """Helm's view of the release."""

    first_deployed: str | None = None
    last_deployed: str | None = None
    description: str | None = None
    phase: str | None = None
    """Helm release status such as deployed, failed or pending-install."""
    notes: str | None = None
    version: int | None = None
    """Release revision."""
    observed_generation: int | None = None
    """The HelmRelease generation this status reports on (ours): an older one means the change is not
    installed yet, so nothing reads an old `deployed` as the new spec's success."""
    conditions: list[Condition] | None = None
    """Ours: `Released` says whether the child runs this generation's spec. The fields above describe the
    child's release as Helm keeps it, so after a failure that left it untouched (a chart that cannot be
    fetched) they still say `deployed` with the old revision, and Released=False says why the update failed."""
    targets: list[ReleaseTarget] | None = None
    """Ours: where this HelmRelease's releases are in the child, written by whoever installs them (the hub in
    Push mode, the agent in Pull mode). The spec's target once tried there and, after spec.targetNamespace or
    spec.releaseName changed, the previous one until it is uninstalled: the spec alone does not say where the
    old release is, which would stay for ever (Clusternet's does not uninstall it either)."""


class HelmRelease(KubeObject):
    """A Helm release to install in the cluster whose dedicated namespace holds it."""

    crd: ClassVar[CRDInfo] = CRDInfo(
        group=known.APPS_GROUP,
        version=known.APPS_VERSION,
        kind="HelmRelease",
        plural="helmreleases",
        scope="Namespaced",
        short_names=("hr",),
        printer_columns=(
            PrinterColumn("CHART", ".spec.chart", description="The helm chart name"),
            PrinterColumn("VERSION", ".spec.version", description="The helm chart version"),
            PrinterColumn("REPO", ".spec.repo", description="The helm repo url"),
            PrinterColumn("STATUS", ".status.phase", description="The helm release status"),
            AGE_COLUMN,
        ),
        has_status=True,
    )

    api_version: Literal["apps.clusternet.io/v1alpha1"] = "apps.clusternet.io/v1alpha1"
    kind: Literal["HelmRelease"] = "HelmRelease"
    spec: HelmReleaseSpec
    status: HelmReleaseStatus | None = None
