"""Batch input files under ``/openai/v1/files``: a ``multipart/form-data`` upload
(``purpose=batch``, ``file``) read as it streams in, in constant memory whatever its size.

The upload is kept twice: the bytes as sent (``GET .../content`` answers them, and a batch's
output is rendered from their ``custom_id``s), in a bucket of their own; and their texts as a
native input file (gateway/files.py: one ``{"text", "id": custom_id}`` line per text), which a
batch's native file job runs. The file exists only when every line passed
(gateway/openai/batchfile.py); a refusal keeps neither.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable

import msgspec
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from core.config import Settings
from gateway import errors as E
from gateway.files import FileNotFound, FileService, new_file_id, split_line
from gateway.openai.batchfile import LineChecker
from gateway.openai.errors import UnsupportedParameter
from schemas.api import FieldError
from schemas.openai_batch import BatchFileMeta, LineShape, OpenAIFile
from store.objects import ObjectBucket, ObjectWriter

UPLOADED = re.compile(r"file-[0-9a-f]{32}")
"""An uploaded file's id (outputs are ``file-<job_id>-output`` / ``-errors``)."""
MAX_LINE_BYTES = 32 * 1024**2
"""Longest input line (one request, up to 2048 texts): a longer one is a 413."""
_FIELD_BYTES = 256
_PIECE = 64 * 1024
_META = msgspec.json.Decoder(BatchFileMeta)
_SHAPE = msgspec.json.Decoder(LineShape)


def boundary_of(content_type: str | None) -> str:
    """The multipart boundary; 415 for any other body."""
    kind, options = parse_options_header(content_type or "")
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise E.UnsupportedMediaType(
            "send multipart/form-data with `purpose=batch` and the JSONL `file`",
            errors=[FieldError("header:Content-Type", "multipart/form-data")])
    return options["boundary"]


def to_openai_file(file_id: str, meta: BatchFileMeta) -> OpenAIFile:
    """OpenAI's view of an uploaded batch file."""
    return OpenAIFile(id=file_id, bytes=meta.bytes, created_at=int(meta.created_at),
                      filename=meta.filename, purpose="batch", expires_at=int(meta.expires_at))


