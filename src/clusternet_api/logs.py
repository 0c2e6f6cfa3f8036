"""Structured (JSON) logs for both operators, with bearer tokens and secrets redacted.

kopf logs through stdlib logging, so one stdlib handler with python-json-logger (a kopf dependency)
covers our messages and kopf's alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from clusternet_api.redaction import redact

# Formats a record's traceback once, in the filter, so the text can be redacted before any formatter sees it.
_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Rewrites every record so no token reaches a log sink, whoever logged it.

    The message is not all of a record: `log.exception` and kopf's "Handler ... failed" add a traceback whose
    last line is the exception's text (an API server's answer, a header), and a formatter renders `exc_info`
    anew. So the traceback is formatted here, redacted into `exc_text`, and `exc_info` dropped: stdlib's
    Formatter then prints `exc_text` as it is, and python-json-logger puts it in `exc_info` (it re-formats
    `exc_info` whenever that is set, whatever `exc_text` holds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info:
            record.exc_text = record.exc_text or _TRACEBACKS.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class KopfRetryFilter(logging.Filter):
    """kopf logs each retried API request at ERROR ("Request attempt #2/9 failed; will retry: ..."): 66 lines for
    every 10 s of a parent restart that both operators ride out by themselves (audit 7). Those are warnings
    here; the attempt that gives up ("escalating") stays an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.name.startswith("kopf") and isinstance(record.msg, str) and (
                record.msg.startswith("Request attempt ") and "; will retry" in record.msg):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# kopf's per-object loggers pass these as `extra`; `settings` (kopf's OperatorSettings, holding a queue) cannot be
# serialised, and a handler failure logged through them came out as "--- Logging error ---". kopf's own JSON
# formatter leaves the same ones out (k8s_ref, the object's reference, is kept: it says which object).
KOPF_EXTRAS = ("k8s_skip", "settings")


def error_text(e: BaseException) -> str:
    """An exception as a reason: its message, or its type when it has none. `e or type(e).__name__` does not
    do this (an exception is always true), and a TimeoutError's empty message left "collecting child status
    failed: " with no reason in the agent's log."""
    return str(e) or type(e).__name__


# A condition that lasts is warned about again this often while it holds (and at once when it changes)
REWARN_SECONDS = 600.0
# Keys remembered at most (the oldest go first): a few hundred bytes each, one per object that keeps failing
REPEATS_KEPT = 10_000


class Repeats:
    """What was last warned about each thing, so that a condition that lasts gives a warning when it starts or
    changes and again every `every` seconds, its retries in between at DEBUG. A cleanup the hub cannot judge is
    re-judged at each 30-s resync for as long as it waits (days, for a refused Subscription), and each look
    warned again, for every waiting object; the object's status says why all along. `forget` once it holds no
    more, so that the next failure is warned about at once."""

    def __init__(self, every: float = REWARN_SECONDS, kept: int = REPEATS_KEPT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.kept, self.clock = every, kept, clock
        self._said: dict[Hashable, tuple[str, float]] = {}

    def level(self, key: Hashable, text: str, level: int = logging.WARNING) -> int:
        """`level` when `text` about `key` is new, changed or last said `every` seconds ago; DEBUG else."""
        now, last = self.clock(), self._said.get(key)
        if last is not None and last[0] == text and now - last[1] < self.every:
            return logging.DEBUG
        self._said.pop(key, None)  # to the end: the oldest go first
        self._said[key] = (text, now)
        while len(self._said) > self.kept:
            del self._said[next(iter(self._said))]
        return level

    def forget(self, key: Hashable) -> None:
        self._said.pop(key, None)


def json_formatter(component: str) -> JsonFormatter:
    return JsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        static_fields={"component": component}, reserved_attrs=[*RESERVED_ATTRS, *KOPF_EXTRAS])


def setup_logging(component: str, level: str = "INFO", json_format: bool = True) -> None:
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(json_formatter(component))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {component} %(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter())
    handler.addFilter(KopfRetryFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if root.level > logging.DEBUG:
        # kopf logs every handler run ("Handler ... succeeded"): one line per watch event, thousands a rollout
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
