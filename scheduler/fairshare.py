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

DEFAULT_PRIORITY_MULTIPLIER = {"interactive": 4.0, "batch": 1.0}


@dataclass(frozen=True, slots=True, order=True)
class Lane:
    model: str
    priority: str
    tenant: str


class FairShare:
    """Decides which lane to pull from next; ``charge`` it with the items taken."""

    def __init__(self, weight_of: Callable[[str], float], *, quantum: float = 64.0,
                 priority_multiplier: dict[str, float] | None = None):
        self._weight_of = weight_of
        self._quantum = quantum
        self._mult = dict(priority_multiplier or DEFAULT_PRIORITY_MULTIPLIER)
        self._ring: list[Lane] = []
        self._deficit: dict[Lane, float] = {}
        self._ptr = 0
        self._fresh = True
        self.served: dict[Lane, int] = {}

    def lanes(self) -> list[Lane]:
        return list(self._ring)

    def quantum(self, lane: Lane) -> float:
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
        if lane in self._deficit:
            self._deficit[lane] -= items
        self.served[lane] = self.served.get(lane, 0) + items
