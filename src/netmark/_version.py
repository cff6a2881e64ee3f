"""The package version, in a leaf module so that :mod:`netmark.io` and :mod:`netmark.keys` can stamp it into files
without importing the :mod:`netmark` package ``__init__`` (which re-exports them: an import cycle otherwise)."""

__version__ = "0.1.0"
