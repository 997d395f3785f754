"""The library as data: loading, user overrides and additions, and errors that name their path."""

from __future__ import annotations

import pytest

from tests.support.events import exec_event, kprobe_event
from tetrapipe.config.root import Config, ConfigFileError, build_tagger, load_config
from tetrapipe.rules.library import LibraryConfig, LibraryError, load_library

SEED_IDS = ["ebpf", "kernel-module", "library", "tmp-execs", "sudo", "suid", "setuid", "ssh", "egress"]


def test_shipped_library_has_the_nine_categories():
    cats = load_library()
    assert [c.id for c in cats] == SEED_IDS
    assert {c.id: c.group for c in cats} == {
        "ebpf": "system", "kernel-module": "system", "library": "system", "tmp-execs": "security",
        "sudo": "security", "suid": "security", "setuid": "security", "ssh": "network", "egress": "network"}
    assert all(c.description and c.summary and c.example for c in cats)


def _tagger_with(yaml_text: str, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    return build_tagger(load_config(path).library)


def _tag(tagger, processor, event):
    import orjson

    from tests.conftest import process_lines
    from tetrapipe.pipeline.processor import Processor
    return process_lines(Processor(tagger, processor.classifier), [orjson.dumps(event)])[0].tags


def test_override_params_without_touching_the_rule(tmp_path, processor):
    tagger = _tagger_with("library:\n  categories:\n    - id: tmp-execs\n      params: {dirs: [/scratch/]}\n",
                          tmp_path)
    assert _tag(tagger, processor, exec_event("/scratch/x")).categories == ("tmp-execs",)
    assert _tag(tagger, processor, exec_event("/tmp/x")).categories == ()


def test_override_sudo_list_and_ssh_daemons(tmp_path, processor):
    tagger = _tagger_with("""
library:
  categories:
    - id: sudo
      params: {binaries: [sudo, doas]}
    - id: ssh
      params: {daemons: [sshd, dropbear]}
""", tmp_path)
    assert _tag(tagger, processor, exec_event("/usr/bin/doas")).categories == ("sudo",)
    assert _tag(tagger, processor, kprobe_event("tcp_close", binary="/usr/sbin/dropbear")).categories == ("ssh",)


def test_add_a_category_and_disable_one(tmp_path, processor):
    tagger = _tagger_with("""
library:
  disable: [library]
  categories:
    - id: crypto-miner
      group: security
      description: Known miner binaries
      match:
        event: process_exec
        any:
          - {field: process.binary, basename_in: [xmrig, minerd]}
          - {field: process.arguments, contains: stratum+tcp://}
      summary: '\\(.time) \\(.process_exec.process.binary) \\(.process_exec.process.arguments)'
""", tmp_path)
    assert "library" not in tagger.ids
    tags = _tag(tagger, processor, exec_event("/opt/xmrig", "-o pool"))
    assert tags.categories == ("crypto-miner",)
    assert tags.summaries["crypto-miner"] == "2024-05-14T09:00:00.123456789Z /opt/xmrig -o pool"
    assert _tag(tagger, processor, exec_event("/bin/sh", "-c 'x stratum+tcp://pool'")).categories == ("crypto-miner",)


def test_rule_on_a_field_outside_the_typed_model(tmp_path, processor):
    tagger = _tagger_with("""
library:
  categories:
    - id: init-tree
      group: security
      match: {event: process_exec, field: process.in_init_tree, equals: true}
      summary: '\\(.process_exec.process.binary) \\(.process_exec.process.flags)'
""", tmp_path)
    event = exec_event("/sbin/init", None, in_init_tree=True, flags="execve rootcwd")
    tags = _tag(tagger, processor, event)
    assert tags.categories == ("init-tree",)
    assert tags.summaries["init-tree"] == "/sbin/init execve rootcwd"


@pytest.mark.parametrize(("text", "message"), [
    ("library:\n  categorie: []\n", "unknown field `categorie`"),
    ("library:\n  categories:\n    - id: x\n      group: g\n", "needs match"),
    ("library:\n  categories:\n    - {id: sudo, params: 5}\n", "$.library.categories[0].params"),
    ("library:\n  disable: [nope]\n", "unknown category 'nope'"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {field: a}}\n", "has no operator"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {prefix: /tmp}}\n", "needs a field"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {field: a, prefix: $nope}}\n", "unknown parameter $nope"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {field: 'a..b', present: true}}\n", "cannot parse"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {field: a, regex: '('}}\n", "bad regex"),
    ("library:\n  categories:\n    - {id: x, group: g, match: {event: process_exec}, summary: '\\\\(.a | length)'}\n",
     "only simple paths"),
    ("egress:\n  zones:\n    - {name: pod, cidrs: [1.0.0.0/8]}\n", "reserved"),
    ("egress:\n  pod_cidrs: [10.0.0.0/8]\n  service_cidrs: [10.0.0.0/8]\n", "both zone"),
    ("egress:\n  zones:\n    - {name: z, cidrs: [10.0.0.0/8], internall: true}\n", "$.egress.zones[0]"),
])
def test_invalid_config_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    import argparse

    from tetrapipe.cli.main import cmd_check_config
    with pytest.raises(ConfigFileError) as info:
        cmd_check_config(argparse.Namespace(file=str(path)))
    assert message in str(info.value)


def test_library_file_replacement(tmp_path):
    lib = tmp_path / "lib.yaml"
    lib.write_text("version: 1\ncategories:\n  - {id: only, group: g, match: {event: process_exit}}\n")
    assert [c.id for c in load_library(LibraryConfig(path=str(lib)))] == ["only"]
    lib.write_text("version: 1\ncategories:\n  - {id: a, group: g, match: {event: x}}\n"
                   "  - {id: a, group: g, match: {event: y}}\n")
    with pytest.raises(LibraryError, match="defined twice"):
        load_library(LibraryConfig(path=str(lib)))


def test_empty_config_file_is_the_default(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_config_struct_rejects_unknown_top_level_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("outputs: []\n")  # (`sinks:` is a key since the registries became the wiring)
    with pytest.raises(ConfigFileError, match="unknown field `outputs`"):
        load_config(path)
