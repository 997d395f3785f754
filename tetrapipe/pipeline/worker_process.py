"""A `--workers` worker process's side: read chunk frames from the parent, answer result frames in order.

A frame (both ways) is a 16-byte header — the pickle's length and the blob's,
8 bytes each, big-endian — then a small pickle, then the big bytes beside it
(the chunk's lines joined; the result's rendered output), never copied into
the pickle.  The worker builds its state from the spec carried by a chunk
(`build(spec)`: the first chunk, and the first of each new configuration
generation) and answers its chunks in the order it got them.  It ignores
SIGINT/SIGTERM/SIGHUP: the parent owns signals and kills workers, which keep
no state worth keeping.
"""

from __future__ import annotations

import gc
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from tetrapipe.formats.base import Format
from tetrapipe.pipeline.chunks import Chunk, fill
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.base import Selection

WorkerState = tuple[Processor, "Format | None", Selection]  # the processor, stdout format and selection
Build = Callable[[bytes], WorkerState]  # spec → a worker's state
HEADER = 16


def header(meta: bytes, blob: bytes) -> bytes:
    return len(meta).to_bytes(8, "big") + len(blob).to_bytes(8, "big")


def _read_exact(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        part = os.read(fd, min(left, 1 << 20))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_frame(fd: int) -> tuple[bytes, bytes] | None:
    head = _read_exact(fd, HEADER)
    if head is None:
        return None
    meta = _read_exact(fd, int.from_bytes(head[:8], "big"))
    blob = _read_exact(fd, int.from_bytes(head[8:], "big"))
    return None if meta is None or blob is None else (meta, blob)


def worker_main(build: Build, inbound: Connection, outbound: Connection) -> None:
    # The parent owns signals: a terminal's Ctrl-C or a cgroup-wide SIGTERM reaches the whole group,
    # and a worker dying of it would fail the parent's graceful drain.  The parent kills workers.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    rfd, wfd = inbound.fileno(), outbound.fileno()
    # Results are written by a thread of their own: a result (about a chunk's size) can exceed the
    # pipe's capacity, and a worker waiting for the parent to read it could not start the next chunk.
    # At most the parent's in-flight chunks are queued here.
    outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    sender = threading.Thread(target=_send, args=(wfd, outbox), name="tetrapipe-results", daemon=True)
    sender.start()
    state: WorkerState | None = None
    while (frame := _read_frame(rfd)) is not None:
        spec, lengths, rejected, final = pickle.loads(frame[0])  # noqa: S301 - from our own parent process
        if spec is not None:
            state = build(spec)
            gc.collect()  # as tune_gc in the parent: the compiled library is long-lived
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
        assert state is not None
        result = fill(state[0], state[1], state[2], Chunk(frame[1], lengths, rejected), final)
        out, result.out = result.out, b""  # the big part travels beside the pickle, not through it
        meta = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        outbox.put(header(meta, out) + meta)
        outbox.put(out)
    outbox.put(None)  # the parent closed its end: send what is left, then end
    sender.join()


def _send(fd: int, outbox: queue.SimpleQueue[bytes | None]) -> None:
    while (data := outbox.get()) is not None:
        try:
            _write_all(fd, data)
        except OSError:  # the parent is gone: nobody will read the rest
            os._exit(0)
