"""Credit: how many batches the runners of a model version can take now (late formation)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import errors as jserr

from schemas import subjects
from store.runners import RunnerRegistry


class RunnerCredit:
    """Reads the runners' room from their BATCHES consumer and the runner registry."""

    def __init__(self, js: JetStreamContext, runners: RunnerRegistry, *, batches_per_runner: int):
        self._js = js
        self._runners = runners
        self._per_runner = batches_per_runner

    async def batches_wanted(self, model: str, version: int) -> int:
        """Batches to form now: one per runner pull request waiting on the model version's
        BATCHES consumer (each runner asks for its next batch while it runs one), plus
        ``batches_per_runner`` queued per live runner, minus the batches already waiting.
        No runner, no batches: the work stays in JOBS, where fair share applies."""
        try:
            info = await self._js.consumer_info(subjects.BATCHES_STREAM,
                                                subjects.runner_consumer(model, version))
        except jserr.NotFoundError:  # no runner has ever started
            return 0
        queued = 0
        if self._per_runner:
            queued = self._per_runner * await self._runners.count(model, version)
        return (info.num_waiting or 0) + queued - (info.num_pending or 0)
