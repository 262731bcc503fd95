"""Every metric and label the dashboards and alert rules name is one the code exports.

A dashboard panel over a misspelt or renamed metric draws an empty graph and an alert over one
never fires, and neither says so; this reads every query in deploy/grafana/*.json and
deploy/prometheus/*.yml and compares its selectors with the metrics core/metrics.py registers
with prometheus_client. PromQL syntax itself is promtool's job (deploy/prometheus/check.sh).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from core import metrics
from tests.deploy.promql import Query, parse, parse_grafana_variable

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GRAFANA = sorted((DEPLOY / "grafana").glob("*.json"))
PROMETHEUS_MADE = {"up": set()}
"""Series Prometheus writes itself for every scrape target."""
TARGET_LABELS = {"instance", "job", "service"}
"""Added by the scrape (deploy/nomad/README.md's job: job="inferq", service from Nomad)."""
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
            "histogram": ("_bucket", "_sum", "_count", "_created")}


def _exported() -> dict[str, set[str]]:
    """Series name -> label names, for every metric core/metrics.py defines."""
    registered = {fam.name for fam in REGISTRY.collect()}
    out: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        fam = obj.describe()[0]
        assert fam.name in registered, f"{fam.name} is defined but not registered"
        labels = set(obj._labelnames)  # prometheus_client keeps them only here
        for suffix in SUFFIXES[fam.type]:
            out[fam.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


EXPORTED = _exported() | PROMETHEUS_MADE


def _unknown(query: Query) -> list[str]:
    """What ``query`` names that is not exported: metrics, then labels."""
    problems = [f"metric {s.metric}" for s in query.selectors if s.metric not in EXPORTED]
    known = set(TARGET_LABELS)
    for s in query.selectors:
        labels = EXPORTED.get(s.metric, set()) | TARGET_LABELS
        known |= labels
        problems += [f"label {s.metric}{{{name}}}" for name in sorted(s.labels - labels)]
    problems += [f"grouping label {name}" for name in sorted(query.grouping - known)]
    return problems


def _dashboard_queries(path: Path) -> list[tuple[str, Query]]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for panel in doc["panels"]:
        for t in panel.get("targets", []):
            out.append((f"{panel['title']} {t['refId']}", parse(t["expr"])))
    for var in doc["templating"]["list"]:
        if var["type"] == "query":
            out.append((f"variable {var['name']}", parse_grafana_variable(var["definition"])))
    return out


def _rules(path: Path) -> list[dict]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _load_build():
    spec = importlib.util.spec_from_file_location("grafana_build", DEPLOY / "grafana" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_both_dashboards_exist_and_are_what_build_py_writes():
    build = _load_build()
    assert sorted(build.DASHBOARDS) == [p.name for p in GRAFANA] == [
        "inferq-capacity.json", "inferq-service.json"]
    for path in GRAFANA:
        assert path.read_text(encoding="utf-8") == build.render(build.DASHBOARDS[path.name]), (
            f"{path.name} is stale: run python deploy/grafana/build.py")


@pytest.mark.parametrize("path", GRAFANA, ids=lambda p: p.name)
def test_every_dashboard_query_names_exported_metrics(path: Path):
    queries = _dashboard_queries(path)
    assert len(queries) > 10
    problems = [f"{where}: {p}" for where, q in queries for p in _unknown(q)]
    assert problems == []


def test_every_alert_rule_names_exported_metrics():
    rules = _rules(DEPLOY / "prometheus" / "alerts.yml")
    assert {r["alert"] for r in rules} >= {
        "InferqQueueAgeOverTarget", "InferqRunnersBelowDesired", "InferqDeadLettersGrowing",
        "InferqHTTP5xxRate", "InferqDependencyUnavailable", "InferqTargetDown",
        "InferqDependencyDown", "InferqJetStreamSyncNotAlways", "InferqJetStreamSyncUnknown"}
    problems = [f"{r['alert']}: {p}" for r in rules for p in _unknown(parse(r["expr"]))]
    assert problems == []
    for r in rules:
        assert r["labels"]["severity"] in {"page", "warning"}, r["alert"]
        assert r["annotations"]["summary"], r["alert"]


def test_the_alert_tests_feed_exported_series():
    """promtool's rule tests would pass on made-up names too; they must mean real series."""
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text("utf-8"))
    series = [s["series"] for t in doc["tests"] for s in t["input_series"]]
    problems = [f"{s}: {p}" for s in series for p in _unknown(parse(s))]
    assert problems == []


def test_a_misspelt_metric_or_label_is_caught():
    """The check itself: what a typo in a dashboard would look like."""
    q = parse('sum by (model, tenant) (rate(inferq_items_finshed_total{model=~"$model", '
              'status="failed"}[$__rate_interval])) / on (model) group_left () '
              "max by (model) (inferq_desired_runners offset 5m) > bool 0")
    assert q.metrics == {"inferq_items_finshed_total", "inferq_desired_runners"}
    assert q.grouping == {"model", "tenant"}
    assert _unknown(q) == ["metric inferq_items_finshed_total", "label "
                           "inferq_items_finshed_total{model}", "label "
                           "inferq_items_finshed_total{status}", "grouping label tenant"]
    assert _unknown(parse('histogram_quantile(0.9, sum by (le) (rate('
                          'inferq_batch_size_bucket{bucket="32"}[5m])))')) == []
    with pytest.raises(ValueError):
        parse('{__name__=~"inferq_.*"}')
