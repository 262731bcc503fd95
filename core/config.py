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


def default_model_repo() -> Path:
    """The default model repository, outside any checkout: ``~/.cache/inferq/models``."""
    return Path.home() / ".cache" / "inferq" / "models"


@dataclass(frozen=True)
class Settings:
    """Every setting of every role, immutable; ``Settings.load()`` at the entry point only.

    Each field's docstring states what it trades off; the README's configuration table lists
    the ones operators change most."""

    nats_url: str = "nats://127.0.0.1:4222"
    """NATS server(s), comma separated. JetStream must be enabled."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis for job counters, the status cache and rate-limit buckets (must be noeviction)."""
    results_url: str = "sqlite:///.inferq/results.db"
    """Result store: ``sqlite:///path`` (embedded default) or ``cassandra://h1,h2/keyspace``."""
    model_repo: str = field(default_factory=lambda: str(default_model_repo()))
    """Model repository directory (``<name>/<version>/{model.onnx,tokenizer.json,config.json}``)."""
    tenants_file: str | None = None
    """TOML file of tenants (weights, limits, API key hashes). None: no tenant can log in."""
    api_key_pepper: str | None = field(default=None, repr=False)
    """Server secret keying the API key hashes (``api_key_hmac``: HMAC-SHA256 of the key
    under this pepper). A stolen tenants file then cannot be brute-forced offline without
    it. Keep it out of the tenants file; None: only legacy ``api_key_sha256`` keys log in."""
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    event_loop: str = "auto"
    """Each role process's event loop: auto (uvloop where installed) | asyncio | uvloop."""
    http_parser: str = "auto"
    """The gateway's HTTP/1.1 implementation (uvicorn's ``http``): auto (httptools when
    installed) | httptools | h11."""
    http_max_head_bytes: int = 16 * 1024
    """Largest request line plus headers the gateway reads (431 above it): what one
    connection may make the gateway buffer before it has a request at all."""
    http_head_timeout_s: float = 10.0
    """A request's line and headers must arrive within this of their first byte (or of the
    connection): a slowloris client is cut off (408) instead of holding its connection."""
    http_body_timeout_s: float = 60.0
    """A request's body must arrive within this of its headers (a 32 MiB body needs about
    4.5 Mbit/s): bounds how long a slow sender holds a handler."""
    metrics_port: int = 0
    """Prometheus port for roles without HTTP (scheduler, runner). 0: no metrics server."""
    backend: str = "auto"
    """Runner backend: auto | onnxruntime | openvino | openvino-f32 | openvino-bf16 | tensorrt
    | tensorrt-fp32 (NVIDIA GPU; auto never picks it)."""
    backend_threads: int | None = None
    """Inference threads per runner (None: the backend's default, i.e. all cores)."""
    backend_streams: int | None = None
    """OpenVINO: independent infer requests a large batch is split between, sharing the
    threads (None: 2 where there are at least two threads; 1: one request for everything)."""
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
    batch_max_deliver: int = 10
    """Hard bound on deliveries of one batch. Poison items are isolated and failed earlier
    (see gpu_runner/redelivery.py); this bounds everything else (e.g. repeated outages)."""
    chunk_ack_wait_s: float = 30.0
    max_queue_delay_s: float = 0.05
    """How long the oldest item of a partly filled bucket may wait before its batch fires."""
    target_wait_s: float = 60.0
    """Autoscaling target: desired runners = backlog / (measured capacity x target wait)."""
    batches_per_runner: int = 0
    """Formed batches allowed to wait in BATCHES per live runner beyond the ones runners are
    asking for. Each runner asks for its next batch while it runs one, and a batch is formed
    when it asks (late formation: fairness and urgency are decided at the last moment), so 0
    keeps runners busy and an urgent item waits behind at most two batches per runner. Raise
    it only if the schedulers cannot keep up with a runner's pace."""
    runner_model: str = "minilm"
    """The model (``name`` or ``name@version``) a runner serves."""
    rate_burst_s: float = 2.0
    """Capacity of the per-key requests/s and polls/s token buckets, in seconds of their rate:
    a client that was idle may burst this long at full speed. (The items/min bucket holds one
    minute of items.) Larger absorbs bursty clients; smaller protects the gateway sooner."""
    poll_lease_s: float = 0.05
    """How long a gateway may hold poll tokens it leased from a key's shared polls bucket
    (``store/ratelease.py``): a key polling hard costs one Redis call per lease instead of
    one per poll. Unspent leased tokens are lost to the key (never more than the bucket
    allows in total); 0 takes every poll's tokens from Redis."""
    fast_status_polls: bool = True
    """Answer ``GET /v1/jobs/{id}`` before Litestar's router (``gateway/polls.py``): the same
    answer through the same code, at about half a poll's CPU. Off routes polls through
    Litestar like every other request (for comparison, or if a Litestar upgrade needs it)."""
    redis_pipelined_reads: bool = True
    """The gateway reads job status over one pipelined Redis connection (``store/
    redis_pipe.py``: hiredis, replies matched in order) instead of redis-py's pool: a third
    less CPU per poll. A read that times out resets that connection and fails the reads in
    flight on it (503 ``unavailable``, as with the pool). Off uses redis-py for everything."""
    model_backlog_limit: int = 1_000_000
    """Items queued or running for one model (all tenants, all priorities) past which submits
    get 503 ``overloaded``: the system-wide backpressure signal. Size it to what the runner
    pool drains within the longest wait clients tolerate."""
    overload_retry_after_s: float = 5.0
    """Retry-After for 429 ``quota_exceeded`` and 503 ``overloaded`` when no drain rate has been
    measured yet (otherwise it is derived from the backlog and the runners' throughput)."""
    max_idempotency_key_chars: int = 255
    """Longest Idempotency-Key accepted (printable ASCII without spaces); longer is a 400."""
    idempotency_grace_s: float = 10.0
    """How long a claimed key whose job is not yet published counts as in progress (409 to a
    duplicate) before a retry with the key takes over and completes the submission itself."""
    submit_recovery_grace_s: float = 60.0
    """Age after which the gateway's sweeper fails a job whose submission never finished
    publishing (its gateway died mid-submit and no retry came) with ``submission_interrupted``.
    Must exceed ``idempotency_grace_s`` so that a client retry gets the first chance."""
    sweep_interval_s: float = 0.5
    """How often the gateway enforces due deadlines and finishes interrupted cancels."""
    recovery_interval_s: float = 5.0
    """How often the gateway looks for interrupted submissions."""
    purge_interval_s: float = 300.0
    """How often the gateway deletes expired jobs, results and idempotency records (SQLite;
    Cassandra rows expire by TTL)."""
    load_refresh_s: float = 2.0
    """How often the gateway samples model backlogs and runner throughput for poll hints."""
    max_poll_hint_s: float = 30.0
    """The longest Retry-After a status poll suggests (the expected wait, clamped to 1..this)."""
    backlog_reconcile_s: float = 60.0
    """How often the gateway recomputes the backlog counters (quota and overload signals) from
    the live jobs, healing drift. One Redis script, O(live jobs): ~25 ms per 10,000 live jobs
    (Redis serves nothing else meanwhile), so keep it rare."""
    job_end_lease_s: float = 30.0
    """How long a sweeper holds a due job end (deadline, cancel) before another gateway may
    take it over: also how soon a cancel cut short by a dying gateway is finished by another.
    Longer than the slowest end (a 10,000-item job: well under a second)."""
    job_end_settle_s: float = 60.0
    """After a cancel or deadline ends a job, the sweeper checks its item rows once more this
    much later, repairing a row that a batch still in flight wrote over a ``cancelled`` one
    (possible on Cassandra, whose item writes are last-writer-wins within a race)."""

    ready_requires_runners: bool = False
    """``/readyz`` answers 503 while some model has no live runner (``inferq dev`` sets it, so
    it reports ready only once it can serve). Off in production: a gateway without runners
    still accepts and queues jobs, and a load balancer should keep sending them; ``/readyz``
    names the models without a runner either way."""

    # --- scheduler: fair share, batch formation, pacing ---
    tokenizer_parallel: bool = False
    """Tokenize a chunk on every core of the scheduler's machine instead of one. On for
    accelerator runners (``inferq dev`` turns it on for ``tensorrt`` and ``simulated``) or a
    scheduler with cores of its own; off where a CPU runner shares the cores, since the
    fan-out stalls its inference."""
    batch_time_budget_s: float = 0.1
    """Longest a formed batch should run on the slowest live runner of its model, from the
    padded tokens per second the runners measure (never fewer than 8 rows; the model's
    token budget still applies). An urgent item waits behind the batch running and the one
    prefetched, so this bounds interactive latency under load on slow (CPU) devices, for a
    little throughput; an accelerator's batches hit the model's budget first. Applies only
    while interactive work flows (``batch_time_budget_window_s``). 0: off."""
    batch_time_budget_window_s: float = 10.0
    """Batches are sized by ``batch_time_budget_s`` until this long after the model's last
    interactive item, and a runner queues no batch work ahead at its device
    (``Backend.ahead``) until this long after its last urgent batch; a batch-only backlog gets
    the model's full batches and a device fed without a gap (its best throughput). Longer
    covers sparser interactive traffic at a longer throughput cost."""
    runner_queue_s: float = 0.05
    """Work formed ahead for each live runner, in seconds of its measured throughput: on
    top of the batch each runner asks for, enough batches wait in BATCHES to keep a fast
    device busy across the scheduler's round trip. A CPU runner (a batch takes ~0.1-0.6 s)
    gets none, so an urgent item never waits behind formed work there; an accelerator
    finishing a batch in milliseconds gets several. Larger feeds faster devices; smaller
    keeps fairness and urgency decided later."""
    runner_queue_max_batches: int = 8
    """Most batches formed ahead per live runner under ``runner_queue_s``."""
    urgent_batches: bool = True
    """Interactive-led batches go to their own BATCHES subject, formed as soon as a runner
    pulls there and run ahead of the batch work runners hold; off, they queue with it."""
    batch_queue_delay_factor: float = 4.0
    """``batch`` priority buckets wait ``max_queue_delay_s`` times this before firing partly
    filled: batch work trades latency for fuller batches; interactive work does not wait."""
    fair_share_quantum: int = 64
    """Items of credit a lane gets per visit of the weighted round-robin (times the tenant's
    weight and the priority's multiplier). Smaller interleaves tenants more finely; larger
    lets a lane fill a batch from one visit."""
    interactive_multiplier: float = 4.0
    """Fair-share credit of an ``interactive`` lane relative to a ``batch`` lane of the same
    tenant: interactive is served ahead without starving batch."""
    scheduler_idle_poll_s: float = 0.2
    """Fallback wake-up of an idle scheduler when no runner or chunk hint arrives (hints come
    first); shorter reacts sooner to a lost hint at the cost of idle wake-ups."""
    lane_refresh_s: float = 0.2
    """How often the scheduler re-lists the active lanes (consumers with pending chunks)."""
    lane_idle_reap_s: float = 3600.0
    """A lane's pull consumer is deleted after this long without messages (JetStream
    ``inactive_threshold``); a tenant's next chunk recreates it."""
    publish_backoff_s: float = 0.25
    """First back-off after a batch publish fails (NATS down); doubles per failure."""
    publish_backoff_max_s: float = 2.0
    """Longest back-off between batch publish attempts."""
    queue_observe_s: float = 2.0
    """How often a scheduler samples queue depth, oldest age and the desired-runner gauge."""

    # --- runner: redelivery and failure handling ---
    runner_fetch_timeout_s: float = 1.0
    """Longest a runner's pull request waits for a batch before asking again."""
    poison_strikes: int = 3
    """Times an item may be running alone in a runner that died before it is declared poison
    and failed ``internal_error``: isolates an item that crashes runners instead of letting it
    crash every runner in turn. Lower gives up on a flaky runner's items sooner."""
    redelivery_backoff_s: float = 0.5
    """First nak delay of a batch that failed transiently; doubles per delivery."""
    redelivery_backoff_max_s: float = 30.0
    """Longest nak delay of a batch that keeps failing transiently."""
    dependency_retry_s: float = 5.0
    """Nak delay of a batch whose handling failed for a reason other than an unavailable Redis
    or result store (those back off exponentially): a NATS error, a bug."""

    # --- simulated accelerator (backend ``simulated``: benchmarks, capacity planning) ---
    sim_batch_ms: float = 0.0
    """Simulated device: fixed time per batch, in milliseconds (sleeping: the CPU stays free)."""
    sim_token_us: float = 0.0
    """Simulated device: time per padded token of a batch, in microseconds."""

    # --- webhooks (gateway/webhooks) ---
    webhook_allow_http: bool = False
    """Webhook URLs may be plain http. Off in production (the body and its signature would
    cross the network in the clear); tests and ``inferq dev`` turn it on for loopback."""
    webhook_allowed_networks: str = ""
    """Comma-separated CIDR networks webhooks may reach although they are not public
    (loopback, private, link-local are refused otherwise: SSRF). ``inferq dev``:
    ``127.0.0.0/8,::1/128``. Each one opens the internal network to tenants' URLs."""
    webhook_concurrency: int = 16
    """Webhook deliveries in flight per gateway (0: this gateway delivers none; others do).
    More drains a burst of job ends faster; each is an outbound connection."""
    webhook_timeout_s: float = 10.0
    """One attempt's limit (connect, send, answer): a slow receiver holds a slot this long."""
    webhook_lease_s: float = 60.0
    """A claimed delivery comes back to any gateway after this if the one making it died:
    longer than ``webhook_timeout_s``, or slow receivers get duplicate attempts."""
    webhook_poll_s: float = 0.5
    """How often a gateway looks for due deliveries: the latency of a webhook after its job
    ends, against one Redis call per interval per gateway."""
    webhook_backoff_s: float = 5.0
    """Delay after a first failed attempt; doubled after each (with jitter) up to
    ``webhook_backoff_max_s``."""
    webhook_backoff_max_s: float = 3600.0
    """The longest delay between attempts."""
    webhook_retry_window_s: float = 86400.0
    """Attempts stop this long after the job's end (the delivery is then ``failed``)."""

    # --- files and jobs from files (gateway/files.py, gateway/filejobs.py) ---
    max_file_lines: int = 1_000_000
    """Most lines (items) in one uploaded JSONL file, hence in one job made from a file. A
    file job's items all enter the tenant's backlog at once, so its quota must hold them."""
    max_file_bytes: int = 1024**3
    """Largest uploaded file. The gateway streams it to the object store in constant memory;
    the cost is JetStream disk (twice this per file at worst, see ``files_bucket``)."""
    files_bucket: str = "inferq-files"
    """JetStream object-store bucket of uploaded files and kept job inputs. Its age limit is
    twice ``result_ttl_s``: a file is usable for ``result_ttl_s``, and its bytes outlive the
    results of any job made from it (retries read them)."""
    file_publish_lease_s: float = 15.0
    """How long a gateway holds a file job it publishes before another may take it over (it
    renews the lease while alive). Far below JetStream's 120 s duplicate window, so the chunk
    a dead gateway had in flight is deduplicated when another republishes it."""
    file_publish_poll_s: float = 1.0
    """How often a gateway looks for file jobs whose publisher died."""

    # --- retrying failed items (gateway/retry.py, gateway/inputs.py) ---
    keep_inputs: bool = True
    """Keep each inline job's inputs (one object in ``files_bucket``, written while its
    chunks are published) so ``POST /v1/jobs/{id}/retry`` can re-run its failed items. The
    cost is JetStream disk: the JSONL of the inputs per job, for twice ``result_ttl_s``
    (README: "Files, million-item jobs"). Off: no copy, and such jobs cannot be retried
    (``409 inputs_not_kept``); jobs from files are retryable either way (no copy)."""

    # --- OpenAI-compatible surface (gateway/openai) ---
    openai_wait_s: float = 60.0
    """Longest ``POST /openai/v1/embeddings`` holds its request open for the job it queued
    (also the job's deadline, so an abandoned job ends by itself); past it the client gets a
    504 ``timeout`` with Retry-After. Longer rides out deeper backlogs; shorter frees
    connections sooner and hands the wait to the client's retries."""

    # --- OpenTelemetry span export (core/otel.py; issue 17) ---
    otlp_endpoint: str = ""
    """OTLP/HTTP collector (``http://collector:4318``) to export each hop's span to, joined by
    the job's trace id. Empty (default): no export, the SDK is never imported (extra ``otel``).
    Costs ~40 CPU-µs per sampled span, in a background thread (docs/operations.md)."""
    otlp_service_prefix: str = "inferq"
    """Spans' ``service.name``: this plus the role (``inferq-gateway``, ``-scheduler``, ...)."""
    otlp_sample_ratio: float = 1.0
    """Fraction of new traces exported, decided by trace id and carried in ``traceparent``, so
    every role keeps the same jobs (a caller's sampled flag is honoured). Lower cuts the cost
    where polls dominate, at the cost of traces to look at. Set it alike on every role."""
    otlp_timeout_s: float = 5.0
    """Longest one export POST waits; spans queue meanwhile up to a bound, then are dropped."""

    # --- dependency and NATS durability gauges (core/dependencies.py; issue 17) ---
    dependency_check_s: float = 5.0
    """How often each role checks NATS (connection state), Redis (PING) and the result store
    (a trivial query) for ``inferq_dependency_up``, each bounded by this long. Shorter shows
    an outage sooner at one more round trip per interval per role."""
    nats_monitor_url: str = ""
    """NATS servers' HTTP monitoring URLs, comma separated (``http://nats-1:8222``), whose
    ``/varz`` JetStream sync setting the schedulers export (no client connection can read it).
    Empty: not exported, and the alert ``InferqJetStreamSyncUnknown`` says so."""

    # --- operator view (gateway/operator.py, /ui) ---
    operator_api_key_hmac: str = ""
    """Comma-separated HMAC-SHA256 digests (hex, under ``api_key_pepper``, like tenants'
    ``api_key_hmac``) of the operator keys that may read ``GET /v1/operator/overview`` and
    the operator view of ``/ui``: queues, runners, dead letters and every tenant's share. Not
    a tenant key (a tenant key there is a 403). Two digests let a key be rotated; empty: no
    operator can sign in. Needs ``api_key_pepper``."""

    # --- connections: credentials and TLS to NATS, Redis (issue 12; SECURITY.md) ---
    # Cassandra's credentials and TLS are options of results_url (see store/results).
    nats_user: str | None = None
    """This process's NATS user. Give each role its own (``inferq dev`` and
    deploy/nomad/nats.nomad.hcl do, see SECURITY.md): the server then lets a gateway only
    publish jobs and a runner only take batches, so one leaked password cannot forge work
    for the others. None: the credentials in ``nats_url``, if any."""
    nats_password: str | None = field(default=None, repr=False)
    """The password of ``nats_user`` (kept out of ``repr``)."""
    nats_tls_ca: str | None = None
    """PEM CA bundle that signed the NATS servers' certificates. Setting it (or the client
    certificate) turns TLS on for every ``nats_url`` server; the certificate must name the
    host as the URL spells it (an IP needs an IP subjectAltName). Costs a handshake per
    (re)connect only."""
    nats_tls_cert: str | None = None
    """This process's PEM client certificate, for servers that verify clients (mutual TLS)."""
    nats_tls_key: str | None = None
    """The private key of ``nats_tls_cert``."""
    redis_username: str | None = None
    """Redis ACL user (production: ``inferq``, see deploy/nomad/redis.nomad.hcl). None: the
    URL's user, or ``default``."""
    redis_password: str | None = field(default=None, repr=False)
    """The password of ``redis_username`` (kept out of ``repr``; overrides the URL's)."""
    redis_tls_ca: str | None = None
    """PEM CA bundle that signed Redis's certificate; needs a ``rediss://`` URL (TLS is
    chosen by the scheme, so a plain URL with a CA is refused rather than silently clear)."""
    redis_tls_cert: str | None = None
    """This process's PEM client certificate (Redis ``tls-auth-clients yes``)."""
    redis_tls_key: str | None = None
    """The private key of ``redis_tls_cert``."""

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
