"""Registering the child with the parent and keeping the parent credentials usable.

Order: reuse the stored credentials (Secret clusternet-system/parent-cluster) while the parent URL is the
same and they still work; otherwise register with the bootstrap token: create the
ClusterRegistrationRequest `clusternet-<clusterID>` carrying our public key, wait for approval with
backoff, unseal the token, pin the parent CA the hub returned, and store it all.

Registration verifies the parent with the CA given (--parent-ca-file, parentCA of the bootstrap Secret) or, for a
bootstrap token without one, the CA read from the parent's signed cluster-info (discovery.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from clusternet_agent import discovery
from clusternet_agent.options import AgentOptions
from clusternet_api import known
from clusternet_api.backoff import jittered
from clusternet_api.kube import ApiException, Credentials, Kube, Obj
from clusternet_api.logs import error_text
from clusternet_api.redaction import redact_url
from clusternet_api.sealing import SealingError, is_sealed, public_key_of, unseal

log = logging.getLogger(__name__)
CRR_API = known.CLUSTERS_API_VERSION
# Longest pause between two reads of our pending CRR. The bootstrap role grants get, not watch; a GET of
# one object every 0.25 s per registering agent is cheap, and registration should not wait on a timer.
POLL_CAP = 0.25
# ... for the first BRISK_SECONDS only: a request still pending after that waits on a busy hub (or a person), and
# a thousand agents registering at once at 4 GETs a second each had the parent shed load with HTTP 429 and the
# hub's own approval requests time out (bench/scale.py, 1,000 clusters). Later reads back off to SLOW_POLL_CAP.
BRISK_SECONDS = 5.0
SLOW_POLL_CAP = 5.0
# ... and, once it has waited longer, a tenth of how long it has waited (PATIENT_SHARE), up to PATIENT_POLL_CAP: a
# request pending for minutes waits on a hub that works through a queue, or on a person. Over one wait (register's
# approval_timeout, 300 s) a request is read 50 times instead of 83: a thousand clusters waiting for a person cost
# the parent about 170 GETs a second instead of 280. At 1,000 clusters registering at once (bench/scale.py,
# 2026-12-07) these GETs were 30.8 per cluster, 46 % of the parent's requests, and 23.7 per cluster with this rule;
# registration took as long (the parent's API server stays busy with the rest: bench/README.md). Below 50 s of
# waiting (20 or 100 clusters at once) nothing changes.
PATIENT_SHARE = 0.1
PATIENT_POLL_CAP = 30.0
# How often the agent of a denied or removed cluster reads its request, to register again as soon as an admin has
# deleted it (README, "Remove or re-add a cluster"): one GET every 5 s per such cluster for the first 5 minutes (an
# admin undoing a mistake), every 30 s after, against up to a minute's wait before (the suite's re-adds waited 48-72 s
# each). A thousand clusters removed at once cost the parent 200 small GETs a second for those 5 minutes, 33 after.
REFUSED_RECHECK_SECONDS, REFUSED_BRISK_SECONDS, REFUSED_RECHECK_SLOW_SECONDS = 5.0, 300.0, 30.0


class RegistrationError(RuntimeError):
    """Registration cannot go on; `retry` says whether trying again later can help. `request`: the request (name,
    result) whose deletion or new result by an admin makes it worth trying again at once (wait_while_refused)."""

    def __init__(self, message: str, retry: bool = True, request: tuple[str, str | None] | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.request = request


async def wait_while_refused(opts: AgentOptions, request: tuple[str, str | None], seconds: float,
                             refused_for: float = 0.0) -> None:
    """Wait up to `seconds`, but only until the request is deleted or its result changes (an admin re-adding or
    approving the cluster): it is read with the bootstrap credentials, whose role grants get, every
    REFUSED_RECHECK_SECONDS while it has been refused for less than REFUSED_BRISK_SECONDS (`refused_for`), then every
    REFUSED_RECHECK_SLOW_SECONDS. One that cannot be read (the bootstrap token since deleted, say) is waited out in
    full. The reads come from the parent's watch cache (resourceVersion=0), as the pending request's polls do:
    a change seen a moment late only ends the wait a moment late. Clusternet's agent retries on a timer."""
    name, result = request
    deadline = time.monotonic() + seconds
    every = REFUSED_RECHECK_SECONDS if refused_for < REFUSED_BRISK_SECONDS else REFUSED_RECHECK_SLOW_SECONDS
    try:
        async with Kube(bootstrap_credentials(opts), user_agent="clusternet-agent") as parent:
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(every, left))
                crr = await parent.get(CRR_API, "ClusterRegistrationRequest", name, cached=True)
                if crr is None or (crr.get("status") or {}).get("result") != result:
                    return
    except Exception as e:  # never a retry at once (review s38): the rest of the wait is slept
        log.debug("cannot read ClusterRegistrationRequest %s while refused: %s", name, e)
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


