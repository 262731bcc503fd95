"""Weighted deficit round-robin over lanes, counted in items: a plain synchronous class.

A lane is one (model, priority, tenant). Each visit adds ``quantum * weight * priority
multiplier`` items of credit; the lane is served while its credit is positive and is charged
the items actually taken (a chunk may overdraw; the debt carries to its next visit). So a
tenant with 10,000 queued items and one with a single item are served in proportion to weight,
not to backlog, and ``batch`` gets a share behind ``interactive`` instead of starving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from schemas.states import Priority


@dataclass(frozen=True, slots=True, order=True)
class Lane:
    """One queue of work on JOBS: a model's chunks of one priority from one tenant."""

    model: str
    priority: Priority
    tenant: str


class FairShare:
    """Decides which lane to pull from next; ``charge`` it with the items taken.

    ``quantum``: items of credit per visit at weight 1; ``interactive_multiplier``: credit of an
    interactive lane relative to a batch lane of the same tenant."""

    def __init__(self, weight_of: Callable[[str], float], *, quantum: float = 64.0,
                 interactive_multiplier: float = 4.0):
        self._weight_of = weight_of
        self._quantum = quantum
        self._mult = {Priority.INTERACTIVE: interactive_multiplier, Priority.BATCH: 1.0}
        self._ring: list[Lane] = []
        self._deficit: dict[Lane, float] = {}
        self._ptr = 0
        self._fresh = True
        self.served: dict[Lane, int] = {}

    def lanes(self) -> list[Lane]:
        """The active lanes, in round-robin order."""
        return list(self._ring)

    def quantum(self, lane: Lane) -> float:
        """Credit one visit adds to ``lane``: quantum x tenant weight x priority multiplier."""
        return self._quantum * max(self._weight_of(lane.tenant), 1e-6) * self._mult.get(
            lane.priority, 1.0)

    def set_active(self, lanes: Iterable[Lane]) -> None:
        """The lanes that have work now; lanes that went idle leave the ring (credit reset)."""
        wanted = set(lanes)
        current = self._ring[self._ptr] if self._ring else None
        kept = [ln for ln in self._ring if ln in wanted]
        added = sorted(wanted - set(kept))
        for ln in set(self._ring) - wanted:
            self._deficit.pop(ln, None)
        for ln in added:
            self._deficit[ln] = 0.0
        self._ring = kept + added
        if current in self._ring:
            self._ptr = self._ring.index(current)
        else:
            self._ptr, self._fresh = 0, True

    def deactivate(self, lane: Lane) -> None:
        """A lane turned out to be empty when pulled."""
        self.set_active(ln for ln in self._ring if ln != lane)

    def next_lane(self) -> Lane | None:
        """The lane to pull from now: the current one while it has credit, else the next
        (each visit tops it up); None when no lane is active."""
        if not self._ring:
            return None
        # Terminates: every visit adds positive credit, so some lane's credit becomes positive.
        while True:
            lane = self._ring[self._ptr]
            if self._fresh:
                self._deficit[lane] += self.quantum(lane)
                self._fresh = False
            if self._deficit[lane] > 0:
                return lane
            self._ptr = (self._ptr + 1) % len(self._ring)
            self._fresh = True

    def charge(self, lane: Lane, items: int) -> None:
        """Debit ``lane`` with the items actually taken (debt carries to its next visit)."""
        if lane in self._deficit:
            self._deficit[lane] -= items
        self.served[lane] = self.served.get(lane, 0) + items
