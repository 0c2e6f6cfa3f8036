"""Building blocks shared by every Clusternet kind.

Field names follow Clusternet's JSON (camelCase) on the wire and snake_case in Python, so objects written
by the Go implementation parse here and ours parse there. Nested models ignore unknown fields, like the
apiserver prunes them, so a newer Clusternet writing extra fields does not break our readers.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from clusternet_api import known

# ---------------------------------------------------------------------------------------------------------
# Wire-format scalar types
# ---------------------------------------------------------------------------------------------------------


def _check_base64(value: str) -> str:
    """Go marshals []byte as standard base64; reject anything the apiserver would reject."""
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64: {exc}") from exc
    return value


def _time_text(value: Any) -> Any:
    """YAML loaders and some clients hand us datetimes; keep the wire's RFC 3339 text instead."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _plain(value: Any) -> Any:
    """Copy Mapping-like bodies (kopf's Body, client models' dicts) into plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_time(value: str) -> str:
    """metav1.Time is RFC 3339; catch garbage before the apiserver does."""
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from exc
    return value


QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY_RE = re.compile(QUANTITY_PATTERN)


def _coerce_quantity(value: Any) -> Any:
    """YAML turns `0.5` into a float; a quantity is an int or a string, so keep the float's text."""
    if isinstance(value, float):
        return repr(value)
    return value


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY_RE.match(value):
        raise ValueError(f"not a resource quantity: {value!r}")
    return value


Base64Str = Annotated[
    str,
    AfterValidator(_check_base64),
    WithJsonSchema({"type": "string", "format": "byte"}),
]
"""A Go `[]byte`: base64 text on the wire, kept as text so objects round-trip unchanged."""

Time = Annotated[
    str,
    BeforeValidator(_time_text),
    AfterValidator(_check_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""A metav1.Time kept as its RFC 3339 text, so round-trips are exact."""

Quantity = Annotated[
    int | str,
    BeforeValidator(_coerce_quantity),
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]
"""A resource.Quantity such as `4`, `500m` or `16Gi`."""

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An object whose shape we do not constrain (RawExtension, core types we only pass through)."""

ClusterID = Annotated[str, Field(pattern=known.CLUSTER_ID_PATTERN)]
"""A random (version 4) UUID identifying a child cluster."""

ClusterType = Literal["StandardCluster", "EdgeCluster"]
SyncMode = Literal["Push", "Pull", "Dual"]
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
ConditionStatus = Literal["True", "False", "Unknown"]
ScopeName = Literal["Namespaced", "Cluster"]


# ---------------------------------------------------------------------------------------------------------
# Base classes
# ---------------------------------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of every nested model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_attribute_docstrings=True,
    )

    def to_dict(self, *, include_defaults: bool = True) -> dict[str, Any]:
        """JSON-ready dict with Clusternet's field names; None means "absent" (Go's omitempty)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=not include_defaults)


class ObjectMeta(ApiModel):
    """The parts of metav1.ObjectMeta we read; anything else the apiserver sends is kept as-is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    finalizers: list[str] | None = None
    owner_references: list[dict[str, Any]] | None = None
    managed_fields: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class PrinterColumn:
    """One `kubectl get` column (CRD additionalPrinterColumns)."""

    name: str
    json_path: str
    type: Literal["string", "integer", "number", "boolean", "date"] = "string"
    priority: int = 0
    description: str | None = None


AGE_COLUMN = PrinterColumn("AGE", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class CRDInfo:
    """What the CRD generator and installers need to know about a kind besides its schema."""

    group: str
    version: str
    kind: str
    plural: str
    scope: ScopeName
    short_names: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)
    has_status: bool = False
    categories: tuple[str, ...] = field(default=(known.CATEGORY,))

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def namespaced(self) -> bool:
        return self.scope == "Namespaced"


class KubeObject(ApiModel):
    """A top-level Clusternet object; unknown top-level fields are kept so nothing is lost on write-back."""

    model_config = ConfigDict(extra="allow")

    crd: ClassVar[CRDInfo]

    api_version: str
    kind: str
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @model_validator(mode="before")
    @classmethod
    def _plain_input(cls, data: Any) -> Any:
        return _plain(data) if isinstance(data, Mapping) else data

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Self:
        """Parse an object as read from the apiserver, kopf or a user's YAML."""
        return cls.model_validate(obj)


# ---------------------------------------------------------------------------------------------------------
# Shared Kubernetes / Clusternet types
# ---------------------------------------------------------------------------------------------------------


class LabelSelectorRequirement(ApiModel):
    """One set-based label requirement."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] | None = None


class LabelSelector(ApiModel):
    """metav1.LabelSelector; an empty selector matches everything."""

    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class Taint(ApiModel):
    """corev1.Taint, put on ManagedClusters to keep workloads away."""

    key: str
    value: str | None = None
    effect: TaintEffect
    time_added: Time | None = None


class Toleration(ApiModel):
    """corev1.Toleration, matched against ManagedCluster taints by the scheduler."""

    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: TaintEffect | None = None
    toleration_seconds: int | None = None


class Condition(ApiModel):
    """metav1.Condition, with the same required fields and limits as upstream."""

    type: str = Field(max_length=316)
    status: ConditionStatus
    observed_generation: int | None = Field(default=None, ge=0)
    last_transition_time: Time
    reason: str = Field(min_length=1, max_length=1024)
    message: str = Field(max_length=32768)


class Feed(ApiModel):
    """A reference to one object to deploy: a HelmChart or any Manifest-backed object."""

    api_version: str
    kind: str
    namespace: str | None = None
    name: str

    def key(self) -> str:
        """`apiVersion/Kind[/namespace]/name`, the key Clusternet uses in Subscription.status.replicas."""
        parts = [self.api_version, self.kind]
        if self.namespace:
            parts.append(self.namespace)
        parts.append(self.name)
        return "/".join(parts)


def encode_bytes(data: bytes) -> str:
    """Encode bytes the way Go marshals []byte (standard base64 with padding)."""
    return base64.b64encode(data).decode("ascii")


def decode_bytes(text: str) -> bytes:
    """Decode a Go []byte field."""
    return base64.b64decode(text, validate=True)
