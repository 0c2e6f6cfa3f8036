"""Kubernetes' standard logging flags on hub and agent (audit s36): `--logging-format`, `--vmodule` and
`--log-flush-frequency` made both binaries exit 2, which in a pod is CrashLoopBackOff. `--logging-format` is
Kubernetes' spelling of our `--log-format`; the other two are accepted and logged as having no effect."""

from __future__ import annotations

import logging
from typing import Any

import click
import pytest

from clusternet_agent import cli as agent_cli
from clusternet_api import compatflags
from clusternet_hub import cli as hub_cli
from clusternet_hub import compat as hub_compat
from tests.unit.test_charts import args, render

COMMANDS = (  # (CLI, chart, its inert flags)
    (hub_cli.main, "clusternet-hub", hub_compat.INERT_FLAGS),
    (agent_cli.main, "clusternet-agent", agent_cli.INERT_FLAGS),
)

# argv -> params expected
TABLE: tuple[tuple[list[str], dict[str, Any]], ...] = (
    ([], {"log_format": "json", "compat_vmodule": None, "compat_log_flush_frequency": None}),
    (["--logging-format=json"], {"log_format": "json"}),
    (["--logging-format=text"], {"log_format": "text"}),
    (["--logging-format", "text", "--v=4"], {"log_format": "text", "verbosity": "4"}),
    # the charts render --log-format=json, then extraArgs: the later flag wins, as a repeated flag does
    (["--log-format=json", "--logging-format=text"], {"log_format": "text"}),
    (["--logging-format=text", "--log-format=json"], {"log_format": "json"}),
    (["--vmodule=tunnel*=4,peers=2"], {"compat_vmodule": "tunnel*=4,peers=2"}),
    (["--vmodule", "x=2", "--v=4"], {"compat_vmodule": "x=2", "verbosity": "4"}),
    (["--log-flush-frequency=5s"], {"compat_log_flush_frequency": "5s"}),
    (["--log-flush-frequency", "5s", "--leader-elect=false"],
     {"compat_log_flush_frequency": "5s", "leader_elect": "false"}),
)


@pytest.mark.parametrize(("command", "chart", "inert"), COMMANDS)
@pytest.mark.parametrize(("argv", "expected"), TABLE)
def test_kubernetes_logging_flags_are_accepted(command: click.Command, chart: str, inert: Any,
                                               argv: list[str], expected: dict[str, Any]) -> None:
    params = command.make_context(chart, list(argv)).params
    assert {k: params[k] for k in expected} == expected


@pytest.mark.parametrize(("command", "chart", "inert"), COMMANDS)
def test_vmodule_and_log_flush_frequency_say_they_change_nothing(command: click.Command, chart: str, inert: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    assert {"vmodule", "log-flush-frequency"} <= {f.name for f in inert if f.takes_value}
    ctx = command.make_context(chart, ["--vmodule=x=2", "--log-flush-frequency=5s", "--logging-format=text"])
    with caplog.at_level(logging.INFO):
        assert set(compatflags.report_inert(ctx, inert, logging.getLogger("t"))) == {"vmodule", "log-flush-frequency"}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("has no effect here" in line for line in lines)
    # Kubernetes takes json or text; anything else is refused, naming the flag
    with pytest.raises(click.BadParameter, match="xml"):
        command.make_context(chart, ["--logging-format=xml"])
    # through the chart's extraArgs, as one sets them
    rendered = args(render(chart, {"extraArgs": {"logging-format": "text", "vmodule": "x=2",
                                                 "log-flush-frequency": "5s"}}), chart)
    assert command.make_context(chart, rendered).params["log_format"] == "text"


@pytest.mark.parametrize(("command", "chart", "inert"), COMMANDS)
def test_the_generic_apiserver_flags_and_kubernetes_gates_are_still_refused(command: click.Command, chart: str,
                                                                            inert: Any) -> None:
    """README: the generic API server's flags and Kubernetes' own gates are refused by name, not accepted."""
    for flag in ("--cert-dir=/tmp", "--profiling=false", "--audit-log-path=/x"):
        with pytest.raises(click.NoSuchOption, match=flag.split("=")[0]):
            command.make_context(chart, [flag])
    with pytest.raises(ValueError, match="unknown gate 'AllAlpha'"):
        compatflags.parse_feature_gates("AllAlpha=true")
