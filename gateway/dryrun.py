"""Dry runs: a submission checked exactly as a real one (limits, model, webhook), its items
tokenized by the model's own tokenizer, and the cost estimated; nothing is created and only
the request rate limit is spent.

The gateway tokenizes here (the scheduler does it for real jobs): each model version's
``tokenizer.json`` is loaded once, on the first dry run for it (MiniLM: ~0.1 s and a few MB),
and a request is tokenized in a worker thread so the event loop runs on. Costs about 80 µs
of CPU per short text (``encode_batch_fast``): a 10,000-item dry run takes ~1 s of one core.
"""

from __future__ import annotations

import asyncio
import time

from core.config import Settings
from core.tenants import Tenant
from gateway import errors as E
from gateway.admission import Admission
from gateway.files import FileService, decode_line
from gateway.limits import check_submit
from gateway.load import LoadView
from gateway.submit import Submitter
from gateway.webhooks.dispatcher import iso
from models.bucketing import bucket_for
from models.repository import ModelRepository
from models.tokenize import Encoded, TextTokenizer
from schemas.api import FieldError, InputItem, SubmitRequest
from schemas.dryrun import DRY_RUN_ITEMS_SHOWN, DryRunItem, DryRunReport
from schemas.errors import ErrorCode, ItemError

FILE_BATCH = 2000
"""Lines of an input file tokenized per worker-thread call during a file dry run."""


class _Tally:
    """What a dry run adds up over a job's items, in order (inline or streamed from a file)."""

    def __init__(self, buckets: list[int]):
        self._buckets = buckets
        self.items = self.valid = self.truncated = self.tokens = self.padded = 0
        self.shown: list[DryRunItem] = []

    def add(self, items: list[InputItem], encoded: list) -> None:
        for item, enc in zip(items, encoded, strict=True):
            i = self.items
            self.items += 1
            if isinstance(enc, Encoded):
                self.valid += 1
                self.truncated += enc.truncated
                self.tokens += enc.length
                self.padded += bucket_for(enc.length, self._buckets)
                row = DryRunItem(i, enc.length, enc.truncated, item.id)
            else:
                row = DryRunItem(i, 0, id=item.id,
                                 error=ItemError.of(ErrorCode(enc.code), enc.message))
            if i < DRY_RUN_ITEMS_SHOWN:
                self.shown.append(row)


class DryRun:
    """Answers dry runs; tokenizers are loaded lazily and kept per model version."""

    def __init__(self, settings: Settings, repo: ModelRepository, submitter: Submitter,
                 admission: Admission, load: LoadView, files: FileService | None = None):
        self._s = settings
        self._repo = repo
        self._submitter = submitter
        self._admission = admission
        self._load = load
        self._files = files
        self._tokenizers: dict[tuple[str, int], TextTokenizer] = {}
        self._lock = asyncio.Lock()

    async def report(self, tenant: Tenant, key_id: str, req: SubmitRequest
                     ) -> tuple[DryRunReport, dict[str, str]]:
        """The report and the RateLimit headers of the one request token it cost. A job from
        an uploaded file is tokenized line by line as it streams from the file (a
        1,000,000-line file takes over a minute of one core)."""
        from_file = req.input_file_id is not None
        if from_file:
            if req.inputs is not None or req.input is not None:
                raise E.InvalidRequest(
                    "give exactly one of `inputs`, `input` or `input_file_id`",
                    errors=[FieldError("/input_file_id", "exactly one of inputs/input/file")])
            if self._files is None:
                raise E.InvalidRequest("this gateway takes no input files",
                                       errors=[FieldError("/input_file_id", "not supported")])
            await self._files.meta(tenant.name, req.input_file_id or "")  # 404 if not theirs
        else:
            check_submit(req, self._s)
        model, version = self._submitter.resolve_model(req.model)
        self._submitter.webhook(tenant, req)  # a refused webhook is the same 400
        headers = await self._admission.write(tenant, key_id)
        tok = await self._tokenizer(model, version)
        tally = _Tally(self._repo.config(model, version).buckets)
        if from_file:
            await self._tally_file(tok, tally, req.input_file_id or "")
        else:
            items = req.items()
            tally.add(items, await asyncio.to_thread(tok.encode, [it.text for it in items]))
        ahead = self._load.get(model).backlog
        wait = self._load.drain_s(model, ahead + tally.valid)
        rate = self._load.get(model).token_rate
        return DryRunReport(
            model=model, model_version=version, priority=req.priority, items=tally.items,
            items_valid=tally.valid, items_truncated=tally.truncated, tokens=tally.tokens,
            padded_tokens=tally.padded, max_seq_len=tok.max_seq_len, first_items=tally.shown,
            queue_items_ahead=ahead,
            estimated_inference_s=round(tally.padded / rate, 3) if rate else None,
            estimated_completion_at=iso(time.time() + wait) if wait is not None else None,
        ), headers

    async def _tally_file(self, tok: TextTokenizer, tally: _Tally, file_id: str) -> None:
        assert self._files is not None
        batch: list[InputItem] = []
        async for raw in self._files.lines(file_id):
            if raw.strip():
                batch.append(decode_line(raw))  # validated at upload
            if len(batch) >= FILE_BATCH:
                tally.add(batch, await asyncio.to_thread(tok.encode, [it.text for it in batch]))
                batch = []
        if batch:
            tally.add(batch, await asyncio.to_thread(tok.encode, [it.text for it in batch]))

    async def _tokenizer(self, model: str, version: int) -> TextTokenizer:
        key = (model, version)
        if key not in self._tokenizers:
            async with self._lock:
                if key not in self._tokenizers:
                    self._tokenizers[key] = await asyncio.to_thread(
                        TextTokenizer.from_dir, self._repo.version_dir(model, version),
                        self._repo.config(model, version))
        return self._tokenizers[key]
