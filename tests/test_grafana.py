"""The shipped Grafana dashboards and Prometheus rules: valid, up to date, tested, and built only on the
metric families the exporter exports."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm
from prometheus_client import CollectorRegistry

from exporter.collectors import platform_families
from exporter.metrics import CORE_FAMILIES
from exporter.telemetry import Telemetry

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
RULES = GRAFANA / "alerts" / "ingestion-exporter.rules.yml"
RULE_TESTS = sorted((GRAFANA / "alerts" / "tests").glob("*.yml"))
RUNBOOK = GRAFANA / "alerts" / "runbook.md"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
PANEL_TYPES = {"stat", "bargauge", "table", "timeseries", "state-timeline", "nodeGraph", "row"}


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


generate = load_generator()


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing: apt-get install prometheus"
    return subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def rules_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return document


def alerts() -> list[dict[str, Any]]:
    return [rule for group in rules_document()["groups"] for rule in group["rules"] if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for group in rules_document()["groups"] for rule in group["rules"] if "record" in rule}


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARD_FILES}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


# --- exported families ----------------------------------------------------------------------------------


def exported_names() -> set[str]:
    """Every sample name the exporter can expose: collector families, core families and self-metrics."""
    names = {family.full_name for family in (*CORE_FAMILIES, *platform_families())}
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    telemetry.start_target("informatica", "probe")  # labelled self-metrics only show once they have a child
    for metric in registry.collect():
        names.add(metric.name)
        names.update(sample.name for sample in metric.samples)
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
        if metric.type == "histogram":
            names.update(f"{metric.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def readable_names() -> set[str]:
    """Every name a rule or a dashboard may read: exported or recorded."""
    return exported_names() | recorded_names()


KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, keywords, labels or durations)."""
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _RANGES.sub("", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in KEYWORDS}


def test_metric_names_finds_the_families_and_only_them() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, target) (rate(ingestion_upstream_request_duration_seconds_bucket"
        '{platform=~"a|b", target="x"}[5m]))) and on (platform) ingestion_scrape_success == bool 1 '
        'or label_replace(ingestion:job_records:rate5m, "id", "$1", "node", "(.*)") offset 5m'
    )
    assert metric_names(expr) == {
        "ingestion_upstream_request_duration_seconds_bucket",
        "ingestion_scrape_success",
        "ingestion:job_records:rate5m",
    }


# --- Prometheus rules -----------------------------------------------------------------------------------


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_files_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in generate.outputs(generate.parameters(), generate.RULES_FILE, generate.DASHBOARDS_DIR).items()
        if not path.is_file() or path.read_text() != text
    ]
    assert not stale, f"run python grafana/generate.py: {stale}"


def test_every_rule_reads_only_exported_families() -> None:
    known = readable_names()
    for group in rules_document()["groups"]:
        for rule in group["rules"]:
            unknown = metric_names(rule["expr"]) - known
            assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown families {unknown}"


def test_every_alert_is_complete() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    runbook = RUNBOOK.read_text()
    headings = set(re.findall(r"^## (\S+)$", runbook, re.MULTILINE))
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        notes = rule["annotations"]
        assert set(notes) == {"summary", "description", "runbook_url"}, name
        assert notes["runbook_url"].endswith(f"runbook.md#{name.lower()}"), name
        assert name in headings, f"runbook.md has no section for {name}"
        if name.startswith("IngestionJob") or name == "IngestionCorruptedRecords":
            for label in ("job_name", "job_id", "platform", "target"):
                assert f"$labels.{label}" in notes["description"], (name, label)
            assert "$labels.job_name" in notes["summary"] and "$labels.platform" in notes["summary"], name
        elif name.startswith("IngestionTarget"):
            assert "$labels.platform" in notes["description"] and "$labels.target" in notes["description"], name
        elif name.startswith("IngestionExporterShard"):  # one exporter's processes: their scrape job
            assert "$labels.job" in notes["summary"] and "$labels.job" in notes["description"], name


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                (firing if expected else silent).add(check["alertname"])
                for alert in expected:
                    assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}, check
    names = {rule["alert"] for rule in alerts()}
    assert names - firing == set(), "alerts without a firing test"
    assert names - silent == set(), "alerts without a silent test"


