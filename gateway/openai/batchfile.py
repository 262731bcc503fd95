"""One batch input file, checked line by line as it streams in and turned into native lines.

A line is ``{"custom_id", "method": "POST", "url": "/v1/embeddings", "body": {embeddings
request}}``. Everything OpenAI would refuse in it is refused at upload, as a 400 naming the line:
not JSON, a missing or unknown member, another method or URL, a body the embeddings endpoint
refuses (an empty text, token ids, more than 2048 texts, a text over the limit, other
``dimensions``), a model that is not served or differs from the file's first line (a batch
runs one model), and a ``custom_id`` used twice. What passes becomes one native line
``{"text", "id": custom_id}`` per text, in order, so the items of a request are consecutive.

Duplicates are found with a 64-bit hash of each ``custom_id`` (12 bytes a request: 12 MB for
a million), sorted once at the end; two different ids collide with odds of about 3 in 10^8
at a million requests, and the refusal then names both lines.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable

import msgspec
import numpy as np

from core.config import Settings
from gateway import errors as E
from gateway.body import pointer_of
from gateway.openai.embeddings import MAX_INPUTS, check_dimensions, texts_of
from gateway.openai.errors import UnsupportedParameter
from schemas.api import FieldError, InputItem
from schemas.openai_batch import BatchInputLine

ENDPOINT = "/v1/embeddings"
"""The one endpoint batches run here."""
_LINE = msgspec.json.Decoder(BatchInputLine)
_ENC = msgspec.json.Encoder()


class LineChecker:
    """Checks the lines of one file in order and converts each; ``finish`` after the last."""

    def __init__(self, settings: Settings, resolve: Callable[[str], tuple[str, int]],
                 dimension: Callable[[str, int], int]):
        self._max_chars = settings.max_text_chars
        self._max_inputs = settings.max_file_lines
        self._resolve = resolve
        self._dimension = dimension
        self.model: str | None = None
        self._pinned: tuple[str, int, int] = ("", 0, 0)
        self.requests = 0
        self.inputs = 0
        self._hashes = array("Q")
        self._lines = array("I")

    def line(self, raw: bytes, n: int) -> bytes:
        """Line ``n`` (1-based; without its line end) as native JSONL; empty for a blank
        line. Raises the 400 (413 for a limit) that names it."""
        if not raw.strip():
            return b""
        try:
            line = _LINE.decode(raw)
        except msgspec.ValidationError as exc:
            pointer, detail = pointer_of(str(exc))
            raise E.InvalidRequest(f"line {n}: {detail}", errors=[
                FieldError(f"line:{n}{pointer}", detail)]) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise E.InvalidRequest(f"line {n} is not valid JSON: {exc}",
                                   errors=[FieldError(f"line:{n}", str(exc))]) from None
        if line.method != "POST":
            raise E.InvalidRequest(f"line {n}: `method` must be \"POST\", not {line.method!r}",
                                   errors=[FieldError(f"line:{n}/method", "POST only")])
        if line.url != ENDPOINT:
            raise UnsupportedParameter(
                f"line {n}: `url` {line.url!r} is not offered: this server runs {ENDPOINT} "
                "batches only", errors=[FieldError(f"line:{n}/url", f"{ENDPOINT} only")])
        self._check_model(line, n)
        try:
            texts = texts_of(line.body, MAX_INPUTS, self._max_chars)
        except E.ApiError as exc:  # the same refusal, naming the line
            raise type(exc)(f"line {n}: {exc.detail}", errors=[
                FieldError(f"line:{n}/body{e.pointer}", e.detail) for e in exc.errors or []
            ]) from None
        self.inputs += len(texts)
        if self.inputs > self._max_inputs:
            raise E.PayloadTooLarge(
                f"line {n}: the file holds more than {self._max_inputs} texts (inputs)",
                errors=[FieldError(f"line:{n}/body/input", f"at most {self._max_inputs}")])
        self.requests += 1
        digest = hashlib.blake2b(line.custom_id.encode(), digest_size=8).digest()
        self._hashes.append(int.from_bytes(digest, "little"))
        self._lines.append(n)
        return b"".join(_ENC.encode(InputItem(text=t, id=line.custom_id)) + b"\n"
                        for t in texts)

    def _check_model(self, line: BatchInputLine, n: int) -> None:
        model = line.body.model
        if self.model is None:
            try:
                name, version = self._resolve(model)
            except E.ApiError as exc:  # a 400 for the line, not a 404 for the upload
                raise E.InvalidRequest(f"line {n}: {exc.detail}", errors=[
                    FieldError(f"line:{n}/body/model", "not served")]) from None
            self.model, self._pinned = model, (name, version, self._dimension(name, version))
        elif model != self.model:
            raise E.InvalidRequest(
                f"line {n}: model {model!r} differs from the first line's {self.model!r}: a "
                "batch file runs one model", errors=[FieldError(f"line:{n}/body/model",
                                                                "one model per file")])
        name, version, dim = self._pinned
        try:
            check_dimensions(line.body, name, version, dim)
        except E.ApiError as exc:
            raise type(exc)(f"line {n}: {exc.detail}", errors=[
                FieldError(f"line:{n}/body/dimensions", f"only {dim}")]) from None

    def finish(self) -> None:
        """After the last line: 400 for a file without requests or with a ``custom_id``
        used twice (naming both lines)."""
        if not self.requests:
            raise E.InvalidRequest("the file has no requests (one JSON object a line)",
                                   errors=[FieldError("line:1", "at least one request")])
        hashes = np.frombuffer(self._hashes, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        same = np.nonzero(hashes[order][1:] == hashes[order][:-1])[0]
        if same.size:
            lines = np.frombuffer(self._lines, dtype=f"u{self._lines.itemsize}")
            first, second = lines[order[same]], lines[order[same + 1]]
            i = int(np.argmin(second))  # the duplicate that comes first in the file
            raise E.InvalidRequest(
                f"line {int(second[i])}: `custom_id` is the same as line {int(first[i])}'s; "
                "each request needs its own", errors=[
                    FieldError(f"line:{int(second[i])}/custom_id", "duplicate")])

