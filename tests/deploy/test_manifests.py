"""Offline checks of deploy/ (Kubernetes manifests), the Dockerfile and requirements.lock.

No cluster, no Docker, no `kubectl kustomize`:
- every core manifest validates against the Kubernetes OpenAPI schemas shipped by the
  `kubernetes-validate` package, strict mode (unknown fields fail), for K8S_VERSION;
- the KEDA custom resources (not in the core schemas) validate against minimal JSON schemas below;
- every kustomization's `resources` exist, and every YAML file is applied by one (or is an example);
- the containers' args only use flags that `tetrapipe run --help` accepts,
  their env only variables the code reads, and the embedded config files pass `check-config`;
- requirements.lock satisfies pyproject's runtime dependencies, with hashes; the Dockerfile copies
  every wheel package and keeps the markers .ci/image-check.sh extracts its install step from.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # the test extra: kubernetes-validate
import pytest
import yaml

from tetrapipe.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.34.0"  # a recent release the kubernetes-validate package ships schemas for

# ---------------------------------------------------------------------------------------------
# Loading


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*.yaml") if p.is_file())


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def all_documents() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in yaml_files() for d in documents(p)]


def is_kustomization(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "Kustomization" and str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


def is_keda(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("keda.sh/")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def workloads() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in all_documents() if d.get("kind") in ("Deployment", "DaemonSet", "StatefulSet")]


def containers(workload: dict[str, Any], *, init: bool = False) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("containers", [])) + (list(spec.get("initContainers", [])) if init else [])


def tetrapipe_containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers running `tetrapipe` (the image's entrypoint: no `command` override)."""
    return [c for c in containers(workload) if "command" not in c]


def flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def test_the_validator_rejects_a_wrong_manifest() -> None:
    """Guards against a validator that silently accepts everything (strict: unknown fields fail)."""
    (_, deployment) = next((p, d) for p, d in all_documents() if d.get("kind") == "Deployment")
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(deployment))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_deploy_has_the_three_parts() -> None:
    for d in ("base", "daemonset", "keda"):
        assert (DEPLOY / d / "kustomization.yaml").is_file(), d
    kinds = {d.get("kind") for _, d in all_documents()}
    assert {"Deployment", "DaemonSet", "ConfigMap", "Service", "PodDisruptionBudget", "ScaledObject"} <= kinds


# ---------------------------------------------------------------------------------------------
# Schemas


CORE = [(p, d) for p, d in all_documents() if not is_kustomization(d) and not is_keda(d)]


@pytest.mark.parametrize(("path", "doc"), CORE, ids=[f"{rel(p)}:{d.get('kind')}" for p, d in CORE])
def test_core_manifest_validates_against_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{rel(path)}: no Kubernetes schema for {doc.get('apiVersion')} {doc.get('kind')}")
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{rel(path)}: {doc['kind']} {doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}")


