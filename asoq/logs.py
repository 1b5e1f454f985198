"""How the worker's log records reach the loggers of the process that started it.

The worker formats each record and sends it as a ``LOG`` frame; the client's reader thread
hands it to the logger of the same name there, so records end up in the user's handlers with
the worker's PID and ``processName`` ``asoq-worker``. Once that process is gone, the worker
writes its records to stderr, those still in the pipe included: the last words of a worker
are often the most useful ones.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any

from . import protocol
from .protocol import Sink


class ForwardingHandler(logging.Handler):
    """The worker's handler: records go out through ``outbox``, or to stderr once it is not read."""

    def __init__(self, outbox: Sink) -> None:
        super().__init__()
        self.outbox = outbox
        self.forwarding = True
        # Records not yet known to be written, with the outbox position their frame ends at.
        self.unsent: deque[tuple[int, logging.LogRecord]] = deque()
        self.fallback = logging.StreamHandler(sys.stderr)
        self.fallback.setFormatter(
            logging.Formatter("[asoq-worker %(process)d] %(levelname)s %(name)s: %(message)s")
        )

    def emit(self, record: logging.LogRecord) -> None:
        remote_traceback = getattr(record, "asoq_traceback", "")
        if remote_traceback:
            record.exc_text = remote_traceback.rstrip("\n")
        if not self.forwarding:
            self.fallback.handle(record)
            return
        fields = dict(record.__dict__)
        fields.update(msg=record.getMessage(), args=None, exc_info=None, processName="asoq-worker")
        outbox = self.outbox
        outbox.add(protocol.pickled_frame(protocol.LOG, fields))
        unsent = self.unsent
        while unsent and unsent[0][0] <= outbox.written:
            unsent.popleft()
        unsent.append((outbox.added, record))

    def stop_forwarding(self) -> None:
        """Nobody reads the outbox any more: what it still holds goes to stderr, as all after."""
        self.forwarding = False
        for end, record in self.unsent:
            if end > self.outbox.written:
                self.fallback.handle(record)
        self.unsent.clear()


def emit(fields: dict[str, Any]) -> None:
    """Log a record the worker sent, in this process (the client's reader calls this)."""
    record = logging.makeLogRecord(fields)
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)
