"""SIGHUP reload: the category library and the CIDR/zone config, swapped in without a restart.

Contract:
- a reload re-reads the config file (and the library files it names), builds
  and compiles a new tagger and classifier — off the event loop, in a thread,
  so intake does not stall while rules compile — and swaps them into the
  processor between two batches: every event is processed wholly by the old
  or wholly by the new configuration, never a mix;
- CIDRs resolve as at start: `--pod-cidr`/`--service-cidr` flags, else
  `POD_CIDR`/`SERVICE_CIDR`, else the file — so a flag still wins over the file;
- an invalid new config is rejected with one clear log line naming the
  problem (file, key path) and the running configuration stays;
- what a reload cannot change safely is refused, not half-applied: adding,
  removing or regrouping categories while a Kafka or OTLP output routes or
  grades by category (its topics/severities were set up at start), or
  removing a category that `--only` selects.  Outputs themselves (`kafka:`,
  `otlp:` sections) are read at start only; a reload says so when they changed.
- the filters, redaction, rate limits and dedup (top level and per sink) are recompiled and
  swapped in with the rest (tetrapipe.pipeline.filtering); their rate-limit/dedup state restarts;
- reloads are serialised: a SIGHUP during a reload runs once more after it.
- the peer resolver's static file (`peers.static_file`) and snapshot (`peers.snapshot`) are
  re-read too; an invalid one is rejected with its own log line and the old table / index stays
  (the rest of the reload still applies).  Other `peers:` options apply at restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from tetrapipe.config.root import Config, ConfigFileError, Filters
from tetrapipe.logs import emit
from tetrapipe.pipeline.processor import Processor
from tetrapipe.pipeline.stats import Stats
from tetrapipe.transforms.classify import Classifier
from tetrapipe.transforms.peer_snapshot import SnapshotError
from tetrapipe.transforms.peer_static import StaticPeersError
from tetrapipe.transforms.peers import PeerResolver
from tetrapipe.transforms.tag import Tagger


@dataclass(frozen=True)
class Loaded:
    """What one reading of the configuration produced."""

    config: Config
    tagger: Tagger
    classifier: Classifier
    filters: Filters = Filters()  # compiled filters/redaction/rate limits (top level and per sink)


class Reloader:
    """Owns the current configuration; `request()` (the SIGHUP handler) schedules a reload."""

    def __init__(self, load: Callable[[], Loaded], current: Loaded, processor: Processor, *,
                 category_bound_outputs: Sequence[str] = (), only: Sequence[str] = (),
                 stats: Stats | None = None, log: Callable[[str, str], None] | None = None,
                 peers: PeerResolver | None = None) -> None:
        self.peers = peers
        self.on_filters: Callable[[Filters], None] | None = None  # applies the per-sink filters (cli.main)
        self._load = load
        self.current = current
        self.processor = processor
        self.category_bound_outputs = list(category_bound_outputs)
        self.only = set(only)
        self.stats = stats or Stats()
        self._say = log or (lambda level, message: emit(None, level, message))
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Schedule a reload on the running loop (safe to call from a signal handler)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._reload_until_current(), name="tetrapipe-reload")

    async def wait(self) -> None:
        """Wait for a scheduled reload to finish (tests, shutdown)."""
        if self._task is not None:
            await self._task

    async def _reload_until_current(self) -> None:
        while True:
            self._again = False
            await self.reload()
            if not self._again:
                return

    async def reload(self) -> bool:
        """Load, check and apply; True when the new configuration is in use."""
        try:
            loaded = await asyncio.to_thread(self._load)
            self._check(loaded)
        except ConfigFileError as exc:
            self.stats.reloads["failed"] += 1
            self._say("error", f"reload rejected, the running configuration stays: {exc}")
            return False
        except Exception as exc:  # noqa: BLE001 - any failure to build keeps the old config
            self.stats.reloads["failed"] += 1
            self._say("error", f"reload rejected, the running configuration stays: {exc!r}")
            return False
        note = self._outputs_note(loaded.config)
        self.processor.tagger = loaded.tagger  # between batches: the loop runs `process` to completion
        self.processor.classifier = loaded.classifier
        self.processor.stage = loaded.filters.top  # a new stage: rate-limit/dedup state starts afresh
        self.processor.decoder.use_view(loaded.filters.view)  # what redaction reads, when a stage redacts
        if self.on_filters is not None:
            self.on_filters(loaded.filters)  # the per-sink stages (delivery), between the same two batches
        self.current = loaded
        self.stats.reloads["ok"] += 1
        self._say("info", f"reloaded configuration: {len(loaded.tagger.categories)} categories, "
                  f"{len(loaded.config.egress.zones)} custom zones{note}")
        self._reload_peers()
        return True

    def _reload_peers(self) -> None:
        if self.peers is not None and self.peers.snapshot.path is not None:
            try:
                objects = self.peers.reload_snapshot()  # between two batches: the index is read only there
            except SnapshotError as exc:
                self.stats.reloads["failed"] += 1
                self._say("error", f"peers snapshot rejected, the index stays as it was: peers.snapshot: {exc}")
            else:
                self._say("info", f"reloaded peers snapshot: {objects} objects")
        if self.peers is None or self.peers.static.path is None:
            return
        try:
            entries = self.peers.reload()  # a small file, swapped in whole: between two batches
        except (StaticPeersError, OSError) as exc:
            self.stats.reloads["failed"] += 1
            self._say("error", f"peers static file rejected, the previous table stays: {exc}")
            return
        self._say("info", f"reloaded peers static file: {entries} entries")

    def _check(self, loaded: Loaded) -> None:
        old_groups, new_groups = dict(self.current.tagger.groups), dict(loaded.tagger.groups)
        if new_groups != old_groups and self.category_bound_outputs:
            changed = sorted(set(old_groups.items()) ^ set(new_groups.items()))
            raise ConfigFileError(
                f"categories added, removed or regrouped ({', '.join(c for c, _ in changed)}) while "
                f"{', '.join(self.category_bound_outputs)} route or grade by category; restart to apply")
        missing = sorted(self.only - set(new_groups))
        if missing:
            raise ConfigFileError(f"--only selects {', '.join(missing)}, which the new library lacks")

    def _outputs_note(self, config: Config) -> str:
        old = self.current.config
        if _outputs(config) != _outputs(old):
            return "; the kafka/otlp sections changed, which applies only at restart"
        if config.peers != old.peers:
            return ("; the peers section changed, which applies only at restart "
                    "(its static file and snapshot were re-read)")
        return ""


_STAGE_KEYS = ("filters", "field_filters", "redaction", "rate_limit", "dedup")  # per sink, applied on reload


def _outputs(config: Config) -> Any:
    """The kafka/otlp sections without their per-sink filter keys (those a reload applies)."""
    raw = msgspec.to_builtins({"kafka": config.kafka, "otlp": config.otlp})
    for entry in [*raw["otlp"], (raw["kafka"] or {}).get("sink") or {}]:
        for key in _STAGE_KEYS:
            entry.pop(key, None)
    return raw