_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "namespace": _NAME, "labels": {"type": "object"}, "annotations": {"type": "object"}},
    "additionalProperties": False,
}
# Minimal schemas of KEDA v2 (keda.sh/v1alpha1) — the fields used here, strictly.
KEDA_SCHEMAS: dict[str, dict[str, Any]] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME},
                    },
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                            },
                        },
                    },
                    "triggers": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["type", "metadata"],
                            "additionalProperties": False,
                            "properties": {
                                "type": {"type": "string"},
                                "name": {"type": "string"},
                                # KEDA trigger metadata values are all strings
                                "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                                "authenticationRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "additionalProperties": False,
                                    "properties": {"name": _NAME, "kind": {"enum": ["TriggerAuthentication",
                                                                                   "ClusterTriggerAuthentication"]}},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["parameter", "name", "key"],
                            "additionalProperties": False,
                            "properties": {"parameter": {"type": "string"}, "name": _NAME, "key": {"type": "string"}},
                        },
                    },
                },
            },
        },
    },
}
# Parameters of KEDA's kafka scaler (https://keda.sh/docs/latest/scalers/apache-kafka/).
KAFKA_TRIGGER_METADATA = {
    "bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold", "offsetResetPolicy",
    "allowIdleConsumers", "scaleToZeroOnInvalidOffset", "excludePersistentLag", "limitToPartitionsWithLag",
    "partitionLimitation", "version", "sasl", "tls",
}
KAFKA_TRIGGER_AUTH = {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword"}

KEDA = [(p, d) for p, d in all_documents() if is_keda(d)]


@pytest.mark.parametrize(("path", "doc"), KEDA, ids=[f"{rel(p)}:{d.get('kind')}" for p, d in KEDA])
def test_keda_resource_validates_against_minimal_schema(path: Path, doc: dict[str, Any]) -> None:
    schema = KEDA_SCHEMAS.get(doc.get("kind", ""))
    assert schema is not None, f"{rel(path)}: no schema for KEDA kind {doc.get('kind')}"
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError as exc:
        pytest.fail(f"{rel(path)}: {exc.message} at {list(exc.absolute_path)}")
    if doc["kind"] == "ScaledObject":
        for trigger in doc["spec"]["triggers"]:
            if trigger["type"] == "kafka":
                unknown = set(trigger["metadata"]) - KAFKA_TRIGGER_METADATA
                assert not unknown, f"{rel(path)}: not kafka scaler parameters: {unknown}"
    else:
        params = {ref["parameter"] for ref in doc["spec"].get("secretTargetRef", [])}
        assert params <= KAFKA_TRIGGER_AUTH, params - KAFKA_TRIGGER_AUTH


def test_scaledobject_matches_the_worker_config() -> None:
    """Lag is read for the group and topic the Deployment consumes, from the same brokers."""
    (cfg,) = [yaml.safe_load(d["data"]["tetrapipe.yaml"]) for p, d in all_documents()
              if d.get("kind") == "ConfigMap" and p.parent.name == "base"]
    (scaled,) = [d for _, d in KEDA if d["kind"] == "ScaledObject"]
    (deployment,) = [d for _, d in workloads() if d["kind"] == "Deployment"]
    (trigger,) = scaled["spec"]["triggers"]
    kafka = cfg["kafka"]
    assert trigger["metadata"]["consumerGroup"] == kafka["source"]["group_id"]
    assert trigger["metadata"]["topic"] in kafka["source"]["topics"]
    assert trigger["metadata"]["bootstrapServers"] == kafka["connection"]["bootstrap_servers"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}
    assert trigger["metadata"]["sasl"] == keda_sasl[kafka["connection"]["sasl_mechanism"]]
    assert (trigger["metadata"].get("tls") == "enable") == kafka["connection"]["security_protocol"].endswith("SSL")
    auth = {d["metadata"]["name"] for _, d in KEDA if d["kind"] == "TriggerAuthentication"}
    assert trigger["authenticationRef"]["name"] in auth


# ---------------------------------------------------------------------------------------------
# Kustomizations


KUSTOMIZATIONS = [p for p, d in all_documents() if is_kustomization(d)]


@pytest.mark.parametrize("path", KUSTOMIZATIONS, ids=[rel(p) for p in KUSTOMIZATIONS])
def test_kustomization_resources_exist(path: Path) -> None:
    (doc,) = documents(path)
    assert doc.get("resources"), f"{rel(path)}: no resources"
    for entry in doc["resources"]:
        target = (path.parent / entry).resolve()
        assert target.exists(), f"{rel(path)}: resource {entry} does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{rel(path)}: {entry}: no kustomization.yaml"
        else:
            assert target.is_relative_to(path.parent), f"{rel(path)}: {entry} is outside the kustomization root"


def test_every_manifest_is_applied_by_a_kustomization_or_is_an_example() -> None:
    applied: set[Path] = set()
    for path in KUSTOMIZATIONS:
        (doc,) = documents(path)
        applied.update((path.parent / e).resolve() for e in doc["resources"])
    for path in yaml_files():
        if path.name == "kustomization.yaml" or path.name.endswith(".example.yaml"):
            continue
        assert path.resolve() in applied, f"{rel(path)} is not listed in any kustomization's resources"


def test_examples_hold_placeholders_only() -> None:
    for path in DEPLOY.rglob("*.example.yaml"):
        for doc in documents(path):
            if doc.get("kind") == "Secret":
                values = list((doc.get("stringData") or {}).values()) + list((doc.get("data") or {}).values())
                assert any("REPLACE-ME" in v for v in values), f"{rel(path)}: example Secret without placeholder"


def test_selectors_ports_and_references_agree() -> None:
    docs = [d for _, d in all_documents() if not is_kustomization(d)]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for _, w in workloads()]
    for _, w in workloads():
        sel = w["spec"]["selector"]["matchLabels"]
        assert sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        spec = w["spec"]["template"]["spec"]
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for c in containers(w, init=True):
            assert {m["name"] for m in c.get("volumeMounts", [])} <= volumes, c["name"]
        for c in containers(w):
            port_names = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c and "httpGet" in c[probe]:
                    assert c[probe]["httpGet"]["port"] in port_names, (c["name"], probe)
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert v["configMap"]["name"] in {d["metadata"]["name"] for d in by_kind["ConfigMap"]}
    for svc in by_kind["Service"]:
        matching = [labels for labels in pod_labels if svc["spec"]["selector"].items() <= labels.items()]
        assert matching, f"Service {svc['metadata']['name']} selects no pod template"
        assert any(p["name"] == "metrics" for p in svc["spec"]["ports"]), "ServiceMonitors select the port by name"
    for pdb in by_kind["PodDisruptionBudget"]:
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() for labels in pod_labels)


