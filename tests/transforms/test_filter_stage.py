"""The config of a scope compiled into a Stage: the redaction options, enable_pid_set, top-level rate limit/dedup."""

from __future__ import annotations

import msgspec
import orjson

from tests.support.events import exec_event, kprobe_event, process
from tetrapipe.config.root import Config, build_filters
from tetrapipe.transforms.filter_stage import RedactionConfig, compile_stage

PASSWORD = r"(?:--password|-p)[\s=]+(\S+)"


def _stage(raw: dict):  # type: ignore[no-untyped-def]
    return build_filters(msgspec.convert(raw, Config)).top


def test_the_plain_list_and_the_object_form_redact_alike() -> None:
    event = exec_event("/usr/bin/mysql", "--password=hunter2")
    plain = _stage({"redaction": [{"redact": [PASSWORD]}]})
    framed = _stage({"redaction": {"filters": [{"redact": [PASSWORD]}]}})
    assert plain is not None and framed is not None and plain.redact and framed.redact
    assert plain.redact(event, "process_exec") == framed.redact(event, "process_exec")
    assert framed.redact(event, "process_exec")[0]["process_exec"]["process"]["arguments"] == "--password=*****"


def test_replacement_and_tetragon_string_form() -> None:
    text = '{"redact":["(?:--password|-p)[\\\\s=]+(\\\\S+)"],"binary_regex":["mysql$"]}\n'
    stage = compile_stage("", redaction=RedactionConfig(filters=text, replacement="<redacted>"))
    assert stage is not None and stage.redact is not None
    out, redacted = stage.redact(exec_event("/usr/bin/mysql", "-p s3cret"), "process_exec")
    assert redacted and out["process_exec"]["process"]["arguments"] == "-p <redacted>"
    untouched, redacted = stage.redact(exec_event("/usr/bin/psql", "-p s3cret"), "process_exec")
    assert not redacted and untouched["process_exec"]["process"]["arguments"] == "-p s3cret"


def test_string_args_only_when_asked() -> None:
    event = kprobe_event("security_file_open", [{"string_arg": "--password=hunter2"}])
    off = _stage({"redaction": {"filters": [{"redact": [PASSWORD]}]}})
    on = _stage({"redaction": {"filters": [{"redact": [PASSWORD]}], "string_args": True}})
    assert off is not None and on is not None and off.redact and on.redact
    assert off.redact(event, "process_kprobe") == (event, False)
    out, redacted = on.redact(event, "process_kprobe")
    assert redacted and out["process_kprobe"]["args"][0]["string_arg"] == "--password=*****"
    assert b"hunter2" not in orjson.dumps(out)


def test_enable_pid_set_follows_children() -> None:
    stage = _stage({"filters": {"enable_pid_set": True, "allow": [{"pid_set": [100]}]}})
    assert stage is not None and stage.export is not None

    def exec_of(pid: int, ppid: int) -> dict:
        return {"process_exec": {"process": process("/bin/sh", pid=pid), "parent": process("/bin/sh", pid=ppid)}}

    verdicts = [stage.export(exec_of(pid, ppid), "process_exec")
                for pid, ppid in ((100, 1), (101, 100), (102, 101), (200, 1), (201, 200))]
    assert verdicts == [True, True, True, False, False]


def test_top_level_rate_limit_and_dedup_make_a_keyed_stage() -> None:
    stage = _stage({"rate_limit": {"rate": 1, "burst": 1}, "dedup": {"window": 1, "keys": ["process.binary"]}})
    assert stage is not None and stage.keyed and not stage.changes_event
    assert _stage({}) is None
