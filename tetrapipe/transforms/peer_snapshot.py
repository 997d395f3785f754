"""A Kubernetes snapshot file -> the API index: peers for offline replay, and for benchmarks.

The file is a List document as ``kubectl get pods,services,endpointslices,nodes -A -o json`` (or
``-o yaml``) writes it: ``{"kind": "List", "items": [...]}``.

Contract:
- Each item goes through the record functions the API watch uses (``peer_model.pod_record``,
  ``service_record``, ``node_record``, ``slice_record``) into the same :class:`ApiIndex`, as objects
  found by a list (their addresses start at creation): its entries are API entries, which a
  learned entry never overrides. ReplicaSets and Jobs are not needed (the watch does not read them
  either: a pod's workload follows from its owner reference and ``pod-template-hash``); items of
  other kinds are skipped and counted.
- :meth:`Snapshot.load` reads and converts the whole file first and changes the index only when
  every item is valid; otherwise it raises :class:`SnapshotError` naming the item
  (``items[12]: ...``) and the index keeps what it had. Loading again (SIGHUP) upserts the new
  file's objects and deletes the previous file's objects it no longer has (their addresses enter
  the grace period, as after a relist).
"""
from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import orjson
import yaml

from tetrapipe.transforms.peer_index import ApiIndex
from tetrapipe.transforms.peer_model import (
    LabelPicker,
    NamedRecord,
    PodRecord,
    SliceRecord,
    node_record,
    pod_record,
    service_record,
    slice_record,
)

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Record = PodRecord | NamedRecord | SliceRecord
_INDEX_KIND = {"Pod": "pod", "Service": "service", "Node": "node", "EndpointSlice": "slice"}


class SnapshotError(ValueError):
    """The snapshot file is unreadable or an item is malformed; the message names the item."""


def read_items(path: str) -> list[Any]:
    """The ``items`` of the List document at ``path`` (JSON, else YAML)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SnapshotError(f"{path}: {exc.strerror or exc}") from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            doc = yaml.load(data, Loader=_LOADER)
        except yaml.YAMLError as exc:
            raise SnapshotError(f"{path}: not JSON or YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise SnapshotError(f"{path}: expected a Kubernetes List ({{kind: List, items: [...]}}, "
                            "as kubectl get pods,services,endpointslices,nodes -A -o json writes it)")
    return doc["items"]


def _record(item: Any, labels: LabelPicker) -> tuple[str, Record] | None:
    if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
        raise ValueError("expected an object with a kind")
    kind = _INDEX_KIND.get(item["kind"])
    if kind is None:
        return None
    meta = item.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ValueError(f"{item['kind']}: metadata.name missing")
    if kind == "pod":
        return kind, pod_record(item, labels)
    if kind == "slice":
        return kind, slice_record(item)
    return kind, (service_record if kind == "service" else node_record)(item, labels)


def convert(items: list[Any], labels: LabelPicker) -> tuple[list[tuple[str, Record]], int]:
    """(index kind, record) of each item of a known kind, and how many were skipped; SnapshotError names a bad one."""
    records, skipped = [], 0
    for i, item in enumerate(items):
        try:
            rec = _record(item, labels)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            name = ((item.get("metadata") or {}).get("name") if isinstance(item, dict)
                    and isinstance(item.get("metadata"), dict) else None)
            raise SnapshotError(f"items[{i}]{f' ({name})' if name else ''}: {exc}") from None
        if rec is None:
            skipped += 1
        else:
            records.append(rec)
    return records, skipped


class Snapshot:
    """The snapshot file of one resolver; see the module docstring."""

    def __init__(self, path: str | None, index: ApiIndex, labels: LabelPicker) -> None:
        self.path, self.index, self.labels = path, index, labels
        self.loaded: dict[str, set[str]] = {}  # index kind -> uids the last load wrote
        self.objects = self.skipped = self.loads = 0

    def load(self) -> int:
        """Read the file into the index (see the module docstring); returns how many objects it holds."""
        if self.path is None:
            return 0
        # Without the cyclic GC while loading: the document and the records are acyclic, and the collections
        # their allocations would trigger cost more than the rest (10k pods: 0.47 -> 0.29 s).
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._load(self.path)
        finally:
            if paused:
                gc.enable()

    def _load(self, path: str) -> int:
        records, skipped = convert(read_items(path), self.labels)
        index = self.index
        uids: dict[str, set[str]] = {k: set() for k in _INDEX_KIND.values()}
        for kind, rec in records:
            if isinstance(rec, PodRecord):
                index.upsert_pod(rec, live=False)
            elif isinstance(rec, SliceRecord):
                index.upsert_slice(rec)
            else:
                index.upsert_named(kind, rec, live=False)
            uids[kind].add(rec.uid)
        for kind, before in self.loaded.items():
            for uid in before - uids[kind]:
                index.delete_slice(uid) if kind == "slice" else index.delete(kind, uid)
        self.loaded, self.objects, self.skipped = uids, len(records), skipped
        self.loads += 1
        return len(records)