def test_thresholds_are_documented_and_overridable() -> None:
    runbook = RUNBOOK.read_text()
    for name, threshold in generate.THRESHOLDS.items():
        assert f"| `{name}` |" in runbook, f"runbook.md does not document {name}"
        assert f"#   {name} = " in RULES.read_text()
        assert threshold.help
    text = generate.rules_yaml(generate.parameters({"job_failed_for": "7m", "job_stopped_lookback": "3h"}))
    rules = [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]
    failed = next(rule for rule in rules if rule.get("alert") == "IngestionJobFailed")
    assert failed["for"] == "7m" and "more than 7m" in failed["annotations"]["description"]
    assert "[3h]" in text
    with pytest.raises(ValueError, match="unknown parameter"):
        generate.parameters({"job_faild_for": "1m"})


def test_a_wait_as_long_as_its_window_is_refused() -> None:
    """A count within a window holds for about that window: a `for` as long would never let the alert fire."""
    assert generate.seconds("1h30m") == 5400 and generate.seconds("0") == generate.seconds("0m") == 0
    assert generate.parameters({"job_run_failed_for": "9m"})["job_run_failed_for"] == "9m"
    with pytest.raises(ValueError, match=r"job_run_failed_for \(10m\) must be shorter than job_run_failed_window"):
        generate.parameters({"job_run_failed_for": "10m"})
    with pytest.raises(ValueError, match="job_flapping_for"):
        generate.parameters({"job_flapping_window": "30m", "job_flapping_for": "1h"})
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        generate.parameters({"job_run_failed_window": "10 minutes"})


