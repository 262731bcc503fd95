"""One immutable, documented configuration object, built at the entry point.

Environment variables (and a TOML file named by ``INFERQ_CONFIG`` setting the same keys in
lower case without the prefix) are read here and nowhere else.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def _default_model_repo() -> str:
    return str(Path.home() / ".cache" / "inferq" / "models")


@dataclass(frozen=True)
class Settings:
    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server(s), comma separated. JetStream must be enabled."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for job counters, the status cache and rate-limit buckets (must be noeviction)."""
    results_url: str = "sqlite:///.inferq/results.db"
    """Result store: ``sqlite:///path`` (embedded default) or ``cassandra://h1,h2/keyspace``."""
    model_repo: str = field(default_factory=_default_model_repo)
    """Model repository directory (``<name>/<version>/{model.onnx,tokenizer.json,config.json}``)."""
    tenants_file: str | None = None
    """TOML file of tenants (weights, limits, API key hashes). None: no tenant can log in."""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    metrics_port: int = 0
    """Prometheus port for roles without HTTP (scheduler, runner). 0: no metrics server."""
    backend: str = "auto"
    """Runner backend: auto | onnxruntime | openvino | openvino-f32 | openvino-bf16."""
    backend_threads: int | None = None
    """Inference threads per runner (None: the backend's default, i.e. all cores)."""
    result_ttl_s: float = 7 * 86400
    """How long results, job records, idempotency records and Redis keys live."""
    idempotency_ttl_s: float = 24 * 3600
    chunk_items: int = 256
    """Items per chunk message on JOBS (also bounded by chunk_bytes)."""
    chunk_bytes: int = 512 * 1024
    max_items_per_job: int = 10_000
    max_body_bytes: int = 32 * 1024 * 1024
    max_text_chars: int = 100_000
    max_metadata_bytes: int = 16 * 1024
    stream_replicas: int = 1
    """JetStream replicas for the streams (R3 in production)."""
    batch_ack_wait_s: float = 60.0
    """AckWait of a batch on BATCHES: longer than the slowest batch runs (heartbeats extend it)."""
    batch_max_deliver: int = 6
    chunk_ack_wait_s: float = 30.0
    max_queue_delay_s: float = 0.05
    """How long the oldest item of a partly filled bucket may wait before its batch fires."""
    target_wait_s: float = 60.0
    """Autoscaling target: desired runners = backlog / (measured capacity x target wait)."""
    batches_per_runner: int = 2
    """Formed batches allowed to wait per runner (late batch formation)."""
    runner_model: str = "minilm"
    """The model (``name`` or ``name@version``) a runner serves."""

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``INFERQ_CONFIG`` (TOML), then ``INFERQ_*`` variables, then overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        cfg = env.get("INFERQ_CONFIG")
        if cfg:
            with open(cfg, "rb") as fh:
                data = tomllib.load(fh)
            known = {f.name for f in fields(cls)}
            unknown = set(data) - known
            if unknown:
                raise ValueError(f"{cfg}: unknown settings {sorted(unknown)}")
            values.update(data)
        for f in fields(cls):
            raw = env.get("INFERQ_" + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)


def _coerce(type_name: object, raw: str, name: str) -> object:
    t = str(type_name)
    try:
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
        if t.startswith("bool"):
            return raw.strip().lower() in {"1", "true", "yes", "on"}
    except ValueError as exc:
        raise ValueError(f"INFERQ_{name.upper()}={raw!r} is not a valid {t}") from exc
    return raw
