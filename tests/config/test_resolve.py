"""tetrapipe.config.resolve: every way of naming a source, sink or dead letter becomes the registries' entries,
flags over environment over file; conflicts and bad entries are errors that name the key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tetrapipe.cli.main import build_parser
from tetrapipe.config.resolve import Wiring, build_wiring, resolve_wiring
from tetrapipe.config.root import Config, ConfigFileError, load_config
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.file import FileDeadLetter, FileDeadLetterConfig
from tetrapipe.sinks.file_sink import FileSink, FileSinkConfig
from tetrapipe.sinks.kafka.entries import KafkaDeadLetterEntry, KafkaSinkEntry
from tetrapipe.sinks.otlp.config import OtlpSinkEntry
from tetrapipe.sinks.stdout import StdoutSinkConfig
from tetrapipe.sources.follow.config import FollowSourceConfig
from tetrapipe.sources.kafka.config import KafkaSourceEntry
from tetrapipe.sources.stream import FileSourceConfig, StdinSourceConfig


def wiring(tmp_path: Path, yaml: str = "", *flags: str, environ: dict[str, str] | None = None) -> Wiring:
    config = Config()
    if yaml:
        path = tmp_path / "tetrapipe.yaml"
        path.write_text(yaml)
        config = load_config(path)
    args = build_parser().parse_args(["run", *flags])
    return resolve_wiring(args, config, environ or {})


def entries(w: Wiring) -> list[tuple[str, type[Any]]]:
    return [(path, type(entry)) for path, entry in w.sinks]


def test_no_file_no_flags_reads_stdin_and_writes_stdout(tmp_path: Path) -> None:
    w = wiring(tmp_path)
    assert isinstance(w.source, StdinSourceConfig) and w.dead_letter is None
    assert w.sinks == [("stdout", StdoutSinkConfig(format="json"))]


def test_the_file_lists_sources_sinks_and_the_dead_letter(tmp_path: Path) -> None:
    w = wiring(tmp_path, """
sources: [{type: follow, path: /var/log/t.log, checkpoint: /var/lib/t.pos}]
sinks:
  - {type: file, path: /tmp/out.jsonl, format: ecs}
  - {type: stdout, format: summary}
  - {type: kafka, connection: {bootstrap_servers: "k:9092"}, topic_template: "t.{group}", format: ocsf}
  - {type: otlp, endpoint: "http://c:4318", format: summary}
dead_letter: {type: kafka, connection: {bootstrap_servers: "k:9092"}, topic: dlq}
""")
    assert w.source == FollowSourceConfig("/var/log/t.log", "/var/lib/t.pos")
    assert entries(w) == [("sinks[0]", FileSinkConfig), ("sinks[1]", StdoutSinkConfig),
                          ("sinks[2]", KafkaSinkEntry), ("sinks[3]", OtlpSinkEntry)]
    assert w.sinks[0][1].format == "ecs" and w.sinks[1][1].format == "summary" and w.sinks[2][1].format == "ocsf"
    assert isinstance(w.dead_letter, KafkaDeadLetterEntry) and w.dead_letter.topic == "dlq"


def test_the_short_forms_become_the_same_entries(tmp_path: Path) -> None:
    w = wiring(tmp_path, """
kafka:
  connection: {bootstrap_servers: "k:9092"}
  source: {topics: [raw]}
  sink: {topic_template: "t.{category}"}
otlp: [{endpoint: "http://c:4318"}]
""", "--otlp-endpoint", "http://d:4318", "--format", "summary", "--dead-letter", "bad.jsonl")
    assert isinstance(w.source, KafkaSourceEntry) and w.source.topics == ["raw"]
    assert w.source.connection.bootstrap_servers == "k:9092"
    assert entries(w) == [("kafka.sink", KafkaSinkEntry), ("otlp[0]", OtlpSinkEntry),
                          ("--otlp-endpoint[0]", OtlpSinkEntry), ("stdout", StdoutSinkConfig)]
    assert w.sinks[3][1].format == "summary"
    assert w.dead_letter == FileDeadLetterConfig("bad.jsonl")


def test_flags_win_over_the_file(tmp_path: Path) -> None:
    yaml = """
