"""Fixtures shared by unit tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def component_logging() -> Iterator[None]:
    """Put back what a hub's or agent's `main` changes in logging (clusternet_api.logs.setup_logging): it
    replaces the root logger's handlers, pytest's capture among them, with one whose filter takes tracebacks
    off the records, which broke later tests' caplog when a CLI test ran first."""
    touched = [logging.getLogger(name) for name in ("", "aiohttp.access", "kopf.objects")]
    saved = [(logger.handlers[:], logger.level) for logger in touched]
    yield
    for logger, (handlers, level) in zip(touched, saved, strict=True):
        logger.handlers[:], logger.level = handlers, level


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub warns once about a failure that lasts (clusternet_api.logs.Repeats, process-wide in wanted.py):
    each test starts with nothing said, so that one test's warning does not silence another's, and with no cluster
    that refused the hub's promise (wanted.refused)."""
    from clusternet_api.logs import Repeats
    from clusternet_hub.controller import wanted

    monkeypatch.setattr(wanted, "warned", Repeats())
    monkeypatch.setattr(wanted, "refused", {})
