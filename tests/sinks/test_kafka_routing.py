"""Kafka routing, keys, headers and config resolution — pure logic, no broker."""

from __future__ import annotations

import argparse

import orjson
import pytest

from tests.support.synth import generate
from tetrapipe.clients.kafka import KafkaConnection, KafkaConnectionError
from tetrapipe.config.kafka import KafkaConfigError, KafkaSection, add_kafka_arguments, build_kafka, resolve
from tetrapipe.event.envelope import Batch, Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.kafka.routing import DEFAULT, DROPPED, ROUTED, Router, RoutingError, template_fields
from tetrapipe.sinks.kafka.sink import dead_letter_headers
from tetrapipe.sources.kafka.source import KafkaSourceConfig

GROUPS = {"sudo": "security", "suid": "security", "egress": "network", "ebpf": "system"}


def env_for(processor: Processor, event: dict | bytes, key: bytes | None = b"src-key",
            headers: tuple = (("trace", b"1"),)) -> Envelope:
    raw = event if isinstance(event, bytes) else orjson.dumps(event)
    batch = Batch([Envelope(raw, ("raw", 2, 40), (key, headers))])
    processor.process(batch)
    return batch.envelopes[0]


def first(processor: Processor, scenario: str) -> Envelope:
    line = next(generate(1, seed=1, mix={scenario: 1}))
    return env_for(processor, line)


def sudo_suid_event() -> dict:
    return {"process_exec": {"process": {"exec_id": "ZXhlYw==", "binary": "/usr/bin/sudo",
                                         "binary_properties": {"setuid": 0},
                                         "pod": {"namespace": "payments", "name": "api-1"}}},
            "node_name": "node-a"}


def test_multi_category_event_goes_to_each_topic_or_only_the_first(processor: Processor) -> None:
    env = env_for(processor, sudo_suid_event())
    assert env.tags.categories == ("sudo", "suid")
    every = Router("tetragon.{group}.{category}", GROUPS).route(env)
    assert every.topics == ("tetragon.security.sudo", "tetragon.security.suid") and every.outcome == ROUTED
    assert Router("tetragon.{category}", GROUPS, multi_category="first").route(env).topics == ("tetragon.sudo",)
    assert Router("tetragon.{group}", GROUPS).route(env).topics == ("tetragon.security",)  # one per group


def test_untagged_events_go_to_the_default_topic_or_are_dropped(processor: Processor) -> None:
    env = first(processor, "exit")
    assert not env.tags.categories
    assert Router("t.{category}", GROUPS, default_topic="t.other").route(env).outcome == DEFAULT
    dropped = Router("t.{category}", GROUPS).route(env)
    assert dropped.outcome == DROPPED and dropped.topics == ()


def test_event_type_template_and_unknown_types(processor: Processor) -> None:
    env = env_for(processor, sudo_suid_event())
    router = Router("tetragon.{event_type}.{category}", GROUPS, default_topic="tetragon.other")
    assert router.route(env).topics == ("tetragon.process_exec.sudo", "tetragon.process_exec.suid")
    assert "tetragon.process_kprobe.egress" in router.topics()
    assert len(router.topics()) == 4 * 10 + 1  # every destination is known at startup


def test_template_and_topic_validation() -> None:
    assert template_fields("a.{group}.{category}") == {"group", "category"}
    with pytest.raises(RoutingError, match="unknown field"):
        Router("a.{namespace}", GROUPS)
    with pytest.raises(RoutingError, match="invalid Kafka topic name"):
        Router("a/{category}", GROUPS)
    with pytest.raises(RoutingError, match="invalid Kafka topic name"):
        Router("a.{category}", GROUPS, default_topic="has space")


@pytest.mark.parametrize(("strategy", "want"), [
    ("source", b"src-key"), ("node", b"node-a"), ("pod", b"payments/api-1"), ("exec_id", b"ZXhlYw=="), ("none", None)])
def test_key_strategies(processor: Processor, strategy: str, want: bytes | None) -> None:
    env = env_for(processor, sudo_suid_event())
    assert Router("t.{category}", GROUPS, key=strategy).key(env) == want  # type: ignore[arg-type]


