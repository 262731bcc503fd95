"""Write inferq's Grafana dashboards (``inferq-service.json``, ``inferq-capacity.json``).

The panels are declared here, once, and the JSON is generated: a reviewer reads a query per
line instead of Grafana's layout boilerplate, and ``tests/deploy/test_metric_names.py`` checks
that the committed JSON is what this script writes and that every metric it names is exported.
Import the JSON in Grafana (Dashboards → Import); both ask for a Prometheus data source.

    python deploy/grafana/build.py          # rewrite the JSON beside this file
    python deploy/grafana/build.py --rules  # every query as a recording rule, for promtool
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
M = 'model=~"$model"'
RI = "$__rate_interval"


@dataclass(frozen=True)
class Panel:
    title: str
    targets: tuple[tuple[str, str], ...]
    """(PromQL, legend) pairs."""
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"
    width: int = 12
    extra: dict = field(default_factory=dict)
    """Merged into ``fieldConfig.defaults`` (min, max, thresholds)."""


@dataclass(frozen=True)
class Text:
    title: str
    markdown: str
    width: int = 24


def q(quantile: float, metric: str, by: str, match: str = M) -> str:
    """``histogram_quantile`` of a histogram's buckets, summed by ``by`` (plus ``le``)."""
    return (f"histogram_quantile({quantile}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{match}}}[{RI}])))")


