"""The ``tether`` command line."""

from tether.cli import _commands as _commands  # registers the subcommands
from tether.cli._app import cli, main

__all__ = ["cli", "main"]
