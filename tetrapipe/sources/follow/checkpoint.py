"""The follow source's checkpoint: which file (dev, inode) and how far its lines were delivered.

Written only by the committer's call (`FollowSource.commit`), so it always
names the end of the longest prefix every sink acknowledged.  Written
atomically (temp file in the same directory, fsync, rename, directory
fsync): a kill mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import NamedTuple

from tetrapipe.sources.base import SourceError


class FilePosition(NamedTuple):
    """What a checkpoint stores: a file's identity and the offset after its last delivered line."""

    dev: int
    inode: int
    offset: int


class Checkpoint:
    """The checkpoint file at `path`: `load()` once at start, `save()` after each acknowledged prefix."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)

    def check_directory(self) -> None:
        """SourceError unless the checkpoint's directory exists and is writable.

        Found at start rather than at the first commit, after events were already sent.
        """
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK | os.X_OK):
            raise SourceError(f"checkpoint directory {directory} does not exist or is not writable")

    def load(self) -> FilePosition | None:
        """The saved position; None on a first run (no file); SourceError when it is damaged."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                record = json.load(fh)
            return FilePosition(int(record["dev"]), int(record["inode"]), int(record["offset"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Atomic writes make a damaged checkpoint an outside event: guessing a position
            # would silently re-send or skip, so a person decides.
            raise SourceError(f"checkpoint {self.path} is unreadable ({exc!r}); "
                              "fix or delete it (deleting re-reads the file from --follow-from)") from None

    async def save(self, position: FilePosition, file_name: str) -> None:
        """Persist `position` atomically; `file_name` is recorded for people only (resuming uses dev+inode)."""
        record = {"dev": position.dev, "inode": position.inode, "offset": position.offset, "path": file_name}
        await asyncio.to_thread(write_atomically, self.path, json.dumps(record) + "\n")


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


__all__ = ["Checkpoint", "FilePosition", "write_atomically"]
