"""`tetrapipe policies list|render`: the command side of `tetrapipe.rules.policies`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tetrapipe.config.root import ConfigFileError, load_config, resolve_cidrs
from tetrapipe.rules.library import LibraryError, load_library


def add_policies_parser(subparsers: Any) -> None:
    """Add `policies list|render` to the `tetrapipe` sub-command parsers."""
    examples = ("examples:\n  tetrapipe policies list\n"
                "  tetrapipe policies render --pod-cidr 10.244.0.0/16 --service-cidr 10.96.0.0/12 \\\n"
                "      | kubectl apply -f -\n"
                "  POD_CIDR=10.244.0.0/16 SERVICE_CIDR=10.96.0.0/12 tetrapipe policies render egress\n"
                "  tetrapipe policies render --config config/example.yaml --output policies/\n")
    raw = argparse.RawDescriptionHelpFormatter
    cmd = subparsers.add_parser("policies", help="list or render the shipped TracingPolicies", epilog=examples,
                                formatter_class=raw,
                                description="The Tetragon TracingPolicies whose events the categories tag.")
    actions = cmd.add_subparsers(dest="policies_command", metavar="ACTION", required=True)
    show = actions.add_parser("list", help="policy name, file, and the categories that use it")
    show.add_argument("--config", metavar="FILE", help="include this config file's library overrides")
    out = actions.add_parser("render", help="print policies ready for 'kubectl apply -f -'", epilog=examples,
                             formatter_class=raw,
                             description="Print the policies (all when no NAME) as multi-document YAML, "
                                         "with the egress policy's CIDRs filled in.")
    out.add_argument("names", nargs="*", metavar="NAME", help="policy name (see 'tetrapipe policies list')")
    out.add_argument("--pod-cidr", action="append", metavar="CIDR",
                     help="pod CIDR (repeatable; default: $POD_CIDR, comma-separated, or the config file)")
    out.add_argument("--service-cidr", action="append", metavar="CIDR",
                     help="service CIDR (repeatable; default: $SERVICE_CIDR or the config file)")
    out.add_argument("--config", metavar="FILE", help="config file (egress.pod_cidrs, egress.service_cidrs)")
    out.add_argument("--output", metavar="DIR", help="write one NAME.yaml per policy into DIR instead")


def cmd_policies(args: argparse.Namespace) -> int:
    """Run `policies list|render`; 0 on success, 2 with a `tetrapipe: ` message on a user error."""
    # imported here, not at the top: `tetrapipe run` loads this module (its parser) but never the policies
    from tetrapipe.rules.policies import PolicyError, load_policies, policies_table, render, write_rendered
    from tetrapipe.rules.tetragon_export import hint_lines
    try:
        config = load_config(args.config)
        library = load_library(config.library)
        if args.policies_command == "list":
            sys.stdout.write(policies_table(load_policies(), library))
            return 0
        rendered = render(args.names, resolve_cidrs(args.pod_cidr, "POD_CIDR", config.egress.pod_cidrs),
                          resolve_cidrs(args.service_cidr, "SERVICE_CIDR", config.egress.service_cidrs))
        if args.output:
            for path in write_rendered(rendered, Path(args.output)):
                print(f"wrote {path}")
        else:
            sys.stdout.write("---\n".join(rendered.values()))
        # The policies alone are not enough: Tetragon's export defaults drop some of their events.
        sys.stderr.write("\n".join(hint_lines(library)) + "\n")
        return 0
    except (PolicyError, ConfigFileError, LibraryError, OSError) as exc:
        sys.stderr.write(f"tetrapipe: {exc}\n")
        return 2
