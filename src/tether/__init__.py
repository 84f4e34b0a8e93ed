"""tether: a plugin runtime for Python."""

__version__ = "0.1.0"
