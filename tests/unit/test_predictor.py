"""The predictor's two ends: the agent's built-in one answering in-process, the hub reading answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clusternet_agent.predictor import BUILTIN_ADDRESS, BuiltinPredictor, status_fields, tunnel_target
from clusternet_agent.tunnel import StreamDialer
from clusternet_api import known
from clusternet_hub.predictor import PredictorError, parse_answer
from tests.unit.test_dynamic_dividing import node, pod


class Child:
    """This cluster's API server as the predictor reads it: Nodes, and the live Pods."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.asked = fail, []  # type: ignore[var-annotated]

    async def list(self, api_version: str, kind: str, **_: Any) -> list[dict[str, Any]]:
        if self.fail:
            raise ConnectionRefusedError("connection refused")
        if kind == "Node":
            return [node("a", cpu="4"), node("b", cpu="2")]
        one = {"kind": kind, "spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"resources": {"requests": {"cpu": "1"}}}]}}}, "status": {"replicas": 1}}
        return [one] if kind == "StatefulSet" else []  # one pod of it still to come

    async def request(self, method: str, path: str, query: dict[str, str] | None = None) -> dict[str, Any]:
        self.asked.append((method, path, query))
        return {"items": [pod("a", "1")]}


async def ask(predictor: BuiltinPredictor, body: bytes, path: str = "/replicas/predict") -> tuple[int, Any]:
    reader, writer = await predictor.connect()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: predictor\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    answer = await reader.read()
    writer.close()
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def test_the_built_in_predictor_answers_in_process_as_clusternets_does() -> None:
    child = Child()
    predictor = BuiltinPredictor(child)  # type: ignore[arg-type]
    status, answer = await ask(predictor, json.dumps({"resources": {"requests": {"cpu": "1"}}}).encode())
    assert (status, answer) == (200, {"replicas": {"default": 3 + 2 - 1}})
    assert child.asked == [("GET", "/api/v1/pods", {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed",
                                                     "resourceVersion": "0"})]
    status, answer = await ask(predictor, b"[1]")
    assert status == 400 and "not ReplicaRequirements" in answer["message"]
    status, _ = await ask(predictor, b"{}", path="/other")
    assert status == 404
    status, answer = await ask(BuiltinPredictor(Child(fail=True)), b"{}")  # type: ignore[arg-type]
    assert status == 503 and "connection refused" in answer["message"]
    await predictor.close()


def test_the_status_says_where_the_predictor_is() -> None:
    assert status_fields(False, None, False) == {"predictorEnabled": False}
    assert status_fields(True, None, True) == {"predictorEnabled": True, "predictorAddress": BUILTIN_ADDRESS,
                                               "predictorDirectAccess": False}
    assert status_fields(True, "https://p.example", True)["predictorDirectAccess"] is True
    assert BUILTIN_ADDRESS == "http://predictor.clusternet.local"


def test_the_tunnel_dials_the_predictor_only_when_it_should() -> None:
    assert tunnel_target("http://predictor.svc:8080", direct=False) == "predictor.svc:8080"
    assert tunnel_target("http://predictor.svc", direct=False) == "predictor.svc:80"
    assert tunnel_target("http://predictor.svc", direct=True) is None
    assert tunnel_target("https://predictor.svc", direct=False) is None
    plain = StreamDialer("https://127.0.0.1:6443", None)
    assert not plain.allow(known.TUNNEL_PREDICTOR_ADDRESS)

    async def connect() -> Any:
        raise AssertionError("not dialled")

    assert StreamDialer("https://127.0.0.1:6443", None, predictor=connect).allow(known.TUNNEL_PREDICTOR_ADDRESS)
    assert StreamDialer("https://127.0.0.1:6443", None, plain=("p:80",)).allow("p:80")


@pytest.mark.parametrize(("data", "error"), [
    (b"not json", "not a predictor's answer"),
    (b'{"replicas": {}}', "not a predictor's answer"),
    (b'{"replicas": {"default": -1}}', "not a replica count"),
    (b'{"replicas": {"default": true}}', "not a replica count"),
])
def test_the_hub_takes_only_a_count_as_an_answer(data: bytes, error: str) -> None:
    assert parse_answer(b'{"replicas": {"default": 7}}') == 7
    with pytest.raises(PredictorError, match=error):
        parse_answer(data)


async def test_the_hub_asks_a_direct_predictor_and_names_each_cluster_that_cannot_answer() -> None:
    from aiohttp import web

    from clusternet_core.dynamic import PredictionRequest
    from clusternet_hub.predictor import Predictor

    seen: list[tuple[str, Any]] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append((request.headers["Cluster-ID"], await request.json()))
        return web.json_response({"replicas": {"default": 4}})

    app = web.Application()
    app.router.add_post("/replicas/predict", predict)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def cluster(cluster_id: str, **status: Any) -> dict[str, Any]:
        return {"spec": {"clusterId": cluster_id}, "status": status}

    class NoTunnels:
        async def http_for(self, cluster_id: str) -> None:
            return None

    hub = Predictor(NoTunnels())  # type: ignore[arg-type]
    try:
        answers = await hub.ask(PredictionRequest(
            clusters=[("ns/direct", cluster("id-1", predictorEnabled=True, predictorDirectAccess=True,
                                            predictorAddress=f"http://127.0.0.1:{port}")),
                      ("ns/off", cluster("id-2", predictorEnabled=False)),
                      ("ns/cut", cluster("id-3", predictorEnabled=True, predictorAddress=BUILTIN_ADDRESS))],
            requirements={"apps/v1/Deployment/d/web": {"resources": {"requests": {"cpu": "1"}}}}))
    finally:
        await hub.close()
        await runner.cleanup()
    assert answers == {"ns/direct": {"apps/v1/Deployment/d/web": 4},
                       "ns/off": "its agent runs no predictor (feature gate Predictor)",
                       "ns/cut": "its tunnel is down"}
    assert seen == [("id-1", {"resources": {"requests": {"cpu": "1"}}})]
