"""The ``tether`` command line."""

from tether.cli import _bench as _bench  # registers bench and workloads
from tether.cli import _commands as _commands  # registers the subcommands
from tether.cli import _ops as _ops  # registers plugins health|enable|disable|reload
from tether.cli import _serve as _serve  # registers `tether serve`
from tether.cli._app import cli, main

__all__ = ["cli", "main"]
