"""The OTLP mapping on real Tetragon samples and synthetic events, checked through the official decoders.

Every record is encoded by tetrapipe's hand-written encoders, decoded with the
official `opentelemetry-proto` classes (protobuf, and the protobuf JSON mapping
for OTLP/JSON) and compared field by field with an oracle written here
independently, from the event's plain JSON.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import msgspec
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from tests.conftest import process_lines
from tests.support import synth
from tetrapipe.event.envelope import Envelope
from tetrapipe.pipeline.processor import Processor
from tetrapipe.sinks.otlp.encode import JsonEncoder, ProtobufEncoder, varint
from tetrapipe.sinks.otlp.mapping import LogFields, LogMapper, Severity, parse_time

DATA = Path(__file__).resolve().parents[1] / "data" / "docs-examples.jsonl"


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


def decode(request: ExportLogsServiceRequest) -> list[dict[str, Any]]:
    """Flatten a request into one plain dict per LogRecord (with its resource and scope)."""
    out = []
    for rl in request.resource_logs:
        resource = {kv.key: _any(kv.value) for kv in rl.resource.attributes}
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                out.append({"resource": resource, "scope": sl.scope.name, "time": rec.time_unix_nano,
                            "observed": rec.observed_time_unix_nano, "severity": rec.severity_number,
                            "severity_text": rec.severity_text, "event_name": rec.event_name,
                            "body": _any(rec.body), "attributes": {kv.key: _any(kv.value) for kv in rec.attributes}})
    return out


def expected_attributes(env: Envelope) -> dict[str, Any]:
    """The README mapping table, applied to the event's plain JSON (independent of tetrapipe.sinks.otlp.mapping)."""
    event = msgspec.json.decode(env.out)
    etype = env.decoded.etype if env.decoded else ""
    body = event.get(etype) if isinstance(event.get(etype), dict) else {}
    proc, parent = body.get("process") or {}, body.get("parent") or {}
    pod = proc.get("pod") or {}
    container = pod.get("container") or {}
    image = (container.get("image") or {}).get("name")
    tp = event["tetrapipe"]
    want: dict[str, Any] = {"tetragon.event_type": etype}
    put = want.__setitem__
    if proc.get("exec_id"):
        put("tetragon.exec_id", proc["exec_id"])
    if "pid" in proc:
        put("process.pid", proc["pid"])
    if proc.get("binary"):
        put("process.executable.path", proc["binary"])
        put("process.executable.name", proc["binary"].split("/")[-1])
        put("process.command_line", " ".join(x for x in (proc["binary"], proc.get("arguments")) if x))
    if proc.get("cwd"):
        put("process.working_directory", proc["cwd"])
    if "uid" in proc:
        put("process.user.id", proc["uid"])
    for key, value in (("k8s.namespace.name", pod.get("namespace")), ("k8s.pod.name", pod.get("name")),
                       ("k8s.container.name", container.get("name"))):
        if value:
            put(key, value)
    if container.get("id"):
        runtime, _, bare = container["id"].rpartition("://")
        put("container.id", bare)
        if runtime:
            put("container.runtime.name", runtime)
    if image:
        repo, tag = (image.rsplit(":", 1) if ":" in image.split("/")[-1] and "@" not in image else (image, None))
        put("container.image.name", repo)
        if tag:
            put("container.image.tags", [tag])
    if parent.get("exec_id") or proc.get("parent_exec_id"):
        put("tetragon.parent.exec_id", parent.get("exec_id") or proc.get("parent_exec_id"))
    if "pid" in parent:
        put("process.parent_pid", parent["pid"])
    for key in ("policy_name", "function_name"):
        if body.get(key):
            put(f"tetragon.{key}", body[key])
    if tp["categories"]:
        put("tetrapipe.categories", tp["categories"])
        put("tetrapipe.groups", tp["groups"])
    egress = tp.get("egress")
    if egress:
        put("network.peer.address", egress["daddr"])
        if egress.get("dport") is not None:
            put("network.peer.port", egress["dport"])
        sock = next((a.get("sock_arg") or a.get("skb_arg") for a in body.get("args", [])
                     if a.get("sock_arg") or a.get("skb_arg")), None)
        if sock and sock.get("protocol") in ("IPPROTO_TCP", "IPPROTO_UDP"):
            put("network.transport", sock["protocol"][8:].lower())
        _put_addresses(want, egress, sock if sock and sock.get("daddr") else {}, body.get("function_name"))
        put("tetrapipe.egress.zone", egress["zone"])
        put("tetrapipe.egress.external", egress["external"])
    elif body.get("destination_ip"):
        put("network.peer.address", body["destination_ip"])
        put("network.peer.port", body["destination_port"])
        put("network.transport", body["protocol"].lower())
    for side, end in (("peer", "destination"), ("source", "source")):  # tetrapipe.peer / tetrapipe.source
        if tp.get(side):
            want.update(_peer_table(tp[side], f"tetrapipe.{side}.", f"{end}.k8s."))
    return want


