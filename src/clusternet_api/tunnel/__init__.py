"""Hub<->agent tunnel: TCP streams multiplexed over one websocket that the agent dials out."""

from clusternet_api.tunnel.bytestreams import ByteStream, pipe
from clusternet_api.tunnel.frames import INITIAL_WINDOW, MAX_FRAME_PAYLOAD, Frame, FrameError, FrameType
from clusternet_api.tunnel.mux import MuxError, Session, Stream, StreamOpenError, deny_all, dial_tcp

__all__ = [
    "INITIAL_WINDOW",
    "MAX_FRAME_PAYLOAD",
    "ByteStream",
    "Frame",
    "FrameError",
    "FrameType",
    "MuxError",
    "Session",
    "Stream",
    "StreamOpenError",
    "deny_all",
    "dial_tcp",
    "pipe",
]
