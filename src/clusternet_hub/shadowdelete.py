"""The shadow API's deletes, pure part: the caller's DeleteOptions, read in any encoding a Kubernetes client sends,
and its preconditions checked against the template's Manifest.

Why it matters: the parent's garbage collector and namespace controller delete through the shadow API with
`preconditions.uid` (recent garbage collectors with `resourceVersion` too), so that an object deleted and created
again under the same name since they saw it is left alone. A template's uid and resourceVersion are its
Manifest's (shadowmapping.template_of), so the preconditions mean the same on the Manifest: clusternet_hub.shadow
checks them on the Manifest it read (409 Conflict in Kubernetes' words) and sends them on with the Manifest's
DELETE, for the parent to check again when it deletes.

Those controllers use client-go's metadata client, which sends its DeleteOptions as Kubernetes protobuf, not JSON.
The few fields we need are read from it here (a protobuf reader of a page, not a protobuf library for one
message). `application/cbor`, which client-go sends only behind alpha gates, is refused with 415: client-go then
sends JSON. Where we differ from Kubernetes: only the fields that mean something for a Manifest go on
(preconditions, propagation policy, grace period, orphanDependents, dry run); unknown fields are dropped, as
protobuf readers do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from clusternet_api.kube import Obj
from clusternet_hub.shadowmapping import ShadowError, ShadowResource, bad_request, parse_body, status_details

PROTOBUF = "application/vnd.kubernetes.protobuf"
CBOR = "application/cbor"
PROTOBUF_MAGIC = b"k8s\x00"  # before every Kubernetes protobuf body, then a runtime.Unknown envelope
DELETE_OPTIONS = ("preconditions", "propagationPolicy", "gracePeriodSeconds", "orphanDependents", "dryRun")
PRECONDITIONS = (("uid", "UID"), ("resourceVersion", "ResourceVersion"))  # in the order Kubernetes checks them


def delete_options(raw: bytes, content_type: str) -> Obj:
    """The fields of the caller's DeleteOptions (a DELETE's body; {} without one) that go on with the DELETE of the
    template's Manifest. BadRequest when the body is not DeleteOptions, 415 for an encoding we do not read."""
    if not raw.strip():
        return {}
    if content_type == CBOR:
        raise ShadowError(415, "UnsupportedMediaType", f"the shadow API reads DeleteOptions as JSON, YAML or "
                          f"{PROTOBUF}, not {CBOR}")
    body = _protobuf_options(raw) if content_type == PROTOBUF else parse_body(raw)
    if body.get("kind") not in (None, "DeleteOptions"):
        raise bad_request(f"the body of a DELETE is DeleteOptions, not {body.get('kind')}")
    preconditions = body.get("preconditions")
    if preconditions is not None and (not isinstance(preconditions, dict) or any(
            not isinstance(preconditions.get(key), str | None) for key, _ in PRECONDITIONS)):
        raise bad_request("preconditions: uid and resourceVersion are strings")
    return {key: body[key] for key in DELETE_OPTIONS if body.get(key) is not None}


def precondition_failed(resource: ShadowResource, name: str, options: Mapping[str, Any],
                        manifest: Mapping[str, Any]) -> ShadowError | None:
    """A 409 Conflict, in Kubernetes' words, when the DeleteOptions' preconditions do not match the template as the
    shadow API serves it (the uid and resourceVersion of its Manifest); None when they do or there are none."""
    meta = manifest.get("metadata") or {}
    for key, label in PRECONDITIONS:
        wanted = (options.get("preconditions") or {}).get(key)
        if wanted is not None and wanted != str(meta.get(key) or ""):
            return precondition_conflict(resource, name, f"Precondition failed: {label} in precondition: {wanted}, "
                                                         f"{label} in object meta: {meta.get(key) or ''}")
    return None


def precondition_conflict(resource: ShadowResource, name: str, why: str) -> ShadowError:
    """409 Conflict for `why`; the parent's own message about the Manifest is cut to its reason (the uid and
    resourceVersion it names are the template's too)."""
    reason = why[why.find("Precondition failed"):] if "Precondition failed" in why else why
    return ShadowError(409, "Conflict", f'Operation cannot be fulfilled on {resource.group_resource} "{name}": '
                       f"{reason}", status_details(resource, name))


# --- Kubernetes protobuf ---------------------------------------------------------------------------------------

def _protobuf_options(raw: bytes) -> Obj:
    """DeleteOptions from a Kubernetes protobuf body: the envelope (runtime.Unknown: 1 typeMeta {1 apiVersion,
    2 kind}, 2 raw) around the message (1 gracePeriodSeconds, 2 preconditions {1 uid, 2 resourceVersion},
    3 orphanDependents, 4 propagationPolicy, 5 dryRun), as JSON would give them."""
    if not raw.startswith(PROTOBUF_MAGIC):
        raise bad_request(f"the {PROTOBUF} body does not start with Kubernetes' protobuf prefix")
    try:
        envelope = dict(_fields(raw[len(PROTOBUF_MAGIC):]))
        type_meta = dict(_fields(_bytes(envelope.get(1, b""))))
        out: Obj = {"kind": _text(type_meta[2])} if 2 in type_meta else {}
        for number, value in _fields(_bytes(envelope.get(2, b""))):
            if number == 1:
                out["gracePeriodSeconds"] = _int64(value)
            elif number == 2:
                fields = dict(_fields(_bytes(value)))
                out["preconditions"] = {key: _text(fields[n]) for n, (key, _) in enumerate(PRECONDITIONS, 1)
                                        if n in fields}
            elif number == 3:
                out["orphanDependents"] = bool(_int64(value))
            elif number == 4:
                out["propagationPolicy"] = _text(value)
            elif number == 5:
                out.setdefault("dryRun", []).append(_text(value))
    except (ValueError, TypeError) as e:
        raise bad_request(f"the {PROTOBUF} body is not DeleteOptions: {e}") from e
    return out


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a protobuf message: varints as int, the rest as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
            continue
        if wire == 2:
            size, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"field {number} has wire type {wire}")
        if pos + size > len(data):
            raise ValueError(f"field {number} is cut short")
        yield number, data[pos:pos + size]
        pos += size


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 70:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos
    raise ValueError("a varint is cut short or too long")


def _bytes(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError("a message field holds a number")
    return value


def _text(value: int | bytes) -> str:
    return _bytes(value).decode()


def _int64(value: int | bytes) -> int:
    if not isinstance(value, int):
        raise TypeError("a number field holds bytes")
    return value - (1 << 64) if value >= 1 << 63 else value