SERVICE: list[tuple[str, list[Panel | Text]]] = [
    ("Queues", [
        Panel("Queued items", (
            (f"max by (model, priority) (inferq_queue_depth_items{{{M}}})",
             "{{model}} {{priority}}"),),
              description="Items queued in JOBS, per model and priority (max over scheduler "
              "replicas, which all observe the same stream)."),
        Panel("Oldest queued work", (
            (f"max by (model, priority) (inferq_queue_oldest_age_seconds{{{M}}})",
             "{{model}} {{priority}}"),), unit="s",
              description="Age of the oldest queued chunk. Alert InferqQueueAgeOverTarget: "
              "interactive > 30 s, batch > 120 s for 10 min.",
              extra={"thresholds": {"mode": "absolute", "steps": [
                  {"color": "green", "value": None}, {"color": "red", "value": 120}]},
                  "custom": {"thresholdsStyle": {"mode": "line"}}}),
        Panel("Scheduler wait p95", (
            (q(0.95, "inferq_scheduler_wait_seconds", "model, priority"),
             "{{model}} {{priority}}"),), unit="s",
              description="Time items wait in the scheduler before their batch fires."),
        Panel("Items submitted by priority", (
            (f"sum by (model, priority) (rate(inferq_items_submitted_total{{{M}}}[{RI}]))",
             "{{model}} {{priority}}"),), unit="ops",
              description="Accepted items per second."),
    ]),
    ("Throughput", [
        Panel("Items finished", (
            (f"sum by (model, status) (rate(inferq_items_finished_total{{{M}}}[{RI}]))",
             "{{model}} {{status}}"),
            (f"sum by (model) (rate(inferq_items_submitted_total{{{M}}}[{RI}]))",
             "{{model}} submitted"),), unit="ops",
              description="Items counted terminal per second, against items accepted."),
        Panel("Jobs finished by outcome", (
            (f"sum by (outcome) (rate(inferq_jobs_finished_total{{{M}}}[{RI}]))",
             "{{outcome}}"),), unit="ops"),
        Panel("Item failures by code", (
            (f'sum by (code) (rate(inferq_items_finished_total{{{M}, status="failed"}}[{RI}]))',
             "{{code}}"),), unit="ops"),
        Panel("Item latency, submit to counted", tuple(
            (q(p, "inferq_item_latency_seconds", "model"), f"{{{{model}}}} p{round(p * 100)}")
            for p in (0.5, 0.95, 0.99)), unit="s"),
        Panel("Tenant share of batched items against its weight", (
            (f"sum by (tenant) (rate(inferq_tenant_items_batched_total{{{M}}}[{RI}])) / "
             f"scalar(sum (rate(inferq_tenant_items_batched_total{{{M}}}[{RI}])))",
             "{{tenant}} share"),
            ("max by (tenant) (inferq_tenant_weight) / "
             "scalar(sum (max by (tenant) (inferq_tenant_weight)))", "{{tenant}} weight"),),
              unit="percentunit", extra={"min": 0, "max": 1},
              description="Each tenant's share of the items the schedulers put in batches, "
              "against its weight's share. Fair share holds among tenants with queued work: "
              "an idle tenant's share goes to the others. Interactive lanes count "
              "INFERQ_INTERACTIVE_MULTIPLIER times their tenant's weight."),
        Panel("Items batched per tenant", (
            (f"sum by (tenant, priority) (rate(inferq_tenant_items_batched_total{{{M}}}"
             f"[{RI}]))", "{{tenant}} {{priority}}"),), unit="ops"),
    ]),
    ("Runners and batches", [
        Panel("Runner busy ratio", (
            (f"inferq_runner_busy_ratio{{{M}}}", "{{model}} {{instance}}"),),
              unit="percentunit", extra={"min": 0, "max": 1}),
        Panel("Runners: running and desired", (
            (f"count by (model) (inferq_runner_busy_ratio{{{M}}})", "{{model}} running"),
            (f"max by (model) (inferq_desired_runners{{{M}}})", "{{model}} desired"),),
              description="Running = runner processes exporting a busy ratio. Alert "
              "InferqRunnersBelowDesired after 15 min below."),
        Panel("Batch size", (
            (q(0.5, "inferq_batch_size", "model"), "{{model}} p50"),
            (q(0.95, "inferq_batch_size", "model"), "{{model}} p95"),
            (f"sum by (model) (rate(inferq_batch_size_sum{{{M}}}[{RI}])) / sum by (model) "
             f"(rate(inferq_batch_size_count{{{M}}}[{RI}]))", "{{model}} mean"),),
              description="Items per formed batch."),
        Panel("Inference time per batch p95, by bucket", (
            (q(0.95, "inferq_inference_seconds", "model, backend, bucket"),
             "{{model}} {{backend}} b{{bucket}}"),), unit="s"),
        Panel("Padding ratio (padded / real tokens)", (
            (f"sum by (model, bucket) (rate(inferq_batch_padding_ratio_sum{{{M}}}[{RI}])) / "
             f"sum by (model, bucket) (rate(inferq_batch_padding_ratio_count{{{M}}}[{RI}]))",
             "{{model}} b{{bucket}}"),)),
        Panel("GPU utilisation (NVML)", (
            (f"inferq_gpu_utilization_ratio{{{M}}}", "{{model}} gpu{{device}} {{instance}}"),),
              unit="percentunit", extra={"min": 0, "max": 1}),
    ]),
    ("HTTP", [
        Panel("Requests by status", (
            (f"sum by (status) (rate(inferq_http_request_duration_seconds_count[{RI}]))",
             "{{status}}"),), unit="reqps"),
        Panel("Latency p99 by route", (
            (q(0.99, "inferq_http_request_duration_seconds", "route", 'route!="/metrics"'),
             "{{route}}"),), unit="s"),
        Panel("5xx ratio (503 excluded)", (
            ('sum (rate(inferq_http_request_duration_seconds_count{status=~"5..", '
             f'status!="503"}}[{RI}])) / sum (rate(inferq_http_request_duration_seconds_count'
             f"[{RI}]))", "5xx"),), unit="percentunit",
              description="Alert InferqHTTP5xxRate above 1 % for 10 min."),
        Panel("Refused: 429 and 503 by code", (
            (f"sum by (code) (rate(inferq_rejections_total[{RI}]))", "{{code}}"),),
              unit="reqps", description="rate_limited, quota_exceeded (429); overloaded, "
              "unavailable (503); idempotency_in_progress (409)."),
    ]),
    ("Failures", [
        Panel("Dead letters", (
            (f"sum by (model) (increase(inferq_dlq_total{{{M}}}[1h]))", "{{model}} per hour"),),
              description="Batches dead-lettered. Alert InferqDeadLettersGrowing."),
        Panel("Redeliveries", (
            (f"sum by (model) (rate(inferq_redeliveries_total{{{M}}}[{RI}]))", "{{model}}"),),
              unit="ops"),
        Panel("Status reads rebuilt from the result store", (
            (f"sum (rate(inferq_status_store_reads_total[{RI}]))", "store reads"),),
              unit="ops", description="Polls that missed Redis (expired or lost keys)."),
        Panel("Targets up", (('sum by (service) (up{job="inferq"})', "{{service}}"),),
              description="Scraped processes per role. Alert InferqTargetDown."),
    ]),
    ("Dependencies and durability", [
        Panel("Dependency up, per role", (
            ("min by (role, dependency) (inferq_dependency_up)", "{{role}} → {{dependency}}"),),
              extra={"min": 0, "max": 1},
              description="1: every process of the role reaches it (NATS connected, Redis "
              "PING, a result-store query, every INFERQ_DEPENDENCY_CHECK_S). Alert "
              "InferqDependencyDown after 2 min at 0."),
        Panel("NATS JetStream: fsync every write", (
            ("max by (server) (inferq_jetstream_sync_always)", "{{server}} sync always"),
            ("max by (server) (inferq_jetstream_sync_interval_seconds)",
             "{{server}} interval (s)"),),
              description="From each server's /varz, read by schedulers with "
              "INFERQ_NATS_MONITOR_URL. Alerts InferqJetStreamSyncNotAlways (0 here) and "
              "InferqJetStreamSyncUnknown (no series)."),
    ]),
]

