"""Pulling chunks from JOBS in fair-share order, only while the formers hold little.

Late formation: whatever is not pulled waits in JOBS, where fair share still applies, so a
tenant that arrives later is not stuck behind what a replica already holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from nats.aio.msg import Msg
from nats.js import errors as jserr

from scheduler.fairshare import FairShare, Lane
from scheduler.lanes import LaneConsumers
from scheduler.pipes import ModelPipes
from schemas.states import Priority

PULLS_PER_STEP = 4
"""Chunks pulled per step at most, so that forming and publishing are not starved."""
FETCH_TIMEOUT_S = 0.01
"""How long one pull waits on a lane the backlog listed before calling it empty. The server
answers a pull at once when the lane has a message, so this only bounds what a listed but
empty lane costs (its messages all delivered, their acks not yet counted): the step waits it
out, and an interactive chunk arriving meanwhile with it. Long enough to catch the next chunk
of a job the gateway is still publishing (one every few milliseconds)."""
INTERACTIVE_HOLD_DIVISOR = 4
"""Past the hold limit, interactive items are still pulled up to this fraction of the limit."""
LANE_HINT_DEBOUNCE_S = 0.01
"""Least time between two lane refreshes when hints (a job's first chunk) keep arriving."""


class FairPuller:
    """Which lane to pull from and how much: the fair-share policy, fed with the lanes that
    have work and charged with the items each chunk brought."""

    def __init__(self, policy: FairShare, lanes: LaneConsumers, pipes: ModelPipes,
                 accept: Callable[[Msg], Awaitable[int]], *, refresh_s: float,
                 held: Callable[[], Mapping[tuple[str, str, str], int]] = dict):
        self._policy = policy
        self._lanes = lanes
        self._pipes = pipes
        self._accept = accept
        """Takes a pulled message in; returns the items it brought."""
        self._refresh_s = refresh_s
        self._held = held
        """Chunks this replica holds per (model, priority, tenant) lane."""
        self._stale = False
        self._urgent = False
        self._last_refresh = 0.0
        self.drained = False
        """The last ``pull`` emptied every lane it knew of: nothing more can be pulled now,
        so holding partial batches back for more items only delays them."""

    def mark_stale(self, *, interactive: bool = False) -> None:
        """A new lane may have work (hint): list the lanes again soon. ``interactive``: an
        interactive job's chunk was announced — the step ends its batch pulls, and the next
        one pulls the interactive lanes first."""
        self._stale = True
        self._urgent |= interactive

    def lanes(self) -> list[Lane]:
        """The lanes with work at the last refresh."""
        return self._policy.lanes()

    async def refresh(self, now: float) -> None:
        """Re-list the lanes with work every ``refresh_s``, sooner after a hint, and whenever
        no lane is known."""
        since = now - self._last_refresh
        if (since > self._refresh_s or (self._stale and since > LANE_HINT_DEBOUNCE_S)
                or not self._policy.lanes()):
            self._stale = False
            held = self._held()
            # A lane whose every message is a chunk this replica holds has nothing to pull:
            # listing it would cost an empty fetch's wait per visit, which an interactive
            # chunk arriving meanwhile would pay.
            self._policy.set_active(
                lane for lane, n in (await self._lanes.backlog()).items()
                if n > held.get((lane.model, lane.priority, lane.tenant), 0))
            self._last_refresh = now

    async def pull(self) -> bool:
        """Pull chunks while the formers hold less than their limit and no full batch waits
        for a runner with room (the step forms and publishes it first). Interactive lanes may be
        pulled past it, so an urgent item never waits behind a full former of batch work, and
        go first after a hint announced one (the batch pulls still get one chunk a step)."""
        self.drained = False
        full = self._pipes.held_items >= self._pipes.hold_limit
        urgent, self._urgent = self._urgent, False
        # A hint announced an interactive chunk: its lanes go ahead of this step's batch pulls.
        pulled = await self._pull_interactive() if urgent or full else False
        if full:
            return pulled
        for n in range(PULLS_PER_STEP):
            if self._pipes.held_items >= self._pipes.hold_limit or (n and self._urgent):
                break  # a hint came in during the step: form, publish, then pull it
            lane = self._policy.next_lane()
            if lane is None:
                break
            if await self._pull_from(lane) is None:
                self._policy.deactivate(lane)
                continue
            pulled = True
            if lane.priority == Priority.INTERACTIVE:
                break  # form and publish it this step, not after more batch chunks
            if self._pipes.batch_ready():
                break  # a full batch for a runner with room: publish it, then pull on
        self.drained = not self._policy.lanes()
        return pulled

    async def _pull_interactive(self) -> bool:
        held = self._pipes.held(Priority.INTERACTIVE)
        pulled = False
        for lane in self._policy.lanes():
            if (lane.priority != Priority.INTERACTIVE
                    or held >= self._pipes.hold_limit // INTERACTIVE_HOLD_DIVISOR):
                continue
            n = await self._pull_from(lane)
            if n is None:
                self._policy.deactivate(lane)  # listed again by the next refresh or hint
                continue
            held += n
            pulled = True
        return pulled

    async def _pull_from(self, lane: Lane) -> int | None:
        """One chunk from the lane into the formers, charged to the lane; None if empty."""
        msg = await self._fetch(lane)
        if msg is None:
            return None
        # An interactive lane the server says is empty behind this chunk is set aside now,
        # so its items are formed this step instead of after an empty fetch's wait. Batch
        # lanes keep that wait: it catches the next chunk of a job still being published.
        last = lane.priority == Priority.INTERACTIVE and _last_pending(msg)
        n = await self._accept(msg)
        self._policy.charge(lane, n)
        if last:
            self._policy.deactivate(lane)
        return n

    async def _fetch(self, lane: Lane) -> Msg | None:
        sub = await self._lanes.subscription(lane)
        try:
            msgs = await sub.fetch(1, timeout=FETCH_TIMEOUT_S)
        except (TimeoutError, jserr.FetchTimeoutError):
            return None
        except jserr.NotFoundError:
            await self._lanes.forget(lane)  # reaped by the server; recreated on next pull
            return None
        return msgs[0] if msgs else None


def _last_pending(msg: Msg) -> bool:
    """True when JetStream delivered ``msg`` with no message left behind it for the consumer
    (its metadata's ``num_pending``); a lane deactivated on it is listed again by the next
    refresh or hint, exactly as after an empty fetch, without waiting ``FETCH_TIMEOUT_S``."""
    try:
        return msg.metadata.num_pending == 0
    except (AttributeError, ValueError, IndexError):  # not a JetStream delivery (tests)
        return False
