"""Clusternet's flags that a binary accepts so that Clusternet's manifests and charts start it unchanged,
although it does not act on them: each says why in one log line at start, instead of failing on an unknown
flag (Clusternet's charts pass several of them by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from click.core import ParameterSource

F = TypeVar("F", bound=Callable[..., Any])

CLUSTERNET_FEATURE_GATES = ("AppPusher", "SocketConnection", "Recovery", "Predictor", "MultiClusterService",
                            "Deployer", "ShadowAPI", "FeedInUseProtection", "FeedInventory", "FailOver",
                            "FeasibleClustersToleration", "ClusterInit")
"""Every gate Clusternet's components accept (its charts pass one list to several binaries)."""


KLOG_DEBUG_VERBOSITY = 4
"""klog's -v level from which Kubernetes components log debugging detail; ours switch to DEBUG there."""


def klog_level(level: object, verbosity: object) -> str:
    """--v=N (or -v=N, as klog spells it) of at least KLOG_DEBUG_VERBOSITY means DEBUG; else `level`."""
    text = str(verbosity or "").lstrip("=")
    if text.isdigit() and int(text) >= KLOG_DEBUG_VERBOSITY:
        return "DEBUG"
    return str(level)


def parse_feature_gates(text: str) -> dict[str, bool]:
    """`AppPusher=true,SocketConnection=false`; ValueError names the bad item and the known gates."""
    gates: dict[str, bool] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or value.lower() not in ("true", "false"):
            raise ValueError(f"--feature-gates: {item!r} must be Name=true or Name=false")
        if name not in CLUSTERNET_FEATURE_GATES:
            raise ValueError(f"--feature-gates: unknown gate {name!r} (known: {', '.join(CLUSTERNET_FEATURE_GATES)})")
        gates[name] = value.lower() == "true"
    return gates


def _merge_gate_flags(_ctx: click.Context, _param: click.Parameter, given: tuple[str, ...]) -> str:
    return ",".join(g for g in given if g)


def feature_gates_option(help_text: str) -> Callable[[F], F]:
    """`--feature-gates`, repeatable and merged as Kubernetes' component-base merges it: each occurrence adds its
    gates and a gate given again takes the later value (later keys override earlier ones, others are kept). The
    command receives one comma-joined string, which parse_feature_gates reads in order, so the later value wins.
    A plain click option kept only the last occurrence: a chart rendering the flag from a value and again from
    extraArgs silently lost the first one's gates (the sixth audit: AppPusher=false undone)."""
    return click.option("--feature-gates", "feature_gates", multiple=True, callback=_merge_gate_flags,
                        help=help_text + " (repeatable: merged, a later gate value wins)")


def log_format_option() -> Callable[[F], F]:
    """`--log-format`, also spelled `--logging-format` as Kubernetes' components take it (json or text): one option,
    so when both are given the later wins, as a repeated flag does (the charts render --log-format=json and then
    extraArgs). Unknown to click, `--logging-format=json` made both binaries exit 2 (audit s36)."""
    return click.option("--log-format", "--logging-format", "log_format", type=click.Choice(["json", "text"]),
                        default="json", help="Log lines as JSON or text (Kubernetes' --logging-format too)")


@dataclass(frozen=True)
class InertFlag:
    """A flag accepted for compatibility; `reason` says why it changes nothing here."""

    name: str
    """Long name without dashes, as Clusternet spells it."""
    reason: str
    takes_value: bool = True

    @property
    def param(self) -> str:
        return "compat_" + self.name.replace("-", "_")


KLOG_INERT_FLAGS = (
    InertFlag("vmodule", "one level for all modules: -v/--v (4 or more: DEBUG) or --log-level"),
    InertFlag("log-flush-frequency", "each log line is written when it is logged, with no buffer to flush"),
)
"""Kubernetes' standard logging flags that both binaries accept and cannot act on (audit s36: they exited 2).
The generic API server's flags and Kubernetes' own feature gates are not accepted: they are refused by name."""


def inert_options(flags: Sequence[InertFlag]) -> Callable[[F], F]:
    """Click options for the flags (hidden from --help's main list: they are documented in the README)."""

    def decorate(func: F) -> F:
        for flag in reversed(flags):
            if flag.takes_value:
                func = click.option(f"--{flag.name}", flag.param, default=None, hidden=True)(func)
            else:  # a Go bool flag: `--flag` alone or `--flag=true|false`, as Clusternet's charts render it
                func = click.option(f"--{flag.name}", flag.param, is_flag=False, flag_value="true", default=None,
                                    hidden=True)(func)
        return func

    return decorate


def report_inert(ctx: click.Context, flags: Sequence[InertFlag], log: logging.Logger) -> list[str]:
    """Log one line for each inert flag given on the command line or by environment; returns their names."""
    given = []
    for flag in flags:
        if ctx.get_parameter_source(flag.param) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            value = ctx.params.get(flag.param)
            log.info("--%s=%s is accepted for compatibility with Clusternet and has no effect here: %s",
                     flag.name, value, flag.reason)
            given.append(flag.name)
    return given
