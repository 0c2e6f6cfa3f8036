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
