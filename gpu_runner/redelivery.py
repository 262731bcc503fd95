"""What a runner learns from a redelivered batch: which part was running when a predecessor
died, and which items were running alone when one did. Kept in Redis per batch, so the next
runner (any replica) runs the innocent items first and isolates the suspects one by one.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from store.redis_errors import redis_errors

TTL_S = 86_400


class Ledger(msgspec.Struct, frozen=True):
    """What is known about one redelivered batch's crashes."""

    running: list[tuple[str, int]] = []
    """The part that was running last (before it ran; a crash leaves it here)."""
    quarantine: dict[str, int] = {}
    """``job_id:index`` -> times a runner died while this item ran alone."""


def item_key(job_id: str, index: int) -> str:
    """An item's key in ``Ledger.quarantine``."""
    return f"{job_id}:{index}"


_DEC = msgspec.json.Decoder(Ledger)
_ENC = msgspec.json.Encoder()


class RedeliveryLedger:
    """The ledgers of redelivered batches, in Redis for a day (any replica may resume)."""

    def __init__(self, redis: Redis):
        self._r = redis

    @staticmethod
    def _key(batch_id: str) -> str:
        return f"inferq:redelivery:{batch_id}"

    async def load(self, batch_id: str) -> Ledger:
        """The ledger, with the last running part already judged: a part of one item that
        was running when a runner died adds to that item's quarantine count."""
        with redis_errors("redelivery_load"):
            raw = await self._r.get(self._key(batch_id))
        ledger = _DEC.decode(raw) if raw else Ledger()
        if len(ledger.running) == 1:
            (job_id, index), = ledger.running
            q = dict(ledger.quarantine)
            q[item_key(job_id, index)] = q.get(item_key(job_id, index), 0) + 1
            ledger = Ledger([], q)
        return ledger

    async def running(self, batch_id: str, ledger: Ledger,
                      items: list[tuple[str, int]]) -> Ledger:
        """Record the part about to run (before it runs: a crash leaves it as the suspect)."""
        ledger = Ledger(items, ledger.quarantine)
        with redis_errors("redelivery_running"):
            await self._r.set(self._key(batch_id), _ENC.encode(ledger), ex=TTL_S)
        return ledger

    async def forget(self, batch_id: str) -> None:
        """Drop a batch's ledger (it was acked)."""
        with redis_errors("redelivery_forget"):
            await self._r.delete(self._key(batch_id))