def test_generator_check_mode_reports_stale_files(tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    argv = ["--rules-out", str(out), "--dashboards-dir", str(tmp_path / "dashboards")]
    assert generate.main([*argv, "--check"]) == 1
    assert generate.main(argv) == 0
    assert generate.main([*argv, "--check"]) == 0
    assert generate.main([*argv, "--check", "--set", "job_failed_for=9m"]) == 1


def test_alertmanager_example_inhibits_job_alerts_of_an_unreachable_target() -> None:
    config = yaml.safe_load((GRAFANA / "alertmanager.example.yml").read_text())
    source = ['alertname="IngestionTargetUnreachable"']
    rule = next(r for r in config["inhibit_rules"] if r["source_matchers"] == source)
    assert rule["equal"] == ["platform", "target"]
    pattern = re.fullmatch(r'alertname=~"(.*)"', rule["target_matchers"][0])
    assert pattern is not None
    job_alerts = {a["alert"] for a in alerts() if a["alert"].startswith("IngestionJob")}
    assert job_alerts and all(re.fullmatch(pattern.group(1), name) for name in job_alerts)
    assert not re.fullmatch(pattern.group(1), "IngestionTargetUnreachable")
    # The alert combines every exporter process's series and keeps the labels the rule matches on.
    unreachable = next(a for a in alerts() if a["alert"] == "IngestionTargetUnreachable")
    kept = re.match(r"\w+ by \(([^()]*)\)", unreachable["expr"])
    assert kept is not None and set(rule["equal"]) <= {label.strip() for label in kept.group(1).split(",")}
    amtool = shutil.which("amtool")
    assert amtool is not None, "amtool is missing: apt-get install prometheus-alertmanager"
    result = subprocess.run(
        [amtool, "check-config", str(GRAFANA / "alertmanager.example.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_example_lets_a_restart_loop_notify_once() -> None:
    """While a job flaps, its failed runs file no ticket each: the inhibit rule matches the labels both alerts keep."""
    config = yaml.safe_load((GRAFANA / "alertmanager.example.yml").read_text())
    rule = next(r for r in config["inhibit_rules"] if r["source_matchers"] == ['alertname="IngestionJobFlapping"'])
    assert rule["target_matchers"] == ['alertname="IngestionJobRunFailed"']
    for name in ("IngestionJobFlapping", "IngestionJobRunFailed"):
        alert = next(a for a in alerts() if a["alert"] == name)
        kept = re.match(r"max by \(([^()]*)\)", alert["expr"])
        assert kept is not None and set(rule["equal"]) <= {label.strip() for label in kept.group(1).split(",")}


# --- dashboards -----------------------------------------------------------------------------------------

GRAFANA_FUNCTIONS = re.compile(r"^\s*(label_values|query_result)\((.*)\)\s*$", re.DOTALL)


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel or variable, PromQL) for every query a dashboard runs."""
    found: list[tuple[str, str, str]] = []
    for name, board in dashboards().items():
        for panel in panels(board):
            for query in panel.get("targets", []):
                found.append((name, f"panel {panel['title']!r} {query['refId']}", query["expr"]))
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = GRAFANA_FUNCTIONS.match(variable["query"]["query"])
            assert match, f"{name}: variable {variable['name']} is not label_values() or query_result()"
            inner = match.group(2)
            if match.group(1) == "label_values":
                inner = inner.rsplit(",", 1)[0]
            found.append((name, f"variable {variable['name']}", inner))
    return found


def fill_variables(expr: str) -> str:
    """Grafana's variables replaced by plausible values, so that the text is plain PromQL."""
    for name, value in (
        ("$__rate_interval", "1m"),
        ("$__interval", "15s"),
        ("$__range", "1h"),
        ("$platform", "informatica"),
        ("$target", "demo"),
        ("$job", "j1"),
    ):
        expr = expr.replace(name, value)
    assert "$" not in re.sub(r'"\$1"', "", expr), f"unfilled variable in {expr}"
    return expr


def test_dashboards_are_grafana_dashboards() -> None:
    boards = dashboards()
    assert set(boards) == {"ingestion-overview.json", "ingestion-job-detail.json", "ingestion-exporter-health.json"}
    uids = set()
    for name, board in boards.items():
        assert board["uid"] and board["title"] and board["schemaVersion"] >= 36, name
        uids.add(board["uid"])
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        assert {"platform", "target"} <= set(variables), name
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in panels(board):
            assert panel["type"] in PANEL_TYPES, (name, panel["type"])
            grid = panel["gridPos"]
            assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, (name, panel["title"])
            area = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not area & cells, f"{name}: panel {panel['title']!r} overlaps another"
            cells |= area
            if panel["type"] == "row":
                continue
            assert panel["title"] and panel["description"], name
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (name, panel["title"])
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), (name, panel["title"])
            for query in panel["targets"]:
                assert query["datasource"] == panel["datasource"] and query["expr"].strip()
                used = set(re.findall(r"\$(\w+)", query["expr"])) - {"__rate_interval", "__interval", "__range", "1"}
                assert used <= set(variables), f"{name}: {panel['title']!r} uses undefined variables {used}"
    assert len(uids) == len(boards)


# Grafana's panel kinds and the SDK's module modelling each one's options.
PANEL_MODELS = {
    "stat": "stat",
    "bargauge": "bargauge",
    "table": "table",
    "timeseries": "timeseries",
    "state-timeline": "statetimeline",
    "nodeGraph": "nodegraph",
}


def test_every_panel_is_built_from_grafanas_typed_models() -> None:
    """Options, value mappings and queries are the SDK's models of each panel kind, never loose dicts: the
    builders' types (checked by mypy) hold every panel to Grafana's schema."""
    built = generate.dashboards()
    assert set(built) == {path.name for path in DASHBOARD_FILES}
    for name, board in built.items():
        assert isinstance(board, dm.Dashboard) and board.panels, name
        for panel in board.panels:
            assert isinstance(panel, dm.Panel), (name, panel)
            where = (name, panel.title)
            models = importlib.import_module(f"grafana_foundation_sdk.models.{PANEL_MODELS[panel.type_val]}")
            assert panel.options is None or isinstance(panel.options, models.Options), where
            assert panel.targets and all(isinstance(query, pm.Dataquery) for query in panel.targets), where
            defaults = panel.field_config.defaults if panel.field_config else None
            mappings = (defaults.mappings if defaults else None) or []
            assert all(isinstance(mapping, dm.ValueMap) for mapping in mappings), where


def test_dashboards_cover_what_the_on_call_needs() -> None:
    boards = dashboards()
    detail = boards["ingestion-job-detail.json"]
    kinds = {p["type"] for p in panels(detail)}
    assert {"state-timeline", "nodeGraph"} <= kinds
    graph = next(p for p in panels(detail) if p["type"] == "nodeGraph")
    assert {t["refId"] for t in graph["targets"]} == {"nodes", "edges"}
    assert "job" in {v["name"] for v in detail["templating"]["list"]}
    assert "job" in {v["name"] for v in boards["ingestion-overview.json"]["templating"]["list"]}
    overview = " ".join(t["expr"] for p in panels(boards["ingestion-overview.json"]) for t in p.get("targets", []))
    for needle in (
        "ingestion:job_state_since_timestamp_seconds",
        "ingestion:job_records:rate5m",
        "ingestion:job_bytes:rate5m",
        "ingestion_stream_corrupted_records_total",
        "ingestion_scrape_success",
        "sum by (state)",
    ):
        assert needle in overview
    health = " ".join(t["expr"] for p in panels(boards["ingestion-exporter-health.json"]) for t in p.get("targets", []))
    for family in (
        "ingestion_scrape_success",
        "ingestion_scrape_duration_seconds",
        "ingestion_upstream_requests_total",
        "ingestion_upstream_request_duration_seconds_bucket",
        "ingestion_scrape_errors_total",
        "ingestion_jobs_discovered",
        "ingestion_exporter_shard_ordinal",
        "ingestion_exporter_total_shards",
    ):
        assert family in health


def test_dashboards_show_the_runs_no_state_shows() -> None:
    boards = dashboards()
    detail = {panel["title"]: panel for panel in panels(boards["ingestion-job-detail.json"])}
    runs = detail["Runs per outcome"]
    (query,) = runs["targets"]
    assert query["expr"].startswith("max by (outcome) (increase(ingestion_job_runs_total{")
    assert query["legendFormat"] == "{{outcome}}"
    colors = {
        override["matcher"]["options"]: override["properties"][0]["value"]["fixedColor"]
        for override in runs["fieldConfig"]["overrides"]
    }
    assert colors == {"succeeded": "dark-green", "failed": "red", "stopped": "yellow", "unknown": "text"}
    times = detail["Deploy and run times"]
    failure = next(query for query in times["targets"] if query["legendFormat"] == "Last failure")
    assert failure["expr"].startswith("ingestion_job_last_failure_timestamp_seconds{") and "* 1000" in failure["expr"]
    assert times["fieldConfig"]["defaults"]["unit"] == "dateTimeAsIso"
    failed = next(p for p in panels(boards["ingestion-overview.json"]) if p["title"] == "Failed runs in the range")
    assert failed["targets"][0]["instant"] and "[$__range]" in failed["targets"][0]["expr"]
    (link,) = failed["fieldConfig"]["defaults"]["links"]
    assert "/d/ingestion-job/" in link["url"] and "var-job=${__data.fields.job_id}" in link["url"]


def test_failed_runs_in_the_range_counts_each_failure_once(tmp_path: Path) -> None:
    """The overview's count, over the series Prometheus holds: a failure two exporter processes both counted
    (a resharding rollout) is one, a stop is none."""
    overview = dashboards()["ingestion-overview.json"]
    (query,) = next(p for p in panels(overview) if p["title"] == "Failed runs in the range")["targets"]
    job = 'platform="informatica",target="demo",job_id="j1",job_name="orders"'
    series = [
        {"series": f'ingestion_job_runs_total{{{job},outcome="failed",instance="{instance}"}}', "values": "0x9 1x20"}
        for instance in ("exporter-0", "exporter-1")
    ]
    series.append(
        {"series": f'ingestion_job_runs_total{{{job},outcome="stopped",instance="exporter-0"}}', "values": "0x4 1x25"}
    )
    case = {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": fill_variables(query["expr"]),
                "eval_time": "30m",
                "exp_samples": [{"labels": f"{{{job}}}", "value": 1}],
            }
        ],
    }
    path = tmp_path / "failed-runs.test.yml"
    path.write_text(yaml.safe_dump({"tests": [case]}))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# Every exporter process (every shard) exposes these for each target, about its own share of the work.