@dataclass
class ParentAccess:
    """What the agent needs to act on the parent as this cluster."""

    creds: Credentials
    namespace: str
    managed_cluster: str
    cluster_id: str


MIN_TOKEN_SECONDS = 600  # the shortest token a TokenRequest may ask for (kube-apiserver refuses less)


def _claims(token: str) -> dict[str, Any]:
    """A JWT's claims, without verifying it ({} when it is not one): only to plan refreshes."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT (seconds since the epoch)."""
    try:
        return float(_claims(token)["exp"])
    except (KeyError, TypeError, ValueError):
        return None


def token_lifetime(token: str) -> float | None:
    """How long the token was issued for (`exp` - `iat`): what the hub's --agent-token-ttl gave it."""
    claims = _claims(token)
    try:
        return float(claims["exp"]) - float(claims["iat"])
    except (KeyError, TypeError, ValueError):
        return None


def describe_error(e: BaseException, parent_url: str) -> str:
    """A sentence a person can act on, for the ways talking to the parent fails."""
    if isinstance(e, ApiException):
        if e.status == 401:
            return (f"the parent {parent_url} rejected the registration token (HTTP 401): it is wrong, "
                    "expired or deleted; create a new bootstrap token and update --cluster-reg-token")
        if e.status == 403:
            return (f"the parent {parent_url} refused this request (HTTP 403): the token lacks the "
                    f"{known.BOOTSTRAP_CLUSTER_ROLE} ClusterRole (create and get on "
                    "clusterregistrationrequests)")
        return f"the parent {parent_url} answered HTTP {e.status}: {e.reason}"
    if isinstance(e, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return (f"the parent {parent_url} presented a certificate this agent does not trust ({e}); give the "
                f"parent's CA with --parent-ca-file or as parentCA in the {known.SYSTEM_NAMESPACE}/"
                f"{known.AGENT_BOOTSTRAP_SECRET} Secret")
    if isinstance(e, aiohttp.ClientError | OSError | asyncio.TimeoutError):
        return f"the parent {parent_url} is unreachable: {error_text(e)}"
    return f"{type(e).__name__}: {e}"


async def read_stored(child: Kube, opts: AgentOptions) -> Obj | None:
    return await child.get("v1", "Secret", known.PARENT_CREDENTIALS_SECRET, opts.namespace)


def stored_access(secret: Obj, cluster_id: str) -> ParentAccess:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    labels = secret["metadata"].get("labels") or {}
    creds = Credentials(server=data["apiserver-advertise-url"].decode(), ca_pem=data.get("ca.crt") or None,
                        token=data["token"].decode())
    return ParentAccess(creds, data["namespace"].decode(), labels.get(known.LABEL_CLUSTER_NAME, ""),
                        cluster_id)


async def store(child: Kube, opts: AgentOptions, access: ParentAccess) -> None:
    c = access.creds
    data = {"token": c.token or "", "namespace": access.namespace, "apiserver-advertise-url": c.server}
    if c.ca_pem:
        data["ca.crt"] = c.ca_pem.decode()
    secret = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": known.PARENT_CREDENTIALS_SECRET, "namespace": opts.namespace, "labels": {
            known.LABEL_BOOTSTRAPPING: known.CREDENTIALS_AUTO, known.LABEL_CLUSTER_ID: access.cluster_id,
            known.LABEL_CLUSTER_NAME: access.managed_cluster}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    await child.apply(secret, field_manager=known.CREATED_BY_AGENT)


