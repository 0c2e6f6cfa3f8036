"""`approve` / `deny`: an admin's verdict on pending ClusterRegistrationRequests (hub started with
--cluster-approval=Manual), and on those the hub denied only for want of a key (known.DENIED_FOR_NO_KEY), which a
hub that no longer refuses them looks at again.

Not in Clusternet, whose hub approves every request itself; here the verdict is an annotation on the request,
which the hub acts on (so RBAC on ClusterRegistrationRequests decides who may approve).
"""

from __future__ import annotations

import click

from clusternet_api import known
from clusternet_api.kube import ApiException, Obj
from clusternet_kubectl.errors import api_error
from clusternet_kubectl.session import Session

CRR_API_VERSION = known.CLUSTERS_API_VERSION
KIND = "clusterregistrationrequest.clusters.clusternet.io"


def refusal(crr: Obj, verdict: str) -> str | None:
    """Why a verdict cannot apply to a request that has a result already, in one line; None when it can.

    A verdict applies to pending requests only. Written on a decided one it changed nothing but left a stale
    annotation contradicting the status (audit F10), a trap at the next registration. Repeating the result
    is no error (as `kubectl certificate approve` on an approved CSR); reversing it is (as `deny` there). A
    request Denied only for a reason of the hub's is still open: the hub looks at it again once it no longer
    refuses it (the flag --allow-unsealed-tokens back, a key, a hub upgraded to seal to X25519 keys), and then
    follows the verdict (re-review s34, finding 3)."""
    name, status = crr["metadata"]["name"], crr.get("status") or {}
    result = status.get("result")
    if not result or result == verdict or known.denied_for_the_hub(crr):
        return None
    if result == "Approved":
        ns = status.get("dedicatedNamespace") or "<its namespace>"
        return (f"error: {KIND}/{name} is already approved (cluster {status.get('managedClusterName') or '?'} in "
                f"namespace {ns}); to remove the cluster, delete its namespace on the parent (kubectl delete "
                f"namespace {ns}) and uninstall its agent, see \"Remove or re-add a cluster\" in the README")
    return (f"error: {KIND}/{name} is already {str(result).lower()} ({status.get('errorMessage') or 'no reason'}); "
            f"to let the cluster ask again, delete the request (kubectl delete clusterregistrationrequest {name}) "
            "and approve the new one its agent creates")


async def verdict_command(session: Session, requests: tuple[str, ...], verdict: str, reason: str) -> int:
    """Record `verdict` (Approved or Denied) on each pending request, named as itself, by the cluster id, or by
    the cluster name its agent asked for (spec.clusterName, as `--cluster-id` accepts names too)."""
    failed = False
    for ref in requests:
        try:
            name = await request_name(session, ref)
            failed = not await record_verdict(session, name, verdict, reason) or failed
        except ApiException as exc:
            failed = True
            click.echo(api_error(exc), err=True)
    return 1 if failed else 0


async def request_name(session: Session, ref: str) -> str:
    """The request `ref` names: `clusternet-<id>` as given or for an id; else the one request whose
    spec.clusterName is `ref`, if exactly one is (else the id form, whose NotFound then says what to give)."""
    name = ref if ref.startswith("clusternet-") else f"clusternet-{ref}"
    if await session.kube.get(CRR_API_VERSION, "ClusterRegistrationRequest", name) is not None:
        return name
    named = [c["metadata"]["name"] for c in await session.kube.list(CRR_API_VERSION, "ClusterRegistrationRequest")
             if (c.get("spec") or {}).get("clusterName") == ref]
    return named[0] if len(named) == 1 else name


async def record_verdict(session: Session, name: str, verdict: str, reason: str) -> bool:
    """Annotate one request, unless it has a result already (but a denial for a reason of the hub's:
    known.denied_for_the_hub); False when refused. The write carries the resourceVersion read, so a request the hub
    decides meanwhile is not annotated after all (HTTP 409)."""
    crr = await session.kube.get(CRR_API_VERSION, "ClusterRegistrationRequest", name)
    if crr is None:
        click.echo(f'Error from server (NotFound): clusterregistrationrequests.clusters.clusternet.io "{name}" '
                   "not found (give a cluster ID, a request's name or the cluster name its agent asked for, as "
                   "`kubectl get clsrr` lists them; a name two requests ask for is ambiguous)", err=True)
        return False
    problem = refusal(crr, verdict)
    if problem:
        click.echo(problem, err=True)
        return False
    if (crr.get("status") or {}).get("result") == verdict and not known.denied_for_the_hub(crr):
        click.echo(f"{KIND}/{name} already {verdict.lower()}")
        return True
    # an approval names the uid read (registration.admin_verdict): the requester could not have written it
    annotations = {known.ANNOTATION_APPROVAL: verdict, known.ANNOTATION_DENIAL_REASON: reason or None,
                   known.ANNOTATION_APPROVED_UID: crr["metadata"].get("uid") if verdict == "Approved" else None}
    await session.kube.patch(CRR_API_VERSION, "ClusterRegistrationRequest", name, {"metadata": {
        "annotations": annotations, "resourceVersion": crr["metadata"].get("resourceVersion")}})
    click.echo(f"{KIND}/{name} {verdict.lower()}")
    return True
