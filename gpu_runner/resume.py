"""Resuming a redelivered batch, which may have killed its runner. What a predecessor already
counted is skipped; the items under no suspicion run first, as one part; then the suspects
(the part that was running when a runner died) one by one; then the quarantined items (each
once running alone when a runner died) one by one, each committed before the next. An item
that was running alone when a runner died ``poison_strikes`` times is poison: it alone fails
(``internal_error``) and the batch is recorded in the DLQ. An ordinary crash costs one
resumed batch and no splitting."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from core.config import Settings
from gpu_runner.deadletter import DeadLetters
from gpu_runner.infer import Inference
from gpu_runner.prepare import Prepared
from gpu_runner.redelivery import Ledger, RedeliveryLedger, item_key
from gpu_runner.triage import Triage
from gpu_runner.writeback import WriteBack
from schemas.bus import BatchItem

log = logging.getLogger("inferq.runner")


@dataclass(frozen=True)
class Parts:
    """The items of a redelivered batch still to run, by how suspect they are."""

    clear: list[BatchItem]
    """Under no suspicion: run together, as one part."""
    suspect: list[BatchItem]
    """In the part that was running when a runner died: run one by one."""
    quarantined: list[BatchItem]
    """Running alone when a runner died, fewer than ``poison_strikes`` times: one by one."""
    poison: list[BatchItem]
    """Running alone when a runner died ``poison_strikes`` times: failed, not run."""


def partition(todo: list[BatchItem], ledger: Ledger, poison_strikes: int) -> Parts:
    """Sort the items still to run by what the ledger says about them (pure policy)."""
    suspects = {tuple(k) for k in ledger.running}

    def strikes(it: BatchItem) -> int:
        return ledger.quarantine.get(item_key(it.job_id, it.index), 0)

    return Parts(
        clear=[it for it in todo if (it.job_id, it.index) not in suspects and not strikes(it)],
        suspect=[it for it in todo if (it.job_id, it.index) in suspects and not strikes(it)],
        quarantined=[it for it in todo if 0 < strikes(it) < poison_strikes],
        poison=[it for it in todo if strikes(it) >= poison_strikes],
    )


class Resumer:
    """Runs and writes back a redelivered batch part by part, recording in the redelivery
    ledger which part runs before it runs (a crash leaves it there as the suspect)."""

    def __init__(self, settings: Settings, ledger: RedeliveryLedger, writeback: WriteBack,
                 triage: Triage, inference: Inference, dead_letters: DeadLetters):
        self._strikes = settings.poison_strikes
        self._ledger = ledger
        self._writeback = writeback
        self._triage = triage
        self._inference = inference
        self._dead_letters = dead_letters

    async def run(self, work: Prepared) -> None:
        """Infer and commit every item of ``work`` no runner counted; the caller acks."""
        msg, batch = work.msg, work.batch
        known, run = await self._triage.sort(batch, time.time())
        await self._writeback.commit(known, time.time())
        todo = await self._writeback.not_counted(run)
        ledger = await self._ledger.load(batch.batch_id)
        parts = partition(todo, ledger, self._strikes)
        log.warning("batch %s delivery %d: resuming %d of %d items: %d clear, %d suspect, "
                    "%d quarantined, %d poison", batch.batch_id, work.deliveries, len(todo),
                    len(batch.items), len(parts.clear), len(parts.suspect),
                    len(parts.quarantined), len(parts.poison))
        if parts.poison:
            await self._dead_letters.fail_poison(msg, batch, work.deliveries, parts.poison,
                                                 self._strikes)
        alone = [[it] for it in parts.suspect + parts.quarantined]
        for part in ([parts.clear] if parts.clear else []) + alone:
            ledger = await self._ledger.running(batch.batch_id, ledger,
                                                [(it.job_id, it.index) for it in part])
            try:
                done = await self._inference.run(msg, batch, part)
                await self._writeback.commit(done.records, time.time(), done.usage)
            except Exception:
                # This runner is alive: whatever failed (a store or Redis outage, a bug), the
                # part did not crash it, so it must not become the next delivery's suspect.
                await self._clear_running(batch.batch_id, ledger)
                raise

    async def _clear_running(self, batch_id: str, ledger: Ledger) -> None:
        try:
            await self._ledger.running(batch_id, ledger, [])
        except Exception:  # Redis down too: the part stays suspect, as before
            log.warning("batch %s: could not clear its running part", batch_id, exc_info=True)

    async def forget(self, batch_id: str) -> None:
        """Drop the batch's ledger once the batch is acked."""
        await self._ledger.forget(batch_id)
