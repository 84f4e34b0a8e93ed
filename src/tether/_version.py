"""tether's version: one place, read by the package metadata tools and by the code."""

__all__ = ["__version__"]

__version__ = "0.1.0"