async def credentials_work(access: ParentAccess) -> bool:
    """True when the parent accepts the stored token (it may read its own CRR)."""
    async with Kube(access.creds) as parent:
        try:
            crr = await parent.get(CRR_API, "ClusterRegistrationRequest", f"clusternet-{access.cluster_id}")
        except ApiException as e:
            if e.status in (401, 403):
                return False
            raise
        return crr is not None


async def ensure_bootstrap_ca(opts: AgentOptions) -> None:
    """Give registration a CA to verify the parent with: the one configured, else (bootstrap tokens only) the one
    of the parent's cluster-info, trusted because the token's signature over it verifies. Never none."""
    if opts.parent_ca_file or opts.parent_ca_pem is not None or opts.parent_insecure_skip_tls_verify:
        return
    assert opts.parent_url
    try:
        opts.parent_ca_pem = await discovery.discover_parent_ca(opts.parent_url, opts.reg_token or "")
    except discovery.DiscoveryError as e:
        raise RegistrationError(str(e), retry=e.retry) from e
    log.info("pinned the parent's CA from %s, signed with bootstrap token %s", discovery.CLUSTER_INFO,
             (opts.reg_token or "").split(".")[0])


def bootstrap_credentials(opts: AgentOptions) -> Credentials:
    assert opts.parent_url
    ca = Path(opts.parent_ca_file).read_bytes() if opts.parent_ca_file else opts.parent_ca_pem
    return Credentials(server=opts.parent_url, ca_pem=ca, token=opts.reg_token,
                       insecure=opts.parent_insecure_skip_tls_verify)


def registration_request(opts: AgentOptions, cluster_id: str, cluster_name: str, public_key: str) -> Obj:
    spec: Obj = {"clusterId": cluster_id, "clusterType": opts.cluster_type, "clusterName": cluster_name,
                 "syncMode": opts.sync_mode}
    if opts.cluster_namespace:
        spec["clusterNamespace"] = opts.cluster_namespace
    if opts.cluster_labels:
        spec["clusterLabels"] = dict(opts.cluster_labels)
    return {
        "apiVersion": CRR_API, "kind": "ClusterRegistrationRequest",
        "metadata": {
            "name": f"clusternet-{cluster_id}",
            "labels": {known.LABEL_REGISTERED_BY: known.CREATED_BY_AGENT, known.LABEL_CLUSTER_ID: cluster_id,
                       known.LABEL_CLUSTER_NAME: cluster_name},
            "annotations": {known.ANNOTATION_AGENT_PUBLIC_KEY: public_key},
        },
        "spec": spec,
    }


def default_cluster_name(opts: AgentOptions) -> str:
    suffix = "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=5))
    return opts.cluster_name or f"{opts.cluster_name_prefix}-{suffix}"


