"""Generate the shipped Prometheus rules and Grafana dashboards from one description.

    .venv/bin/python grafana/generate.py           rewrite grafana/alerts/ingestion-exporter.rules.yml
                                                   and grafana/dashboards/*.json
    .venv/bin/python grafana/generate.py --check   exit 1 when the committed files differ from the output
    .venv/bin/python grafana/generate.py --set job_failed_for=5m --set runbook_url=https://wiki/runbook.md \\
        --rules-out my.rules.yml                   the rules with other thresholds, written elsewhere

Every alert threshold and `for` duration is a named parameter (`THRESHOLDS` below, also listed in the
header of the rules file and in grafana/alerts/runbook.md); `--set NAME=VALUE` overrides any of them.
The dashboards are built with Grafana's typed builders (grafana-foundation-sdk, pinned in
requirements-dev.lock, never a dependency of the exporter), so every panel's options, field config and
queries follow Grafana's schema and mypy checks them; the rules are YAML written with PyYAML. The output is
committed and reviewed like any other file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

import yaml
from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    nodegraph,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

ROOT = Path(__file__).resolve().parent
RULES_FILE = ROOT / "alerts" / "ingestion-exporter.rules.yml"
DASHBOARDS_DIR = ROOT / "dashboards"

JOB = "platform, target, job_id, job_name"


@dataclass(frozen=True)
class Threshold:
    default: str
    help: str


THRESHOLDS: dict[str, Threshold] = {
    "job_failed_for": Threshold("2m", "How long a job stays failed before IngestionJobFailed fires."),
    "job_degraded_for": Threshold("15m", "How long a job stays degraded before IngestionJobDegraded fires."),
    "job_stopped_for": Threshold("5m", "How long a job that was running stays stopped before it alerts."),
    "job_stopped_lookback": Threshold(
        "1h", "How far back a stopped job must have been running to count as stopped unexpectedly."
    ),
    "job_starting_for": Threshold("15m", "How long a job may stay starting (deploying) before it alerts."),
    "job_unknown_for": Threshold("15m", "How long a job's state may stay unknown before it alerts."),
    "job_no_records_for": Threshold("15m", "How long a running job may move no records before it alerts."),
    "job_no_records_rate": Threshold(
        "0", "Records per second (5m average) at or below which a running job counts as moving nothing."
    ),
    "corrupted_records_window": Threshold("10m", "Window over which corrupted records are counted."),
    "corrupted_records_threshold": Threshold("0", "Corrupted records within the window above which it alerts."),
    "corrupted_records_for": Threshold("0m", "How long corrupted records must keep arriving before it alerts."),
    "job_run_failed_window": Threshold(
        "10m",
        "Window in which a failed run raises IngestionJobRunFailed; at least four scrape intervals, and about how "
        "long the alert stays firing after the run failed.",
    ),
    "job_run_failed_for": Threshold(
        "0m", "How long IngestionJobRunFailed waits before firing; keep it well below job_run_failed_window."
    ),
    "job_flapping_window": Threshold("1h", "Window over which IngestionJobFlapping counts the runs that ended."),
    "job_flapping_runs": Threshold("3", "Runs ended within the window at which IngestionJobFlapping fires."),
    "job_flapping_outcomes": Threshold(
        "failed|unknown",
        "Outcomes of the runs IngestionJobFlapping counts (a regular expression); never stopped, an operator's act.",
    ),
    "job_flapping_for": Threshold("0m", "How long IngestionJobFlapping waits before firing."),
    "target_unreachable_for": Threshold("5m", "How long the exporter may fail to read a whole target."),
    "target_scrape_errors_for": Threshold("15m", "How long a target may keep failing some upstream calls."),
    "exporter_absent_for": Threshold("5m", "How long Prometheus may have no series from any exporter."),
    "shards_missing_for": Threshold("5m", "How long some shards of a sharded exporter may go unscraped."),
    "sharding_mismatch_for": Threshold(
        "15m", "How long an exporter's processes may disagree on the shards (a resharding rollout takes a while)."
    ),
    "runbook_url": Threshold(
        "https://github.com/ingestion-exporter/ingestion-exporter/blob/main/grafana/alerts/runbook.md",
        "Where the runbook is published; each alert links to its own section (#alertname in lower case).",
    ),
}


# An alert on a count within a window holds for about that window after the runs that raised it: a `for` as long
# would never let it fire.
WAITS_WITHIN_WINDOWS = (("job_run_failed_for", "job_run_failed_window"), ("job_flapping_for", "job_flapping_window"))
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus duration (`90s`, `1h30m`, or `0`) in seconds."""
    if duration == "0":
        return 0
    if not re.fullmatch(f"(?:{_DURATION_PART.pattern})+", duration):
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(count) * _UNIT_SECONDS[unit] for count, unit in _DURATION_PART.findall(duration))


