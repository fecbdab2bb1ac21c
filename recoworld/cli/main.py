"""``recoworld``: the command-line entry point.

Each subcommand is a module with a ``HELP`` line, ``add_arguments(parser)`` and
``run(args) -> int``; register it in `SUBCOMMANDS`. Subcommand modules import their heavy
dependencies inside ``run`` so that ``recoworld --help`` stays fast and works without extras.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from recoworld import __version__
from recoworld.errors import RecoworldError

SUBCOMMANDS: dict[str, str] = {
    "simulate": "recoworld.cli.simulate",
    "evaluate": "recoworld.cli.evaluate",
    "train": "recoworld.cli.train",
    "replay": "recoworld.cli.replay",
    "bench": "recoworld.cli.bench",
    "serve-fake-llm": "recoworld.cli.serve_fake_llm",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``recoworld`` parser with one subparser per entry of `SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="recoworld",
        description="Simulated users meet pluggable recommenders, session after session.",
    )
    parser.add_argument("--version", action="version", version=f"recoworld {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(
            name,
            help=module.HELP.replace("%", "%%"),  # argparse formats help strings
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``recoworld`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Usage errors and `RecoworldError`s exit with code 2 and a one-line message on stderr.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on usage errors (2)
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return int(args.run(args) or 0)
    except RecoworldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