async def register(opts: AgentOptions, cluster_id: str, key_pem: bytes, approval_timeout: float = 300.0,
                   stale_token: str | None = None) -> ParentAccess:
    """Create or find our CRR on the parent and wait until it is approved; raise RegistrationError.

    `stale_token`: the token the parent just rejected. A request still Approved with it is not taken again
    (that was a loop of several re-registrations a second after an admin deleted the cluster's namespace): we
    wait for the hub to issue another or to mark the cluster removed, and say once what an admin can do."""
    public_key = public_key_of(key_pem)
    assert opts.parent_url
    if not opts.reg_token:
        raise RegistrationError("no usable parent credentials are stored and no --cluster-reg-token was "
                                "given to register with", retry=False)
    await ensure_bootstrap_ca(opts)
    async with Kube(bootstrap_credentials(opts), user_agent="clusternet-agent") as parent:
        name = f"clusternet-{cluster_id}"
        try:
            crr, created = await parent.create_or_get(
                registration_request(opts, cluster_id, default_cluster_name(opts), public_key))
            if created:
                log.info("created ClusterRegistrationRequest %s", name)
        except Exception as e:
            raise RegistrationError(describe_error(e, opts.parent_url)) from e
        waiting = Approval(parent, opts, cluster_id, key_pem, stale_token)
        if (crr.get("status") or {}).get("result") in ("Denied", "Failed"):
            waiting.usable(crr)  # raises with the hub's own words: they say why (a revocation: how to re-add)
        theirs = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_AGENT_PUBLIC_KEY)
        if theirs and theirs.strip() != public_key.strip():
            raise RegistrationError(
                f"ClusterRegistrationRequest {name} on the parent carries a public key other than this agent's: "
                f"another agent registered cluster ID {cluster_id}, or the key on the request was changed since "
                f"(with this cluster's parent credentials or by an admin). If this cluster was re-installed or its "
                f"key changed so, an admin must delete ClusterRegistrationRequest {name} on the parent.",
                retry=False, request=(name, (crr.get("status") or {}).get("result")))
        return await waiting.wait(crr, approval_timeout)


STALE_TOKEN_HINT = (
    "ClusterRegistrationRequest {name} is Approved, but the parent rejects the token it holds (the cluster's "
    "namespace, ServiceAccount or ManagedCluster was probably deleted on the parent); waiting for the hub to "
    "issue a new token or to mark the cluster removed. If neither happens, a parent admin can run: kubectl "
    "delete clusterregistrationrequest {name} (this cluster then registers again)")


class Approval:
    """Polls our pending CRR (briskly, then every SLOW_POLL_CAP, then further apart the longer it waits:
    PATIENT_SHARE) until it holds a token we may use."""

    def __init__(self, parent: Kube, opts: AgentOptions, cluster_id: str, key_pem: bytes,
                 stale_token: str | None) -> None:
        self.parent, self.opts, self.cluster_id, self.key_pem = parent, opts, cluster_id, key_pem
        self.name = f"clusternet-{cluster_id}"
        self.stale_token = stale_token
        self.told_pending = self.told_stale = False

    def usable(self, crr: Obj) -> ParentAccess | None:
        """The access an Approved request gives, unless it is the token the parent rejected; raise if Denied."""
        status = crr.get("status") or {}
        if status.get("result") == "Denied" or status.get("result") == "Failed":
            raise RegistrationError(f"the parent denied registration: {status.get('errorMessage')}",
                                    retry=False, request=(self.name, status.get("result")))
        if status.get("result") != "Approved" or not status.get("token"):
            return None
        access = access_from_approved(crr, self.opts, self.cluster_id, self.key_pem)
        if self.stale_token is None or access.creds.token != self.stale_token:
            return access
        if not self.told_stale:
            self.told_stale = True
            log.warning(STALE_TOKEN_HINT.format(name=self.name))
        return None

    async def wait(self, crr: Obj, patience: float) -> ParentAccess:
        started = time.monotonic()
        delay = 0.1  # the hub approves in well under a second; poll briskly, then settle at POLL_CAP
        while (access := self.usable(crr)) is None:
            elapsed = time.monotonic() - started
            if elapsed > patience:
                raise RegistrationError(f"ClusterRegistrationRequest {self.name} still holds the token the parent "
                                        "rejected" if self.told_stale else
                                        f"registration {self.name} not approved within {patience:.0f}s")
            if not self.told_pending and not self.told_stale and elapsed > 10:
                self.told_pending = True  # a hub with --cluster-approval=Manual waits for a person
                log.info("registration %s is still pending; if the hub approves manually, a parent admin must "
                         "run: kubectl clusternet approve %s", self.name, self.name)
            await asyncio.sleep(jittered(poll_pause(delay, elapsed)))
            delay = next_scheduled(delay, time.monotonic() - started)
            crr = await self.read()
        return access

    async def read(self) -> Obj:
        assert self.opts.parent_url
        try:
            # from the watch cache: 1,000 agents waiting made these GETs the parent's most frequent request
            got = await self.parent.get(CRR_API, "ClusterRegistrationRequest", self.name, cached=True)
        except Exception as e:
            raise RegistrationError(describe_error(e, self.opts.parent_url)) from e
        if got is None:
            raise RegistrationError(f"ClusterRegistrationRequest {self.name} was deleted while waiting")
        return got


