"""How `kubectl clusternet` ends when the command line is wrong or its stdout goes away: as kubectl does, one
`error:` line (and where the help is) with exit code 1, and no word at all for a reader that stopped reading."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from clusternet_kubectl.cli import main
from clusternet_testing.helpers import PLUGIN
from tests.unit.test_kube_limits import serving
from tests.unit.test_kubectl_errors import kubeconfig, plugin_env
from tests.unit.test_kubectl_plugin import DISCOVERY


def hint(command: str) -> str:
    return f"See '{command} -h' for help and examples\n"


@pytest.mark.parametrize(("args", "message", "command"), [
    (["foo"], 'unknown command "foo" for "kubectl clusternet"', "kubectl clusternet"),
    (["--nosuch", "get", "deploy"], "unknown flag: --nosuch", "kubectl clusternet"),
    (["get"], "missing argument 'KIND'", "kubectl clusternet get"),
    (["render", "app-demo"], "missing option '--cluster'", "kubectl clusternet render"),
    (["get", "deploy", "--nosuch"], "unknown flag: --nosuch", "kubectl clusternet get"),
    (["get", "deploy", "-o"], "option '-o' requires an argument", "kubectl clusternet get"),
    (["approve"], "missing argument 'CRR|CLUSTER_ID|CLUSTER_NAME...'", "kubectl clusternet approve"),
])
def test_usage_errors_are_kubectls_error_line_and_hint(args: list[str], message: str, command: str) -> None:
    result = CliRunner().invoke(main, args)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"error: {message}\n{hint(command)}"


def test_no_command_prints_the_help_like_kubectl() -> None:
    result = CliRunner().invoke(main, [])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout


# --- a reader that stops reading ----------------------------------------------------------------------------

SUBSCRIPTIONS = "/apis/apps.clusternet.io/v1alpha1/namespaces/default/subscriptions"


def parent_answers(count: int) -> dict[str, Any]:
    """Discovery, and `count` Subscriptions in default (some 70 bytes of YAML each)."""
    items = [{"apiVersion": "apps.clusternet.io/v1alpha1", "kind": "Subscription",
              "metadata": {"name": f"sub-{i}", "namespace": "default"}} for i in range(count)]
    return {**DISCOVERY, SUBSCRIPTIONS: {"items": items, "metadata": {"resourceVersion": "1"}}}


async def plugin_into_a_closing_reader(home: Path, count: int, read: int) -> tuple[int, str]:
    """`kubectl clusternet get subs -o yaml | head -c READ` against a parent with `count` Subscriptions: the
    plugin's exit code and stderr, after the reader read `read` bytes (0: it closed before the plugin wrote)."""
    answers = parent_answers(count)
    # buffered, as by default: unbuffered (PYTHONUNBUFFERED), a write that a closing reader cuts short returns the
    # bytes written, and Python's text layer drops the rest without an error
    env = {k: v for k, v in plugin_env(home).items() if k != "PYTHONUNBUFFERED"}

    async def answer(request: web.Request) -> web.Response:
        body = answers.get(request.path)
        return web.json_response(body) if body is not None else web.json_response({}, status=404)

    async with serving(answer) as url:
        reader, writer = os.pipe()
        proc = await asyncio.create_subprocess_exec(
            *PLUGIN, f"--kubeconfig={kubeconfig(home / 'config', url)}", "get", "subs", "-o", "yaml",
            env=env, stdout=writer, stderr=subprocess.PIPE)
        os.close(writer)
        if read:
            got = await asyncio.get_running_loop().run_in_executor(None, os.read, reader, read)
            assert got.startswith(b"apiVersion: v1\n")
        os.close(reader)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode()


@pytest.mark.parametrize(("count", "read"), [(3, 0), (5000, 100)])
async def test_a_closed_stdout_ends_the_plugin_quietly(tmp_path: Path, count: int, read: int) -> None:
    """No `error: BrokenPipeError` and no `Exception ignored` at exit: only the exit code says it stopped."""
    assert await plugin_into_a_closing_reader(tmp_path, count, read) == (1, "")