CAPACITY: list[tuple[str, list[Panel | Text]]] = [
    ("Demand and throughput", [
        Panel("Offered and finished items/s", (
            (f"sum by (model) (rate(inferq_items_submitted_total{{{M}}}[{RI}]))",
             "{{model}} offered"),
            (f"sum by (model) (rate(inferq_items_finished_total{{{M}}}[{RI}]))",
             "{{model}} finished"),), unit="ops"),
        Panel("Backlog in seconds of work", (
            (f"sum by (model) (inferq_queue_depth_items{{{M}}}) / sum by (model) "
             f"(rate(inferq_items_finished_total{{{M}}}[{RI}]))", "{{model}}"),), unit="s",
              description="Queued items divided by the current drain rate."),
    ]),
    ("Per-runner capacity", [
        Panel("Capacity per runner μ (items/s when fully busy)", (
            (f"sum by (model) (rate(inferq_items_finished_total{{{M}}}[{RI}])) / sum by "
             f"(model) (inferq_runner_busy_ratio{{{M}}})", "{{model}} μ"),
            (f"sum by (model) (rate(inferq_batch_size_sum{{{M}}}[{RI}])) / sum by (model) "
             f"(rate(inferq_inference_seconds_sum{{{M}}}[{RI}]))", "{{model}} inference only"),),
              unit="ops", description="μ = finished items/s ÷ Σ busy ratio (docs/loadtest.md). "
              "Inference only is the upper bound without hand-off and write-back."),
        Panel("Busy ratio, mean over runners", (
            (f"avg by (model) (inferq_runner_busy_ratio{{{M}}})", "{{model}}"),),
              unit="percentunit", extra={"min": 0, "max": 1, "thresholds": {
                  "mode": "absolute", "steps": [{"color": "green", "value": None},
                                                {"color": "orange", "value": 0.7}]},
                  "custom": {"thresholdsStyle": {"mode": "line"}}}),
        Panel("Runners needed at busy 0.7 for the offered load", (
            (f"sum by (model) (rate(inferq_items_submitted_total{{{M}}}[{RI}])) / (0.7 * "
             f"sum by (model) (rate(inferq_items_finished_total{{{M}}}[{RI}])) / sum by "
             f"(model) (inferq_runner_busy_ratio{{{M}}}))", "{{model}} needed"),
            (f"count by (model) (inferq_runner_busy_ratio{{{M}}})", "{{model}} running"),
            (f"max by (model) (inferq_desired_runners{{{M}}})", "{{model}} desired (backlog)"),),
              description="N = offered / (μ * 0.7): steady-state runners. Desired: what the "
              "scheduler asks for to drain the backlog within the target wait."),
        Panel("Redelivery overhead (inferred / finished)", (
            (f"sum by (model) (rate(inferq_items_inferred_total{{{M}}}[{RI}])) / sum by "
             f"(model) (rate(inferq_items_finished_total{{{M}}}[{RI}]))", "{{model}}"),),
              description="1.0: every item ran once."),
    ]),
    ("Batches and the accelerator", [
        Panel("Padded tokens/s", (
            (f"sum by (model) (rate(inferq_batch_padded_tokens_sum{{{M}}}[{RI}]))",
             "{{model}}"),), unit="short"),
        Panel("Padded tokens per batch p50", (
            (q(0.5, "inferq_batch_padded_tokens", "model, bucket"), "{{model}} b{{bucket}}"),)),
        Panel("GPU utilisation", (
            (f"avg by (model) (inferq_gpu_utilization_ratio{{{M}}})", "{{model}}"),),
              unit="percentunit", extra={"min": 0, "max": 1}),
        Panel("Item latency p95 and scheduler wait p95", (
            (q(0.95, "inferq_item_latency_seconds", "model"), "{{model}} item p95"),
            (q(0.95, "inferq_scheduler_wait_seconds", "model"), "{{model}} wait p95"),), unit="s"),
    ]),
    ("Pushback", [
        Panel("Refused per second by code", (
            (f"sum by (code) (rate(inferq_rejections_total[{RI}]))", "{{code}}"),), unit="reqps",
              width=24),
    ]),
]


