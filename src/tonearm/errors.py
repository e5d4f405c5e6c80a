"""The exception hierarchy shared by every layer.

``TonearmError`` is the root. Anything a user can cause (a bad file, a bad option) is a
``ParameterError``, ``DecodeError`` or ``EncodeError``: the CLI prints its message as one line and
exits 2. Anything else that escapes is a bug and exits 1.
"""

from __future__ import annotations

__all__ = [
    "Cancelled",
    "DatabaseError",
    "DecodeError",
    "EncodeError",
    "ParameterError",
    "TagError",
    "TonearmError",
    "UserInputError",
]


class TonearmError(Exception):
    """Root of every error tonearm raises on purpose."""


class UserInputError(TonearmError):
    """The user's input is at fault; the message says what and how to fix it (exit code 2)."""


class ParameterError(UserInputError, ValueError):
    """A parameter or array is out of range, of the wrong shape, or inconsistent."""


class DecodeError(UserInputError):
    """A file cannot be read as audio (missing, empty, truncated, not audio, unsupported)."""


class EncodeError(UserInputError):
    """An output cannot be written (missing folder, unsupported format, same path as input)."""


class TagError(UserInputError):
    """A file's tags cannot be read or written (broken, unsupported, read-only)."""


class DatabaseError(UserInputError):
    """The library database cannot be used: not a database, a newer schema, unreachable."""


class Cancelled(TonearmError):
    """The work was cancelled on request; whatever it was writing has been removed."""
