"""A watch's body cut into its events, one JSON document per line, of any size up to WATCH_EVENT_LIMIT.

aiohttp's own line reader stops at 512 KiB: a Description of a large chart or a big ConfigMap feed broke every
watch that resumed past it (found when the agent's pullers stopped re-listing, clusternet_api.listwatch)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

# One watch event at most: etcd stores objects up to 1.5 MiB, more as JSON. aiohttp's own lines stop at 512 KiB,
# which a Description of large manifests passes: its watch then failed on that event each time it resumed.
WATCH_EVENT_LIMIT = 64 * 2**20


class EventLines:
    """A watch's body, fed as it comes, cut into its non-blank lines (one event each) of any size up to
    WATCH_EVENT_LIMIT; each chunk is searched once, however long the line it continues."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            line = b"".join([*self.parts, chunk[start:end]]) if self.parts else chunk[start:end]
            self.parts, self.size, start = [], 0, end + 1
            if line.strip():
                out.append(line)
        if start < len(chunk):
            self.parts.append(chunk[start:])
            self.size += len(chunk) - start
            if self.size > WATCH_EVENT_LIMIT:
                raise ValueError(f"a watch event longer than {WATCH_EVENT_LIMIT} bytes")
        return out

    def end(self) -> list[bytes]:
        """The body is over: what is left, a last event without its newline (if not blank)."""
        line, self.parts, self.size = b"".join(self.parts), [], 0
        return [line] if line.strip() else []


async def json_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[Any]:
    """Each event of a watch's body, parsed, as its chunks arrive."""
    split = EventLines()
    async for chunk in chunks:
        for line in split.feed(chunk):
            yield json.loads(line)
    for line in split.end():
        yield json.loads(line)