def parameters(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    values = {name: threshold.default for name, threshold in THRESHOLDS.items()}
    for name, value in (overrides or {}).items():
        if name not in THRESHOLDS:
            raise ValueError(f"unknown parameter {name!r}; known: {', '.join(THRESHOLDS)}")
        values[name] = value
    for wait, window in WAITS_WITHIN_WINDOWS:
        if seconds(values[wait]) >= seconds(values[window]):
            raise ValueError(f"{wait} ({values[wait]}) must be shorter than {window} ({values[window]}) to ever fire")
    return values


# --- Prometheus rules -----------------------------------------------------------------------------------

RECORDS_RATE = "ingestion:job_records:rate5m"
BYTES_RATE = "ingestion:job_bytes:rate5m"
STATE_SINCE = "ingestion:job_state_since_timestamp_seconds"

# What shows records (bytes) moving, per platform; a job has one of them. DataArts counts per node: the busiest
# node stands for the job (every node of a chain sees about the same records).
RECORD_RATES: tuple[str, ...] = (
    f"sum by ({JOB}) (rate(ingestion_job_read_records_total[5m]))",
    f'sum by ({JOB}) (rate(ingestion_stream_records_total{{role="source"}}[5m]))',
    f"sum by ({JOB}) (rate(ingestion_job_records_total[5m]))",
    f"max by ({JOB}) (rate(ingestion_node_read_records_total[5m]))",
)
BYTE_RATES: tuple[str, ...] = (
    f"sum by ({JOB}) (rate(ingestion_job_read_bytes_total[5m]))",
    f"max by ({JOB}) (rate(ingestion_node_read_bytes_total[5m]))",
)


def _either(parts: Sequence[str]) -> str:
    return "\nor\n".join(parts)


def recording_rules() -> list[dict[str, Any]]:
    return [
        {
            # Self-referencing: keeps the previous value while the same state stays current, else starts at
            # the sample's time. A job's "since" is therefore never older than the data Prometheus holds.
            "record": STATE_SINCE,
            "expr": f"({STATE_SINCE} and ingestion_job_state == 1)\nor\ntimestamp(ingestion_job_state == 1)\n",
        },
        {"record": RECORDS_RATE, "expr": _either(RECORD_RATES) + "\n"},
        {"record": BYTES_RATE, "expr": _either(BYTE_RATES) + "\n"},
    ]


# Every exporter process (every shard) reports each target's scrape result for its own calls: the target fails
# when any of them failed, as it would for one process making all the calls. The target is read when any of its
# jobs, each collected by one process, has a known state.
TARGET_FAILING = "min by (platform, target) (ingestion_scrape_success) == 0"
JOB_READ = '(ingestion_job_state{state!="unknown"} == 1)'

# Each exporter process says which shard it is (a value, not a label) and of how many; the processes of one
# exporter share the `job` label of their scrape configuration.
SHARDS_UP = 'count by (job) (count_values by (job) ("shard", ingestion_exporter_shard_ordinal))'
TOTAL_SHARDS = "max by (job) (ingestion_exporter_total_shards)"

_WHO = "Job {{ $labels.job_name }} ({{ $labels.job_id }}) on {{ $labels.platform }} target {{ $labels.target }}"


def _alert(
    name: str, expr: str, for_: str, severity: str, summary: str, description: str, p: Mapping[str, str]
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ not in ("0", "0s", "0m"):
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{p['runbook_url']}#{name.lower()}",
    }
    return rule


def alert_rules(p: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        _alert(
            "IngestionJobFailed",
            'ingestion_job_state{state="failed"} == 1',
            p["job_failed_for"],
            "critical",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} failed.",
            f"{_WHO} has been in the failed state for more than {p['job_failed_for']}.",
            p,
        ),
        _alert(
            "IngestionJobDegraded",
            'ingestion_job_state{state="degraded"} == 1',
            p["job_degraded_for"],
            "warning",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} is degraded.",
            f"{_WHO} has been running with warnings for more than {p['job_degraded_for']}.",
            p,
        ),
        _alert(
            "IngestionJobStoppedUnexpectedly",
            'ingestion_job_state{state="stopped"} == 1\nand on (platform, target, job_id)\n'
            f'max_over_time(ingestion_job_state{{state="running"}}[{p["job_stopped_lookback"]}]) == 1\n',
            p["job_stopped_for"],
            "warning",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} stopped.",
            f"{_WHO} was running within the last {p['job_stopped_lookback']} and has been stopped, not succeeded, "
            f"for more than {p['job_stopped_for']}.",
            p,
        ),
        _alert(
            "IngestionJobStuckStarting",
            'ingestion_job_state{state="starting"} == 1',
            p["job_starting_for"],
            "warning",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} is stuck starting.",
            f"{_WHO} has been starting (deploying) for more than {p['job_starting_for']}.",
            p,
        ),
        _alert(
            "IngestionJobStateUnknown",
            'ingestion_job_state{state="unknown"} == 1',
            p["job_unknown_for"],
            "warning",
            "The state of ingestion job {{ $labels.job_name }} on {{ $labels.platform }} is unknown.",
            f"{_WHO} has had no readable or known state for more than {p['job_unknown_for']}.",
            p,
        ),
        _alert(
            "IngestionJobNoRecords",
            f"{RECORDS_RATE} <= {p['job_no_records_rate']}\nand on (platform, target, job_id)\n"
            'ingestion_job_state{state="running"} == 1\n',
            p["job_no_records_for"],
            "warning",
            "Running ingestion job {{ $labels.job_name }} on {{ $labels.platform }} moves no records.",
            f"{_WHO} is running but has read at most {p['job_no_records_rate']} records per second "
            f"for more than {p['job_no_records_for']}.",
            p,
        ),
        _alert(
            "IngestionJobRunFailed",
            f"max by ({JOB}) (\n"
            f'  increase(ingestion_job_runs_total{{outcome="failed"}}[{p["job_run_failed_window"]}])\n'
            ") > 0\nunless on (platform, target, job_id)\n"
            'ingestion_job_state{state="failed"} == 1\n',
            p["job_run_failed_for"],
            "warning",
            "A run of ingestion job {{ $labels.job_name }} on {{ $labels.platform }} failed.",
            f"{_WHO} ended a run as failed within the last {p['job_run_failed_window']} and is not in the failed "
            "state now: the job was restarted (by the platform, an operator or a scheduler) or stopped after it.",
            p,
        ),
        _alert(
            "IngestionJobFlapping",
            f"max by ({JOB}) (\n"
            f'  sum without (outcome) (increase(ingestion_job_runs_total{{outcome=~"{p["job_flapping_outcomes"]}"}}'
            f"[{p['job_flapping_window']}]))\n"
            f") >= {p['job_flapping_runs']}\n",
            p["job_flapping_for"],
            "critical",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} keeps restarting.",
            f'{_WHO} ended {{{{ $value | printf "%.0f" }}}} runs as '
            f"{p['job_flapping_outcomes'].replace('|', ' or ')} within the last {p['job_flapping_window']}: "
            "it fails and is restarted again and again.",
            p,
        ),
        _alert(
            "IngestionCorruptedRecords",
            "sum by (platform, target, job_id, job_name, stream, role) (\n"
            f"  increase(ingestion_stream_corrupted_records_total[{p['corrupted_records_window']}])\n"
            f") > {p['corrupted_records_threshold']}\n",
            p["corrupted_records_for"],
            "warning",
            "Ingestion job {{ $labels.job_name }} on {{ $labels.platform }} reports corrupted records.",
            f"{_WHO} counted {{{{ $value | humanize }}}} corrupted records on {{{{ $labels.role }}}} "
            f"{{{{ $labels.stream }}}} in the last {p['corrupted_records_window']}.",
            p,
        ),
        _alert(
            "IngestionTargetUnreachable",
            f"{TARGET_FAILING}\nunless on (platform, target)\n{JOB_READ}\n",
            p["target_unreachable_for"],
            "critical",
            "The exporter cannot read {{ $labels.platform }} target {{ $labels.target }}.",
            "The ingestion exporter has read no job of {{ $labels.platform }} target {{ $labels.target }} for "
            f"more than {p['target_unreachable_for']}; its jobs show as unknown and their own alerts are "
            "inhibited.",
            p,
        ),
        _alert(
            "IngestionTargetScrapeErrors",
            f"{TARGET_FAILING}\nand on (platform, target)\n{JOB_READ}\n",
            p["target_scrape_errors_for"],
            "warning",
            "Some upstream calls to {{ $labels.platform }} target {{ $labels.target }} fail.",
            "The ingestion exporter reads some jobs of {{ $labels.platform }} target {{ $labels.target }} but "
            f"some of its upstream calls have kept failing for more than {p['target_scrape_errors_for']}.",
            p,
        ),
        _alert(
            "IngestionExporterAbsent",
            "absent(ingestion_exporter_build_info)",
            p["exporter_absent_for"],
            "critical",
            "The ingestion exporter is gone from Prometheus.",
            f"Prometheus has scraped no ingestion exporter successfully for more than {p['exporter_absent_for']}; "
            "no ingestion job is watched.",
            p,
        ),
        _alert(
            "IngestionExporterShardsMissing",
            f"{TOTAL_SHARDS}\n-\n{SHARDS_UP}\n> 0\n",
            p["shards_missing_for"],
            "critical",
            "Shards of the ingestion exporter (job {{ $labels.job }}) are not scraped.",
            "Exporter job {{ $labels.job }} has been missing {{ $value }} of its shards for more than "
            f"{p['shards_missing_for']}: the ingestion jobs hashed to them are not watched and none of their "
            "alerts can fire.",
            p,
        ),
        _alert(
            "IngestionExporterShardingMismatch",
            f"{TOTAL_SHARDS}\n!=\nmin by (job) (ingestion_exporter_total_shards)\n",
            p["sharding_mismatch_for"],
            "critical",
            "The processes of the ingestion exporter (job {{ $labels.job }}) disagree on the number of shards.",
            "The processes of exporter job {{ $labels.job }} have run with different --total-shards (up to "
            f"{{{{ $value }}}}) for more than {p['sharding_mismatch_for']}: some ingestion jobs belong to no "
            "process and are not watched, others are collected twice.",
            p,
        ),
        _alert(
            "IngestionExporterShardDuplicated",
            'count_values by (job) ("shard", ingestion_exporter_shard_ordinal) > 1\n'
            f"and on (job)\n{TOTAL_SHARDS} > 1\n",
            p["sharding_mismatch_for"],
            "warning",
            "Shard {{ $labels.shard }} of the ingestion exporter (job {{ $labels.job }}) is collected more than once.",
            "{{ $value }} processes of exporter job {{ $labels.job }} have collected shard {{ $labels.shard }} for "
            f"more than {p['sharding_mismatch_for']}: each of its ingestion jobs is read, and alerts, once per "
            "process.",
            p,
        ),
    ]


