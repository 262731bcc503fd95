"""Prometheus metrics, defined once (``inferq_`` prefix) and shared by every role."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

HTTP_LATENCY = Histogram(
    "inferq_http_request_duration_seconds", "HTTP request latency by route and status",
    ["method", "route", "status"], buckets=LATENCY_BUCKETS,
)
JOBS_SUBMITTED = Counter("inferq_jobs_submitted_total", "Jobs accepted", ["model", "priority"])
ITEMS_SUBMITTED = Counter("inferq_items_submitted_total", "Items accepted", ["model", "priority"])
JOBS_FINISHED = Counter(
    "inferq_jobs_finished_total", "Jobs that reached a terminal state",
    ["model", "status", "outcome"]
)
ITEMS_FINISHED = Counter(
    "inferq_items_finished_total", "Items counted terminal (once each)",
    ["model", "status", "code"]
)
REJECTIONS = Counter(
    "inferq_rejections_total", "Requests refused for rate, quota or backpressure",
    ["code"]
)
BATCH_SIZE = Histogram(
    "inferq_batch_size", "Items per formed batch", ["model", "bucket"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
BATCH_TOKENS = Histogram(
    "inferq_batch_padded_tokens", "Padded tokens per batch", ["model", "bucket"],
    buckets=(16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384),
)
BATCH_PADDING = Histogram(
    "inferq_batch_padding_ratio", "Padded tokens / real tokens per batch", ["model", "bucket"],
    buckets=(1.0, 1.05, 1.1, 1.15, 1.25, 1.5, 2, 3, 5, 10),
)
INFERENCE_SECONDS = Histogram(
    "inferq_inference_seconds", "Backend run time per batch", ["model", "backend", "bucket"],
    buckets=LATENCY_BUCKETS,
)
SCHEDULER_WAIT = Histogram(
    "inferq_scheduler_wait_seconds", "Time items wait in the scheduler before their batch fires",
    ["model", "priority"], buckets=WAIT_BUCKETS,
)
ITEM_LATENCY = Histogram(
    "inferq_item_latency_seconds", "Item end-to-end latency, submit to counted", ["model"],
    buckets=WAIT_BUCKETS,
)
QUEUE_DEPTH = Gauge("inferq_queue_depth_items", "Items queued in JOBS", ["model", "priority"])
QUEUE_OLDEST_AGE = Gauge(
    "inferq_queue_oldest_age_seconds", "Age of the oldest queued chunk",
    ["model", "priority"]
)
RUNNER_BUSY = Gauge(
    "inferq_runner_busy_ratio", "Fraction of wall time spent in inference", ["model"]
)
GPU_UTILISATION = Gauge(
    "inferq_gpu_utilization_ratio", "GPU busy fraction from NVML (GPU runners only)",
    ["model", "device"]
)
REDELIVERIES = Counter(
    "inferq_redeliveries_total", "Batches seen again after a delivery", ["model"]
)
DLQ = Counter("inferq_dlq_total", "Batches dead-lettered", ["model"])
DESIRED_RUNNERS = Gauge(
    "inferq_desired_runners", "Runners needed to drain the backlog within the target wait",
    ["model"]
)
STATUS_STORE_READS = Counter(
    "inferq_status_store_reads_total",
    "Status reads that missed Redis and rebuilt the job from the result store",
)
ITEMS_INFERRED = Counter(
    "inferq_items_inferred_total",
    "Items run through the backend, redelivered duplicates included", ["model"],
)
WEBHOOK_ATTEMPTS = Counter(
    "inferq_webhook_attempts_total", "Webhook delivery attempts by result",
    ["result"])  # delivered | failed_retry | failed_final | refused

# -- issue 17: what the alerts and the fair-share panel need ----------------------------------
DEPENDENCY_UP = Gauge(
    "inferq_dependency_up",
    "1 while this role reaches the dependency (NATS: connected; Redis: PING; result store: a "
    "trivial query), 0 when the last check failed", ["role", "dependency"])
JETSTREAM_SYNC_ALWAYS = Gauge(
    "inferq_jetstream_sync_always",
    "1 when the NATS server fsyncs every JetStream write (sync_interval: always), from its "
    "/varz monitoring endpoint", ["server"])
JETSTREAM_SYNC_INTERVAL = Gauge(
    "inferq_jetstream_sync_interval_seconds",
    "The NATS server's JetStream sync_interval (periodic fsync; ignored while sync_always)",
    ["server"])
TENANT_ITEMS_BATCHED = Counter(
    "inferq_tenant_items_batched_total",
    "Items the scheduler put in published batches, per tenant: its share of served work",
    ["model", "tenant", "priority"])
TENANT_WEIGHT = Gauge(
    "inferq_tenant_weight", "Each tenant's fair-share weight (tenants file), as a scheduler "
    "loaded it", ["tenant"])
