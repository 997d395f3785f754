"""`follow` source: Tetragon's JSON export file, followed like `tail -F`, with a checkpoint.

Contract (see `pipeline.sources.base`): `batches()` yields the complete lines
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
the middle of a line.  Each envelope carries a `LinePosition(file, offset)`
of its line's first byte, which `describe()` renders as "tetragon.log offset N".

The checkpoint.  `commit(position)` is called by the committer only with the
position of the longest prefix of batches that every sink acknowledged, so
writing the checkpoint *there, and only there* is what makes a restart exact:
everything before it was delivered, nothing after it was (at-least-once only
for the batches in flight when a run is killed).  Writing it when a batch is
read would skip undelivered lines after a crash; never writing it would re-send
the whole file.  It is written atomically (temp file in the same directory,
fsync, rename), so a kill mid-write leaves the previous checkpoint intact.

Known limits, shared with `tail -F`: a `copytruncate` whose writer appends
more than was already read before the next poll is not seen as a truncation;
an inode number reused by a new file after the checkpointed one was deleted
is taken for the same file.  Files rotated faster than a poll notices (or
several times while tetrapipe was down) are found among the siblings named
like rotations of `path` and read in modification-time order
(`_next_rotated`); compressed rotations cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TextIO

from pipeline.codec import BadInput
from pipeline.envelope import Batch, Envelope
from pipeline.logs import emit
from pipeline.sources.base import SourceError
from pipeline.sources.lines import LineSplitter, Oversized
from pipeline.sources.reader import unless_stopped

DEFAULT_CHUNK = 1 << 20
DEFAULT_MAX_LINE = 16 << 20
StartAt = Literal["beginning", "end"]


class FilePosition(NamedTuple):
    """What a checkpoint stores: a file's identity and the offset after its last delivered line."""

    dev: int
    inode: int
    offset: int


class LinePosition(NamedTuple):
    """Where one record starts: the file's name when it was opened, and the byte offset."""

    file: str
    offset: int


@dataclass(eq=False)
class _Followed:
    """An open file being followed, and where reading and line-splitting stand in it."""

    fd: int
    dev: int
    inode: int
    path: str
    read_offset: int  # the next byte to read
    line_start: int  # first byte of the unfinished line = offset after the last complete line
    splitter: LineSplitter
    skipping: bool = False  # mirrors the splitter: inside an oversized line, dropping bytes to its newline
    rotated_at: float | None = None  # monotonic time a new file was seen at the followed path

    @property
    def label(self) -> str:
        return os.path.basename(self.path)

    def position(self) -> FilePosition:
        return FilePosition(self.dev, self.inode, self.line_start)

    def rewind(self, max_line: int) -> None:
        """Forget everything read: the file was truncated, its unfinished line is gone."""
        self.read_offset = self.line_start = 0
        self.skipping = False
        self.splitter = LineSplitter(max_line)


