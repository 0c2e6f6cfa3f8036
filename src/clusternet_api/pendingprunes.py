"""Deletions a Description still owes; kept apart from applier.py, which applies Descriptions and prunes.

What a Description's feeds no longer name is deleted by the applier when it may be. While the cluster may not be
touched (offline, or not heard from since the hub started) or an object could not be let go of, the status keeps
listing the object and its reason begins with PRUNE_PENDING. prunes_pending tells the hub such a Description is
owed a push, drift correction or not: with it off, a prune-only pass, which reads what the Description names
(read_object) instead of applying it.
"""

from __future__ import annotations

from clusternet_api.apierrors import ResourceNotFound
from clusternet_api.kube import ApiException, Obj
from clusternet_api.kubeapi import KubeApi
from clusternet_api.logs import error_text
from clusternet_api.ownership import describe, identity, object_key, status_ident
from clusternet_api.rawobjects import decode_raw

PRUNE_PENDING = "to delete at the next apply"
"""How a Success reason that still owes deletions begins."""


def prunes_pending(desc: Obj) -> bool:
    """Does the Description's status owe deletions: does it list an object its spec no longer names (kept until it
    goes)? Such a Description is pushed again, drift correction or not. Read from the list, not the reason, which a
    later status (waiting for credentials, say) replaces (re-review s36)."""
    entries = (desc.get("status") or {}).get("manifestStatuses") or []
    if not entries:
        return False
    try:
        current = {object_key(identity(o)) for o in decode_raw((desc.get("spec") or {}).get("raw") or [])}
        return any(object_key(status_ident(s)) not in current for s in entries)
    except (ValueError, KeyError, TypeError):  # a spec or status it cannot read: the push says what is wrong
        return True


async def read_object(child: KubeApi, obj: Obj) -> tuple[str | None, Obj | None]:
    """What a prune-only pass learns of an object it does not apply: its UID (so that it is never pruned under an
    alias), nothing when it is not there (its kind not served either), or why it could not be read now."""
    ident = identity(obj)
    try:
        return None, await child.get(ident["apiVersion"], ident["kind"], ident["name"], ident.get("namespace"))
    except ResourceNotFound:
        return None, None
    except ApiException as e:
        if e.status == 404:  # its kind not served (a CRD deleted since this client discovered it), or not yet
            return None, None  # (a cold API server: then the prune's own read of an alias fails too, deleting none)
        return f"{describe(ident)}: {error_text(e)}", None
    except Exception as e:
        return f"{describe(ident)}: {error_text(e)}", None
