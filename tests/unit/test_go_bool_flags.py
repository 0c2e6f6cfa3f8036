"""Go bool flags of hub and agent: Clusternet's manifests pass them bare (`--flag`), its charts render every
extraArgs entry as `--flag=value`, so each one takes both spellings and a bare one leaves the next flag alone."""

from __future__ import annotations

import click
import pytest

from clusternet_agent import cli as agent_cli
from clusternet_hub import cli as hub_cli
from clusternet_hub import compat as hub_compat
from tests.unit.test_charts import args, render


def test_the_hubs_go_bool_inert_flags_leave_the_next_flag_alone() -> None:
    """audit s36: `--enable-tunnel-logging --cluster-approval=Manual` took the approval flag as the logging
    flag's value, and the hub auto-approved every cluster with one INFO line to show for it."""
    assert {f.name for f in hub_compat.INERT_FLAGS if not f.takes_value} == {
        "enable-tunnel-logging", "anonymous-auth-supported"}
    ctx = hub_cli.main.make_context("clusternet-hub", ["--enable-tunnel-logging", "--cluster-approval=Manual"])
    assert ctx.params["cluster_approval"] == "Manual"
    assert ctx.params["compat_enable_tunnel_logging"] == "true"
    for value in ("true", "false"):
        ctx = hub_cli.main.make_context("clusternet-hub", [f"--enable-tunnel-logging={value}"])
        assert ctx.params["compat_enable_tunnel_logging"] == value


BOOL_SWITCHES = (  # our own switches: (CLI, chart, flag)
    (hub_cli.main, "clusternet-hub", "allow-unsealed-tokens"),
    (agent_cli.main, "clusternet-agent", "parent-insecure-skip-tls-verify"),
)


@pytest.mark.parametrize(("command", "chart", "flag"), BOOL_SWITCHES)
def test_our_switches_take_go_bool_values_as_the_charts_render_them(command: click.Command, chart: str,
                                                                    flag: str) -> None:
    """audit s36: both charts render every extraArgs entry as `--key=value`, and a click flag refused any value,
    so `--set extraArgs.allow-unsealed-tokens=true` left the hub in CrashLoopBackOff."""
    param = flag.replace("-", "_")
    for given, expected in (([], False), ([f"--{flag}"], True), ([f"--{flag}=true"], True),
                            ([f"--{flag}=false"], False), ([f"--{flag}=1"], True), ([f"--{flag}", "--v=4"], True)):
        assert command.make_context(chart, list(given)).params[param] is expected, given
    assert command.make_context(chart, [f"--{flag}", "--v=4"]).params["verbosity"] == "4"
    with pytest.raises(click.BadParameter, match=f"--{flag}=yes: must be true or false"):
        command.make_context(chart, [f"--{flag}=yes"])
    # through the chart, as the README tells one to set them
    for value in (True, False, "true", "false"):
        rendered = args(render(chart, {"extraArgs": {flag: value}}), chart)
        assert f"--{flag}={str(value).lower()}" in rendered
        assert command.make_context(chart, rendered).params[param] is (str(value).lower() == "true")


def test_every_switch_of_hub_and_agent_takes_a_value() -> None:
    """No click flag is left that refuses `--flag=value` (only --version and --help, which a chart never sets)."""
    for command in (hub_cli.main, agent_cli.main):
        flags = {p.name for p in command.params if isinstance(p, click.Option) and p.is_flag}
        assert flags <= {"version", "help"}, flags
