"""Finding a followed file's rotated copies in its directory (for `tetrapipe.sources.follow.source`).

Rotation renames the followed file and creates a new one at its path:
Tetragon's export (lumberjack) renames `tetragon.log` to
`tetragon-<timestamp>.log`, logrotate to `tetragon.log.1` or
`tetragon.log-<date>`.  Rotated files are no longer written, so their
modification times order them.  These functions only list names; opening and
checking identities by descriptor is the caller's job (a name can be renamed
again between the listing and the open).
"""

from __future__ import annotations

import os
from collections.abc import Container

FileId = tuple[int, int]  # (st_dev, st_ino)
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


def rotation_siblings(path: str, checkpoint_path: str) -> list[os.DirEntry[str]]:
    """Regular files beside `path` named like its rotations.

    Compressed ones cannot be followed and are left out, so are the
    checkpoint and its temp files (which may share the directory).
    """
    base = os.path.basename(path)
    stem, ext = os.path.splitext(base)
    checkpoint = os.path.basename(checkpoint_path)
    try:
        entries = list(os.scandir(os.path.dirname(path)))
    except OSError:
        return []

    def rotated_name(name: str) -> bool:  # logrotate's `base.1`, `base-DATE`; lumberjack's `stem-TIME.ext`
        return name.startswith((base + ".", base + "-")) or (name.startswith(stem + "-") and name.endswith(ext))

    return [e for e in entries
            if e.name != base and not e.name.startswith(checkpoint) and not e.name.endswith(_COMPRESSED)
            and rotated_name(e.name) and e.is_file(follow_symlinks=False)]


def names_with_inode(path: str, inode: int) -> list[str]:
    """Paths in `path`'s directory, other than `path`, whose inode number is `inode` (any name).

    Used to find a checkpointed file that was rotated while tetrapipe was
    down; `DirEntry.inode()` costs no stat call.
    """
    try:
        entries = list(os.scandir(os.path.dirname(path)))
    except OSError:
        return []
    return [e.path for e in entries if e.path != path and e.inode() == inode]


def rotated_after(path: str, checkpoint_path: str, after_mtime_ns: int,
                  already_read: Container[FileId]) -> list[tuple[str, FileId]]:
    """Rotated siblings last written at or after `after_mtime_ns`, not read yet, oldest first.

    When files rotate faster than a poll notices (or more than once while
    tetrapipe was down), the file now at `path` is not the direct successor
    of the one just finished: the ones in between were renamed already.
    Reading them in modification-time order keeps file order and loses none.
    """
    try:
        current = os.stat(path)
        current_id: FileId | None = (current.st_dev, current.st_ino)
    except FileNotFoundError:
        current_id = None
    candidates: list[tuple[int, str, FileId]] = []
    for entry in rotation_siblings(path, checkpoint_path):
        try:
            st = entry.stat()
        except FileNotFoundError:  # deleted since the listing (max backups reached)
            continue
        ident = (st.st_dev, st.st_ino)
        if ident != current_id and ident not in already_read and st.st_mtime_ns >= after_mtime_ns:
            candidates.append((st.st_mtime_ns, entry.path, ident))
    return [(name, ident) for _, name, ident in sorted(candidates)]


__all__ = ["FileId", "names_with_inode", "rotated_after", "rotation_siblings"]
