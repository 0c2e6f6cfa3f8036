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
def fresh_process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a hub or agent process remembers across objects, fresh for each test: the failures it warned about
    once (clusternet_api.logs.Repeats in wanted.py), the clusters that refused its promise (wanted.refused and
    wanted.promise_retries), the adoptions it owes after a failed adopting write (ownership.adoption_owed) and the
    releases waiting for a Namespace's contents to be listed (ownership.contents_unknown_since).
    One test's state would otherwise change another's outcome."""
    from clusternet_api import ownership
    from clusternet_api.logs import Repeats
    from clusternet_hub.controller import wanted

    monkeypatch.setattr(wanted, "warned", Repeats())
    monkeypatch.setattr(wanted, "refused", {})
    monkeypatch.setattr(wanted, "promise_retries",
                        wanted.Backoff(wanted.PROMISE_RETRY_FIRST, wanted.PROMISE_RETRY_MAX))
    monkeypatch.setattr(ownership, "adoption_owed", set())
    monkeypatch.setattr(ownership, "contents_unknown_since", {})