_CONNECTS = ("tcp_connect", "tcp_v4_connect", "tcp_v6_connect", "security_socket_connect", "__sys_connect",
             "ip4_datagram_connect", "ip6_datagram_connect")
_WORKLOADS = {"Deployment": "deployment", "StatefulSet": "statefulset", "DaemonSet": "daemonset",
              "ReplicaSet": "replicaset", "Job": "job", "CronJob": "cronjob"}


def _put_addresses(want: dict[str, Any], egress: dict[str, Any], sock: dict[str, Any], hook: str | None) -> None:
    """README: destination.*, source.* as observed; server.*/client.* for a connect hook."""
    ends = [("destination", egress["daddr"], egress.get("dport")), ("source", sock.get("saddr"), sock.get("sport"))]
    if hook in _CONNECTS:
        ends += [("server", egress["daddr"], egress.get("dport")), ("client", sock.get("saddr"), sock.get("sport"))]
    for end, address, port in ends:
        if address:
            want[f"{end}.address"] = address
            if port is not None:
                want[f"{end}.port"] = port


def _peer_table(peer: dict[str, Any], own: str, k8s: str) -> dict[str, Any]:
    """README, "Where the peer appears": a Kubernetes object's names under `<end>.k8s.`, the rest under `own`."""
    kind = peer["kind"]
    obj = {"pod": "pod", "service": "service", "apiserver": "service", "node": "node"}.get(kind)
    out: dict[str, Any] = {own + "kind": kind}
    workload = _WORKLOADS.get(peer.get("workload_kind", "")) if obj else None
    for key, value in peer.items():
        if key in ("kind", "ip"):
            continue
        if key == "labels":
            out |= {(f"{k8s}{obj}.label.{k}" if obj else f"{own}labels.{k}"): v for k, v in value.items()}
        elif key == "services":
            out[own + key] = value
        elif obj and key in ("name", "namespace", "node"):
            names = {"name": f"{k8s}{obj}.name", "namespace": f"{k8s}namespace.name", "node": f"{k8s}node.name"}
            out[names[key]] = value
        elif key == "workload" and workload:
            out[f"{k8s}{workload}.name"] = value
        elif not (key == "workload_kind" and workload):
            out[own + key] = value
    return out


def expected_resource(env: Envelope) -> dict[str, Any]:
    event = msgspec.json.decode(env.out)
    want = {"service.name": "tetrapipe"}
    if event.get("node_name"):
        want |= {"host.name": event["node_name"], "k8s.node.name": event["node_name"]}
    if event.get("cluster_name"):
        want["k8s.cluster.name"] = event["cluster_name"]
    return want


