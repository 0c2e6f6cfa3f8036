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
