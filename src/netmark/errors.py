"""Exceptions netmark raises for bad *user input*.

Every error a user can cause (a missing data file, a malformed key, a model of the wrong
architecture, NaN weights, a pickle payload, ...) is a :class:`NetmarkError`. The CLI turns
these into one line on stderr and exit code 2; library users can catch the base class.
"""

from __future__ import annotations


class NetmarkError(Exception):
    """Base class for every user-facing error (bad input, missing files, bad config)."""


class ConfigError(NetmarkError, ValueError):
    """A configuration value is out of range or inconsistent."""


class DataError(NetmarkError):
    """A dataset is missing, truncated or malformed."""


class ModelFileError(NetmarkError):
    """A model file is missing, truncated, unsafe (pickle payload) or malformed."""


class NoArchitectureError(ModelFileError):
    """A model file records no architecture and none was given: only its weights can be read by name."""


class ArchitectureError(NetmarkError):
    """A model does not match the architecture or layer a key/config expects."""


class KeyFileError(NetmarkError):
    """A secret key file is missing, truncated, malformed or fails its fingerprint."""


class OutputExistsError(NetmarkError):
    """Refusing to overwrite an existing output without ``force=True`` / ``--force``."""