def rules_document(p: Mapping[str, str]) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "ingestion-exporter.rules", "rules": recording_rules()},
            {"name": "ingestion-exporter.alerts", "rules": alert_rules(p)},
        ]
    }


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rules_yaml(p: Mapping[str, str]) -> str:
    lines = [
        "# Prometheus rules for ingestion-exporter. Generated by grafana/generate.py; do not edit by hand.",
        "# Thresholds (override with `python grafana/generate.py --set NAME=VALUE --rules-out FILE`):",
    ]
    lines += [f"#   {name} = {p[name]}: {threshold.help}" for name, threshold in THRESHOLDS.items()]
    body = yaml.dump(rules_document(p), Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)
    return "\n".join(lines) + "\n" + body


# --- Grafana dashboards ---------------------------------------------------------------------------------
# Built with Grafana's typed builders (grafana-foundation-sdk, a development dependency): each panel's options,
# field config and queries are checked against Grafana's schema by the builders' types and mypy.

DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'platform=~"$platform", target=~"$target"'
JOB_SEL = f'{SEL}, job_id=~"$job"'
ONE_JOB = 'platform="$platform", target="$target", job_id="$job"'
STATE_COLORS = {
    "starting": "blue",
    "running": "green",
    "degraded": "orange",
    "failed": "red",
    "stopping": "purple",
    "stopped": "yellow",
    "succeeded": "dark-green",
    "unknown": "text",
}
STATES = tuple(STATE_COLORS)
OUTCOMES = ("succeeded", "failed", "stopped", "unknown")
"""The outcomes of ingestion_job_runs_total, each drawn in the colour of the state of that name."""

