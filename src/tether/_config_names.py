"""The names a framework config file goes by when none is given (pure, imports nothing).

Apart from :mod:`tether._config` so that the command line finds ``./tether.yaml``
without importing the config models (pydantic) first.
"""

__all__ = ["CONFIG_NAMES"]

CONFIG_NAMES = ("tether.yaml", "tether.yml", "tether.toml", "tether.json")
