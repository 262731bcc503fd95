"""Per model version: its tokenizer and batch former, created when its first chunk arrives."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from models.config import ModelConfig
from models.repository import ModelRepository
from models.tokenize import TextTokenizer
from scheduler.former import BatchFormer
from scheduler.held import ChunkKey
from schemas.bus import Batch
from schemas.states import Priority

HOLD_BATCHES = 8
"""The formers may hold this many of the largest batch: enough to fill the busiest buckets'
batches (on real text a few short buckets take most items; the rarer ones fire partly filled
when the runners are hungry), few enough that fairness is still decided in JOBS for everything
else."""
HOLD_S = 0.25
"""The formers may also hold this long of the runners' measured throughput, where that is
more: a fast device's buckets then fill before runners ask (full batches, not the fullest
partial one), and fairness is still decided in JOBS beyond a quarter second of work."""
DEFAULT_BATCH_SIZE = 64
"""The batch size the hold limit assumes before any model version has been seen."""


@dataclass
class ModelPipe:
    """Per model version: its tokenizer and bucket queues (batches are formed only when
    runners have room, so nothing formed waits here)."""

    name: str
    version: int
    config: ModelConfig
    tokenizer: TextTokenizer
    former: BatchFormer
    unsent: list[tuple[Batch, ChunkKey]] = field(default_factory=list)
    """Batches of pre-failed items not yet published, with the chunk they settle."""
    no_credit: bool = False
    """The last credit check found the runners' queue full: formation waits for a runner to
    take a batch, whatever the formers' deadlines say."""
    hold_items: int = 0
    """Items of ``HOLD_S`` of its runners' measured throughput (0: none measured)."""
    interactive_seen: float = float("-inf")
    """When an interactive item last arrived (monotonic): batches are sized by time while
    interactive traffic flows (``Settings.batch_time_budget_s``)."""


class ModelPipes:
    """The pipes of every model version this replica has pulled work for."""

    def __init__(self, repo: ModelRepository, queue_delay: Mapping[Priority, float]):
        self._repo = repo
        self._delay = dict(queue_delay)
        self._pipes: dict[tuple[str, int], ModelPipe] = {}

    def __iter__(self) -> Iterator[ModelPipe]:
        return iter(self._pipes.values())

    def get(self, model: str, version: int) -> ModelPipe:
        """The version's pipe, loading its config and tokenizer on first use."""
        key = (model, version)
        pipe = self._pipes.get(key)
        if pipe is None:
            cfg = self._repo.config(model, version)
            tok = TextTokenizer.from_dir(self._repo.version_dir(model, version), cfg)
            former = BatchFormer(cfg.buckets, max_batch_tokens=cfg.max_batch_tokens,
                                 max_batch_size=cfg.max_batch_size, max_queue_delay=self._delay)
            pipe = self._pipes[key] = ModelPipe(model, version, cfg, tok, former)
        return pipe

    def versions(self) -> dict[str, int]:
        """Model name to a version with a pipe (for the queue observer's capacity lookup)."""
        return {name: version for (name, version) in self._pipes}

    @property
    def held_items(self) -> int:
        """Items in the formers: pulled from JOBS, not yet in a published batch."""
        return sum(len(p.former) for p in self)

    def held(self, priority: Priority) -> int:
        """Items of one priority in the formers."""
        return sum(p.former.count(priority) for p in self)

    @property
    def hold_limit(self) -> int:
        """Items the formers may hold: ``HOLD_BATCHES`` of the largest batch size, or
        ``HOLD_S`` of a model version's runners' throughput if that is more."""
        sizes = [p.config.max_batch_size for p in self] or [DEFAULT_BATCH_SIZE]
        return max([HOLD_BATCHES * max(sizes), *(p.hold_items for p in self)])

    def batch_ready(self) -> bool:
        """Whether a full batch waits in a former whose runners had room at the last look:
        pulling more before forming it would only delay it."""
        return any(not p.no_credit and p.former.any_full() for p in self)

    def next_deadline(self) -> float | None:
        """The earliest formation deadline among formers whose runners have room: a former
        without credit waits for a runner to ask, not for its deadlines."""
        deadlines = [d for p in self if not p.no_credit and (d := p.former.next_deadline())]
        return min(deadlines) if deadlines else None