JOB_DETAIL_LINK = (
    "/d/ingestion-job/ingestion-job-detail?var-datasource=${datasource}"
    "&var-platform=${__data.fields.platform}&var-target=${__data.fields.target}"
    "&var-job=${__data.fields.job_id}&${__url_time_range}"
)
"""Where a table row of one job leads: that job on the Job detail dashboard, over the same time range."""


class PanelBuilder(Protocol):
    """What every panel builder of the SDK has; the helpers below set it the same way on each kind."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: dm.DataSourceRef) -> Self: ...
    def targets(self, targets: list[cogbuilder.Builder[cogvariants.Dataquery]]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...
    def override_by_name(self, name: str, properties: list[dm.DynamicConfigValue]) -> Self: ...


P = TypeVar("P", bound=PanelBuilder)


def panel(kind: P, title: str, description: str, targets: list[prometheus.Dataquery], w: int = 12, h: int = 8) -> P:
    """A panel of the given kind on the dashboard's Prometheus, `w` of the 24 columns wide."""
    queries: list[cogbuilder.Builder[cogvariants.Dataquery]] = list(targets)
    return kind.title(title).description(description).datasource(DS).targets(queries).span(w).height(h)


def target(
    expr: str, legend: str = "", ref: str = "A", instant: bool = False, table: bool = False
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().ref_id(ref).datasource(DS).expr(expr).legend_format(legend or "__auto")
    query = query.instant() if instant else query.range()
    return query.format(pm.PromQueryFormat.TABLE if table else pm.PromQueryFormat.TIME_SERIES)


def last_value(kind: stat.Panel) -> stat.Panel:
    """A stat panel showing each series' last value, with its name, uncoloured."""
    return (
        kind.reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
    )


def legend(placement: cm.LegendPlacement = cm.LegendPlacement.BOTTOM) -> common.VizLegendOptions:
    # The builders write a legend as hidden unless told: Grafana's panels show theirs by default.
    return common.VizLegendOptions().show_legend(True).display_mode(cm.LegendDisplayMode.LIST).placement(placement)


def value_mapping(texts: Mapping[str, tuple[str | None, str]]) -> list[dm.ValueMapping]:
    """Values shown in a colour, as another text where one is given: {value: (text, colour)}."""
    return [
        dm.ValueMap(
            options={
                value: dm.ValueMappingResult(text=text, color=color, index=index)
                for index, (value, (text, color)) in enumerate(texts.items())
            }
        )
    ]


def state_mappings() -> list[dm.ValueMapping]:
    return value_mapping({str(code): (state, STATE_COLORS[state]) for code, state in enumerate(STATES)})


def fixed_color(color: str) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


def color_by_name(kind: P, colors: Mapping[str, str]) -> P:
    """Each series (or field) named like a key of `colors` drawn in its colour."""
    for name, color in colors.items():
        kind = kind.override_by_name(name, [fixed_color(color)])
    return kind


def organize(exclude: Sequence[str], order: Mapping[str, int] | None = None) -> dm.DataTransformerConfig:
    """Grafana's 'organize fields' transformation: hide the columns named, order the others."""
    options: dict[str, object] = {"excludeByName": dict.fromkeys(exclude, True)}
    if order:
        options["indexByName"] = dict(order)
    return dm.DataTransformerConfig(id_val="organize", options=options)


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str, multi: bool = True, regex: str = "") -> dashboard.QueryVariable:
    variable = (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DS)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        variable = variable.all_value(".+")
    if regex:
        variable = variable.regex(regex)
    return variable


def job_variable(multi: bool) -> dashboard.QueryVariable:
    # query_result prints the labels in name order, so job_id comes before job_name: the id is the value,
    # the name is what the picker shows.
    return query_variable(
        "job",
        "Job",
        f"query_result(max by (job_id, job_name) (ingestion_job_state{{{SEL}}}))",
        multi,
        regex='/job_id="(?<value>[^"]*)".*job_name="(?<text>[^"]*)"/',
    )


def platform_target_variables(multi: bool) -> list[dashboard.QueryVariable]:
    return [
        query_variable("platform", "Platform", "label_values(ingestion_scrape_success, platform)", multi),
        query_variable(
            "target", "Target", 'label_values(ingestion_scrape_success{platform=~"$platform"}, target)', multi
        ),
    ]


