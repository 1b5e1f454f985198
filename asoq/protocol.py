"""The frames that travel through the pipes between client, worker and executors.

Every frame is ``<u32 size><u8 kind><body>`` where ``size`` counts the kind byte and the body.
A task frame keeps its scheduling fields in a fixed binary header so the worker can queue and
forward it without unpickling the arguments: unpickling may import user code, and the worker
runs none.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from typing import Any

# client -> worker -> executor
CONFIG = 1  # body: pickled dict of builtins, always the first frame on a pipe
TASK = 2
STOP = 3  # client -> worker: drain everything, then exit; body: f64 timeout
# executor -> worker
READY = 4
DONE = 5
# worker -> client
STARTED = 6
FINISHED = 7
RETRYING = 8
LOG = 9

PREFIX = struct.Struct("<IB")
# A task frame: what changes per call (seq, due as wall-clock time or 0 for now), then what
# a task's options fix, which each Task packs once: priority, time_limit (0: none), retries,
# retry_backoff, len(name); then the name, then the pickled (args, kwargs).
TASK_CALL = struct.Struct("<IBQd")
TASK_OPTIONS = struct.Struct("<hdIdH")
TASK_HEAD_SIZE = TASK_CALL.size + TASK_OPTIONS.size
SEQ = struct.Struct("<IBQ")
# seq, attempt
STARTED_FRAME = struct.Struct("<IBQH")
# seq, ok, duration
DONE_HEAD = struct.Struct("<IBQ?d")
# seq, ok, attempts
FINISHED_HEAD = struct.Struct("<IBQ?H")
STOP_FRAME = struct.Struct("<IBd")

# Linux grows a pipe to this without privileges (/proc/sys/fs/pipe-max-size); a larger buffer
# absorbs bursts while the reader is descheduled, so writers almost never wait.
PIPE_SIZE = 1 << 20
READ_SIZE = 1 << 18


def task_options(
    name: bytes, priority: int, time_limit: float, retries: int, retry_backoff: float
) -> bytes:
    """The part of a task frame that a task's options fix: packed once per task."""
    return TASK_OPTIONS.pack(priority, time_limit, retries, retry_backoff, len(name)) + name


def task_frame(seq: int, due: float, options: bytes, payload: bytes) -> bytes:
    size = TASK_CALL.size - 4 + len(options) + len(payload)
    return b"".join((TASK_CALL.pack(size, TASK, seq, due), options, payload))


@dataclass(slots=True)
class TaskHeader:
    """What a task frame says besides its arguments; ``name`` is left encoded (readers cache
    the decoded names: a process sees the same few names over and over)."""

    seq: int
    priority: int
    due: float
    time_limit: float
    retries: int
    retry_backoff: float
    name: bytes
    payload_offset: int


def read_task(frame: bytes) -> TaskHeader:
    _, _, seq, due = TASK_CALL.unpack_from(frame)
    priority, time_limit, retries, backoff, name_len = TASK_OPTIONS.unpack_from(
        frame, TASK_CALL.size
    )
    end = TASK_HEAD_SIZE + name_len
    return TaskHeader(
        seq, priority, due, time_limit, retries, backoff, frame[TASK_HEAD_SIZE:end], end
    )


def seq_frame(kind: int, seq: int) -> bytes:
    return SEQ.pack(SEQ.size - 4, kind, seq)


def read_seq(frame: bytes) -> int:
    seq: int = SEQ.unpack_from(frame)[2]
    return seq


def pickled_frame(kind: int, value: Any) -> bytes:
    body = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    return PREFIX.pack(len(body) + 1, kind) + body


def read_pickled(frame: bytes) -> Any:
    return pickle.loads(memoryview(frame)[PREFIX.size :])


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a run failed, in builtins only so the worker can read it without user code.

    ``reason`` is ``"raised"``, ``"timeout"``, ``"crashed"`` or ``"lost"``; ``exception`` is
    the pickled exception when it could be pickled (``b""`` otherwise).
    """

    reason: str
    exception_type: str
    message: str
    traceback: str = ""
    exception: bytes = b""

    def encode(self) -> bytes:
        return pickle.dumps(
            (self.reason, self.exception_type, self.message, self.traceback, self.exception),
            pickle.HIGHEST_PROTOCOL,
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Failure:
        return cls(*pickle.loads(data))


class Sink:
    """Frames waiting to be written to a non-blocking pipe, sent in as few writes as possible.

    ``added`` and ``written`` count bytes since the start, so a caller can tell whether a frame
    it added (ending at ``added`` then) has left.
    """

    __slots__ = ("fd", "buffer", "added", "written")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()
        self.added = 0
        self.written = 0

    def add(self, frame: bytes) -> None:
        self.buffer += frame
        self.added += len(frame)

    def flush(self) -> bool:
        """Write what the pipe takes now; return whether everything is written."""
        if self.buffer:
            try:
                written = os.write(self.fd, self.buffer)
            except BlockingIOError:
                return False
            del self.buffer[:written]
            self.written += written
        return not self.buffer

    def drop(self) -> None:
        self.written += len(self.buffer)
        self.buffer.clear()


class FrameReader:
    """Splits a byte stream into whole frames; a frame may arrive in many reads."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames = []
        position = 0
        end = len(buffer)
        unpack = PREFIX.unpack_from
        while end - position >= 5:
            size, kind = unpack(buffer, position)
            stop = position + 4 + size
            if stop > end:
                break
            frames.append((kind, bytes(buffer[position:stop])))
            position = stop
        del buffer[:position]
        return frames


def read_first(fd: int, reader: FrameReader) -> list[tuple[int, bytes]]:
    """Block until ``fd`` yields at least one whole frame; ``[]`` if it closes first."""
    frames: list[tuple[int, bytes]] = []
    while not frames:
        data = os.read(fd, READ_SIZE)
        if not data:
            return []
        frames = reader.feed(data)
    return frames


def make_pipe() -> tuple[int, int]:
    """A close-on-exec pipe, grown where the OS allows it."""
    read_end, write_end = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass  # not Linux, or a lower limit: the default size still works, with more waiting
    return read_end, write_end


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to a blocking ``fd`` (``os.write`` may write part of it)."""
    written = os.write(fd, data)
    if written < len(data):  # only a large frame or a full pipe gets here
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view) :]
