"""The tunnel wire format: every frame round-trips and malformed input fails with FrameError."""

from __future__ import annotations

import struct

import pytest

from clusternet_api.tunnel.frames import (
    HEADER_SIZE,
    MAX_FRAME_PAYLOAD,
    MAX_REASON,
    MAX_STREAM_ID,
    VERSION,
    Frame,
    FrameError,
    FrameType,
    split_address,
)


def raw(frame_type: int, stream_id: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    return struct.pack(">BBI", version, frame_type, stream_id) + payload


@pytest.mark.parametrize(
    "frame",
    [
        Frame.open(1, "kubernetes.default.svc:443"),
        Frame.open(3, "[::1]:6443"),
        Frame.open(MAX_STREAM_ID, "10.0.0.1:1"),
        Frame.open_ok(2),
        Frame.open_err(5, "dial failed: connection refused"),
        Frame.data(7, b"x"),
        Frame.data(7, bytes(range(256)) * 256),  # exactly MAX_FRAME_PAYLOAD
        Frame.window(9, 1),
        Frame.window(9, 0xFFFF_FFFF),
        Frame.fin(11),
        Frame.rst(13, "reset: ünïcode ok"),
        Frame.rst(13, ""),
        Frame.goaway("upgrade"),
    ],
    ids=lambda f: f"{f.type.name}-{f.stream_id}-{len(f.payload)}",
)
def test_round_trip(frame: Frame) -> None:
    encoded = frame.encode()
    assert encoded[0] == VERSION
    assert len(encoded) == HEADER_SIZE + len(frame.payload)
    assert Frame.decode(encoded) == frame


def test_accessors() -> None:
    assert Frame.decode(Frame.open(1, "a.b:80").encode()).address == "a.b:80"
    assert Frame.decode(Frame.window(1, 123_456).encode()).increment == 123_456
    assert Frame.decode(Frame.rst(1, "boom").encode()).reason == "boom"
    assert Frame.decode(Frame.goaway("bye").encode()).reason == "bye"


def test_header_is_big_endian() -> None:
    assert Frame.data(0x01020304, b"z").encode() == bytes([VERSION, FrameType.DATA, 1, 2, 3, 4]) + b"z"


def test_long_reason_is_truncated_on_a_character_boundary() -> None:
    frame = Frame.rst(1, "é" * MAX_REASON)
    assert len(frame.payload) <= MAX_REASON
    assert frame.reason == "é" * (len(frame.payload) // 2)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "short frame"),
        (b"\x01\x04\x00\x00\x00", "short frame"),
        (raw(FrameType.DATA, 1, b"x", version=2), "unsupported frame version 2"),
        (raw(0, 1), "unknown frame type 0"),
        (raw(99, 1), "unknown frame type 99"),
        (raw(FrameType.DATA, 1, b"x" * (MAX_FRAME_PAYLOAD + 1)), "exceeds"),
        (raw(FrameType.DATA, 1), "empty DATA"),
        (raw(FrameType.DATA, 0, b"x"), "DATA frame on stream 0"),
        (raw(FrameType.GOAWAY, 5), "GOAWAY frame on stream 5"),
        (raw(FrameType.OPEN_OK, 1, b"junk"), "must have no payload"),
        (raw(FrameType.FIN, 1, b"junk"), "must have no payload"),
        (raw(FrameType.WINDOW, 1, b"\x00\x01"), "must be 4 bytes"),
        (raw(FrameType.WINDOW, 1, b"\x00\x00\x00\x00"), "must be positive"),
        (raw(FrameType.OPEN, 1, b"not json"), "not JSON"),
        (raw(FrameType.OPEN, 1, b"\xff\xfe"), "not JSON"),
        (raw(FrameType.OPEN, 1, b'["a:1"]'), "string 'address'"),
        (raw(FrameType.OPEN, 1, b'{"address": 443}'), "string 'address'"),
        (raw(FrameType.OPEN, 1, b'{"address": "no-port"}'), "not host:port"),
    ],
)
def test_malformed_frames_are_rejected(message: bytes, error: str) -> None:
    with pytest.raises(FrameError, match=error):
        Frame.decode(message)


def test_constructors_validate_too() -> None:
    with pytest.raises(FrameError):
        Frame.data(1, b"x" * (MAX_FRAME_PAYLOAD + 1))
    with pytest.raises(FrameError):
        Frame.window(1, 0)
    with pytest.raises(FrameError):
        Frame.window(1, 1 << 32)
    with pytest.raises(FrameError):
        Frame.open(MAX_STREAM_ID + 1, "a:1")
    with pytest.raises(FrameError):
        Frame.open(1, "a:99999")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("kubernetes.default.svc:443", ("kubernetes.default.svc", 443)),
        ("10.0.0.1:6443", ("10.0.0.1", 6443)),
        ("[fd00::1]:443", ("fd00::1", 443)),
    ],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "",
        "host",
        "host:",
        ":443",
        "host:0",
        "host:65536",
        "host:-1",
        "host:\uff14\uff14\uff13",  # fullwidth digits: str.isdecimal() accepts them, ports must not
        "fd00::1:443",
        "[]:443",
        "a" * 300 + ":1",
    ],
)
def test_split_address_rejects(address: str) -> None:
    with pytest.raises(FrameError):
        split_address(address)