def encode_all(envs: list[Envelope], encoder: ProtobufEncoder | JsonEncoder, mapper: LogMapper) -> bytes:
    groups: dict[Any, tuple[bytes, list[bytes]]] = {}
    for env in envs:
        key = mapper.resource_key(env)
        node, cluster = key
        attrs: list[Any] = [("service.name", "tetrapipe")]
        attrs += [("host.name", node), ("k8s.node.name", node)] if node else []
        attrs += [("k8s.cluster.name", cluster)] if cluster else []
        groups.setdefault(key, (encoder.resource(attrs), []))[1].append(encoder.record(mapper.record(env)))
    return encoder.request(list(groups.values()))


def sample_envelopes(processor: Processor) -> list[Envelope]:
    lines = [line for line in DATA.read_bytes().splitlines() if line.strip()]
    lines += list(synth.generate(600, seed=11))
    envs = [e for e in process_lines(processor, lines) if e.decoded is not None]
    assert len(envs) > 600
    return envs


@pytest.mark.parametrize("encoder_cls", [ProtobufEncoder, JsonEncoder])
def test_mapping_holds_on_real_and_synthetic_events(processor: Processor, encoder_cls: type) -> None:
    envs = sample_envelopes(processor)
    encoder, mapper = encoder_cls(), LogMapper()
    raw = encode_all(envs, encoder, mapper)
    request = (ExportLogsServiceRequest.FromString(raw) if encoder_cls is ProtobufEncoder
               else json_format.Parse(raw, ExportLogsServiceRequest()))
    records = decode(request)
    assert len(records) == len(envs)
    by_body = {rec["body"]: rec for rec in records}
    assert len(by_body) == len({e.out for e in envs})
    for env in envs:
        rec = by_body[env.out.decode()]
        event = msgspec.json.decode(env.out)
        assert rec["attributes"] == expected_attributes(env), env.out[:200]
        assert rec["resource"] == expected_resource(env)
        assert rec["scope"] == "tetrapipe"
        assert rec["event_name"] == f"tetragon.{env.decoded.etype}"  # type: ignore[union-attr]
        assert rec["time"] == parse_time(event.get("time")) and (rec["time"] > 0 or "time" not in event)
        assert rec["observed"] == env.received_ns
        security = "security" in event["tetrapipe"]["groups"]
        assert (rec["severity"], rec["severity_text"]) == ((13, "WARN") if security else (9, "INFO"))


def test_records_of_one_node_share_one_resource(processor: Processor) -> None:
    envs = sample_envelopes(processor)
    request = ExportLogsServiceRequest.FromString(encode_all(envs, ProtobufEncoder(), LogMapper()))
    nodes = [tuple(sorted((kv.key, kv.value.string_value) for kv in rl.resource.attributes))
             for rl in request.resource_logs]
    assert len(nodes) == len(set(nodes)) == len({LogMapper().resource_key(e) for e in envs})


def test_map_body_is_the_output_document(processor: Processor) -> None:
    env = sample_envelopes(processor)[0]
    rec = decode(ExportLogsServiceRequest.FromString(encode_all([env], ProtobufEncoder(), LogMapper(body_mode="map"))))
    assert rec[0]["body"] == _normalise(msgspec.json.decode(env.out))


