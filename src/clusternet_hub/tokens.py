"""The agent's token on an approved request: what it is sealed to, and when the hub issues the next one.

An agent may patch its own request, so nothing here trusts what it wrote alone: the hub keeps its own copy of the
token's issue time and of the key it sealed the token to in the request's status, which only the hub writes. Under
Clusternet's CRDs, which prune those two status fields, the annotations alone decide, as they did before the
copies existed. Clusternet writes the token in plain text and refreshes nothing (its tokens do not expire).
"""

from __future__ import annotations

import base64
import datetime
import hashlib

from clusternet_api import known
from clusternet_api.kube import Obj
from clusternet_api.sealing import SealingError, is_sealed, public_key
from clusternet_api.timefmt import RFC3339

NO_KEY = known.DENIED_FOR_NO_KEY  # why a request without a key is refused by a hub without --allow-unsealed-tokens


def key_problem(crr: Obj, allow_unsealed: bool) -> str | None:
    """What is wrong with the request's public key (the token is sealed to it), None when nothing is."""
    key = _key(crr)
    if not allow_unsealed and not key:
        return NO_KEY
    if key:
        try:
            public_key(key)
        except SealingError as e:
            return str(e)
    return None


def key_digest(key: str) -> str:
    """What status.sealedTo records of the public key a token was sealed to (16 hex digits of a SHA-256)."""
    return hashlib.sha256(key.strip().encode()).hexdigest()[:16]


def key_dropped(crr: Obj, allow_unsealed: bool) -> str | None:
    """The key problem of an approved request whose token the hub sealed (the status, which only the hub writes,
    says so): its agent has since removed or broken the key it registered with. None otherwise:
    - for the very key the token was sealed to (`status.sealedTo`), even one a later hub judges unusable (a
      stricter check, say): the agent changed nothing, so the hub's change only denies the request, as below;
    - for a request approved without a key (Clusternet's agent) that a hub restarted without
      --allow-unsealed-tokens refuses: that change is the hub's, not the agent's, so the cluster keeps its
      credentials (the request is only Denied; a hub started with the flag again approves it again:
      known.denied_for_the_hub).
    A request approved by a hub that did not record `sealedTo` (or under Clusternet's CRDs, which prune it) is
    judged by its key as it is now."""
    status = crr.get("status") or {}
    if status.get("result") != "Approved" or not status.get("token"):
        return None
    key, sealed_to = _key(crr), status.get("sealedTo")
    if sealed_to:
        return None if key and key_digest(key) == sealed_to else key_problem(crr, allow_unsealed)
    try:
        sealed = is_sealed(base64.b64decode(status["token"]))
    except ValueError:
        return None
    return key_problem(crr, allow_unsealed) if sealed else None


def _key(crr: Obj) -> str | None:
    key = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_AGENT_PUBLIC_KEY)
    return str(key) if key else None


ISSUED_AT_SKEW = 300  # seconds an issue time may lie ahead of the hub's clock (another replica's clock)
# Seconds after the hub's own record of the last issue (status.tokenIssuedAt) during which the agent's annotation
# cannot make the token due: each refresh costs about ten parent requests (a TokenRequest, the RBAC, the token
# Secrets, two patches), and the sixth audit got ten re-issues out of ten annotation writes in 12 s.
REISSUE_FLOOR = 60


def token_is_due(crr: Obj, ttl_seconds: int, now: datetime.datetime | None = None) -> bool:
    """An approved request needs a fresh sealed token once half the token's lifetime has passed.

    The issue time is kept twice: in an annotation, which the agent may also write, and in the status
    (`tokenIssuedAt`), which only the hub writes. The token is due when either says so, so an agent can bring its
    refresh sooner (it could always ask for one) but never put it off, and with it the checks a refresh makes (its
    key, its RBAC, its token Secrets), by writing "now" into the annotation again and again. An annotation that is
    missing, cannot be read, or lies in the future makes the token due (one that could not be read raised at every
    refresh pass); a status without the field (an older hub's approval, or Clusternet's CRDs, which prune it)
    leaves the annotation to decide, as before. Within REISSUE_FLOOR of the status's issue time the annotation
    cannot bring a refresh, so an agent writing it again and again costs the parent one refresh a minute at most."""
    now = now or datetime.datetime.now(datetime.UTC)
    annotated = (crr["metadata"].get("annotations") or {}).get(known.ANNOTATION_TOKEN_ISSUED_AT)
    recorded = (crr.get("status") or {}).get("tokenIssuedAt")
    if recorded is None:
        return _due(annotated, ttl_seconds, now)
    recorded_age = _age(recorded, now)
    if recorded_age is not None and -ISSUED_AT_SKEW <= recorded_age < REISSUE_FLOOR:
        return False
    return _due(annotated, ttl_seconds, now) or _due(recorded, ttl_seconds, now)


def _age(issued: object, now: datetime.datetime) -> float | None:
    """Seconds since `issued` (RFC 3339), None when it is missing or cannot be read."""
    if not issued:
        return None
    try:
        issued_at = datetime.datetime.strptime(str(issued), RFC3339).replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return (now - issued_at).total_seconds()


def _due(issued: object, ttl_seconds: int, now: datetime.datetime) -> bool:
    age = _age(issued, now)
    return age is None or age >= ttl_seconds / 2 or age < -ISSUED_AT_SKEW
