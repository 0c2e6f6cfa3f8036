"""An inline kubeconfig for the Helm SDK, built from a ClusterAccess.

The SDK takes cluster access as a kubeconfig (its individual flags have no client certificate or CA data), so
the driver writes one per operation. Everything travels as *-data fields: no file of ours holds a token or key;
the SDK keeps the text in a private temporary file that it removes when its Config is closed. The text itself
holds secrets, so it is never logged and never part of an exception.
"""

from __future__ import annotations

import base64

import yaml

from clusternet_api.helm.driver import ClusterAccess

_NAME = "target"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_yaml(access: ClusterAccess, namespace: str) -> str:
    """One cluster, one user, one context (current, with `namespace`).

    Token and client certificate are passed as given (both when both are set, as kubectl would). Without a CA
    the system roots verify the server; verification is never switched off.
    """
    cluster: dict[str, str] = {"server": access.server}
    if access.ca_pem:
        cluster["certificate-authority-data"] = _b64(access.ca_pem)
    if access.tls_server_name:
        cluster["tls-server-name"] = access.tls_server_name
    user: dict[str, str] = {}
    if access.token:
        user["token"] = access.token
    if access.cert_pem and access.key_pem:
        user["client-certificate-data"] = _b64(access.cert_pem)
        user["client-key-data"] = _b64(access.key_pem)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": _NAME, "cluster": cluster}],
        "users": [{"name": _NAME, "user": user}],
        "contexts": [{"name": _NAME, "context": {"cluster": _NAME, "user": _NAME, "namespace": namespace}}],
        "current-context": _NAME,
    }
    return yaml.safe_dump(config, sort_keys=False)
