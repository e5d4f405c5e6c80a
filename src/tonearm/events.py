"""Progress events and message codes shared by every layer (CLI bars, jobs, WebSocket).

Events are small frozen records; a producer calls a ``ProgressCallback`` with them and never
waits on the consumer. Codes are stable numbers for user-visible messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal, TypeAlias

__all__ = ["MessageCode", "ProgressCallback", "ProgressEvent", "Stage"]

Stage: TypeAlias = Literal["analyse", "plan", "render", "verify"]


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of progress: ``frames_done`` of ``frames_total`` in ``stage``.

    ``attempt`` counts render passes from 1 (a pass is repeated when verification asks for it).
    """

    stage: Stage
    frames_done: int
    frames_total: int
    attempt: int = 1

    @property
    def fraction(self) -> float:
        """Share of the stage done, 0..1."""
        return min(1.0, self.frames_done / self.frames_total) if self.frames_total else 1.0


ProgressCallback: TypeAlias = Callable[[ProgressEvent], None]


class MessageCode(IntEnum):
    """Numbered user-visible messages (shared by the CLI, job records and the WebSocket)."""

    OK = 0
    TARGET_UNREACHABLE = 101
    HEAVY_LIMITING = 102
    LOUDNESS_TOLERANCE = 103
    WIDTH_REDUCED = 104
    SILENT_INPUT = 105
    RESAMPLED_OUTPUT = 106
    BAD_INPUT = 200
    INTERNAL_ERROR = 500
