"""Receive one multipart upload straight to disk, under a size limit, never whole in memory.

:func:`receive_upload` parses the request body as it arrives (python-multipart's streaming
parser) instead of letting the framework spool the whole body to a temporary file first: the
file part goes to ``folder/<safe name>`` in 1 MiB writes on a worker thread, and the request is
refused (413) as soon as the file passes ``max_bytes``, or before a byte is read when
``Content-Length`` already says it would. Form fields are small strings, limited in number and
size. On any failure, a refusal or a client that went away, the folder is removed: nothing is
left behind. :func:`safe_file_name` turns the name a client sent into one plain file name.
"""

from __future__ import annotations

import contextlib
import shutil
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

import anyio
import anyio.to_thread
from fastapi import HTTPException
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from fastapi import Request
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["ReceivedUpload", "receive_upload", "safe_file_name"]

WRITE_CHUNK_BYTES = 1024 * 1024
"""File data is written (on a worker thread) in pieces of about this size."""
FORM_OVERHEAD_BYTES = 64 * 1024
"""What a body may carry besides the file (boundaries, part headers, fields): a
``Content-Length`` above ``max_bytes`` plus this is refused before reading."""
MAX_FIELDS = 16
MAX_FIELD_BYTES = 1024
MAX_NAME_CHARS = 120
MAX_SUFFIX_CHARS = 10
NAME_PUNCTUATION = frozenset("._-+,()[] ")
DEFAULT_STEM = "upload"


def safe_file_name(name: str | None) -> str:
    """A plain file name from whatever a client sent: the last path component only, letters,
    digits and a little punctuation kept (the rest becomes ``_``), no leading dots, at most
    :data:`MAX_NAME_CHARS` characters, the suffix kept when it is short and alphanumeric.
    Never empty, never ``.``/``..``, never a path."""
    base = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c if c.isalnum() or c in NAME_PUNCTUATION else "_" for c in base)
    kept = kept.strip(" .")
    path = PurePosixPath(kept) if kept else PurePosixPath(DEFAULT_STEM)
    suffix = path.suffix if 1 < len(path.suffix) <= MAX_SUFFIX_CHARS else ""
    if not suffix[1:].isalnum():
        suffix = ""
    stem = (path.name[: -len(suffix)] if suffix else path.name).strip(" .") or DEFAULT_STEM
    return stem[: MAX_NAME_CHARS - len(suffix)] + suffix


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    """The file a client sent, now on disk, and the form's other fields."""

    path: Path
    """``folder/<safe name>``."""
    file_name: str
    """The safe name (what the client called the file, cleaned)."""
    size_bytes: int
    fields: dict[str, str]


def _refuse_too_large(max_bytes: int) -> HTTPException:
    return HTTPException(
        413, f"the upload is larger than this server accepts ({max_bytes:,} bytes at most)"
    )


