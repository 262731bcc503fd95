"""Large objects in a JetStream object-store bucket, written and read in constant memory.

The layout is NATS's own object store (stream ``OBJ_<bucket>``, chunks on
``$O.<bucket>.C.<nuid>``, one rolled-up meta message per name on ``$O.<bucket>.M.<name>``), so
``nats object`` tools see the same objects. nats-py's ``ObjectStore`` wants a whole reader to
put and gathers an object in memory (or a thread) to get, so the two streaming halves are
here: a writer fed piece by piece as a request body arrives, and a reader of one chunk at a
time by direct get. The bucket is replicated like the other streams (``replicas``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from nats.js import api
from nats.js import errors as jserr

CHUNK_BYTES = 128 * 1024
"""Bytes per chunk message (nats-py's and the Go client's default)."""


class ObjectGone(Exception):
    """The object was deleted or expired while being read."""


class StaleMeta(Exception):
    """A conditional meta write lost a race: the object's meta changed since it was read."""


_WRONG_LAST_SEQUENCE = 10071
"""JetStream's error code for a publish whose expected last subject sequence is not."""


def _b64(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


class ObjectBucket:
    """One object-store bucket: created on first use, objects written and read streamed."""

    def __init__(self, nc: NATS, bucket: str, *, ttl_s: float, replicas: int = 1):
        self._nc = nc
        self._js = nc.jetstream()
        self.bucket = bucket
        self.stream = f"OBJ_{bucket}"
        self._ttl = ttl_s
        self._replicas = replicas
        self._ready = False

    async def ensure(self) -> None:
        """Create the bucket's stream, or update it to this configuration; once per process."""
        if self._ready:
            return
        cfg = api.StreamConfig(
            name=self.stream, subjects=[f"$O.{self.bucket}.C.>", f"$O.{self.bucket}.M.>"],
            max_age=self._ttl, storage=api.StorageType.FILE, num_replicas=self._replicas,
            discard=api.DiscardPolicy.NEW, allow_rollup_hdrs=True, allow_direct=True)
        try:
            await self._js.add_stream(cfg)
        except jserr.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name in use with another configuration
                raise
            await self._js.update_stream(cfg)
        self._ready = True

    def writer(self, name: str) -> ObjectWriter:
        """A writer of a new version of ``name``; nothing is visible until ``commit``."""
        return ObjectWriter(self, name, self._nc._nuid.next().decode())

    async def info(self, name: str) -> api.ObjectInfo | None:
        """The object's meta, or None when absent, deleted or expired."""
        got = await self.entry(name)
        return None if got is None or got[0].deleted else got[0]

    async def entry(self, name: str) -> tuple[api.ObjectInfo, int] | None:
        """The object's meta (deleted ones too) and its message's stream sequence, which a
        conditional write (``describe``, ``delete``) names; None when absent or expired."""
        await self.ensure()
        try:
            msg = await self._js.get_msg(self.stream, subject=self._meta_subject(name),
                                         direct=True)
        except jserr.NotFoundError:
            return None
        return api.ObjectInfo.from_response(json.loads(msg.data)), msg.seq

    async def put(self, name: str, data: bytes, description: str) -> api.ObjectInfo:
        """Write a whole (small) object at once."""
        writer = self.writer(name)
        await writer.write(data)
        return await writer.commit(description)

    async def describe(self, info: api.ObjectInfo, description: str, *, last_seq: int) -> None:
        """Replace the object's description, only if its meta is still the message at
        ``last_seq`` (else :class:`StaleMeta`): read, change, write without lost updates."""
        await self._publish_meta(info.evolve(description=description), last_seq=last_seq)

    async def alias(self, name: str, target: api.ObjectInfo, description: str) -> None:
        """Make ``name`` a second name of ``target``'s bytes (no copy): its own meta, the same
        chunks. The chunks then go only when the stream's age limit takes them or a
        ``delete`` of ``target`` purges them (which its owner must not do while ``name`` is
        needed)."""
        await self._publish_meta(target.evolve(name=name, description=description))

    async def read(self, info: api.ObjectInfo) -> AsyncIterator[bytes]:
        """The object's bytes, one chunk message at a time (one direct get each): memory is
        one chunk whatever the object's size. Raises :class:`ObjectGone` if it vanishes."""
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        seq = 1
        for _ in range(info.chunks or 0):
            try:
                msg = await self._js.get_msg(self.stream, seq=seq, subject=subject, next=True,
                                             direct=True)
            except jserr.NotFoundError:
                raise ObjectGone(info.name) from None
            yield msg.data or b""
            seq = msg.seq + 1

    async def delete(self, name: str, *, purge: bool = True,
                     last_seq: int | None = None) -> bool:
        """Mark the object deleted and, with ``purge``, purge its chunks (without, they stay
        for the stream's age limit: an ``alias`` still reads them); False if there was none.
        With ``last_seq``, only if the meta is still that message (else :class:`StaleMeta`)."""
        got = await self.entry(name)
        if got is None or got[0].deleted:
            return False
        info = got[0]
        gone = api.ObjectInfo(name=name, bucket=self.bucket, nuid=info.nuid, size=0,
                              chunks=0, digest="", deleted=True, mtime="")
        await self._publish_meta(gone, last_seq=last_seq)
        if purge:
            await self._js.purge_stream(self.stream, subject=f"$O.{self.bucket}.C.{info.nuid}")
        return True

    def _meta_subject(self, name: str) -> str:
        return f"$O.{self.bucket}.M.{_b64(name)}"

    async def _publish_meta(self, info: api.ObjectInfo, *, last_seq: int | None = None) -> None:
        headers = {api.Header.ROLLUP: "sub"}
        if last_seq is not None:
            headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(last_seq)
        try:
            await self._js.publish(self._meta_subject(info.name),
                                   json.dumps(info.as_dict()).encode(), headers=headers)
        except jserr.BadRequestError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:
                raise StaleMeta(info.name) from None
            raise


class ObjectWriter:
    """Bytes in, chunk messages out: ``write`` as data arrives, then ``commit`` (which makes
    the object visible) or ``abort`` (which purges what was written)."""

    def __init__(self, bucket: ObjectBucket, name: str, nuid: str):
        self._bucket = bucket
        self.name = name
        self._nuid = nuid
        self._subject = f"$O.{bucket.bucket}.C.{nuid}"
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self.size = 0
        self.chunks = 0

    async def write(self, data: bytes) -> None:
        """Append ``data``; full chunks are published (and acknowledged) at once."""
        await self._bucket.ensure()
        self._buf += data
        self._sha.update(data)
        self.size += len(data)
        while len(self._buf) >= CHUNK_BYTES:
            await self._flush(CHUNK_BYTES)

    def hexdigest(self) -> str:
        """SHA-256 of everything written so far."""
        return self._sha.hexdigest()

    async def commit(self, description: str) -> api.ObjectInfo:
        """Publish the last chunk and the meta message: the object exists from here."""
        await self._bucket.ensure()
        if self._buf:
            await self._flush(len(self._buf))
        info = api.ObjectInfo(
            name=self.name, bucket=self._bucket.bucket, nuid=self._nuid, size=self.size,
            chunks=self.chunks, description=description,
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_BYTES),
            mtime=datetime.now(UTC).isoformat(),
            digest="SHA-256=" + base64.urlsafe_b64encode(self._sha.digest()).decode())
        await self._bucket._publish_meta(info)
        return info

    async def abort(self) -> None:
        """Drop every chunk written; the object never existed."""
        self._buf.clear()
        if self.chunks:
            await self._bucket._js.purge_stream(self._bucket.stream, subject=self._subject)

    async def _flush(self, n: int) -> None:
        payload = bytes(self._buf[:n])
        del self._buf[:n]
        await self._bucket._js.publish(self._subject, payload)
        self.chunks += 1
