"""Regrouping block streams: fixed pieces and overlapping frames.

:class:`Rechunker` regroups a stream of ``(channels, frames)`` blocks of any size into pieces of
a fixed length, so that whatever runs on the pieces (sums, FFT batches) does exactly the same
arithmetic however the stream was cut; :class:`BlockFramer` cuts pieces into overlapping analysis
frames. The spectrum, the fingerprint and the level statistics share them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from tonearm.errors import ParameterError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tonearm.types import AudioArray

__all__ = ["BlockFramer", "Rechunker"]


class BlockFramer:
    """Cut a stream of ``(channels, frames)`` blocks into frames of ``frame_length``, step ``hop``.

    Frame ``t`` covers samples ``[t * hop, t * hop + frame_length)`` of the stream. Blocks may have
    any size; samples that do not yet complete a frame are carried over (at most
    ``frame_length`` per channel). A trailing partial frame is never emitted.
    """

    __slots__ = ("_buf", "_fill", "channels", "frame_length", "hop")

    def __init__(self, *, channels: int, frame_length: int, hop: int) -> None:
        if not 0 < hop <= frame_length:
            raise ParameterError(f"hop must be in 1..frame_length, got {hop} for {frame_length}")
        self.channels = channels
        self.frame_length = frame_length
        self.hop = hop
        self._buf = np.zeros((channels, frame_length), dtype=np.float32)
        self._fill = 0

    def reset(self) -> None:
        """Forget any carried samples."""
        self._fill = 0

    def push(self, block: AudioArray) -> list[AudioArray]:
        """Add ``block``; return the spans holding every frame it completes (maybe none).

        Returns
        -------
        list of ndarray, each shape (channels, (n - 1) * hop + frame_length), float32
            At most two contiguous spans, in stream order, whose ``n >= 1`` frames start at
            ``0, hop, 2 * hop, ...``: cut them with :meth:`frames`. The first may be a copy
            joining the carried samples to the block, the second is a view of ``block``. Valid
            until the next call to ``push``.
        """
        length, hop, fill = self.frame_length, self.hop, self._fill
        n_new = block.shape[1]
        total = fill + n_new
        if total < length:
            self._buf[:, fill:total] = block
            self._fill = total
            return []
        n = (total - length) // hop + 1
        n_head = min(n, -(-fill // hop))  # frames that start in the carried samples
        spans: list[AudioArray] = []
        if n_head:
            need = (n_head - 1) * hop + length - fill
            spans.append(np.concatenate((self._buf[:, :fill], block[:, :need]), axis=1))
        if n > n_head:
            start = n_head * hop - fill
            spans.append(block[:, start : start + (n - n_head - 1) * hop + length])
        keep_from = n * hop  # stream position (0 = first carried sample) of the new carry
        rest = total - keep_from
        if keep_from >= fill:
            self._buf[:, :rest] = block[:, keep_from - fill :]
        else:
            carried = fill - keep_from
            self._buf[:, :carried] = self._buf[:, keep_from:fill].copy()
            self._buf[:, carried:rest] = block
        self._fill = rest
        return spans

    def frames(self, span: AudioArray) -> AudioArray:
        """View of ``span`` as frames, shape ``(channels, n, frame_length)`` (no copy)."""
        windows = np.lib.stride_tricks.sliding_window_view(span, self.frame_length, axis=-1)
        return windows[:, :: self.hop]


class Rechunker:
    """Regroup a stream of blocks of any size into pieces of exactly ``piece`` frames.

    Small blocks are copied into a buffer until a piece is complete; whole pieces inside a long
    block are handed out as views, without copying. The pieces always start at multiples of
    ``piece`` in the stream, so the work done downstream does not depend on how the stream was
    split. :meth:`flush` hands out the last, shorter piece.
    """

    __slots__ = ("_buf", "_fill", "piece")

    def __init__(self, *, channels: int, piece: int) -> None:
        if piece < 1:
            raise ParameterError(f"piece must be >= 1 frame, got {piece}")
        self.piece = piece
        self._buf = np.zeros((channels, piece), dtype=np.float32)
        self._fill = 0

    def reset(self) -> None:
        """Forget any buffered samples."""
        self._fill = 0

    def push(self, block: AudioArray) -> Iterator[AudioArray]:
        """Yield the pieces ``block`` completes, shape ``(channels, piece)``; consume each one
        before asking for the next (the buffer is reused)."""
        n, pos, piece = block.shape[1], 0, self.piece
        if self._fill:
            pos = min(piece - self._fill, n)
            self._buf[:, self._fill : self._fill + pos] = block[:, :pos]
            self._fill += pos
            if self._fill < piece:
                return
            yield self._buf
            self._fill = 0
        while n - pos >= piece:
            yield block[:, pos : pos + piece]
            pos += piece
        self._buf[:, : n - pos] = block[:, pos:]
        self._fill = n - pos

    def flush(self) -> Iterator[AudioArray]:
        """Yield the buffered partial piece, if any, and empty the buffer."""
        if self._fill:
            yield self._buf[:, : self._fill]
            self._fill = 0
