"""The `tetrapipe` command line's arguments: the parser of every command and its help texts."""

from __future__ import annotations

import argparse
import os

from tetrapipe import __version__
from tetrapipe.cli.config_test import add_test_parser
from tetrapipe.cli.exit import EXIT_MARGIN
from tetrapipe.cli.policies import add_policies_parser
from tetrapipe.cli.workers import workers_count
from tetrapipe.config.kafka import add_kafka_arguments
from tetrapipe.event.decode import DEFAULT_MAX_DEPTH, MAX_DEPTH_LIMIT
from tetrapipe.formats import NAMES as FORMAT_NAMES
from tetrapipe.logs import LEVELS
from tetrapipe.sinks.otlp.config import add_otlp_arguments

RUN_EXAMPLES = """\
examples:
  tetrapipe run < tetragon.log                      tag every event, JSON lines out
  kubectl logs -n kube-system ds/tetragon -c export-stdout -f | tetrapipe run --format summary
  tetrapipe run --input tetragon.log --only sudo --only suid --format summary
  POD_CIDR=10.244.0.0/16 SERVICE_CIDR=10.96.0.0/12 tetrapipe run < events.jsonl
  tetrapipe run --config config/example.yaml --dead-letter bad.jsonl < events.jsonl

exit status:
  0  the input ended, a SIGTERM/SIGINT drain finished, or stdout's reader went away (| head)
  1  an output failed for good (nothing after its last acknowledged write is committed)
  2  the input could not be read, or the configuration is invalid
  3  a signal's drain did not finish: the --grace period ran out (or a second signal came) with read
     input undelivered — not committed, a Kafka or --follow source redoes it — or an output hung on close
  4  Kafka (the input or an output) did not answer at startup within --kafka-startup-timeout (default 30 s)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tetrapipe",
        description="Tag Cilium Tetragon events with the observability policy library's categories, "
                    "classify connection destinations by CIDR, and forward them.",
        epilog="Run 'tetrapipe COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"tetrapipe {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="process events (default: stdin → stdout)", epilog=RUN_EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Read Tetragon JSON events (raw, CRI log lines, or Fluent Bit/Vector "
                                          "records), tag and classify them, and write them out.")
    run.add_argument("--input", metavar="FILE", help="read this file instead of stdin")
    run.add_argument("--follow", metavar="FILE",
                     help="follow FILE like `tail -F` (Tetragon's JSON export, e.g. "
                          "/var/run/cilium/tetragon/tetragon.log): survives rotation, truncation and restarts; "
                          "needs --checkpoint")
    run.add_argument("--checkpoint", metavar="PATH",
                     help="with --follow (required): file keeping the position acknowledged by the outputs, "
                          "written atomically; its directory must be writable and survive restarts")
    run.add_argument("--follow-from", choices=("beginning", "end"), default=None,
                     help="with --follow, first run only (no checkpoint yet): read what FILE already holds "
                          "(beginning, default) or only what is appended from now on (end)")
    run.add_argument("--config", metavar="FILE", help="config file (library overrides, egress zones)")
    run.add_argument("--pod-cidr", action="append", metavar="CIDR",
                     help="pod CIDR (repeatable; default: $POD_CIDR, comma-separated, or the config file)")
    run.add_argument("--service-cidr", action="append", metavar="CIDR",
                     help="service CIDR (repeatable; default: $SERVICE_CIDR or the config file)")
    run.add_argument("--dead-letter", metavar="FILE", help="append records that cannot be decoded to FILE, unchanged")
    run.add_argument("--format", choices=FORMAT_NAMES, default=None,
                     help="stdout: tetrapipe (alias json), every event with a 'tetrapipe' key (default); summary, "
                          "one line per tagged event; ocsf, OCSF 1.7.0 events; ecs, ECS 9.4 documents.  Given "
                          "with Kafka/OTLP outputs, stdout is written as well")
    run.add_argument("--ocsf-findings", action="store_true",
                     help="with --format ocsf: also a Detection Finding (2004) per event tagged with a "
                          "security-group category")
    run.add_argument("--max-depth", type=_positive_int, default=None, metavar="LEVELS",
                     help=f"deepest JSON nesting accepted; deeper records are dead-lettered as too_deep "
                          f"(default: input.max_depth in the config file, else {DEFAULT_MAX_DEPTH})")
    run.add_argument("--only", action="append", metavar="CATEGORY", default=[],
                     help="output only events with this category (repeatable)")
    run.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                     help="on SIGTERM/SIGINT, time allowed to deliver what was read (default 30); the process "
                          f"exits within --grace + {EXIT_MARGIN:g} s, with status 3 if something was left undelivered")
    run.add_argument("--quiet", action="store_true", help="no count summary on stderr at exit")
    run.add_argument("--no-progress", action="store_true",
                     help="no live progress line (shown only when stderr is a terminal and logs are text)")
    run.add_argument("--log-format", choices=("auto", "json", "text"), default=None,
                     help="stderr log lines: json (one object per line), text, or auto — text on a terminal, "
                          "json otherwise, e.g. in a container (default: $TETRAPIPE_LOG_FORMAT or auto)")
    run.add_argument("--log-level", choices=tuple(LEVELS), default=None,
                     help="least severe messages shown (default: $TETRAPIPE_LOG_LEVEL or info)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     default=_env_int("TETRAPIPE_METRICS_PORT"),
                     help="serve Prometheus /metrics and the /livez, /readyz probes on PORT "
                          "(default: $TETRAPIPE_METRICS_PORT; off when unset; 0 picks a free port)")
    run.add_argument("--metrics-address", metavar="ADDR", default=os.environ.get("TETRAPIPE_METRICS_ADDRESS",
                                                                                 "0.0.0.0"),  # noqa: S104
                     help="address for --metrics-port (default 0.0.0.0 — the pod IP, so probes and "
                          "Prometheus reach it; 127.0.0.1 for local runs)")
    run.add_argument("--peers-kubernetes", action="store_true", default=None,
                     help="name connection peers from the Kubernetes API (pods, services, nodes; needs "
                          "deploy/rbac; default: peers.kubernetes.enabled in the config file)")
    learn = run.add_mutually_exclusive_group()
    learn.add_argument("--peers-learn", dest="peers_learn", action="store_true", default=None,
                       help="learn pod addresses from the events' own source addresses (peers.learn; on by "
                            "default with one process, off by default with --workers N)")
    learn.add_argument("--no-peers-learn", dest="peers_learn", action="store_false",
                       help="do not learn pod addresses, whatever peers.learn says")
    run.add_argument("--workers", type=workers_count, default=1, metavar="N",
                     help="processes for the per-event work (decode, classify, tag, format), or auto (one per "
                          "CPU available); output order, dead letter and counts stay those of one process. "
                          "stdin/--input/--follow: stdout output only. Kafka source: N consumer group members, "
                          "each a full pipeline (default 1: one process, no inter-process cost)")
    add_kafka_arguments(run)
    add_otlp_arguments(run)

    cats = commands.add_parser("categories", help="list the category library",
                               description="List the categories: id, group, description.",
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog="examples:\n  tetrapipe categories\n"
                                      "  tetrapipe categories --config my.yaml      with your additions\n"
                                      "  tetrapipe categories --markdown > docs/library.md\n")
    cats.add_argument("--config", metavar="FILE", help="include this config file's library overrides")
    cats.add_argument("--markdown", action="store_true", help="print the library documentation page")

    check = commands.add_parser("check-config", help="validate a config file",
                                description="Validate a config file: every problem is reported at once, each as "
                                            "FILE:LINE: message with its key path.",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="examples:\n  tetrapipe check-config config/example.yaml\n"
                                       "  exit status 0 when valid, 2 otherwise (also for an empty file)\n")
    check.add_argument("file", metavar="FILE")
    add_policies_parser(commands)
    add_test_parser(commands)
    return parser



def _positive_int(text: str) -> int:
    value = int(text)
    if not 0 < value <= MAX_DEPTH_LIMIT:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_DEPTH_LIMIT}")
    return value



def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"tetrapipe: ${name} must be a port number, not {value!r}") from None



def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:  # argparse keeps its sub-parsers only there
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[command]
            return sub
    return parser

