"""Where the hub changes kopf's behaviour: its watch-streams outlive a restarting parent, and its own patches are
fenced like ours.

Watches. kopf retries a watch that fails with 429 and treats any other API error as fatal for the whole operator
(its design: crash and let Kubernetes restart the pod). A kube-apiserver starting again answers 404 "page not
found" for custom resources until its CRD handler has caught up: seen in tests/integration/test_faults.py, where
the hub exited 2 s after the parent came back, so nothing recovered by itself. That 404 is transient. The hub
watches only its own CRDs, without which it cannot run at all, so a 404 on their watch is waited out as kopf waits
out a 429: logged, then the stream starts again after `settings.watching.reconnect_backoff`. Clusternet's
informers (client-go reflectors) retry every watch error alike. kopf offers no setting for this, hence the wrapper
around its stream function (kopf 1.45; the unit test fails if kopf renames it).

Patches. kopf writes its own bookkeeping (finalizers, handler progress, the last-handled state) with its own
client, which our write fence (clusternet_api.fence) did not see: after a freeze past the Lease, a deposed
leader's kopf could still remove a finalizer or rewrite the diff base the new leader's kopf reads. kopf runs
inside the leader's fenced work, so its tasks carry the fence too; its patch function now asks the fence first
and raises LeadershipLost like our own writes. Client-go based operators (Clusternet's) have no such fence.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import errors, patching, watching

from clusternet_api import fence

log = logging.getLogger(__name__)
_kopf_continuous_watch = watching.continuous_watch
_kopf_patch_obj = patching.patch_obj


async def continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    """kopf's stream, ended instead of failed on 404, so kopf's endless loop starts it again."""
    try:
        async for event in _kopf_continuous_watch(**kwargs):
            yield event
    except errors.APINotFoundError as e:
        log.warning("watch of %s answered 404 (%s): the API server may be starting; watching again",
                    kwargs.get("resource"), e)


async def patch_obj(**kwargs: Any) -> Any:
    """kopf's patch, refused (LeadershipLost) when the task's fence says the Lease may have passed on."""
    fence.check("PATCH")
    return await _kopf_patch_obj(**kwargs)


def install() -> None:
    """Put the wrappers in place of kopf's functions (idempotent)."""
    watching.continuous_watch = continuous_watch
    patching.patch_obj = patch_obj