def test_key_falls_back_to_the_source_key_when_the_field_is_absent(processor: Processor) -> None:
    event = sudo_suid_event()
    del event["process_exec"]["process"]["pod"]
    assert Router("t.{category}", GROUPS, key="pod").key(env_for(processor, event)) == b"src-key"


def test_headers_keep_the_source_ones_and_add_categories_type_and_zone(processor: Processor) -> None:
    router = Router("t.{category}", GROUPS)
    env = env_for(processor, sudo_suid_event(), headers=(("trace", b"1"), ("tetrapipe-categories", b"stale")))
    headers = router.headers(env, router.route(env))
    assert headers == [("trace", b"1"), ("tetrapipe-categories", b"sudo,suid"),
                       ("tetragon-event-type", b"process_exec")]
    egress = first(processor, "egress")
    zone = dict(router.headers(egress, router.route(egress)))["tetrapipe-zone"]
    assert zone == egress.decoded.egress.zone.encode()


def test_dead_letter_headers_name_the_error_and_the_source_position(processor: Processor) -> None:
    env = env_for(processor, b"not json", headers=(("trace", b"7"),))
    assert env.error is not None
    headers = dict(dead_letter_headers(env))
    assert headers["trace"] == b"7" and headers["tetrapipe-error"].startswith(b"invalid_json: ")
    assert (headers["tetrapipe-source-topic"], headers["tetrapipe-source-partition"],
            headers["tetrapipe-source-offset"]) == (b"raw", b"2", b"40")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_kafka_arguments(parser)
    return parser.parse_args(list(argv))


def test_flags_override_env_which_overrides_the_file() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "env:9092", "KAFKA_TOPICS": "a, b", "KAFKA_GROUP_ID": "env-group",
           "KAFKA_OUT_TEMPLATE": "env.{category}"}
    cfg = resolve(parse("--kafka-group", "flag-group"), None, env)
    assert cfg.connection.bootstrap_servers == "env:9092"
    assert cfg.source is not None and cfg.source.topics == ["a", "b"] and cfg.source.group_id == "flag-group"
    assert cfg.sink is not None and cfg.sink.topic_template == "env.{category}"
    assert cfg.dead_letter is None
    assert resolve(parse("--kafka-bootstrap", "flag:1"), None, env).connection.bootstrap_servers == "flag:1"


def test_nothing_configured_means_no_kafka() -> None:
    source, sinks, dead_letter = build_kafka(parse(), None, groups=GROUPS, environ={})
    assert source is None and sinks == [] and dead_letter is None


def test_bad_settings_are_named() -> None:
    with pytest.raises(KafkaConfigError, match="unknown field"):
        build_kafka(parse("--kafka-out-template", "x.{nope}"), None, groups=GROUPS, environ={})
    with pytest.raises(KafkaConfigError, match="topic_pattern: missing"):
        build_kafka(parse("--kafka-group", "g"), None, groups=GROUPS, environ={"KAFKA_TOPIC_PATTERN": "("})
    with pytest.raises(KafkaConfigError, match="either topics or topic_pattern"):
        build_kafka(parse(), KafkaSection(source=KafkaSourceConfig()), groups=GROUPS, environ={})


def test_secrets_are_never_shown_and_files_win(tmp_path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    conn = KafkaConnection(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="svc", sasl_password="hunter2")
    assert "hunter2" not in repr(conn) and "hunter2" not in str(conn)
    env = conn.with_env({"KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert env.client_options()["sasl_plain_password"] == "from-file"
    assert conn.with_env({"KAFKA_SASL_PASSWORD": "from-env"}).client_options()["sasl_plain_password"] == "from-env"
    with pytest.raises(KafkaConnectionError, match="needs sasl_username and sasl_password"):
        KafkaConnection(security_protocol="SASL_SSL", sasl_mechanism="PLAIN").client_options()


def test_example_config_kafka_section_validates() -> None:
    from pathlib import Path

    import msgspec
    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parents[2] / "config" / "example-kafka.yaml").read_text())
    section = msgspec.convert(raw["kafka"], KafkaSection)
    assert section.source is not None and section.sink is not None and section.dead_letter is not None
    section.source.validate()
    Router(section.sink.topic_template, GROUPS, default_topic=section.sink.default_topic)
