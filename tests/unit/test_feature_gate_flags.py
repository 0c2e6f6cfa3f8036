"""--feature-gates given more than once (a chart rendering it from a value and again from extraArgs): both
binaries merge the occurrences as Kubernetes' component-base does, a later gate value winning, instead of keeping
only the last flag (the sixth audit: the agent chart's AppPusher=false was silently undone)."""

from __future__ import annotations

from typing import Any

import click
import pytest
from click.testing import CliRunner

from clusternet_agent import cli as agent_cli
from clusternet_agent.options import AgentOptions
from clusternet_api.compatflags import feature_gates_option, parse_feature_gates
from clusternet_hub import cli as hub_cli


def test_repeated_feature_gates_merge_and_the_later_value_wins() -> None:
    seen: list[str] = []

    @click.command()
    @feature_gates_option("gates")
    def cmd(feature_gates: str) -> None:
        seen.append(feature_gates)

    args = ["--feature-gates=SocketConnection=true,AppPusher=false", "--feature-gates=AppPusher=true,Recovery=true"]
    assert CliRunner().invoke(cmd, args).exit_code == 0
    assert parse_feature_gates(seen[-1]) == {"SocketConnection": True, "AppPusher": True, "Recovery": True}
    assert CliRunner().invoke(cmd, []).exit_code == 0 and seen[-1] == ""  # none given: no gates, as before


@pytest.mark.usefixtures("component_logging")
def test_the_agent_keeps_the_gates_of_every_feature_gates_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[AgentOptions] = []

    async def run_agent(opts: AgentOptions, *_: Any, **__: Any) -> None:
        started.append(opts)

    monkeypatch.setattr(agent_cli, "run_agent", run_agent)
    # the audit's command: the gate needed by Push mode in the first flag, another gate in the second
    result = CliRunner().invoke(agent_cli.main, [
        "--feature-gates=AppPusher=true", "--feature-gates=SocketConnection=true", "--cluster-sync-mode=Push",
        "--secure-port=0", "--log-format=text"])
    assert result.exit_code == 0, result.output
    assert started[0].feature_gates == {"AppPusher": True, "SocketConnection": True}
    # and a later value turns an earlier one off, as pflag's map flag does
    result = CliRunner().invoke(agent_cli.main, [
        "--feature-gates=SocketConnection=true,AppPusher=true", "--feature-gates=AppPusher=false",
        "--cluster-sync-mode=Push", "--secure-port=0", "--log-format=text"])
    assert result.exit_code == 2 and "needs --feature-gates=AppPusher=true" in result.output


@pytest.mark.usefixtures("component_logging")
def test_the_hub_keeps_the_gates_of_every_feature_gates_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    gates: list[str] = []
    monkeypatch.setattr(hub_cli.compat, "report_gates", lambda text: gates.append(text) or {})
    monkeypatch.setattr(hub_cli, "_run_until_signalled", lambda _factory: None)
    monkeypatch.setattr(hub_cli.eventloop, "exit_if_threads_remain", lambda _code, _log: None)
    result = CliRunner().invoke(hub_cli.main, ["--feature-gates=SocketConnection=true,ShadowAPI=true",
                                               "--feature-gates=ShadowAPI=false", "--peer-port=0",
                                               "--log-format=text"])
    assert result.exit_code == 0, result.output
    assert parse_feature_gates(gates[0]) == {"SocketConnection": True, "ShadowAPI": False}


@pytest.mark.usefixtures("component_logging")
def test_the_hub_acts_on_failover_only_when_the_gate_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """FailOver (Clusternet's scheduler chart passes it on) reaches the deployment controller; it is off without it."""
    started: list[Any] = []

    def run(factory: Any) -> None:
        started.append(factory)

    monkeypatch.setattr(hub_cli, "_run_until_signalled", run)
    monkeypatch.setattr(hub_cli.eventloop, "exit_if_threads_remain", lambda _code, _log: None)
    options: list[bool] = []
    monkeypatch.setattr(hub_cli, "run_hub", lambda opts, _stop: options.append(opts.fail_over))
    for flags, expected in ((["--feature-gates=SocketConnection=true,FailOver=true"], True),
                            (["--feature-gates=FailOver=true", "--feature-gates=FailOver=false"], False), ([], False)):
        result = CliRunner().invoke(hub_cli.main, [*flags, "--peer-port=0", "--log-format=text"])
        assert result.exit_code == 0, result.output
        started.pop()(None)
        assert options.pop() is expected