# ---------------------------------------------------------------------------------------------
# Workloads: security, shutdown, CLI flags, env, config


WORKLOADS = workloads()
WL_IDS = [f"{rel(p)}:{d['kind']}" for p, d in WORKLOADS]


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_workload_security_context(path: Path, workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's user
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is True  # peers.kubernetes reads the API (deploy/rbac)
    for c in containers(workload, init=True):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert "ALL" in sc["capabilities"]["drop"], c["name"]
        assert c["resources"]["limits"]["memory"], c["name"]
    for c in containers(workload):
        assert "runAsUser" not in c["securityContext"] and "add" not in c["securityContext"]["capabilities"]
        assert {"livenessProbe", "readinessProbe"} <= set(c), f"{c['name']}: probes"
    # The only root step allowed: an init container that chowns a hostPath, with CAP_CHOWN alone.
    for c in pod.get("initContainers", []):
        assert c["securityContext"]["capabilities"].get("add", []) in ([], ["CHOWN"]), c["name"]
        assert c["command"][0] == "chown", c["name"]


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_grace_period_covers_the_drain(path: Path, workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    for c in tetrapipe_containers(workload):
        grace = float(flag_value(c["args"], "--grace") or 30.0)  # the CLI default
        assert pod["terminationGracePeriodSeconds"] > grace, (
            f"{rel(path)}: terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} must exceed "
            f"--grace {grace}, or the kubelet kills a draining worker")


def run_options() -> dict[str, argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices["run"]._option_string_actions)


def used_flags(workload: dict[str, Any]) -> list[str]:
    flags = []
    for c in tetrapipe_containers(workload):
        assert c["args"][0] == "run", f"{c['name']}: args must start with the `run` command"
        flags += [a.split("=", 1)[0] for a in c["args"][1:] if a.startswith("-")]
    return flags


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_args_use_only_flags_the_cli_accepts(path: Path, workload: dict[str, Any]) -> None:
    known = run_options()
    unknown = [f for f in used_flags(workload) if f not in known]
    assert not unknown, f"{rel(path)}: `tetrapipe run` has no flag(s) {unknown}"
    for c in tetrapipe_containers(workload):
        build_parser().parse_args(["run", *c["args"][1:]])


def known_env_vars() -> set[str]:
    from tetrapipe.clients import kafka as kafka_connection

    names = set()
    for pkg in ("tetrapipe",):
        for src in (ROOT / pkg).rglob("*.py"):
            names.update(re.findall(r"\b((?:KAFKA|POD|SERVICE|NODE)_[A-Z_]+)\b", src.read_text(encoding="utf-8")))
    names.update(kafka_connection._ENV[f] + "_FILE" for f in kafka_connection._FROM_FILE)
    otlp = (ROOT / "tetrapipe" / "sinks" / "otlp" / "config.py").read_text(encoding="utf-8")
    for suffix in re.findall(r'_env\(environ, "([A-Z_]+)"\)', otlp):
        names.update({f"OTEL_EXPORTER_OTLP_{suffix}", f"OTEL_EXPORTER_OTLP_LOGS_{suffix}"})
    return names


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_env_uses_only_variables_the_code_reads(path: Path, workload: dict[str, Any]) -> None:
    known = known_env_vars()
    for c in tetrapipe_containers(workload):
        names = [e["name"] for e in c.get("env", [])]
        assert not set(names) - known, f"{rel(path)}: {c['name']}: unknown env {sorted(set(names) - known)}"
        for e in c.get("env", []):
            assert not re.search(r"PASSWORD$|SECRET|TOKEN", e["name"]) or "valueFrom" in e, (
                f"{e['name']}: secrets come from a Secret (secretKeyRef or a *_FILE mount), never inline")


CONFIGMAPS = [(p, d) for p, d in all_documents() if d.get("kind") == "ConfigMap"]


@pytest.mark.parametrize(("path", "doc"), CONFIGMAPS, ids=[rel(p) for p, _ in CONFIGMAPS])
def test_configmap_config_passes_check_config(path: Path, doc: dict[str, Any], tmp_path: Path) -> None:
    for key, text in doc["data"].items():
        cfg = tmp_path / key
        cfg.write_text(text, encoding="utf-8")
        proc = subprocess.run([sys.executable, "-m", "tetrapipe.cli.main", "check-config", str(cfg)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{rel(path)} [{key}]: {proc.stdout}{proc.stderr}"


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_config_flag_points_at_the_mounted_configmap(path: Path, workload: dict[str, Any]) -> None:
    pod = workload["spec"]["template"]["spec"]
    for c in tetrapipe_containers(workload):
        config = flag_value(c["args"], "--config")
        assert config, f"{c['name']}: no --config"
        mount = next(m for m in c["volumeMounts"] if config.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        (cm,) = [d for _, d in CONFIGMAPS if d["metadata"]["name"] == volume["configMap"]["name"]]
        assert config.rsplit("/", 1)[1] in cm["data"]


def test_daemonset_follows_tetragon_export_read_only() -> None:
    (ds,) = [d for _, d in WORKLOADS if d["kind"] == "DaemonSet"]
    (c,) = tetrapipe_containers(ds)
    follow = flag_value(c["args"], "--follow")
    checkpoint = flag_value(c["args"], "--checkpoint")
    assert follow == "/var/run/cilium/tetragon/tetragon.log"
    assert checkpoint == "/var/lib/tetrapipe/checkpoint"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/var/run/cilium/tetragon"].get("readOnly") is True
    assert not mounts["/var/lib/tetrapipe"].get("readOnly")
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/var/run/cilium/tetragon"]["name"]]["hostPath"]["path"] == "/var/run/cilium/tetragon"
    assert "hostPath" in volumes[mounts["/var/lib/tetrapipe"]["name"]]  # survives pod replacement


# ---------------------------------------------------------------------------------------------
# Image: lock and Dockerfile


def locked() -> dict[str, tuple[str, int]]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", block)
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = (m[2], block.count("--hash=sha256:"))
    return pins


def test_lock_satisfies_pyproject_runtime_dependencies() -> None:
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    pins = locked()
    for dep in deps:
        req = Requirement(dep)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: re-run pip-compile"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name][0]}, pyproject wants {req.specifier}: re-run pip-compile")
    for name, (version, hashes) in pins.items():
        assert hashes >= 1, f"{name}=={version} has no --hash (the Dockerfile installs with --require-hashes)"


def test_dockerfile_copies_every_wheel_package_and_keeps_the_check_markers() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    hatch = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"]["build"]["targets"]
    copied = set(re.findall(r"^COPY\s+(?!--from)(.+?)\s+\S+$", dockerfile, re.M))
    sources = {s for line in copied for s in line.split()}
    for pkg in [*hatch["wheel"]["packages"], *hatch["wheel"].get("force-include", {})]:
        assert pkg in sources, f"Dockerfile does not COPY {pkg} (a wheel package / force-include of pyproject.toml)"
    assert "requirements.lock" in sources
    begin, end = dockerfile.index("# image-check: begin"), dockerfile.index("# image-check: end")
    step = dockerfile[begin:end]
    assert "--require-hashes -r /src/requirements.lock" in step
    assert "--no-deps /dist/" in step
    assert "image-check: begin" in (ROOT / ".ci" / "image-check.sh").read_text(encoding="utf-8")
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert 'ENTRYPOINT ["tetrapipe"]' in dockerfile and 'CMD ["run"]' in dockerfile


@pytest.mark.parametrize(("path", "workload"), WORKLOADS, ids=WL_IDS)
def test_probes_and_scrape_annotations_reach_the_status_endpoint(path: Path, workload: dict[str, Any]) -> None:
    """Probes and Prometheus annotations name the port `--metrics-port` serves and paths it answers."""
    annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
    for c in tetrapipe_containers(workload):
        port = int(flag_value(c["args"], "--metrics-port"))
        metrics_port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
        assert metrics_port == port, f"{rel(path)}: port `metrics` is not --metrics-port"
        for probe, paths in (("startupProbe", {"/livez"}), ("livenessProbe", {"/livez"}),
                             ("readinessProbe", {"/readyz"})):
            if probe in c:
                assert c[probe]["httpGet"]["path"] in paths, (rel(path), probe)
        if annotations:
            assert annotations.get("prometheus.io/port") == str(port)
            assert annotations.get("prometheus.io/path") == "/metrics"
