"""Validating a template on the parent: a server-side dry run (nothing is persisted).

Shared by `kubectl clusternet apply` and the hub's shadow API, so a template is accepted or refused the same way
through both. The dry run happens in the template's own namespace when the parent has it, else in
clusternet-reserved (templates' namespaces usually exist only in the children).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from clusternet_api import known
from clusternet_api.kube import ApiException, Headers, Kube

APPLY_PATCH = "application/apply-patch+yaml"
PathOf = Callable[[str | None, str | None], str]  # (namespace, name) -> REST path of the template's resource


async def dry_run_template(kube: Kube, path_of: PathOf, obj: Mapping[str, Any],
                           namespace_exists: Callable[[str], Awaitable[bool]], field_manager: str,
                           before_reserved: Callable[[], Awaitable[None]] | None = None,
                           extra_headers: Headers = ()) -> None:
    """Raise the parent's ApiException when it refuses the template. `path_of` gives the resource's path,
    `namespace_exists` whether the parent has a namespace, `before_reserved` runs before clusternet-reserved is
    used (to create it); `extra_headers` go with the dry run (the hub's impersonation of the user)."""
    body = copy.deepcopy(dict(obj))
    namespace = str((body.get("metadata") or {}).get("namespace") or "") or None
    if namespace and not await namespace_exists(namespace):
        if before_reserved is not None:
            await before_reserved()
        namespace = known.RESERVED_NAMESPACE
        body["metadata"]["namespace"] = namespace
    try:  # a create gives the clearest validation messages ...
        await kube.request("POST", path_of(namespace, None), body,
                           query={"fieldManager": field_manager, "dryRun": "All"}, extra_headers=extra_headers)
    except ApiException as exc:
        if exc.status != 409:
            raise
        # ... but the parent may have a real object of that name (e.g. Namespace default): apply instead
        await kube.request("PATCH", path_of(namespace, str(body["metadata"]["name"])), body,
                           content_type=APPLY_PATCH, extra_headers=extra_headers,
                           query={"fieldManager": field_manager, "force": "true", "dryRun": "All"})