PER_PROCESS_TARGET_FAMILIES = {
    "ingestion_scrape_success",
    "ingestion_scrape_duration_seconds",
    "ingestion_jobs_discovered",
    "ingestion_scrape_errors_total",
    "ingestion_upstream_requests_total",
    "ingestion_upstream_request_duration_seconds_bucket",
}
_AGGREGATION = re.compile(r"\b(?:sum|min|max|count|avg)\s+by\s*\(([^()]*)\)\s*\(")


def outside_aggregations(expr: str) -> str:
    """The expression with each `by` aggregation cut out whole, once checked to drop the labels of the process."""
    while found := _AGGREGATION.search(expr):
        labels = {label.strip() for label in found.group(1).split(",")}
        assert not labels & {"instance", "pod"}, f"keeps one series per exporter process: {expr}"
        depth, end = 1, found.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        expr = expr[: found.start()] + expr[end:]
    return expr


def test_outside_aggregations_cuts_each_aggregation_whole() -> None:
    expr = "histogram_quantile(0.5, sum by (le) (rate(a[5m]))) and max by (job) (b * on (instance) c) or d"
    assert outside_aggregations(expr) == "histogram_quantile(0.5, ) and  or d"
    with pytest.raises(AssertionError, match="per exporter process"):
        outside_aggregations("min by (platform, instance) (ingestion_scrape_success)")