def dashboard_of(
    uid: str,
    title: str,
    description: str,
    variables: Sequence[cogbuilder.Builder[dm.VariableModel]],
    panels: Sequence[cogbuilder.Builder[dm.Panel]],
) -> dm.Dashboard:
    """The dashboard with its panels laid out left to right, a new row each time 24 columns are full."""
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["ingestion-exporter"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .version(1)
        .refresh("30s")
        .time("now-6h", "now")
        .link(
            dashboard.DashboardLink("Ingestion dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["ingestion-exporter"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(datasource_variable())
    )
    for variable in variables:
        board = board.with_variable(variable)
    for kind in panels:
        board = board.with_panel(kind)
    built = board.build()
    for number, built_panel in enumerate(built.panels or [], start=1):
        built_panel.id_val = number
    return built


def state_code(family: str, selector: str, by: str) -> str:
    """One series whose value is the index of the current state in STATES, for timelines and stats."""
    # max, not sum: two exporter replicas scraped side by side must not add their codes up.
    return (
        "\n+ ".join(
            f'{code} * max by ({by}) ({family}{{{selector}, state="{state}"}})'
            for code, state in enumerate(STATES)
            if code
        )
        + "\n"
    )


def per_shard(family: str) -> str:
    """A target-level family's series, each with a `shard` label: the shard of the process that exposes it."""
    shard = 'count_values without () ("shard", ingestion_exporter_shard_ordinal)'
    return f"{family}{{{SEL}}} * on (job, instance) group_left (shard) {shard}"


def overview() -> dm.Dashboard:
    return dashboard_of(
        "ingestion-overview",
        "Ingestion jobs / Overview",
        "All ingestion and stream jobs across platforms: states, throughput, failed runs, readability.",
        [*platform_target_variables(multi=True), job_variable(multi=True)],
        [
            last_value(
                panel(
                    stat.Panel(),
                    "Jobs per platform",
                    "Jobs the exporter watches on each selected platform.",
                    [
                        target(
                            "count by (platform) "
                            f"(max by (platform, target, job_id) (ingestion_job_state{{{JOB_SEL}}}))",
                            "{{platform}}",
                        )
                    ],
                    w=4,
                    h=6,
                )
            ).orientation(cm.VizOrientation.HORIZONTAL),
            color_by_name(
                panel(
                    bargauge.Panel(),
                    "Jobs per state",
                    "How many jobs are in each normalized state now.",
                    [target(f"sum by (state) (ingestion_job_state{{{JOB_SEL}}})", "{{state}}", instant=True)],
                    h=6,
                ),
                STATE_COLORS,
            )
            .orientation(cm.VizOrientation.VERTICAL)
            .display_mode(cm.BarGaugeDisplayMode.BASIC)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"])),
            panel(
                table.Panel(),
                "Targets the exporter cannot read",
                "Each target with the worst scrape result of the last 15 minutes, of every exporter shard: "
                "'cannot read' means at least one upstream call failed; the exporter health dashboard shows why.",
                [
                    target(
                        f"min by (platform, target) (min_over_time(ingestion_scrape_success{{{SEL}}}[15m]))",
                        instant=True,
                        table=True,
                    )
                ],
                w=8,
                h=6,
            )
            .mappings(value_mapping({"0": ("cannot read", "red"), "1": ("ok", "green")}))
            .sort_by([common.TableSortByFieldState().display_name("Value").desc(False)])
            .override_by_name(
                "Value",
                [
                    dm.DynamicConfigValue(id_val="displayName", value="Status"),
                    dm.DynamicConfigValue(id_val="custom.cellOptions", value=cm.TableColoredBackgroundCellOptions()),
                ],
            )
            .with_transformation(organize(["Time"])),
            color_by_name(
                panel(
                    timeseries.Panel(),
                    "Jobs per state over time",
                    "Stacked count of jobs in each normalized state.",
                    [target(f"sum by (state) (ingestion_job_state{{{JOB_SEL}}})", "{{state}}")],
                    w=24,
                    h=7,
                ),
                STATE_COLORS,
            )
            .legend(legend(cm.LegendPlacement.RIGHT))
            .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL)),
            panel(
                table.Panel(),
                "Jobs",
                "Every job with its current normalized state and since when it has been in it "
                "(never earlier than the oldest data Prometheus holds). Click a row to open the job's detail.",
                [target(f"{STATE_SINCE}{{{JOB_SEL}}} * 1000", instant=True, table=True)],
                w=24,
                h=10,
            )
            .unit("dateTimeAsIso")
            .sort_by([common.TableSortByFieldState().display_name("Since").desc(True)])
            .override_by_name("Value", [dm.DynamicConfigValue(id_val="displayName", value="Since")])
            .override_by_name(
                "state",
                [
                    dm.DynamicConfigValue(
                        id_val="mappings",
                        value=value_mapping({state: (None, color) for state, color in STATE_COLORS.items()}),
                    ),
                    dm.DynamicConfigValue(id_val="custom.cellOptions", value=cm.TableColorTextCellOptions()),
                ],
            )
            .with_transformation(
                organize(
                    ["Time", "__name__", "job", "instance"],
                    {"platform": 0, "target": 1, "job_name": 2, "job_id": 3, "state": 4, "Value": 5},
                )
            )
            .data_links([dashboard.DashboardLink("Job detail").url(JOB_DETAIL_LINK)]),
            panel(
                timeseries.Panel(),
                "Records per second",
                "Records each job reads, from whatever counter its platform gives "
                "(recording rule ingestion:job_records:rate5m).",
                [target(f"{RECORDS_RATE}{{{JOB_SEL}}}", "{{platform}} {{target}} {{job_name}}")],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Bytes per second",
                "Bytes each job reads where its platform counts bytes (recording rule ingestion:job_bytes:rate5m).",
                [target(f"{BYTES_RATE}{{{JOB_SEL}}}", "{{platform}} {{target}} {{job_name}}")],
            ).unit("Bps"),
            panel(
                timeseries.Panel(),
                "Corrupted records per second",
                "Dirty records per stream, where the platform counts them.",
                [
                    target(
                        f"sum by (platform, target, job_name, stream, role) "
                        f"(rate(ingestion_stream_corrupted_records_total{{{JOB_SEL}}}[$__rate_interval]))",
                        "{{job_name}} {{role}} {{stream}}",
                    )
                ],
            ).unit("short"),
            failed_runs_per_job(),
        ],
    )


