"""How `kubectl clusternet` ends when the command line is wrong or its stdout goes away: as kubectl does, one
`error:` line (and where the help is) with exit code 1, and no word at all for a reader that stopped reading."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from clusternet_kubectl.cli import main


def hint(command: str) -> str:
    return f"See '{command} -h' for help and examples\n"


@pytest.mark.parametrize(("args", "message", "command"), [
    (["foo"], 'unknown command "foo" for "kubectl clusternet"', "kubectl clusternet"),
    (["--nosuch", "get", "deploy"], "unknown flag: --nosuch", "kubectl clusternet"),
    (["get"], "missing argument 'KIND'", "kubectl clusternet get"),
    (["render", "app-demo"], "missing option '--cluster'", "kubectl clusternet render"),
    (["get", "deploy", "--nosuch"], "unknown flag: --nosuch", "kubectl clusternet get"),
    (["get", "deploy", "-o"], "option '-o' requires an argument", "kubectl clusternet get"),
    (["approve"], "missing argument 'CRR|CLUSTER_ID...'", "kubectl clusternet approve"),
])
def test_usage_errors_are_kubectls_error_line_and_hint(args: list[str], message: str, command: str) -> None:
    result = CliRunner().invoke(main, args)
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == f"error: {message}\n{hint(command)}"


def test_no_command_prints_the_help_like_kubectl() -> None:
    result = CliRunner().invoke(main, [])
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout.startswith("Usage: ") and "Commands:" in result.stdout
