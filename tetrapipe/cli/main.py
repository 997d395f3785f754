"""The `tetrapipe` command line: the commands and `main` (the work is elsewhere).

- cli/parser.py: the arguments of every command;
- cli/run.py: `tetrapipe run` — loading the configuration, building what the registries wire, running;
- cli/exit.py: how a run ends — signals, the bounded teardown and exit, the summary;
- cli/policies.py, cli/config_test.py: `tetrapipe policies`, `tetrapipe test`.
"""

# ruff: noqa: E402 - the imports below run with the cycle collector paused (see _COLLECTING)

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

# Start-up: importing the package makes tens of thousands of long-lived objects (classes, functions, msgspec
# types) and no garbage cycles worth collecting, yet the collector would walk them all, again and again, as
# they pile up (about a tenth of the start-up's CPU).  Paused for the imports; a run then collects once and
# freezes what start-up built (tetrapipe.cli.run.tune_gc).
_COLLECTING = gc.isenabled()
gc.disable()

from tetrapipe.cli.config_test import cmd_test
from tetrapipe.cli.exit import EXIT_MARGIN, RunSummary, _run_to_end, _run_with_signals
from tetrapipe.cli.parser import _command_parser, build_parser
from tetrapipe.cli.policies import cmd_policies
from tetrapipe.cli.run import Peers, build_peers, cmd_run, load_configuration, tune_gc
from tetrapipe.config.resolve import build_wiring, resolve_wiring
from tetrapipe.config.root import Config, ConfigFileError, build_tagger, load_config
from tetrapipe.formats import build_format
from tetrapipe.logs import emit
from tetrapipe.sinks.base import SinkContext
from tetrapipe.sinks.stdout import StdoutSinkConfig
from tetrapipe.sources.stream import StdinSourceConfig

if _COLLECTING:
    gc.enable()

__all__ = ["COMMANDS", "EXIT_MARGIN", "Peers", "RunSummary", "_run_to_end", "_run_with_signals", "build_parser",
           "build_peers", "cmd_categories", "cmd_check_config", "cmd_run", "load_configuration", "main", "tune_gc"]


# The modules of the other commands (check-config, categories) are imported by their functions: a run does
# not load them at start-up.


def cmd_categories(args: argparse.Namespace) -> int:
    from tetrapipe.rules.docs import categories_markdown, categories_table
    config = load_config(args.config)
    tagger = build_tagger(config.library)
    categories = [c.category for c in tagger.categories]
    sys.stdout.write(categories_markdown(categories) if args.markdown else categories_table(categories))
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from tetrapipe.config.check import check_config
    run_defaults = build_parser().parse_args(["run"])  # no flags: the file (and env) alone

    def wiring(config: Config) -> None:  # sinks and dead letter built, not started: formats, templates, endpoints
        groups = build_tagger(config.library).groups
        wired = resolve_wiring(run_defaults, config)
        # stdout is not opened here (a check must not take the terminal); its format is checked by building it
        for path, entry in wired.sinks:
            if isinstance(entry, StdoutSinkConfig):
                try:
                    build_format(entry.format, category_groups=dict(groups))
                except ValueError as exc:
                    raise ConfigFileError(f"{path}: {exc}") from None
        build_wiring(wired._replace(source=StdinSourceConfig(),
                                    sinks=[(p, e) for p, e in wired.sinks if not isinstance(e, StdoutSinkConfig)]),
                     SinkContext(category_groups=groups))

    config, problems = check_config(args.file, more=(
        lambda c: build_peers(run_defaults, c.peers),  # options, and the static file's entries (nothing is started)
        wiring))
    if config is None:  # every problem of the file, one per line (tetrapipe.config.check)
        raise ConfigFileError(problems[0] if len(problems) == 1 else
                              f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))
    tagger = build_tagger(config.library)
    print(f"{args.file}: valid ({len(tagger.categories)} categories, {len(config.egress.zones)} custom zones)")
    return 0


COMMANDS = {"run": cmd_run, "categories": cmd_categories, "check-config": cmd_check_config,
            "policies": cmd_policies, "test": lambda args: cmd_test(args, load_configuration)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # name the command's own usage, not the top level's (`tetrapipe run --bogus`)
        _command_parser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[args.command](args)
    except ConfigFileError as exc:
        emit(None, "error", f"invalid configuration: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