def test_target_level_series_are_combined_over_the_exporters_shards() -> None:
    """Rules and panels read a target's per-process series only through aggregations that drop the process, so
    they show one answer per target however many shards share the jobs."""
    queries = [(f"{board} {what}", expr) for board, what, expr in panel_queries() if what.startswith("panel")]
    queries += [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in rules_document()["groups"]
        for rule in group["rules"]
    ]
    readers = [(where, expr) for where, expr in queries if metric_names(expr) & PER_PROCESS_TARGET_FAMILIES]
    assert len(readers) >= 10
    for where, expr in readers:
        left = metric_names(outside_aggregations(expr)) & PER_PROCESS_TARGET_FAMILIES
        assert not left, f"{where} reads {left} per exporter process"


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule: a syntax error names its rule."""
    queries = panel_queries()
    rules = {
        "groups": [
            {
                "name": "dashboards",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": fill_variables(expr)}
                    for index, (_, _, expr) in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "queries.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    if result.returncode != 0:
        where = "\n".join(f"query_{i}: {board} {what}" for i, (board, what, _) in enumerate(queries))
        pytest.fail(f"{result.stdout}{result.stderr}\n{where}")


def test_promql_check_rejects_a_broken_query(tmp_path: Path) -> None:
    path = tmp_path / "broken.rules.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [
                            {
                                "record": "dashboard:query_0",
                                "expr": fill_variables("sum by (state (ingestion_job_state)"),
                            }
                        ],
                    }
                ]
            }
        )
    )
    assert promtool("check", "rules", str(path)).returncode != 0


def test_every_dashboard_query_reads_only_exported_families() -> None:
    known = readable_names()
    for board, what, expr in panel_queries():
        unknown = metric_names(fill_variables(expr)) - known
        assert not unknown, f"{board} {what} reads families the exporter does not export: {unknown}"
    assert {"ingestion_job_state", "ingestion_scrape_success", "ingestion_upstream_requests_total"} <= known
    assert "ingestion_job_stat" not in known  # a misspelt family is caught
