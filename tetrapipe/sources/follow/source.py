"""`follow` source: Tetragon's JSON export file, followed like `tail -F`, with a checkpoint.

Contract (see `tetrapipe.sources.base`): `batches()` yields the complete lines
appended to `path`, in file order, until `stop()`; it never ends by itself.
It survives, without losing or repeating a line:

- rotation by rename + new file (Tetragon's export, lumberjack-style, and
  logrotate's default `create` mode): when a new inode appears at `path`, the
  old file descriptor — still readable after the rename — is drained to its
  end, then the new file is read from offset 0;
- truncation in place (logrotate `copytruncate`): the file got shorter than
  what was read, so reading restarts at 0 (said on stderr);
- the file missing for a while: the source waits for it to reappear;
- a restart of tetrapipe: see the checkpoint below.

Positions.  A batch's `commit_position` is a `FilePosition(dev, inode,
offset)`: the identity of the file the batch came from and the offset just
after its last *complete* line.  A partial last line (its newline not written
yet) is not handed over and not counted, so a checkpoint never points into
the middle of a line (`tetrapipe.sources.follow.followed`).  Each envelope carries a `LinePosition(file, offset)`
of its line's first byte, which `describe()` renders as "tetragon.log offset N".  A line over
`max_line` bytes is rejected as `too_large` once its newline is read (with `spill`, its whole
bytes travel with it for a file dead letter); until then the checkpoint stays before it.

The input never ends, so no batch is `final`: CRI partial lines still waiting for their final
line at a stop are not rejected — the checkpoint stays before the batch that read them
(`tetrapipe.pipeline.processor`), and the next run reads them again.

The checkpoint.  `commit(position)` is called by the committer only with the
position of the longest prefix of batches that every sink acknowledged, so
writing the checkpoint *there, and only there* is what makes a restart exact:
everything before it was delivered, nothing after it was (at-least-once only
for the batches in flight when a run is killed).  Writing it when a batch is
read would skip undelivered lines after a crash; never writing it would re-send
the whole file.  It is written atomically (`tetrapipe.sources.follow.checkpoint`), so a kill
mid-write leaves the previous checkpoint intact.

Known limits, shared with `tail -F`: a `copytruncate` whose writer appends
more than was already read before the next poll is not seen as a truncation;
an inode number reused by a new file after the checkpointed one was deleted
is taken for the same file.  Files rotated faster than a poll notices (or
several times while tetrapipe was down) are found among the siblings named
like rotations of `path` and read in modification-time order
(`tetrapipe.sources.follow.rotation`); compressed rotations cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal, TextIO

from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.event.oversized import Oversized, Spill, too_large
from tetrapipe.logs import emit
from tetrapipe.sources.base import SourceError
from tetrapipe.sources.follow.checkpoint import Checkpoint, FilePosition
from tetrapipe.sources.follow.followed import Followed, LinePosition, last_line_boundary
from tetrapipe.sources.follow.rotation import FileId, names_with_inode, rotated_after
from tetrapipe.sources.reader import unless_stopped

DEFAULT_CHUNK = 1 << 20
DEFAULT_MAX_LINE = 16 << 20
StartAt = Literal["beginning", "end"]


class FollowSource:
    """Follow `path` across rotation, truncation and restarts; checkpoint acknowledged positions.

    `start_at` applies only to a first run (no checkpoint file yet):
    "beginning" reads what the file already holds, "end" only what is
    appended from now on.  With a checkpoint, the run resumes right after the
    last acknowledged line.
    """

    def __init__(self, path: str, checkpoint_path: str, *, poll_interval: float = 0.25,
                 chunk_size: int = DEFAULT_CHUNK, max_line: int = DEFAULT_MAX_LINE,
                 start_at: StartAt = "beginning", log: TextIO | None = None, spill: Spill | None = None) -> None:
        if start_at not in ("beginning", "end"):
            raise ValueError(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        self.path = os.path.abspath(path)
        self.name = path
        self.checkpoint = Checkpoint(checkpoint_path)
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.start_at = start_at
        self.log = log  # None: stderr (tetrapipe.logs)
        self.spill = spill  # where the whole of a line over max_line goes (a file dead letter's spool)
        self._file: Followed | None = None
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._inflight: asyncio.Future[bytes] | None = None  # a pread still running in a worker thread
        self._said_missing = False
        # Files opened in this run (recent ones): a rotated file is never read twice.
        self._read_ids: deque[FileId] = deque(maxlen=256)
        self.checkpointed: FilePosition | None = None  # last position written to the checkpoint

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Open the file where the checkpoint (or `start_at`) says; SourceError when that is impossible."""
        self.checkpoint.check_directory()
        saved = self.checkpoint.load()
        if saved is not None:
            self._file = self._resume(saved)
            self.checkpointed = saved
        else:
            self._file = self._open_current(start_at_end=self.start_at == "end")

    def stop(self) -> None:
        """Make `batches()` return promptly, also while it waits for data or a poll."""
        self._stopping = True
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def close(self) -> None:
        """Close the file; waits for a read still running in its thread, so its fd is never reused under it."""
        if self._inflight is not None and not self._inflight.done():
            await asyncio.gather(self._inflight, return_exceptions=True)
        self._inflight = None
        if self._file is not None:
            os.close(self._file.fd)
            self._file = None

    def backlog(self) -> dict[str, int]:
        """{followed file: bytes in it not yet acknowledged by the outputs} — how far behind Tetragon's
        writer tetrapipe is (the metrics endpoint's analogue of consumer lag).  When the checkpoint is
        still in an older, rotated file, all of the current file counts."""
        f, saved = self._file, self.checkpointed
        if f is None:
            return {}
        try:
            size = os.fstat(f.fd).st_size
        except OSError:
            return {}
        done = saved.offset if saved is not None and (saved.dev, saved.inode) == f.ident else 0
        return {f.path: max(0, size - done)}

    def describe(self, position: Any) -> str:
        if isinstance(position, LinePosition):
            return f"{position.file} offset {position.offset}"
        if isinstance(position, FilePosition):
            return f"{self.name} (inode {position.inode}) offset {position.offset}"
        return f"{self.name} {position}"

    async def commit(self, position: Any) -> None:
        """Persist an acknowledged position (called by the committer only; see the module doc).

        Atomic: a crash leaves either the previous or the new checkpoint,
        never a partial one.
        """
        if not isinstance(position, FilePosition) or position == self.checkpointed:
            return
        await self.checkpoint.save(position, self._name_of(position))
        self.checkpointed = position

    def _name_of(self, position: FilePosition) -> str:
        f = self._file
        if f is not None and f.ident == (position.dev, position.inode):
            return f.path
        return self.path

    # -- where to start --------------------------------------------------------
    def _resume(self, saved: FilePosition) -> Followed | None:
        """The file and offset a checkpoint designates: the file at `path`, or a rotated sibling."""
        current = self._open(self.path)
        if current is not None and current.ident == (saved.dev, saved.inode):
            self._seek_checked(current, saved.offset)
            return current
        rotated = self._find_rotated(saved)
        if rotated is None:
            self._say(f"checkpointed file (inode {saved.inode}) is gone from {os.path.dirname(self.path)}; "
                      f"reading {self.path} from the start — lines written to the old file after offset "
                      f"{saved.offset} may be lost")
            return current
        if current is not None:
            os.close(current.fd)  # reopened by path once the rotated file is read to its end
        self._say(f"{os.path.basename(self.path)} was rotated while tetrapipe was down: finishing "
                  f"{rotated.path} from offset {saved.offset}, then the new file")
        self._seek_checked(rotated, saved.offset)
        rotated.rotated_at = time.monotonic()
        return rotated

    def _seek_checked(self, f: Followed, offset: int) -> None:
        size = os.fstat(f.fd).st_size
        if size < offset:
            self._say(f"{f.path} is shorter ({size} bytes) than the checkpoint ({offset}): "
                      "truncated while tetrapipe was down; reading it from the start")
            offset = 0
        f.seek(offset)

    def _find_rotated(self, saved: FilePosition) -> Followed | None:
        """The checkpointed file under another name in the same directory (any name: Tetragon's
        export renames to a timestamped backup name, logrotate to `path.1`, `path-DATE`, ...)."""
        for name in names_with_inode(self.path, saved.inode):
            found = self._open(name)
            if found is not None and found.ident == (saved.dev, saved.inode):
                return found
            if found is not None:
                os.close(found.fd)
        return None

    def _open_current(self, *, start_at_end: bool) -> Followed | None:
        f = self._open(self.path)
        if f is not None and start_at_end:
            f.seek(last_line_boundary(f.fd, os.fstat(f.fd).st_size, self.max_line))
        return f

    def _open(self, path: str) -> Followed | None:
        return Followed.open(path, self.max_line, self.spill)

    # -- following -------------------------------------------------------------
    async def batches(self) -> AsyncIterator[Batch]:
        self._stop_requested = asyncio.Event()
        if self._stopping:
            self._stop_requested.set()
        while not self._stopping:
            f = self._file
            if f is None:
                await self._wait_for_file()
                continue
            chunk = await self._read(f)
            if chunk is None:  # stopped while reading
                break
            batch = self._consume(f, chunk) if chunk else await self._at_end(f)
            if batch is not None:
                yield batch

    async def _read(self, f: Followed) -> bytes | None:
        """The next chunk of `f` (b"" at its current end), read in a worker thread; None when stopped."""
        assert self._stop_requested is not None
        if f.ident not in self._read_ids:
            self._read_ids.append(f.ident)
        # pread: the offset is ours, not the descriptor's, so a rewind is just an assignment.
        pending = asyncio.ensure_future(asyncio.to_thread(os.pread, f.fd, self.chunk_size, f.read_offset))
        self._inflight = pending
        read = await unless_stopped(pending, self._stop_requested)
        if read is None:
            return None  # close() waits for it before closing the descriptor
        try:
            return read.result()
        except OSError as exc:
            raise SourceError(f"reading {f.path} failed: {exc}") from None

    def _consume(self, f: Followed, chunk: bytes) -> Batch | None:
        """The complete lines `chunk` ends, as a batch positioned after the last of them."""
        oversized = f.splitter.oversized
        lines, starts = f.split(chunk)
        return self._batch(f, lines, starts, oversized) if lines else None

    def _batch(self, f: Followed, lines: list[bytes], starts: list[int], oversized: int) -> Batch:
        label = f.label
        envelopes = [Envelope(line, LinePosition(label, start)) for line, start in zip(lines, starts, strict=True)]
        if f.splitter.oversized != oversized:  # only then is there a line to look for
            for env in envelopes:
                if type(env.raw) is Oversized:
                    env.error = too_large(env.raw, self.max_line)
        return Batch(envelopes, f.position())

    async def _at_end(self, f: Followed) -> Batch | None:
        """At the end of `f`: detect rotation, truncation, a missing file; else wait one poll."""
        if f.rotated_at is not None:
            # The writer may still flush into the renamed file briefly (logrotate signals it only
            # after creating the new one): switch once it stayed at its end for a poll interval.
            if time.monotonic() - f.rotated_at >= self.poll_interval:
                return self._switch_to_new(f)
            await self._sleep(self.poll_interval)
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            await self._sleep(self.poll_interval)  # removed or between rename and create: keep the old fd
            return None
        if (st.st_dev, st.st_ino) != f.ident:
            f.rotated_at = time.monotonic()  # read the old descriptor to its end first
        elif st.st_size < f.read_offset:
            self._say(f"{f.path} was truncated ({st.st_size} < {f.read_offset} bytes read); reading it from the start")
            f.rewind()
        else:
            await self._sleep(self.poll_interval)
        return None

    def _switch_to_new(self, old: Followed) -> Batch | None:
        """Leave a rotated file (read to its end) for the next one: a rotated file not read yet, else `path`.

        A last line without a newline is handed over: the rotated file will not grow any more.
        """
        oversized = old.splitter.oversized
        last = old.finish()
        batch = self._batch(old, [last[0]], [last[1]], oversized) if last is not None else None
        mtime_ns = os.fstat(old.fd).st_mtime_ns
        os.close(old.fd)
        self._file = self._next_rotated(mtime_ns) or self._open(self.path)
        return batch

    def _next_rotated(self, after_mtime_ns: int) -> Followed | None:
        """The oldest rotated file written after the one just left and not read yet, opened at 0."""
        for path, ident in rotated_after(self.path, self.checkpoint.path, after_mtime_ns, self._read_ids):
            f = self._open(path)
            if f is not None and f.ident == ident:
                self._say(f"{os.path.basename(path)} was rotated before it was seen at {self.path}: reading it first")
                f.rotated_at = time.monotonic() - self.poll_interval  # final already: no grace needed
                return f
            if f is not None:
                os.close(f.fd)
        return None

    async def _wait_for_file(self) -> None:
        if not self._said_missing:
            self._say(f"waiting for {self.path} to appear")
            self._said_missing = True
        f = self._open(self.path)
        if f is None:
            await self._sleep(self.poll_interval)
            return
        self._said_missing = False
        self._file = f

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once on stop()."""
        assert self._stop_requested is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested.wait(), seconds)

    def _say(self, message: str) -> None:
        emit(self.log, "warning", f"follow: {message}", file=self.path)


__all__ = ["FollowSource"]
