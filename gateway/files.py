"""Uploaded JSONL input files: validated line by line as the body streams in, written to the
object store as it arrives (memory: one line and one object chunk, whatever the file's size),
kept until the results' retention runs out, scoped to their tenant like jobs.

A file is visible only once every line passed: the first bad line answers 400 (413 for a
limit) naming its line number, and the chunks already written are purged.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import msgspec
from nats.js import api

from core.config import Settings
from gateway import errors as E
from gateway.body import pointer_of
from schemas.api import FieldError, InputItem
from schemas.errors import ErrorCode
from schemas.files import LINE_DECODER, META_DECODER, FileMeta, FileObject
from store.filepublish import FilePublishQueue
from store.objects import ObjectBucket, ObjectWriter, StaleMeta

_CAS_TRIES = 8
"""Conditional meta writes tried before a 503: only concurrent jobs and deletes of one file
contend, each retry after a fresh read."""


def new_file_id() -> str:
    """``file-`` then a time-ordered (48-bit ms) and random (80-bit) id, like job ids."""
    return f"file-{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


def rfc3339(t: float) -> str:
    """A timestamp as the API writes them."""
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def to_file_object(file_id: str, meta: FileMeta) -> FileObject:
    """The API's view of a stored file."""
    return FileObject(file_id=file_id, lines=meta.lines, bytes=meta.bytes, sha256=meta.sha256,
                      created_at=rfc3339(meta.created_at), expires_at=rfc3339(meta.expires_at))


def split_line(raw: bytes) -> bytes:
    """A line without its CR (files written on Windows end lines with CRLF)."""
    return raw[:-1] if raw.endswith(b"\r") else raw


def decode_line(raw: bytes) -> InputItem:
    """One line as an input item; ValueError / msgspec errors for anything else."""
    line = LINE_DECODER.decode(raw)
    return InputItem(text=line) if isinstance(line, str) else line