def failed_runs_per_job() -> table.Panel:
    """Every job with the runs that failed within the dashboard's time range, most first."""
    return (
        panel(
            table.Panel(),
            "Failed runs in the range",
            "Runs of each job that ended failed within the selected time range, including those restarted between "
            "two scrapes that no state shows (not counted: runs that ended before the exporter started). "
            "Click a row to open the job's detail.",
            [
                target(
                    f"max by (platform, target, job_id, job_name) "
                    f'(increase(ingestion_job_runs_total{{{JOB_SEL}, outcome="failed"}}[$__range]))',
                    instant=True,
                    table=True,
                )
            ],
        )
        .decimals(0)
        .sort_by([common.TableSortByFieldState().display_name("Failed runs").desc(True)])
        .override_by_name(
            "Value",
            [
                dm.DynamicConfigValue(id_val="displayName", value="Failed runs"),
                dm.DynamicConfigValue(id_val="custom.cellOptions", value=cm.TableColorTextCellOptions()),
            ],
        )
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dm.ThresholdsMode.ABSOLUTE)
            .steps([dm.Threshold(value=None, color="green"), dm.Threshold(value=0.5, color="red")])
        )
        .with_transformation(organize(["Time"], {"platform": 0, "target": 1, "job_name": 2, "job_id": 3, "Value": 4}))
        .data_links([dashboard.DashboardLink("Job detail").url(JOB_DETAIL_LINK)])
    )


def states_over_time(kind: statetimeline.Panel) -> statetimeline.Panel:
    """A state timeline coloured and named like the job states, equal neighbours merged."""
    return kind.mappings(state_mappings()).show_value(cm.VisibilityMode.AUTO).merge_values(True).legend(legend())


def node_table_columns() -> dm.DataTransformerConfig:
    """The Nodes table shows each node's own labels: the job's, the process's and the values are hidden."""
    job = ["platform", "target", "job_id", "job_name"]
    return organize(["Time", "__name__", "job", "instance", *job, "Value #A", "Value #B", "Value #C"])