def _panel(p: Panel | Text, pid: int, x: int, y: int) -> dict:
    grid = {"h": 8 if isinstance(p, Panel) else 3, "w": p.width, "x": x, "y": y}
    if isinstance(p, Text):
        return {"id": pid, "type": "text", "title": p.title, "gridPos": grid,
                "options": {"mode": "markdown", "content": p.markdown}}
    refs = "ABCDEFGH"
    return {
        "id": pid, "type": p.kind, "title": p.title, "description": p.description,
        "datasource": DS, "gridPos": grid,
        "targets": [{"refId": refs[i], "datasource": DS, "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(p.targets)],
        "fieldConfig": {"defaults": {"unit": p.unit, **p.extra}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def dashboard(uid: str, title: str, rows: list[tuple[str, list[Panel | Text]]]) -> dict:
    """One Grafana dashboard: a row per section, panels two to a line."""
    panels, pid, y = [], 1, 0
    for row_title, row in rows:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y, x = pid + 1, y + 1, 0
        for p in row:
            if x + p.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(p, pid, x, y))
            pid, x = pid + 1, x + p.width
        y += 8
    model_query = "label_values(inferq_items_submitted_total, model)"
    return {
        "uid": uid, "title": title, "tags": ["inferq"], "editable": True,
        "schemaVersion": 39, "version": 1, "refresh": "30s", "timezone": "browser",
        "time": {"from": "now-6h", "to": "now"}, "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource",
             "query": "prometheus", "current": {}, "hide": 0},
            {"name": "model", "label": "Model", "type": "query", "datasource": DS,
             "definition": model_query, "query": {"query": model_query, "refId": "model"},
             "refresh": 2, "includeAll": True, "multi": True, "allValue": ".*",
             "current": {"text": "All", "value": "$__all"}, "hide": 0, "sort": 1},
        ]},
        "panels": panels,
    }


DASHBOARDS = {
    "inferq-service.json": dashboard("inferq-service", "inferq: service", SERVICE),
    "inferq-capacity.json": dashboard("inferq-capacity", "inferq: capacity", CAPACITY),
}


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def as_rules() -> str:
    """Every dashboard query as a Prometheus recording rule (Grafana's variables given plain
    values), so that ``promtool check rules`` parses the dashboards' PromQL too."""
    lines = ["groups:", "  - name: grafana-queries", "    rules:"]
    for name, doc in DASHBOARDS.items():
        for panel in doc["panels"]:
            for t in panel.get("targets", []):
                expr = t["expr"].replace(RI, "5m").replace("$model", ".*")
                lines.append(f"      - record: {name.split('.')[0].replace('-', '_')}:"
                             f"p{panel['id']}{t['refId'].lower()}")
                lines.append(f"        expr: {json.dumps(expr)}")
    return "\n".join(lines) + "\n"


def main() -> int:
    if sys.argv[1:] == ["--rules"]:
        sys.stdout.write(as_rules())
        return 0
    for name, doc in DASHBOARDS.items():
        (HERE / name).write_text(render(doc), encoding="utf-8")
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
