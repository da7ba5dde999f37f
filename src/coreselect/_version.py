"""The version of coreselect (one place)."""

__version__ = "0.1.0"
