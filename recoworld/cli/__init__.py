"""The ``recoworld`` command: one module per subcommand, registered in `main.SUBCOMMANDS`."""

from recoworld.cli.main import main

__all__ = ["main"]