class FollowSource:
    """Follow `path` across rotation, truncation and restarts; checkpoint acknowledged positions.

    `start_at` applies only to a first run (no checkpoint file yet):
    "beginning" reads what the file already holds, "end" only what is
    appended from now on.  With a checkpoint, the run resumes right after the
    last acknowledged line.
    """

    def __init__(self, path: str, checkpoint_path: str, *, poll_interval: float = 0.25,
                 chunk_size: int = DEFAULT_CHUNK, max_line: int = DEFAULT_MAX_LINE,
                 start_at: StartAt = "beginning", log: TextIO | None = None) -> None:
        if start_at not in ("beginning", "end"):
            raise ValueError(f"start_at must be 'beginning' or 'end', not {start_at!r}")
        self.path = os.path.abspath(path)
        self.name = path
        self.checkpoint_path = os.path.abspath(checkpoint_path)
        self.poll_interval = poll_interval
        self.chunk_size = chunk_size
        self.max_line = max_line
        self.start_at = start_at
        self.log = log  # None: stderr (pipeline.logs)
        self._file: _Followed | None = None
        self._stopping = False
        self._stop_requested: asyncio.Event | None = None
        self._inflight: asyncio.Future[bytes] | None = None  # a pread still running in a worker thread
        self._said_missing = False
        # Files opened in this run (recent ones): a rotated file is never read twice.
        self._read_ids: deque[tuple[int, int]] = deque(maxlen=256)
        self.checkpointed: FilePosition | None = None  # last position written to the checkpoint

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Open the file where the checkpoint (or `start_at`) says; SourceError when that is impossible."""
        self._check_checkpoint_dir()
        saved = self._load_checkpoint()
        if saved is not None:
            self._file = self._resume(saved)
        else:
            self._file = self._open_current(start_at_end=self.start_at == "end")
        if saved is not None:
            self.checkpointed = saved

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
        done = saved.offset if saved is not None and (saved.dev, saved.inode) == (f.dev, f.inode) else 0
        return {f.path: max(0, size - done)}

    def describe(self, position: Any) -> str:
        if isinstance(position, LinePosition):
            return f"{position.file} offset {position.offset}"
        if isinstance(position, FilePosition):
            return f"{self.name} (inode {position.inode}) offset {position.offset}"
        return f"{self.name} {position}"

    # -- the checkpoint ----------------------------------------------------------
    async def commit(self, position: Any) -> None:
        """Persist an acknowledged position (called by the committer only; see the module doc).

        Atomic: a crash leaves either the previous or the new checkpoint,
        never a partial one.  The file's current name is recorded for people
        reading it; resuming relies on (dev, inode) only.
        """
        if not isinstance(position, FilePosition) or position == self.checkpointed:
            return
        record = {"dev": position.dev, "inode": position.inode, "offset": position.offset,
                  "path": self._name_of(position)}
        await asyncio.to_thread(write_atomically, self.checkpoint_path, json.dumps(record) + "\n")
        self.checkpointed = position

    def _name_of(self, position: FilePosition) -> str:
        f = self._file
        if f is not None and (f.dev, f.inode) == (position.dev, position.inode):
            return f.path
        return self.path

    def _check_checkpoint_dir(self) -> None:
        directory = os.path.dirname(self.checkpoint_path)
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            # Found now rather than at the first commit, after events were already sent.
            raise SourceError(f"checkpoint directory {directory} does not exist or is not writable")

    def _load_checkpoint(self) -> FilePosition | None:
        try:
            with open(self.checkpoint_path, encoding="utf-8") as fh:
                record = json.load(fh)
            return FilePosition(int(record["dev"]), int(record["inode"]), int(record["offset"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Atomic writes make a damaged checkpoint an outside event: guessing a position
            # would silently re-send or skip, so a person decides.
            raise SourceError(f"checkpoint {self.checkpoint_path} is unreadable ({exc!r}); "
                              "fix or delete it (deleting re-reads the file from --follow-from)") from None

    # -- where to start --------------------------------------------------------
    def _resume(self, saved: FilePosition) -> _Followed | None:
        """The file and offset a checkpoint designates: the file at `path`, or a rotated sibling."""
        current = self._open(self.path)
        if current is not None and (current.dev, current.inode) == (saved.dev, saved.inode):
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

    def _seek_checked(self, f: _Followed, offset: int) -> None:
        size = os.fstat(f.fd).st_size
        if size < offset:
            self._say(f"{f.path} is shorter ({size} bytes) than the checkpoint ({offset}): "
                      "truncated while tetrapipe was down; reading it from the start")
            offset = 0
        f.read_offset = f.line_start = offset

    def _find_rotated(self, saved: FilePosition) -> _Followed | None:
        """The checkpointed file under another name in the same directory (any name: Tetragon's
        export renames to a timestamped backup name, logrotate to `path.1`, `path-DATE`, ...)."""
        directory = os.path.dirname(self.path)
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for entry in entries:
            # entry.inode() needs no stat call; only a matching one is stat'ed for the device.
            if entry.path == self.path or entry.inode() != saved.inode:
                continue
            found = self._open(entry.path)
            if found is not None and found.dev == saved.dev and found.inode == saved.inode:
                return found
            if found is not None:
                os.close(found.fd)
        return None

    def _open_current(self, *, start_at_end: bool) -> _Followed | None:
        f = self._open(self.path)
        if f is not None and start_at_end:
            f.read_offset = f.line_start = last_line_boundary(f.fd, os.fstat(f.fd).st_size, self.max_line)
        return f

    def _open(self, path: str) -> _Followed | None:
        """`path` opened for reading, its identity from the descriptor (not a racy stat by name); None if absent."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:  # e.g. no permission: waiting would not help
            raise SourceError(f"cannot open {path}: {exc}") from None
        st = os.fstat(fd)
        return _Followed(fd, st.st_dev, st.st_ino, path, 0, 0, LineSplitter(self.max_line))

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

    async def _read(self, f: _Followed) -> bytes | None:
        """The next chunk of `f` (b"" at its current end), read in a worker thread; None when stopped."""
        assert self._stop_requested is not None
        if (f.dev, f.inode) not in self._read_ids:
            self._read_ids.append((f.dev, f.inode))
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

    def _consume(self, f: _Followed, chunk: bytes) -> Batch | None:
        """The complete lines `chunk` ends, as a batch positioned after the last of them."""
        base = f.read_offset
        f.read_offset += len(chunk)
        lines = f.splitter.feed(chunk)
        starts = self._line_starts(f, chunk, base)
        if len(starts) != len(lines):  # cannot happen while the mirror matches LineSplitter
            starts = [f.line_start] * len(lines)
        return self._batch(f, lines, starts) if lines else None

    def _line_starts(self, f: _Followed, chunk: bytes, base: int) -> list[int]:
        """Offsets of the lines the splitter returns for `chunk`; advances `f.line_start`.

        Mirrors LineSplitter's rules: a newline ends a line, except the one
        ending an oversized line whose head was already returned; an
        unfinished line longer than `max_line` is returned (as its head) at
        once, but it is not complete, so `line_start` stays at its start.
        """
        starts: list[int] = []
        start = f.line_start
        nl = chunk.find(b"\n")
        while nl >= 0:
            if f.skipping:
                f.skipping = False
            else:
                starts.append(start)
            start = base + nl + 1
            nl = chunk.find(b"\n", nl + 1)
        f.line_start = start
        if not f.skipping and f.read_offset - start > self.max_line:
            starts.append(start)
            f.skipping = True
        return starts

    def _batch(self, f: _Followed, lines: list[bytes], starts: list[int]) -> Batch:
        envelopes = [Envelope(line, LinePosition(f.label, start)) for line, start in zip(lines, starts, strict=True)]
        for env in envelopes:
            if type(env.raw) is Oversized:
                env.error = BadInput("too_large", f"line longer than {self.max_line} bytes (head kept)")
        return Batch(envelopes, f.position())

    async def _at_end(self, f: _Followed) -> Batch | None:
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
        if (st.st_dev, st.st_ino) != (f.dev, f.inode):
            f.rotated_at = time.monotonic()  # read the old descriptor to its end first
        elif st.st_size < f.read_offset:
            self._say(f"{f.path} was truncated ({st.st_size} < {f.read_offset} bytes read); reading it from the start")
            f.rewind(self.max_line)
        else:
            await self._sleep(self.poll_interval)
        return None

    def _switch_to_new(self, old: _Followed) -> Batch | None:
        """Leave a rotated file (read to its end) for the file now at `path`, read from 0.

        A last line without a newline is handed over: the rotated file will not grow any more.
        """
        last = old.splitter.finish()
        batch = None
        if last is not None:
            start, old.line_start = old.line_start, old.read_offset
            batch = self._batch(old, [last], [start])
        mtime_ns = os.fstat(old.fd).st_mtime_ns
        os.close(old.fd)
        self._file = self._next_rotated(mtime_ns) or self._open(self.path)
        return batch

    def _next_rotated(self, after_mtime_ns: int) -> _Followed | None:
        """The oldest rotated file written after the one just left and not read yet, opened at 0.

        When files rotate faster than a poll notices (or more than once while
        tetrapipe was down), the file now at `path` is not the direct
        successor of the one just finished: the ones in between were renamed
        already.  Rotated files are no longer written, so their modification
        times order them; reading them first keeps file order and loses none.
        """
        try:
            current = os.stat(self.path)
            current_id: tuple[int, int] | None = (current.st_dev, current.st_ino)
        except FileNotFoundError:
            current_id = None
        candidates: list[tuple[int, str, tuple[int, int]]] = []
        for entry in self._rotation_siblings():
            try:
                st = entry.stat()
            except FileNotFoundError:  # deleted since the listing (max backups reached)
                continue
            ident = (st.st_dev, st.st_ino)
            if ident != current_id and ident not in self._read_ids and st.st_mtime_ns >= after_mtime_ns:
                candidates.append((st.st_mtime_ns, entry.path, ident))
        for _, path, ident in sorted(candidates):
            f = self._open(path)
            if f is not None and (f.dev, f.inode) == ident:
                self._say(f"{os.path.basename(path)} was rotated before it was seen at {self.path}: reading it first")
                f.rotated_at = time.monotonic() - self.poll_interval  # final already: no grace needed
                return f
            if f is not None:
                os.close(f.fd)
        return None

    def _rotation_siblings(self) -> list[os.DirEntry[str]]:
        """Regular files in the directory named like rotations of `path`.

        Lumberjack (Tetragon's export): `tetragon-<timestamp>.log`; logrotate:
        `tetragon.log.1`, `tetragon.log-<date>`.  Compressed ones cannot be
        followed and are left out, so are the checkpoint and its temp files.
        """
        base = os.path.basename(self.path)
        stem, ext = os.path.splitext(base)
        checkpoint = os.path.basename(self.checkpoint_path)
        try:
            entries = list(os.scandir(os.path.dirname(self.path)))
        except OSError:
            return []
        return [e for e in entries
                if e.name != base and not e.name.startswith(checkpoint)
                and not e.name.endswith((".gz", ".bz2", ".xz", ".zst"))
                and (e.name.startswith((base + ".", base + "-")) or (e.name.startswith(stem + "-") and
                                                                     e.name.endswith(ext)))
                and e.is_file(follow_symlinks=False)]

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


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text`: temp file in the same directory, fsync, rename, fsync the directory.

    rename() within one filesystem is atomic, so readers (and a restart after
    a kill) see the old content or the new one, never a mix; the directory
    fsync makes the rename itself survive a power loss.
    """
    directory = os.path.dirname(path) or "."
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        data = text.encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def last_line_boundary(fd: int, size: int, max_line: int, block: int = 64 << 10) -> int:
    """The offset after the last newline in the file's last `max_line` bytes.

    0 when the file holds no newline; when none is within `max_line` bytes,
    the point where the search stopped (the oversized line's fragment from
    there is handed over and rejected like any oversized or invalid line).

    Used by `start_at="end"`; starting at the raw end could start in the
    middle of a line the writer is still writing, and hand over its tail as a
    line of its own.
    """
    end = size
    while end > 0 and size - end < max_line:
        begin = max(0, end - block)
        data = os.pread(fd, end - begin, begin)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return begin + nl + 1
        end = begin
    return 0 if end == 0 else end


__all__ = ["FilePosition", "FollowSource", "LinePosition", "last_line_boundary", "write_atomically"]