@dataclass
class _Receiver:
    """The parser's callbacks and the file they write (used on worker threads, one at a time)."""

    folder: Path
    file_field: str
    max_bytes: int
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    disposition: bytes = b""
    in_file: bool = False
    field_name: str = ""
    field_value: bytearray = field(default_factory=bytearray)
    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    file_done: bool = False
    stream: BinaryIO | None = None
    pending: bytearray = field(default_factory=bytearray)
    size_bytes: int = 0
    ended: bool = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.disposition = b""
        self.in_file = False
        self.field_value = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def _header_end(self) -> None:
        if bytes(self.header_name).lower() == b"content-disposition":
            self.disposition = bytes(self.header_value)
        self.header_name, self.header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None:
            raise HTTPException(400, "every form part needs a name")
        self.field_name = name.decode("utf-8", "replace")
        if b"filename" in options or self.field_name == self.file_field:
            if self.field_name != self.file_field:
                raise HTTPException(422, f"the file goes in the form field '{self.file_field}'")
            if self.file_name is not None:
                raise HTTPException(422, "one file per upload")
            self.in_file = True
            self.file_name = safe_file_name(
                options.get(b"filename", b"").decode("utf-8", "replace")
            )
            self.folder.mkdir(parents=True)
            self.stream = (self.folder / self.file_name).open("xb")
        elif len(self.fields) >= MAX_FIELDS:
            raise HTTPException(422, f"too many form fields ({MAX_FIELDS} at most)")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.in_file:
            self.size_bytes += end - start
            if self.size_bytes > self.max_bytes:
                raise _refuse_too_large(self.max_bytes)
            self.pending += data[start:end]
            if len(self.pending) >= WRITE_CHUNK_BYTES:
                self._flush()
        else:
            self.field_value += data[start:end]
            if len(self.field_value) > MAX_FIELD_BYTES:
                raise HTTPException(
                    422, f"form field '{self.field_name}' is over {MAX_FIELD_BYTES} bytes"
                )

    def _part_end(self) -> None:
        if self.in_file:
            self._flush()
            assert self.stream is not None
            self.stream.close()
            self.file_done = True
        else:
            self.fields[self.field_name] = self.field_value.decode("utf-8", "replace")

    def _end(self) -> None:
        self.ended = True

    def _flush(self) -> None:
        if self.pending and self.stream is not None:
            self.stream.write(self.pending)
            self.pending = bytearray()

    def write(self, parser: MultipartParser, data: bytes | None) -> None:
        """Feed the parser (its callbacks write the file); ``None``: the body has ended."""
        if data is None:
            parser.finalize()
        else:
            parser.write(data)

    def discard(self) -> None:
        if self.stream is not None:
            self.stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type"))
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise HTTPException(415, "send the file as multipart/form-data (a 'file' field)")
    return boundary


def _check_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError:
        raise HTTPException(400, "Content-Length is not a number") from None
    if length > max_bytes + FORM_OVERHEAD_BYTES:
        raise _refuse_too_large(max_bytes)


async def receive_upload(
    request: Request, *, folder: Path, max_bytes: int, file_field: str = "file"
) -> ReceivedUpload:
    """Stream the request's multipart body: its ``file_field`` part to ``folder`` (created
    here; it must not exist yet), the other fields into a dict.

    Raises ``HTTPException``: 413 over ``max_bytes`` (by ``Content-Length`` up front, or while
    reading), 415 not multipart, 400 a malformed or truncated body, 422 no file, a second file,
    too many or too large fields. Whatever happens, a failed call leaves no ``folder``.
    """
    boundary = _boundary(request)
    _check_length(request, max_bytes)
    receiver = _Receiver(folder=folder, file_field=file_field, max_bytes=max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())
    ok = False
    try:
        buffered = bytearray()
        async for chunk in request.stream():
            buffered += chunk
            if len(buffered) >= WRITE_CHUNK_BYTES:
                await anyio.to_thread.run_sync(receiver.write, parser, bytes(buffered))
                buffered = bytearray()
        if buffered:
            await anyio.to_thread.run_sync(receiver.write, parser, bytes(buffered))
        await anyio.to_thread.run_sync(receiver.write, parser, None)
        if not receiver.ended:
            raise HTTPException(400, "the upload ended before its closing boundary")
        if receiver.file_name is None or not receiver.file_done:
            raise HTTPException(422, f"no file: the form needs a '{file_field}' field")
        if receiver.size_bytes == 0:
            raise HTTPException(415, f"'{receiver.file_name}' is empty")
        ok = True
        return ReceivedUpload(
            folder / receiver.file_name, receiver.file_name, receiver.size_bytes, receiver.fields
        )
    except ValueError as exc:  # python-multipart's own errors (a malformed body)
        raise HTTPException(400, f"malformed multipart body: {exc}") from None
    finally:
        if not ok:
            with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                await anyio.to_thread.run_sync(receiver.discard)
