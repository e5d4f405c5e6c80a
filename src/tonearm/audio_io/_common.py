"""Checks and error messages shared by the soundfile and PyAV paths of ``tonearm.audio_io``.

Every message is one line that names the file as the caller spelled it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tonearm.errors import DecodeError
from tonearm.types import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

__all__ = [
    "check_input_file",
    "check_stream_format",
    "corrupt_error",
    "display_name",
    "nonfinite_error",
    "truncated_error",
]


def display_name(path: str | os.PathLike[str]) -> str:
    """Return the path as the user gave it, for messages."""
    return os.fspath(path)


def check_input_file(path: str | os.PathLike[str]) -> tuple[Path, int]:
    """Check that ``path`` is an existing, readable, non-empty regular file.

    Returns
    -------
    (Path, int)
        The path and its size in bytes.

    Raises
    ------
    DecodeError
        ``does not exist``, ``is a directory``, ``is not a regular file``, ``is empty`` or
        ``permission denied``. Permission is checked with ``os.access`` (root passes it; the open
        itself then decides).
    """
    name = display_name(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DecodeError(f"'{name}' does not exist") from None
    except PermissionError:
        raise DecodeError(f"cannot read '{name}': permission denied") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DecodeError(f"cannot read '{name}': {reason}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DecodeError(f"'{name}' is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise DecodeError(f"cannot read '{name}': not a regular file")
    if st.st_size == 0:
        raise DecodeError(f"'{name}' is empty")
    if not os.access(path, os.R_OK):
        raise DecodeError(f"cannot read '{name}': permission denied")
    return Path(path), st.st_size


def check_stream_format(name: str, *, sample_rate: int, channels: int) -> None:
    """Reject channel counts and sample rates that tonearm does not master."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise DecodeError(f"'{name}' has {channels} channels; tonearm masters mono and stereo")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise DecodeError(
            f"'{name}' has a sample rate of {sample_rate} Hz; tonearm supports "
            f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )


def truncated_error(name: str, *, declared: int, decoded: int) -> DecodeError:
    """The error for a file that holds fewer frames than its header promises."""
    return DecodeError(
        f"'{name}' is truncated: header says {declared} frames, only {decoded} could be decoded"
    )


def corrupt_error(name: str, *, decoded: int, declared: int, reason: str) -> DecodeError:
    """The error for a decoder failure part-way through a file."""
    reason = " ".join(reason.split()).rstrip(".")
    return DecodeError(
        f"'{name}' is corrupt or truncated: decoding failed after {decoded} of {declared} frames "
        f"({reason})"
    )


def nonfinite_error(name: str) -> DecodeError:
    """The error for a float file that holds NaN or Inf samples."""
    return DecodeError(f"'{name}' contains NaN or Inf samples")