class _Upload:
    """One multipart body: the ``file`` part checked and converted line by line, the bytes as
    sent written on, the other fields kept."""

    def __init__(self, settings: Settings, boundary: str, writer: ObjectWriter,
                 checker: LineChecker):
        self._s = settings
        self._boundary = boundary
        self._writer = writer
        self.checker = checker
        self.filename = "batch.jsonl"
        self.fields: dict[str, str] = {}
        self._seen_file = False
        self._pending = bytearray()
        self._line = 0

    async def native_lines(self, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The native JSONL of the file's texts, in pieces of about 64 KiB."""
        parser = PushMultipartParser(self._boundary, max_header_count=8, max_segment_count=16)
        out = bytearray()
        part: MultipartSegment | None = None
        value = bytearray()
        try:
            async for chunk in body:
                for event in parser.parse(chunk) if chunk else ():
                    if isinstance(event, MultipartSegment):
                        part = self._begin(event)
                    elif event is None:
                        if part is not None and part.name == "file":
                            out += self._lines(final=True)
                        elif part is not None:
                            self._field(part.name or "", bytes(value))
                            value.clear()
                        part = None
                    elif part is not None and part.name == "file":
                        await self._file_bytes(bytes(event))
                        out += self._lines(final=False)
                    else:
                        value += event
                        if len(value) > _FIELD_BYTES:
                            raise E.InvalidRequest(f"the form field {part.name!r} is too long")
                if len(out) >= _PIECE:
                    yield bytes(out)
                    out.clear()
            parser.close()
        except MultipartError as exc:
            raise E.InvalidRequest(f"the body is not complete multipart/form-data: {exc}",
                                   errors=[FieldError("", "multipart/form-data")]) from None
        self._finish()
        if out:
            yield bytes(out)

    def _begin(self, seg: MultipartSegment) -> MultipartSegment:
        if seg.name == "file":
            if self._seen_file:
                raise E.InvalidRequest("send one `file` per upload",
                                       errors=[FieldError("/file", "one file")])
            self._seen_file = True
            self.filename = (seg.filename or self.filename)[:256]
        elif seg.name and seg.name.startswith("expires_after"):
            raise UnsupportedParameter(
                f"`{seg.name}` is not supported: batch files expire with the results' "
                f"retention ({self._s.result_ttl_s / 86400:g} days)",
                errors=[FieldError("/expires_after", "not supported")])
        elif seg.name != "purpose":
            raise E.InvalidRequest(f"unknown form field {seg.name!r}: send `file` and "
                                   "`purpose`", errors=[FieldError(f"/{seg.name}", "unknown")])
        return seg

    def _field(self, name: str, raw: bytes) -> None:
        value = raw.decode("utf-8", "replace").strip()
        if name == "purpose" and value != "batch":
            raise UnsupportedParameter(
                f"`purpose` {value!r} is not offered: files here are Batch API inputs "
                "(purpose=batch)", errors=[FieldError("/purpose", "batch only")])
        self.fields[name] = value

    async def _file_bytes(self, data: bytes) -> None:
        if self._writer.size + len(data) > self._s.max_file_bytes:
            raise E.PayloadTooLarge(f"the file is over {self._s.max_file_bytes} bytes",
                                    errors=[FieldError("/file", "too large")])
        await self._writer.write(data)
        self._pending += data

    def _lines(self, *, final: bool) -> bytes:
        out = bytearray()
        pending, start = self._pending, 0
        while (end := pending.find(b"\n", start)) >= 0:
            self._line += 1
            out += self.checker.line(split_line(bytes(pending[start:end])), self._line)
            start = end + 1
        del pending[:start]
        if final and pending.strip():  # a last line without its newline
            self._line += 1
            out += self.checker.line(split_line(bytes(pending)), self._line)
            pending.clear()
        if len(pending) > MAX_LINE_BYTES:
            raise E.PayloadTooLarge(f"line {self._line + 1} is over {MAX_LINE_BYTES} bytes: "
                                    "split the request", errors=[
                                        FieldError(f"line:{self._line + 1}", "too long")])
        return bytes(out)

    def _finish(self) -> None:
        if not self._seen_file:
            raise E.InvalidRequest("`file` is required (the JSONL of requests)",
                                   errors=[FieldError("/file", "required")])
        if "purpose" not in self.fields:
            raise E.InvalidRequest("`purpose` is required: `batch`",
                                   errors=[FieldError("/purpose", "required")])
        self.checker.finish()


class BatchFiles:
    """Upload, describe and read back the tenant's batch input files."""

    def __init__(self, settings: Settings, bucket: ObjectBucket, native: FileService,
                 resolve: Callable[[str], tuple[str, int]], dimension: Callable[[str, int], int]):
        self._s = settings
        self.bucket = bucket
        self._native = native
        self._resolve = resolve
        self._dimension = dimension

    async def upload(self, tenant: str, content_type: str | None,
                     body: AsyncIterator[bytes]) -> OpenAIFile:
        """Check, convert and store a multipart upload; it exists only if all of it passed."""
        boundary = boundary_of(content_type)
        file_id = new_file_id()
        writer = self.bucket.writer(file_id)
        upload = _Upload(self._s, boundary, writer,
                         LineChecker(self._s, self._resolve, self._dimension))
        started = time.time()  # the native file's expiry is later: it outlives this one
        try:
            native = await self._native.upload(tenant, upload.native_lines(body))
        except BaseException:
            await writer.abort()
            raise
        checker = upload.checker
        meta = BatchFileMeta(
            tenant=tenant, filename=upload.filename, bytes=writer.size,
            sha256=writer.hexdigest(), created_at=time.time(),
            expires_at=started + self._s.result_ttl_s, native_file_id=native.file_id,
            requests=checker.requests, inputs=checker.inputs, model=checker.model or "")
        try:
            await writer.commit(msgspec.json.encode(meta).decode())
        except BaseException:
            await writer.abort()
            await self._native.bucket.delete(native.file_id)
            raise
        return to_openai_file(file_id, meta)

    async def meta(self, tenant: str, file_id: str) -> BatchFileMeta:
        """The tenant's live batch file; 404 for an unknown, expired or another tenant's."""
        info = await self.bucket.info(file_id) if UPLOADED.fullmatch(file_id) else None
        try:
            meta = _META.decode(info.description) if info and info.description else None
        except msgspec.DecodeError:
            meta = None
        if meta is None or meta.tenant != tenant or meta.expires_at <= time.time():
            raise FileNotFound(f"no file {file_id}")
        return meta

    async def content(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's bytes as uploaded, one object chunk at a time."""
        info = await self.bucket.info(file_id)
        if info is None:
            raise FileNotFound(f"no file {file_id}")
        async for data in self.bucket.read(info):
            yield data

    async def shapes(self, file_id: str) -> AsyncIterator[LineShape]:
        """The requests of a file that passed the upload, in order (blank lines skipped).
        Read by batches after the file's own expiry too: its bytes outlive it."""
        pending = bytearray()
        async for data in self.content(file_id):
            pending += data
            start = 0
            while (end := pending.find(b"\n", start)) >= 0:
                if pending[start:end].strip():
                    yield _SHAPE.decode(pending[start:end])
                start = end + 1
            del pending[:start]
        if pending.strip():
            yield _SHAPE.decode(pending)
