"""`approve` / `deny`: an admin's verdict on pending ClusterRegistrationRequests (hub started with
--cluster-approval=Manual).

Not in Clusternet, whose hub approves every request itself; here the verdict is an annotation on the request,
which the hub acts on (so RBAC on ClusterRegistrationRequests decides who may approve).
"""

from __future__ import annotations

import click

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_kubectl.errors import api_error
from clusternet_kubectl.session import Session

CRR_API_VERSION = known.CLUSTERS_API_VERSION


async def verdict_command(session: Session, requests: tuple[str, ...], verdict: str, reason: str) -> int:
    """Record `verdict` (Approved or Denied) on each request, named as itself or by the cluster id."""
    failed = False
    for ref in requests:
        name = ref if ref.startswith("clusternet-") else f"clusternet-{ref}"
        annotations = {known.ANNOTATION_APPROVAL: verdict, known.ANNOTATION_DENIAL_REASON: reason or None}
        try:
            crr = await session.kube.patch(CRR_API_VERSION, "ClusterRegistrationRequest", name,
                                           {"metadata": {"annotations": annotations}})
        except ApiException as exc:
            failed = True
            click.echo(api_error(exc), err=True)
            continue
        result = (crr.get("status") or {}).get("result")
        note = f" (already {result}; the verdict applies to pending requests only)" if result else ""
        click.echo(f"clusterregistrationrequest.clusters.clusternet.io/{name} {verdict.lower()}{note}")
    return 1 if failed else 0