class FileService:
    """Upload, look up, delete and read back the tenant's input files."""

    def __init__(self, settings: Settings, bucket: ObjectBucket, publishing: FilePublishQueue):
        self._s = settings
        self.bucket = bucket
        self._publishing = publishing

    async def upload(self, tenant: str, body: AsyncIterator[bytes]) -> FileObject:
        """Stream, validate and store a JSONL body; the file exists only if all of it passed."""
        file_id = new_file_id()
        writer = self.bucket.writer(file_id)
        try:
            lines, longest = await self._copy(body, writer)
        except BaseException:
            await writer.abort()
            raise
        now = time.time()
        meta = FileMeta(tenant=tenant, lines=lines, bytes=writer.size, sha256=writer.hexdigest(),
                        created_at=now, expires_at=now + self._s.result_ttl_s,
                        max_line_bytes=longest)
        await writer.commit(msgspec.json.encode(meta).decode())
        return to_file_object(file_id, meta)

    async def _copy(self, body: AsyncIterator[bytes], writer: ObjectWriter) -> tuple[int, int]:
        """Every complete line is checked before the piece holding it is written on."""
        s = self._s
        pending = bytearray()
        lines = longest = 0
        async for piece in body:
            if writer.size + len(piece) > s.max_file_bytes:
                raise E.PayloadTooLarge(
                    f"the file is over {s.max_file_bytes} bytes",
                    errors=[FieldError("", f"at most {s.max_file_bytes} bytes")])
            pending += piece
            start = 0
            while (end := pending.find(b"\n", start)) >= 0:
                lines += 1
                longest = max(longest, end - start)
                self._check(bytes(pending[start:end]), lines)
                start = end + 1
            del pending[:start]
            if len(pending) > 4 * s.max_text_chars + 1024:  # no newline in sight
                raise E.PayloadTooLarge(
                    f"line {lines + 1} is longer than any valid line can be",
                    errors=[FieldError(f"line:{lines + 1}", "line too long")])
            await writer.write(piece)
        if pending.strip():  # a last line without its newline
            lines += 1
            longest = max(longest, len(pending))
            self._check(bytes(pending), lines)
        if lines == 0:
            raise E.InvalidRequest("the file has no lines",
                                   errors=[FieldError("line:1", "at least one line")])
        return lines, longest

    def _check(self, raw: bytes, n: int) -> None:
        s = self._s
        if n > s.max_file_lines:
            raise E.PayloadTooLarge(
                f"the file has more than {s.max_file_lines} lines",
                errors=[FieldError(f"line:{n}", f"at most {s.max_file_lines} lines")])
        try:
            item = decode_line(split_line(raw))
        except msgspec.ValidationError as exc:
            pointer, detail = pointer_of(str(exc))
            raise E.InvalidRequest(
                f"line {n} is not an input item (a JSON string or {{\"text\", \"id\"?}}): "
                f"{detail}", errors=[FieldError(f"line:{n}{pointer}", detail)]) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise E.InvalidRequest(f"line {n} is not valid JSON: {exc}",
                                   errors=[FieldError(f"line:{n}", str(exc))]) from None
        if len(item.text) > s.max_text_chars:
            raise E.PayloadTooLarge(
                f"line {n}: the text has {len(item.text)} characters; at most "
                f"{s.max_text_chars}", errors=[FieldError(f"line:{n}/text",
                                                          f"at most {s.max_text_chars}")])

    async def meta(self, tenant: str, file_id: str) -> FileMeta:
        """The tenant's live file; 404 for an unknown, expired or another tenant's file."""
        info = await self.bucket.info(file_id) if file_id.startswith("file-") else None
        meta = META_DECODER.decode(info.description) if info and info.description else None
        if meta is None or meta.tenant != tenant or meta.expires_at <= time.time():
            raise FileNotFound(f"no file {file_id}")
        return meta

    async def get(self, tenant: str, file_id: str) -> FileObject:
        """``GET /v1/files/{file_id}``."""
        return to_file_object(file_id, await self.meta(tenant, file_id))

    async def delete(self, tenant: str, file_id: str) -> None:
        """Delete the file: it is gone for the API at once, and so are its bytes unless a job
        made from it still keeps results (``held_until``; its retries read them: they then
        go with the bucket's age limit). 409 while a job is still being queued from it."""
        await self.meta(tenant, file_id)
        if await self._publishing.file_in_use(file_id):
            raise FileInUse(f"a job is still being queued from file {file_id}; cancel it or "
                            "retry once it is queued", retry_after_s=5)
        for _ in range(_CAS_TRIES):  # conditional on the meta read: a hold cannot slip by
            got = await self.bucket.entry(file_id)
            if got is None or got[0].deleted:
                return  # a concurrent delete won
            info, seq = got
            meta = META_DECODER.decode(info.description) if info.description else None
            held = meta is not None and meta.held_until > time.time()
            try:
                await self.bucket.delete(file_id, purge=not held, last_seq=seq)
                return
            except StaleMeta:
                continue
        raise E.Unavailable(f"file {file_id} is being changed concurrently; retry",
                            retry_after_s=1)

    async def hold(self, file_id: str, until: float) -> api.ObjectInfo:
        """Keep the file's bytes until ``until`` even if it is deleted (a job made from it
        keeps its results until then, and its retries read them); the file's object info.
        404 if the file was deleted meanwhile."""
        for _ in range(_CAS_TRIES):
            got = await self.bucket.entry(file_id)
            if got is None or got[0].deleted or not got[0].description:
                raise FileNotFound(f"no file {file_id}")
            info, seq = got
            meta = META_DECODER.decode(info.description)
            if meta.held_until >= until:
                return info
            held = msgspec.structs.replace(meta, held_until=until)
            try:
                await self.bucket.describe(info, msgspec.json.encode(held).decode(),
                                           last_seq=seq)
                return info
            except StaleMeta:
                continue
        raise E.Unavailable(f"file {file_id} is being changed concurrently; retry",
                            retry_after_s=1)

    async def lines(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's lines (without line ends) in order, one object chunk in memory."""
        info = await self.bucket.info(file_id)
        if info is None:
            raise FileNotFound(f"no file {file_id}")
        pending = b""
        async for data in self.bucket.read(info):
            parts = (pending + data).split(b"\n")
            pending = parts.pop()
            for raw in parts:
                yield split_line(raw)
        if pending.strip():
            yield split_line(pending)


class FileNotFound(E.ApiError):
    """404: unknown, expired, deleted or another tenant's file."""

    status_code, code, title = 404, ErrorCode.FILE_NOT_FOUND, "File not found"


class FileInUse(E.ApiError):
    """409 (retryable): a job is still being queued from the file."""

    status_code, code, retryable, title = 409, ErrorCode.FILE_IN_USE, True, "File in use"
