"""Wire format of the tunnel: one binary websocket message carries exactly one frame.

Layout: ``u8 version | u8 type | u32 stream_id (big-endian) | payload``.
The websocket already delimits messages, so there is no length field; a version byte
lets a future format be refused cleanly instead of being misparsed.
Every ``Frame`` instance is valid: construction and ``decode`` both validate, so the
multiplexer can trust what it receives.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass

VERSION = 1
MAX_FRAME_PAYLOAD = 64 * 1024
# Credit each side grants per stream before any WINDOW frame; both peers assume it.
INITIAL_WINDOW = 256 * 1024
MAX_STREAM_ID = 0xFFFF_FFFF
# Reasons are diagnostics; bounding them keeps an exception text from filling a frame.
MAX_REASON = 1024
# A DNS name (253) plus brackets, colon and port, with a little slack.
MAX_ADDRESS = 300

_HEADER = struct.Struct(">BBI")
_WINDOW = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class FrameError(ValueError):
    """A message or frame field breaks the wire format: the peer is broken or speaks another protocol."""


class FrameType(enum.IntEnum):
    """What a frame means; stream 0 is reserved for session-wide GOAWAY."""

    OPEN = 1  # JSON {"address": "host:port"}: ask the peer to dial a TCP target
    OPEN_OK = 2  # dial succeeded; data may flow
    OPEN_ERR = 3  # utf-8 reason; the stream never existed
    DATA = 4  # stream bytes, never empty, counted against the receiver's window
    WINDOW = 5  # u32 credit increment, > 0
    FIN = 6  # half-close: the sender sends no more DATA
    RST = 7  # utf-8 reason; abort both directions
    GOAWAY = 8  # utf-8 reason; the peer should open no new streams


_EMPTY_PAYLOAD = frozenset({FrameType.OPEN_OK, FrameType.FIN})


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6addr]:port`` for IPv6) so the accepting side can dial it."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise FrameError(f"address {address!r}: IPv6 hosts need brackets, e.g. [::1]:443")
    if len(address) > MAX_ADDRESS or not sep or not host or not (port.isascii() and port.isdecimal()):
        raise FrameError(f"address {address!r} is not host:port")
    if not 0 < int(port) < 65536:
        raise FrameError(f"address {address!r}: port out of range")
    return host, int(port)


def _parse_open(payload: bytes) -> str:
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise FrameError(f"OPEN payload is not JSON: {exc}") from None
    address = body.get("address") if isinstance(body, dict) else None
    if not isinstance(address, str):
        raise FrameError("OPEN payload needs a string 'address'")
    split_address(address)
    return address


def _parse_window(payload: bytes) -> int:
    if len(payload) != _WINDOW.size:
        raise FrameError(f"WINDOW payload must be {_WINDOW.size} bytes, got {len(payload)}")
    (increment,) = _WINDOW.unpack(payload)
    if increment == 0:
        raise FrameError("WINDOW increment must be positive")
    return int(increment)


def _reason_payload(reason: str) -> bytes:
    # Cut on a character boundary so the peer always gets valid utf-8.
    return reason.encode()[:MAX_REASON].decode("utf-8", "ignore").encode()


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame; use the named constructors rather than building payloads by hand."""

    type: FrameType
    stream_id: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.stream_id <= MAX_STREAM_ID:
            raise FrameError(f"stream id {self.stream_id} out of range")
        if len(self.payload) > MAX_FRAME_PAYLOAD:
            raise FrameError(f"payload of {len(self.payload)} bytes exceeds {MAX_FRAME_PAYLOAD}")
        if (self.stream_id == 0) != (self.type is FrameType.GOAWAY):
            raise FrameError(f"{self.type.name} frame on stream {self.stream_id}")
        if self.type is FrameType.OPEN:
            _parse_open(self.payload)
        elif self.type is FrameType.WINDOW:
            _parse_window(self.payload)
        elif self.type is FrameType.DATA and not self.payload:
            raise FrameError("empty DATA frame")
        elif self.type in _EMPTY_PAYLOAD and self.payload:
            raise FrameError(f"{self.type.name} frame must have no payload")

    @classmethod
    def open(cls, stream_id: int, address: str) -> Frame:
        return cls(FrameType.OPEN, stream_id, json.dumps({"address": address}).encode())

    @classmethod
    def open_ok(cls, stream_id: int) -> Frame:
        return cls(FrameType.OPEN_OK, stream_id)

    @classmethod
    def open_err(cls, stream_id: int, reason: str) -> Frame:
        return cls(FrameType.OPEN_ERR, stream_id, _reason_payload(reason))

    @classmethod
    def data(cls, stream_id: int, payload: bytes) -> Frame:
        return cls(FrameType.DATA, stream_id, payload)

    @classmethod
    def window(cls, stream_id: int, increment: int) -> Frame:
        if not 0 < increment <= 0xFFFF_FFFF:
            raise FrameError(f"WINDOW increment {increment} out of range")
        return cls(FrameType.WINDOW, stream_id, _WINDOW.pack(increment))

    @classmethod
    def fin(cls, stream_id: int) -> Frame:
        return cls(FrameType.FIN, stream_id)

    @classmethod
    def rst(cls, stream_id: int, reason: str) -> Frame:
        return cls(FrameType.RST, stream_id, _reason_payload(reason))

    @classmethod
    def goaway(cls, reason: str) -> Frame:
        return cls(FrameType.GOAWAY, 0, _reason_payload(reason))

    @property
    def address(self) -> str:
        """Dial target of an OPEN frame."""
        return _parse_open(self.payload)

    @property
    def increment(self) -> int:
        """Credit granted by a WINDOW frame."""
        return _parse_window(self.payload)

    @property
    def reason(self) -> str:
        """Text of an OPEN_ERR, RST or GOAWAY frame; lenient because it is only shown to humans."""
        return self.payload.decode("utf-8", "replace")

    def encode(self) -> bytes:
        return _HEADER.pack(VERSION, self.type, self.stream_id) + self.payload

    @classmethod
    def decode(cls, message: bytes) -> Frame:
        """Parse one websocket message; raise FrameError if it is not a valid frame."""
        if len(message) < HEADER_SIZE:
            raise FrameError(f"short frame: {len(message)} bytes, the header needs {HEADER_SIZE}")
        version, raw_type, stream_id = _HEADER.unpack_from(message)
        if version != VERSION:
            raise FrameError(f"unsupported frame version {version}, expected {VERSION}")
        try:
            frame_type = FrameType(raw_type)
        except ValueError:
            raise FrameError(f"unknown frame type {raw_type}") from None
        return cls(frame_type, stream_id, bytes(message[HEADER_SIZE:]))