def job_detail() -> dm.Dashboard:
    times = [
        ("Run started", "ingestion_job_start_timestamp_seconds"),
        ("Run ended", "ingestion_job_end_timestamp_seconds"),
        ("Deploy started", "ingestion_job_deploy_start_timestamp_seconds"),
        ("Deploy ended", "ingestion_job_deploy_end_timestamp_seconds"),
        ("Status updated", "ingestion_job_last_update_timestamp_seconds"),
        ("Last success", "ingestion_job_last_success_timestamp_seconds"),
        ("Last failure", "ingestion_job_last_failure_timestamp_seconds"),
    ]
    return dashboard_of(
        "ingestion-job",
        "Ingestion jobs / Job detail",
        "One job: state over time, runs and failures, nodes, topology, throughput, deploy and run times.",
        [*platform_target_variables(multi=False), job_variable(multi=False)],
        [
            panel(
                stat.Panel(),
                "State",
                "The job's normalized state now.",
                [target(state_code("ingestion_job_state", ONE_JOB, "job_id"), "state")],
                w=6,
                h=5,
            )
            .mappings(state_mappings())
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .color_mode(cm.BigValueColorMode.BACKGROUND),
            panel(
                stat.Panel(),
                "Vendor state",
                "The platform's own state value.",
                [target(f"ingestion_job_vendor_state{{{ONE_JOB}}} == 1", "{{vendor_state}}", instant=True)],
                w=6,
                h=5,
            )
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .text_mode(cm.BigValueTextMode.NAME)
            .color_mode(cm.BigValueColorMode.NONE),
            last_value(
                panel(
                    stat.Panel(),
                    "Deploy and run times",
                    "When the current run and its deployment started and ended, when the platform last updated the "
                    "status, and when the newest successful and failed runs it reports ended (absent where the "
                    "platform does not report them).",
                    [
                        target(f"{family}{{{ONE_JOB}}} * 1000", label, ref=chr(ord("A") + i))
                        for i, (label, family) in enumerate(times)
                    ],
                    w=12,
                    h=5,
                )
            ).unit("dateTimeAsIso"),
            states_over_time(
                panel(
                    statetimeline.Panel(),
                    "State over time",
                    "The job's normalized state over the selected time range.",
                    [target(state_code("ingestion_job_state", ONE_JOB, "job_id"), "{{job_id}}")],
                    w=24,
                    h=5,
                )
            ),
            color_by_name(
                panel(
                    timeseries.Panel(),
                    "Runs per outcome",
                    "Runs of the job that ended within the rate interval before each point, by outcome: failed "
                    "ones show even when the job was restarted between two scrapes; stopped means stopped or "
                    "aborted on purpose, unknown that a run was seen to end without a readable outcome. Runs that "
                    "ended before the exporter started are not counted.",
                    [
                        target(
                            f"max by (outcome) (increase(ingestion_job_runs_total{{{ONE_JOB}}}[$__rate_interval]))",
                            "{{outcome}}",
                        )
                    ],
                    w=24,
                    h=6,
                ),
                {outcome: STATE_COLORS[outcome] for outcome in OUTCOMES},
            ).unit("short"),
            states_over_time(
                panel(
                    statetimeline.Panel(),
                    "Node states",
                    "Each node's (operator's) normalized state, where the platform reports nodes.",
                    [target(state_code("ingestion_node_state", ONE_JOB, "node"), "{{node}}")],
                )
            ),
            panel(
                nodegraph.Panel(),
                "Topology",
                "The job's sources and targets and the data paths between them, where the "
                "platform describes them (Informatica).",
                [
                    target(
                        f'label_replace(label_replace(ingestion_node_info{{{ONE_JOB}}}, "id", "$1", "node", "(.*)"), '
                        f'"title", "$1", "node", "(.*)")',
                        ref="nodes",
                        instant=True,
                        table=True,
                    ),
                    target(
                        "label_replace(label_replace(label_join(ingestion_job_edge_info{" + ONE_JOB + '}, "id", "->", '
                        '"from_node", "to_node"), "source", "$1", "from_node", "(.*)"), "target", "$1", "to_node", '
                        '"(.*)")',
                        ref="edges",
                        instant=True,
                        table=True,
                    ),
                ],
            ).with_transformation(
                dm.DataTransformerConfig(id_val="organize", options={"renameByName": {"role": "subtitle"}})
            ),
            panel(
                table.Panel(),
                "Nodes",
                "Each node (operator) of the job with its normalized state and the platform's own value where it "
                "reports one.",
                [
                    target(f"ingestion_node_state{{{ONE_JOB}}} == 1", ref="A", instant=True, table=True),
                    target(f"ingestion_node_vendor_state{{{ONE_JOB}}}", ref="B", instant=True, table=True),
                    target(f"ingestion_node_info{{{ONE_JOB}}}", ref="C", instant=True, table=True),
                ],
            )
            .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(node_table_columns()),
            panel(
                timeseries.Panel(),
                "Node records per second",
                "Records per second each node reads and writes, and the speed the platform reports for it.",
                [
                    target(
                        f"rate(ingestion_node_read_records_total{{{ONE_JOB}}}[$__rate_interval])", "{{node}} read", "A"
                    ),
                    target(
                        f"rate(ingestion_node_written_records_total{{{ONE_JOB}}}[$__rate_interval])",
                        "{{node}} written",
                        "B",
                    ),
                    target(f"ingestion_node_records_per_second{{{ONE_JOB}}}", "{{node}} reported", "C"),
                    target(f"ingestion_node_buffered_records{{{ONE_JOB}}}", "{{node}} buffered", "D"),
                ],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Read and write rates",
                "Records per second the job reads and writes: the platform's "
                "own rates where it reports them, else the rate of its record counters.",
                [
                    target(f"ingestion_job_read_records_per_second{{{ONE_JOB}}}", "read (reported)", "A"),
                    target(f"ingestion_job_write_records_per_second{{{ONE_JOB}}}", "write (reported)", "B"),
                    target(f"rate(ingestion_job_read_records_total{{{ONE_JOB}}}[$__rate_interval])", "read", "C"),
                    target(f"rate(ingestion_job_written_records_total{{{ONE_JOB}}}[$__rate_interval])", "written", "D"),
                    target(f"rate(ingestion_job_records_total{{{ONE_JOB}}}[$__rate_interval])", "processed", "E"),
                ],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Bytes per second",
                "Bytes per second the job reads and writes, where the platform counts bytes.",
                [
                    target(f"rate(ingestion_job_read_bytes_total{{{ONE_JOB}}}[$__rate_interval])", "read", "A"),
                    target(f"rate(ingestion_job_written_bytes_total{{{ONE_JOB}}}[$__rate_interval])", "written", "B"),
                ],
            ).unit("Bps"),
            panel(
                timeseries.Panel(),
                "Stream records per second",
                "Records per second through each source and sink stream.",
                [
                    target(
                        f"sum by (stream, role) (rate(ingestion_stream_records_total{{{ONE_JOB}}}[$__rate_interval]))",
                        "{{role}} {{stream}}",
                    )
                ],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Stream corrupted records per second",
                "Dirty records per second on each stream.",
                [
                    target(
                        f"sum by (stream, role) "
                        f"(rate(ingestion_stream_corrupted_records_total{{{ONE_JOB}}}[$__rate_interval]))",
                        "{{role}} {{stream}}",
                    )
                ],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Node bytes per second",
                "Bytes per second each node reads and writes.",
                [
                    target(
                        f"rate(ingestion_node_read_bytes_total{{{ONE_JOB}}}[$__rate_interval])", "{{node}} read", "A"
                    ),
                    target(
                        f"rate(ingestion_node_written_bytes_total{{{ONE_JOB}}}[$__rate_interval])",
                        "{{node}} written",
                        "B",
                    ),
                ],
            ).unit("Bps"),
            panel(
                timeseries.Panel(),
                "Errors and aborts",
                "Error messages the job's run reports, and whether an abort was requested (Siren).",
                [
                    target(f"ingestion_job_error_messages{{{ONE_JOB}}}", "error messages", "A"),
                    target(f"ingestion_job_aborting{{{ONE_JOB}}}", "aborting", "B"),
                ],
            ).unit("short"),
            panel(
                table.Panel(),
                "Job details",
                "Descriptive labels of the job and its current run.",
                [target(f"ingestion_job_info{{{ONE_JOB}}}", instant=True, table=True)],
                w=24,
                h=5,
            ).with_transformation(organize(["Time", "Value", "__name__", "job", "instance"])),
        ],
    )