sources: [{type: file, path: from-file.log}]
sinks: [{type: stdout, format: summary}, {type: file, path: out.jsonl}]
dead_letter: {type: file, path: file-dlq.jsonl}
"""
    w = wiring(tmp_path, yaml, "--input", "flag.log", "--format", "ecs", "--only", "sudo",
               "--dead-letter", "flag-dlq.jsonl")
    assert w.source == FileSourceConfig("flag.log")
    stdout = w.sinks[0][1]
    assert len(w.sinks) == 2 and stdout.format == "ecs"  # the file's stdout entry, not a second stdout
    assert stdout.select.categories == {"sudo"} and not stdout.select.untagged
    assert w.dead_letter == FileDeadLetterConfig("flag-dlq.jsonl")
    unflagged = wiring(tmp_path, yaml)
    assert unflagged.source == FileSourceConfig("from-file.log")
    assert unflagged.sinks[0][1].format == "summary" and unflagged.dead_letter == FileDeadLetterConfig("file-dlq.jsonl")


def test_environment_wins_over_the_file_and_flags_over_the_environment(tmp_path: Path) -> None:
    yaml = """
sources: [{type: kafka, connection: {bootstrap_servers: "file:9092"}, topics: [raw]}]
sinks: [{type: file, path: out.jsonl}]
"""
    env = {"KAFKA_BOOTSTRAP_SERVERS": "env:9092"}
    assert wiring(tmp_path, yaml, environ=env).source.connection.bootstrap_servers == "env:9092"
    flagged = wiring(tmp_path, yaml, "--kafka-bootstrap", "flag:9092", environ=env)
    assert flagged.source.connection.bootstrap_servers == "flag:9092"
    assert wiring(tmp_path, yaml).source.connection.bootstrap_servers == "file:9092"


def test_checkpoint_flags_apply_to_a_follow_entry(tmp_path: Path) -> None:
    yaml = "sources: [{type: follow, path: t.log, checkpoint: file.pos}]\n"
    w = wiring(tmp_path, yaml, "--checkpoint", "flag.pos", "--follow-from", "end")
    assert w.source == FollowSourceConfig("t.log", "flag.pos", start_at="end")
    with pytest.raises(ConfigFileError, match="apply only with --follow"):
        wiring(tmp_path, "", "--checkpoint", "flag.pos")


@pytest.mark.parametrize(("yaml", "flags", "message"), [
    ("sinks: [{type: stdout, colour: red}]", (), r"unknown field `colour` - at `sinks\[0\]`"),
    ("sinks: [{type: file}]", (), r"missing required field `path` - at `sinks\[0\]`"),
    ("sinks: [{type: stdout}, {type: file, path: x, fsync: maybe}]", (), r"at `sinks\[1\].fsync`"),
    ("sinks: [{type: splunk}]", (), r"sinks\[0\].type: sink type 'splunk' unknown; known: stdout, file"),
    ("sinks: [stdout]", (), r"sinks\[0\]: a mapping with a `type` expected"),
    ("sources: [{type: stdin}, {type: file, path: x}]", (), "one entry expected"),
    ("sources: [{type: kafka, topics: [a], connection: {bootstrap_servers: 1}}]", (),
     r"at `sources\[0\].connection.bootstrap_servers`"),
    ("dead_letter: {type: stdout}", (), r"dead_letter.type: dead-letter type 'stdout' unknown"),
    ("kafka: {source: {topics: [a]}}\nsources: [{type: stdin}]", (), "kafka.source and sources: exclude"),
    ("kafka: {dead_letter: {topic: d}}\ndead_letter: {type: file, path: x}", (),
     "dead_letter and kafka.dead_letter exclude"),
    ("dead_letter: {type: kafka, topic: d}", ("--dead-letter", "x"), "exclude each other"),
    ("", ("--follow", "a", "--input", "b", "--checkpoint", "c"), "--follow excludes --input"),
])
def test_errors_name_the_key_path(tmp_path: Path, yaml: str, flags: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigFileError, match=message):
        wiring(tmp_path, yaml, *flags)


def test_building_errors_name_the_entry(tmp_path: Path) -> None:
    w = wiring(tmp_path, "sinks: [{type: stdout}, {type: file, path: x, format: xml}]")
    with pytest.raises(ConfigFileError, match=r"sinks\[1\]: unknown format 'xml'"):
        build_wiring(w, SinkContext())
    two = wiring(tmp_path, "sinks: [{type: stdout}, {type: stdout, format: summary}]")
    with pytest.raises(ConfigFileError, match="same name: stdout"):
        build_wiring(two, SinkContext())


def test_built_from_the_registries(tmp_path: Path) -> None:
    w = wiring(tmp_path, f"sinks: [{{type: file, path: {tmp_path / 'out'}}}]\n"
                         f"dead_letter: {{type: file, path: {tmp_path / 'dlq'}}}")
    built = build_wiring(w, SinkContext())
    assert isinstance(built.sinks[0][1], FileSink) and isinstance(built.dead_letter, FileDeadLetter)
    assert built.source.splitter is not None  # stdin, spooling oversized lines into the dead letter's directory