def _normalise(value: Any) -> Any:
    """JSON values as OTLP carries them back (numbers stay ints/floats, lists and maps recursively)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


@pytest.mark.parametrize("text, nanos", [
    ("2024-05-14T09:00:00Z", 1715677200 * 10**9),
    ("2024-05-14T09:00:00.1Z", 1715677200 * 10**9 + 100_000_000),
    ("2024-05-14T09:00:00.123456789Z", 1715677200 * 10**9 + 123456789),
    ("2024-05-14T11:00:00.5+02:00", 1715677200 * 10**9 + 500_000_000),
    ("not a time at all!!", 0), (None, 0), ("2024-13-14T09:00:00Z", 0),
])
def test_parse_time(text: Any, nanos: int) -> None:
    assert parse_time(text) == nanos


def test_severity_highest_category_wins_and_is_configurable() -> None:
    default = Severity()
    assert default.of((), ()) == (9, "INFO")
    assert default.of(("egress", "sudo"), ("network", "security")) == (13, "WARN")
    custom = Severity(untagged="DEBUG", groups={"security": "ERROR"}, categories={"egress": "FATAL"},
                      group_of={"egress": "network", "sudo": "security", "ebpf": "system"})
    assert custom.of((), ()) == (5, "DEBUG")
    assert custom.of(("sudo",), ("security",)) == (17, "ERROR")
    assert custom.of(("egress", "sudo"), ("network", "security")) == (21, "FATAL")
    assert custom.of(("ebpf",), ("system",)) == (9, "INFO")
    with pytest.raises(ValueError, match="unknown severity"):
        Severity(groups={"security": "LOUD"})


def test_protobuf_scalars_and_edge_values() -> None:
    encoder = ProtobufEncoder(scope_version="1.2")
    fields = LogFields(0, 1, 9, "INFO", "tetragon.x", {"k": [1, True, 0.5, None, "é"]},
                       [("neg", -5), ("big", 2**62), ("s", "x" * 70000), ("f", 1.25), ("b", False), ("e", "")])
    request = ExportLogsServiceRequest.FromString(encoder.request([(encoder.resource([("a", "b")]),
                                                                    [encoder.record(fields)])]))
    [rec] = decode(request)
    assert rec["attributes"] == {"neg": -5, "big": 2**62, "s": "x" * 70000, "f": 1.25, "b": False, "e": ""}
    assert rec["body"] == {"k": [1, True, 0.5, None, "é"]}
    assert request.resource_logs[0].scope_logs[0].scope.version == "1.2"
    assert [varint(n) for n in (0, 127, 128, 300)] == [b"\x00", b"\x7f", b"\x80\x01", b"\xac\x02"]


def test_json_body_string_escapes_round_trip(processor: Processor) -> None:
    line = synth.generate(1, seed=5, mix={"exec": 1})
    weird = base64.b64encode(b"\x00\x01").decode()
    event = msgspec.json.decode(next(line))
    event["process_exec"]["process"]["arguments"] = f'a "q" \\ \n\t\u2028 é 🚀 {weird}'
    [env] = process_lines(processor, [msgspec.json.encode(event)])
    raw = encode_all([env], JsonEncoder(), LogMapper())
    [rec] = decode(json_format.Parse(raw, ExportLogsServiceRequest()))
    assert rec["body"] == env.out.decode()
    assert rec["attributes"]["process.command_line"].endswith(f'a "q" \\ \n\t\u2028 é 🚀 {weird}')


@pytest.mark.parametrize("encoder_cls", [ProtobufEncoder, JsonEncoder])
def test_one_key_with_int_and_long_string_values_and_several_resources(encoder_cls: type) -> None:
    """Header memo slots of ints and of long strings never collide; groups frame their own records."""
    encoder = encoder_cls()
    records = [encoder.record(LogFields(1, 2, 9, "INFO", "tetragon.x", b'{"a":1}', [("k", value)]))
               for value in (7, 2**62, "s" * 505, "t" * 511, 9)]
    raw = encoder.request([(encoder.resource([("r", "one")]), records[:2]), (encoder.resource([("r", "two")]), []),
                           (encoder.resource([("r", "three")]), records[2:])])
    request = (ExportLogsServiceRequest.FromString(raw) if encoder_cls is ProtobufEncoder
               else json_format.Parse(raw, ExportLogsServiceRequest()))
    got = [(rec["resource"]["r"], rec["attributes"]["k"], rec["body"]) for rec in decode(request)]
    assert got == [("one", 7, '{"a":1}'), ("one", 2**62, '{"a":1}'), ("three", "s" * 505, '{"a":1}'),
                   ("three", "t" * 511, '{"a":1}'), ("three", 9, '{"a":1}')]
