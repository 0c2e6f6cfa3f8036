"""Who this cluster is: a stable cluster ID and the agent's private key, both kept in the child.

Cluster ID: the UID of the child's `kube-system` namespace. Clusternet uses the UID of the agent's
leader-election Lease, which changes when the agent is uninstalled and installed again (the Lease goes
with it), so the same cluster registers as a new one. kube-system lives as long as the cluster does.
"""

from __future__ import annotations

import base64

from clusternet_api import known
from clusternet_api.kube import Kube, is_status
from clusternet_api.sealing import generate_private_key


async def cluster_id(child: Kube) -> str:
    ns = await child.get("v1", "Namespace", "kube-system")
    if ns is None:
        raise RuntimeError("the child cluster has no kube-system namespace to derive a cluster ID from")
    return str(ns["metadata"]["uid"])


async def ensure_namespace(child: Kube, name: str) -> None:
    if await child.get("v1", "Namespace", name) is None:
        await child.create_or_get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def load_or_create_key(child: Kube, namespace: str) -> bytes:
    """The agent's private key (PEM; X25519, or RSA when made by an older agent), created once and kept in a Secret
    of the child."""
    secret = await child.get("v1", "Secret", known.AGENT_KEY_SECRET, namespace)
    if secret and (secret.get("data") or {}).get("key.pem"):
        return base64.b64decode(secret["data"]["key.pem"])
    pem = generate_private_key()
    try:
        await child.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                            "metadata": {"name": known.AGENT_KEY_SECRET, "namespace": namespace,
                                         "labels": {known.LABEL_CREATED_BY: known.CREATED_BY_AGENT}},
                            "data": {"key.pem": base64.b64encode(pem).decode()}})
    except Exception as e:
        if not is_status(e, 409):
            raise
        return await load_or_create_key(child, namespace)  # another replica won the race
    return pem
