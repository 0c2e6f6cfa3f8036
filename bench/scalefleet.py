"""The simulated fleet of bench/scale.py: worker processes running many real agents each, and their seeding.

Each worker is this script run as a process: it reads its configuration (one JSON line) from stdin, then
commands (`start`, `stop`, `drop`, `status`, `exit`, one JSON line each) and answers each with one JSON line.
Its agents are `run_agent()` tasks (the real agent code); their tunnels go through the worker's `Relay`, so the
bench can cut every tunnel at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clusternet_api import eventloop, known
from clusternet_api.kube import Credentials, Kube
from common import BOOTSTRAP_TOKEN, REPO, SPAWNED, Proc
from measure import bounded

KEY_POOL = 8
AGENTS_PER_WORKER = 250


class Relay:
    """A TCP pass-through from 127.0.0.1:<port> to the hub, whose connections can all be cut at once."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.local_port = 0

    async def start(self) -> None:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=4096)
        self.local_port = server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self.conns.add(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.conns.discard(pair)

    def drop(self) -> int:
        n = len(self.conns)
        for down, up in list(self.conns):
            down.transport.abort()
            up.transport.abort()
        return n


async def worker_main(config: dict[str, Any]) -> None:
    from clusternet_agent.agent import run_agent
    from clusternet_agent.options import AgentOptions

    relay = Relay("127.0.0.1", int(config["hub_port"]))
    await relay.start()
    child = Credentials.from_kubeconfig(Path(config["child_kubeconfig"]))
    agents: dict[int, dict[str, Any]] = {a["index"]: a for a in config["agents"]}
    running: dict[int, tuple[asyncio.Event, asyncio.Task[None]]] = {}

    def options(a: dict[str, Any]) -> Any:
        return AgentOptions(
            parent_url=config["parent_url"], reg_token=BOOTSTRAP_TOKEN, parent_ca_file=config["parent_ca"],
            cluster_name=a["name"], cluster_id=a["cluster_id"], namespace=a["namespace"], sync_mode="Dual",
            cluster_labels=a.get("labels", {"bench": "scale"}),
            feature_gates={known.GATE_APP_PUSHER: True, known.GATE_SOCKET_CONNECTION: True},
            collect_frequency=float(config["collect"]), update_frequency=float(config["report"]),
            tunnel_url=f"https://127.0.0.1:{relay.local_port}", tunnel_ca_file=config["hub_ca"], deploys=True)

    def reply(**msg: Any) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    async def stop(ids: list[int]) -> None:
        pairs = [running.pop(i) for i in ids if i in running]
        for ev, _ in pairs:
            ev.set()
        if pairs:
            _, pending = await asyncio.wait([t for _, t in pairs], timeout=20)
            for t in pending:
                t.cancel()

    reply(event="ready", relay_port=relay.local_port)
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "start":
            for i in cmd["ids"]:
                if i not in running:
                    ev = asyncio.Event()
                    running[i] = (ev, asyncio.create_task(run_agent(options(agents[i]), ev, child), name=f"agent-{i}"))
            reply(ack="start", at=time.time())
        elif cmd["cmd"] == "stop":
            await stop(cmd["ids"])
            reply(ack="stop", at=time.time())
        elif cmd["cmd"] == "drop":
            reply(ack="drop", at=time.time(), dropped=relay.drop())
        elif cmd["cmd"] == "status":
            failed = [f"{t.get_name()}: {t.exception()!r}" for _, t in running.values()
                      if t.done() and not t.cancelled() and t.exception() is not None]
            reply(ack="status", running=len(running), failed=failed[:5], rss_kb=rss_kb(os.getpid()))
        elif cmd["cmd"] == "exit":
            await stop(list(running))
            reply(ack="exit")
            break


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


class Worker:
    """One worker process and its command pipe."""

    def __init__(self, k: int, config: dict[str, Any], workdir: Path) -> None:
        args = [sys.executable, str(Path(__file__).resolve())]
        log_path = workdir / f"worker-{k}.log"
        self.proc = Proc(f"worker-{k}", args, log_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
        SPAWNED.append(self.proc)
        with open(log_path, "ab") as err:
            self.proc.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                                              env=env, start_new_session=True)
        self.popen = self.proc.proc
        self.ids = [a["index"] for a in config["agents"]]
        self.send_raw(config)

    def send_raw(self, msg: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write((json.dumps(msg) + "\n").encode())
        self.popen.stdin.flush()

    async def read(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = await asyncio.to_thread(self.popen.stdout.readline)
        if not line:
            raise RuntimeError(f"{self.proc.name} exited; see {self.proc.log}:\n{self.proc.output[-2000:]}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.send_raw({"cmd": cmd, **args})
        return await self.read()


async def all_workers(workers: list[Worker], cmd: str, ids: set[int] | None = None) -> list[dict[str, Any]]:
    def mine(w: Worker) -> dict[str, Any]:
        return {"ids": [i for i in w.ids if ids is None or i in ids]} if cmd in ("start", "stop") else {}

    return list(await asyncio.gather(*(w.call(cmd, **mine(w)) for w in workers)))


async def seed_agents(child: Kube, n: int, first: int = 0) -> list[bytes]:
    """Each agent's namespace in the child with its key (from a pool: RSA generation is not what is measured)."""
    from clusternet_api.sealing import generate_private_key

    pool = [generate_private_key() for _ in range(KEY_POOL)]

    async def one(i: int) -> None:
        ns = agent_namespace(i)
        await child.create_or_get({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        await child.create_or_get({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                   "metadata": {"name": known.AGENT_KEY_SECRET, "namespace": ns},
                                   "data": {"key.pem": base64.b64encode(pool[i % KEY_POOL]).decode()}})

    await bounded([functools.partial(one, i) for i in range(first, n)], 16)
    return pool


def agent_namespace(i: int) -> str:
    return f"scale-agent-{i}"


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    eventloop.run(worker_main(json.loads(sys.stdin.readline())))  # the agent's own loop (CLUSTERNET_EVENT_LOOP)
