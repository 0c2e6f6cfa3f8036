"""Deleting the object that was looked at, not whatever bears its name when the DELETE arrives (review F8).

Looking at an object, deciding, then deleting it by name is a race: in between, it may have been deleted and
created again by someone else (a new uid: a new registration's ServiceAccount, the new hub leader's Base), or
changed (a peer's Lease renewed, a ClusterRole written again). So the DELETE carries preconditions, and the API
server answers 409 Conflict when they no longer hold:

- the uid, always: the same object, not one created again under its name;
- the resourceVersion too (`unchanged=True`) when the decision read something that may change (a Lease's
  renewals, a label, a Base as the cache saw it): the object exactly as it was judged.

A conflict is never retried as it stands: the caller looks again and decides again, or leaves the object to its
next pass, and names which (`then`), for the one log line that says so.
"""

from __future__ import annotations

import enum
import logging
from typing import Any

from clusternet_api.kube import ApiException
from clusternet_api.kubeapi import KubeApi

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class Deleted(enum.Enum):
    """What a DELETE with preconditions did."""

    DONE = "deleted"
    GONE = "already gone"
    CHANGED = "changed since it was read"


def preconditions(obj: Obj, *, unchanged: bool) -> dict[str, str]:
    """The DeleteOptions preconditions for `obj` as read: its uid, and its resourceVersion when `unchanged`."""
    meta = obj.get("metadata") or {}
    keys = ("uid", "resourceVersion") if unchanged else ("uid",)
    return {k: str(meta[k]) for k in keys if meta.get(k)}


async def delete_as_read(kube: KubeApi, api_version: str, kind: str, obj: Obj, *, unchanged: bool, then: str,
                         propagation: str = "Background") -> Deleted:
    """DELETE `obj` (as read, with its apiVersion and kind given: a listed item has neither) only if it is still
    that object (and, with `unchanged`, unchanged). On a conflict, logs that it was not, and `then`, what the
    caller does instead. Other API errors are raised."""
    meta = obj["metadata"]
    try:
        found = await kube.delete(api_version, kind, meta["name"], meta.get("namespace"), propagation,
                                  preconditions=preconditions(obj, unchanged=unchanged))
    except ApiException as e:
        if e.status != 409:
            raise
        log.info("%s %s was %s since it was read: %s", kind, "/".join(filter(None, (meta.get("namespace"),
                 meta["name"]))), "created again or changed" if unchanged else "created again", then)
        return Deleted.CHANGED
    return Deleted.DONE if found else Deleted.GONE