def next_scheduled(delay: float, waited: float) -> float:
    """The schedule's pause after `delay`: doubling up to POLL_CAP for BRISK_SECONDS, up to SLOW_POLL_CAP after."""
    return min(delay * 2, POLL_CAP if waited < BRISK_SECONDS else SLOW_POLL_CAP)


def poll_pause(scheduled: float, waited: float) -> float:
    """The pause before the next read of a pending request: the schedule's, or PATIENT_SHARE of the wait so far."""
    return max(scheduled, min(PATIENT_SHARE * waited, PATIENT_POLL_CAP))


def access_from_approved(crr: Obj, opts: AgentOptions, cluster_id: str, key_pem: bytes) -> ParentAccess:
    status = crr["status"]
    blob = base64.b64decode(status["token"])
    try:
        token = unseal(blob, key_pem) if is_sealed(blob) else blob.decode()
    except SealingError as e:
        raise RegistrationError(str(e), retry=False) from e
    ca = base64.b64decode(status["caCertificate"]) if status.get("caCertificate") else None
    assert opts.parent_url
    creds = Credentials(server=opts.parent_url, ca_pem=ca or bootstrap_credentials(opts).ca_pem, token=token)
    return ParentAccess(creds, status["dedicatedNamespace"], status.get("managedClusterName", ""), cluster_id)


async def ensure_registered(child: Kube, opts: AgentOptions, cluster_id: str, key_pem: bytes) -> ParentAccess:
    """Stored credentials when they still work, else a (re-)registration whose result is stored."""
    assert opts.parent_url
    stale: str | None = None
    secret = await read_stored(child, opts)
    if secret is not None:
        try:
            access = stored_access(secret, cluster_id)
        except (KeyError, ValueError):
            access = None
            log.warning("stored parent credentials are incomplete; registering again")
        if access is not None and access.creds.server != opts.parent_url:
            log.info("parent URL changed from %s to %s; registering again", redact_url(access.creds.server),
                     redact_url(opts.parent_url))
        elif access is not None:
            try:
                if await credentials_work(access):
                    log.info("reusing stored parent credentials (namespace %s)", access.namespace)
                    return access
                log.warning("stored parent credentials were rejected; registering again")
                stale = access.creds.token
            except Exception as e:
                raise RegistrationError(describe_error(e, opts.parent_url)) from e
    access = await register(opts, cluster_id, key_pem, stale_token=stale)
    await store(child, opts, access)
    log.info("registered as %s in namespace %s", access.managed_cluster, access.namespace)
    return access


async def refresh_token(access: ParentAccess, parent: Kube, lifetime: int) -> str | None:
    """Ask the parent for a fresh token of our own ServiceAccount once 2/3 of the current one has passed. Never a
    longer one than the hub issued (its --agent-token-ttl): until 2026-12-06 every refresh asked for `lifetime`
    (24 h), so a hub issuing 1-hour tokens had agents holding, and storing in the child, 24-hour ones (audit s35).
    TokenRequest takes no less than 600 s."""
    issued = token_lifetime(access.creds.token or "")
    if issued is not None:
        lifetime = max(MIN_TOKEN_SECONDS, min(lifetime, int(issued)))
    exp = token_expiry(access.creds.token or "")
    if exp is None or exp - time.time() > lifetime / 3:
        return None
    status, body = await parent.raw(
        "POST", f"/api/v1/namespaces/{access.namespace}/serviceaccounts/clusternet-agent/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
         "spec": {"expirationSeconds": lifetime}}, content_type="application/json")
    if status != 201 or not isinstance(body, dict):
        log.warning("refreshing the parent token failed with HTTP %s", status)
        return None
    return str(body["status"]["token"])
