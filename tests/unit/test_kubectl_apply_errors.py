"""`kubectl clusternet apply` of a Clusternet object with a field its schema lacks: kubectl's `unknown field`.

The sixth audit applied a Subscription with `spec.subscriber` (for `subscribers`): the plugin server-side applies
Clusternet kinds, and kube-apiserver 1.20 refuses such a patch with HTTP 500 `failed to create typed patch
object: .spec.subscriber: field not declared in schema`, printed as `Error from server (500)`, which reads like a
failure of the server. Other refusals keep kubectl's `Error from server (...)` form.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusternet_api import known
from clusternet_api.kube import ApiException
from clusternet_kubectl.commands.apply import apply_command
from clusternet_kubectl.documents import Document
from clusternet_kubectl.errors import unknown_fields
from clusternet_kubectl.session import Session

TYPED_PATCH_500 = "failed to create typed patch object: .spec.subscriber: field not declared in schema"


def refusal(status: int, message: str, reason: str = "") -> ApiException:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "code": status,
            **({"reason": reason} if reason else {})}
    return ApiException(status, message, json.dumps(body).encode())


class RefusingParent:
    """Serves Subscriptions; refuses every server-side apply with `error`."""

    def __init__(self, error: ApiException) -> None:
        self.error = error

    async def resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        return kind.lower() + "s", True

    async def resources(self, api_version: str) -> list[Any]:
        return []

    async def raw(self, method: str, path: str, *args: Any, **kw: Any) -> tuple[int, Any]:
        return 404, {"kind": "Status", "code": 404}

    async def request(self, method: str, path: str, *args: Any, **kw: Any) -> Any:
        raise self.error


def subscription() -> Document:
    obj = {"apiVersion": known.APPS_API_VERSION, "kind": "Subscription",
           "metadata": {"name": "badfield", "namespace": "default"},
           "spec": {"subscriber": [{"clusterAffinity": {}}], "feeds": []}}
    return Document("badfield-sub.yaml", obj)


async def apply(capsys: pytest.CaptureFixture[str], error: ApiException) -> tuple[int, str]:
    code = await apply_command(Session(RefusingParent(error), "default"), [subscription()])  # type: ignore[arg-type]
    return code, capsys.readouterr().err


async def test_a_field_the_schema_lacks_is_an_unknown_field_not_a_server_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, err = await apply(capsys, refusal(500, TYPED_PATCH_500))
    assert code == 1
    assert err == ('error: subscription.apps.clusternet.io/badfield (namespace default) from badfield-sub.yaml: '
                   'unknown field "spec.subscriber"\n')
    # later kube-apiservers answer 400, and name the object; several fields are each named
    later = ("failed to create typed patch object (default/badfield; apps.clusternet.io/v1alpha1, Kind=Subscription):"
             " errors:\n  .spec.subscriber: field not declared in schema\n  .spec.feeds[0].nme: field not declared in "
             "schema")
    code, err = await apply(capsys, refusal(400, later, "BadRequest"))
    assert code == 1 and err.endswith(': unknown field "spec.subscriber", unknown field "spec.feeds[0].nme"\n'), err


async def test_other_refusals_keep_kubectls_error_from_server(capsys: pytest.CaptureFixture[str]) -> None:
    forbidden = 'subscriptions.apps.clusternet.io "badfield" is forbidden: User "u" cannot patch resource'
    code, err = await apply(capsys, refusal(403, forbidden, "Forbidden"))
    assert code == 1 and err.endswith(f"badfield-sub.yaml: Error from server (Forbidden): {forbidden}\n"), err
    assert unknown_fields(refusal(500, "failed to create typed patch object: some other problem")) is None
    assert unknown_fields(refusal(500, "etcdserver: request timed out")) is None
