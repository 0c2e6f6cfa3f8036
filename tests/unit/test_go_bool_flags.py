"""Go bool flags of hub and agent: Clusternet's manifests pass them bare (`--flag`), its charts render every
extraArgs entry as `--flag=value`, so each one takes both spellings and a bare one leaves the next flag alone."""

from __future__ import annotations

from clusternet_hub import cli as hub_cli
from clusternet_hub import compat as hub_compat


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