def exporter_health() -> dm.Dashboard:
    per_shard_panels = [
        panel(
            timeseries.Panel(),
            title,
            description,
            [target(aggregation, "{{job}} shard {{shard}}")],
            w=10,
        ).unit(unit)
        for title, description, aggregation, unit in (
            (
                "Scrape duration per shard",
                "Wall time of each exporter shard's slowest target collection: a shard far above the others has "
                "more than its share of the work.",
                f"max by (job, shard) ({per_shard('ingestion_scrape_duration_seconds')})",
                "s",
            ),
            (
                "Jobs per shard",
                "Jobs each shard collects, of the selected targets.",
                f"sum by (job, shard) ({per_shard('ingestion_jobs_discovered')})",
                "short",
            ),
        )
    ]
    return dashboard_of(
        "ingestion-exporter-health",
        "Ingestion jobs / Exporter health",
        "Is the exporter reading every target: scrape results, upstream calls, latency and errors.",
        platform_target_variables(multi=True),
        [
            panel(
                statetimeline.Panel(),
                "Scrape success per target",
                "Whether every upstream call for the target succeeded, on every exporter shard.",
                [target(f"min by (platform, target) (ingestion_scrape_success{{{SEL}}})", "{{platform}} {{target}}")],
                w=24,
                h=6,
            )
            .mappings(value_mapping({"0": ("failing", "red"), "1": ("ok", "green")}))
            .show_value(cm.VisibilityMode.NEVER)
            .merge_values(True)
            .legend(legend()),
            panel(
                timeseries.Panel(),
                "Scrape duration per target",
                "Wall time each target's collection took (the slowest exporter shard's).",
                [
                    target(
                        f"max by (platform, target) (ingestion_scrape_duration_seconds{{{SEL}}})",
                        "{{platform}} {{target}}",
                    )
                ],
            ).unit("s"),
            panel(
                timeseries.Panel(),
                "Jobs discovered",
                "Jobs the exporter knows per target (all its shards together).",
                [target(f"sum by (platform, target) (ingestion_jobs_discovered{{{SEL}}})", "{{platform}} {{target}}")],
            ).unit("short"),
            panel(
                timeseries.Panel(),
                "Upstream requests per second",
                "Upstream HTTP requests by endpoint and outcome.",
                [
                    target(
                        f"sum by (platform, target, endpoint, outcome) "
                        f"(rate(ingestion_upstream_requests_total{{{SEL}}}[$__rate_interval]))",
                        "{{target}} {{endpoint}} {{outcome}}",
                    )
                ],
            ).unit("reqps"),
            panel(
                timeseries.Panel(),
                "Upstream latency (p50, p95)",
                "Quantiles of upstream request latency per endpoint.",
                [
                    target(
                        f"histogram_quantile({q}, sum by (le, platform, target, endpoint) "
                        f"(rate(ingestion_upstream_request_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                        f"p{int(q * 100)} {{{{target}}}} {{{{endpoint}}}}",
                        ref,
                    )
                    for ref, q in (("A", 0.5), ("B", 0.95))
                ],
            ).unit("s"),
            panel(
                timeseries.Panel(),
                "Errors per second by reason",
                "Upstream errors met while collecting, by classified reason "
                "(auth, timeout, connection, http_status, rate_limited, invalid_response).",
                [
                    target(
                        "sum by (platform, target, reason) "
                        f"(rate(ingestion_scrape_errors_total{{{SEL}}}[$__rate_interval]))",
                        "{{target}} {{reason}}",
                    )
                ],
            ).unit("short"),
            panel(
                table.Panel(),
                "Exporter builds",
                "Version of each exporter process (each shard) Prometheus scrapes.",
                [target("ingestion_exporter_build_info", instant=True, table=True)],
            ).with_transformation(organize(["Time", "Value", "__name__"])),
            last_value(
                panel(
                    stat.Panel(),
                    "Shards up",
                    "Shards of each exporter (scrape job) Prometheus scrapes, of the total its processes were started "
                    "with; an unsharded exporter is one shard of one.",
                    [target(SHARDS_UP, "{{job}} up", "A"), target(TOTAL_SHARDS, "{{job}} total", "B")],
                    w=4,
                )
            ).unit("short"),
            *per_shard_panels,
        ],
    )


def dashboards() -> dict[str, dm.Dashboard]:
    return {
        "ingestion-overview.json": overview(),
        "ingestion-job-detail.json": job_detail(),
        "ingestion-exporter-health.json": exporter_health(),
    }


def dashboard_json(board: dm.Dashboard) -> str:
    return json.dumps(board, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


# --- command line ---------------------------------------------------------------------------------------


def outputs(p: Mapping[str, str], rules_out: Path, dashboards_dir: Path) -> dict[Path, str]:
    files = {rules_out: rules_yaml(p)}
    files.update({dashboards_dir / name: dashboard_json(doc) for name, doc in dashboards().items()})
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a threshold: " + ", ".join(THRESHOLDS),
    )
    parser.add_argument("--rules-out", type=Path, default=RULES_FILE)
    parser.add_argument("--dashboards-dir", type=Path, default=DASHBOARDS_DIR)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    try:
        p = parameters(dict(item.split("=", 1) for item in args.overrides))
    except ValueError as problem:
        parser.error(str(problem))
    stale = []
    for path, text in outputs(p, args.rules_out, args.dashboards_dir).items():
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python grafana/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
