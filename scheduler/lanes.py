"""Per-lane pull consumers on JOBS: created when a lane first has work, reaped when idle."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js import api as jsapi

from core.bus import ensure_consumer
from scheduler.fairshare import Lane
from schemas import subjects
from schemas.states import Priority

log = logging.getLogger("inferq.scheduler.lanes")


class LaneConsumers:
    """Durable pull consumers, one per (model, priority, tenant), shared by scheduler replicas.

    The server reaps a lane consumer after ``idle_reap_s`` without pulls (InactiveThreshold);
    this cache recreates it on the next pull.
    """

    def __init__(self, js: JetStreamContext, *, ack_wait_s: float, idle_reap_s: float = 3600.0):
        self._js = js
        self._ack_wait = ack_wait_s
        self._idle = idle_reap_s
        self._subs: dict[Lane, JetStreamContext.PullSubscription] = {}

    async def backlog(self) -> dict[Lane, int]:
        """Messages (chunks) waiting per lane, from the stream's per-subject counts."""
        info = await self._js.stream_info(subjects.JOBS_STREAM,
                                          subjects_filter=subjects.jobs_filter("*", "*", "*"))
        out: dict[Lane, int] = {}
        for subject, count in (info.state.subjects or {}).items():
            try:
                model, priority, tenant = subjects.parse_job_subject(subject)
                lane = Lane(model, Priority(priority), tenant)
            except ValueError:  # not a job subject, or a priority this version does not know
                continue
            if count > 0:
                out[lane] = count
        return out

    async def subscription(self, lane: Lane) -> JetStreamContext.PullSubscription:
        """The lane's pull subscription, creating its durable consumer on first use."""
        sub = self._subs.get(lane)
        if sub is not None:
            return sub
        durable = subjects.lane_consumer(lane.model, lane.priority, lane.tenant)
        cfg = jsapi.ConsumerConfig(
            durable_name=durable,
            filter_subject=subjects.job_subject(lane.model, lane.priority, lane.tenant),
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_ack_pending=64,
            inactive_threshold=self._idle,
        )
        await ensure_consumer(self._js, subjects.JOBS_STREAM, cfg)
        sub = await self._js.pull_subscribe_bind(durable=durable, stream=subjects.JOBS_STREAM)
        self._subs[lane] = sub
        return sub

    async def forget(self, lane: Lane) -> None:
        """Drop the cached subscription (its consumer was reaped); the next pull recreates it."""
        sub = self._subs.pop(lane, None)
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def close(self) -> None:
        """Unsubscribe from every lane (the durable consumers stay for other replicas)."""
        for lane in list(self._subs):
            await self.forget(lane)
