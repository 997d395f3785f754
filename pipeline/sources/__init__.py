"""Sources, by protocol name.  Each yields `Batch`es and commits the positions the committer hands back."""

from __future__ import annotations

from pipeline.sources.stdin import FileSource, StdinSource

SOURCES = {"stdin": StdinSource, "file": FileSource}

__all__ = ["SOURCES", "FileSource", "StdinSource"]
