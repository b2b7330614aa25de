"""The Helm chart: it renders, lints and validates for its defaults and every ci/*-values.yaml, carries the
shipped alert rules and dashboards unchanged, never leaks a credential outside its Secret, and runs hardened.
Without sharding it renders its golden files byte for byte; with sharding, a StatefulSet of shards, each started
as its own shard, every one of them scraped.

Rendering and linting use Helm's own library (helm-python-sdk), manifests are checked against the Kubernetes
API schemas (kubernetes-validate, strict: unknown fields fail), the Prometheus Operator's objects (which
kubernetes-validate has no schema for) against the fields and formats of their CRDs, and values against
values.schema.json (check-jsonschema, and Helm's own schema check).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "ingestion-exporter"
ALERTS = ROOT / "grafana" / "alerts"
DASHBOARDS = ROOT / "grafana" / "dashboards"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.37.0"
RELEASE, NAMESPACE = "ie", "monitoring"
OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}  # CRDs: kubernetes-validate has no schema for them

UNSHARDED_CI_VALUES = [
    path for path in CI_VALUES if not (yaml.safe_load(path.read_text()) or {}).get("sharding", {}).get("enabled")
]
VALUES_CASES = [pytest.param({}, id="chart-defaults")] + [
    pytest.param(yaml.safe_load(path.read_text()) or {}, id=path.name) for path in CI_VALUES
]


GOLDEN = ROOT / "tests" / "golden" / "helm"
# Templates whose body is a grafana/ file, compared with those files by their own tests; the golden renders
# leave them out so that editing a rule or a dashboard does not touch the goldens.
FILE_BACKED = {"ingestion-exporter/templates/dashboards.yaml", "ingestion-exporter/templates/prometheusrule.yaml"}


@cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render(values: dict[str, Any]) -> dict[str, str]:
    """Template path -> rendered text, NOTES.txt included; empty templates dropped."""
    out = _chart().render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path: text for path, text in out.items() if text.strip()}


def objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path, text in render(values).items():
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


# The fields of the Prometheus Operator's monitoring.coreos.com/v1 CRDs that the chart may emit.
DURATION = re.compile(r"^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$")
OPERATOR_FIELDS = {
    "metadata": {"name", "namespace", "labels", "annotations"},
    "ServiceMonitor": {"jobLabel", "selector", "namespaceSelector", "endpoints"},
    "endpoint": {
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "tlsConfig",
        "basicAuth",
        "relabelings",
        "metricRelabelings",
    },
    "PrometheusRule": {"groups"},
    "group": {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"},
    "rule": {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"},
}


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def validate_operator_object(doc: dict[str, Any]) -> None:
    """A ServiceMonitor or PrometheusRule: only fields its CRD has, with the types and formats it requires."""
    kind = doc["kind"]
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["metadata"]) <= OPERATOR_FIELDS["metadata"]
    assert _string_map(doc["metadata"]["labels"])
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
    spec = doc["spec"]
    assert set(spec) <= OPERATOR_FIELDS[kind]
    if kind == "ServiceMonitor":
        assert _string_map(spec["selector"]["matchLabels"])
        assert spec["endpoints"]
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= OPERATOR_FIELDS["endpoint"]
            assert isinstance(endpoint["port"], str) and endpoint["path"].startswith("/")
            assert endpoint["scheme"] in ("http", "https") and isinstance(endpoint["honorLabels"], bool)
            for key in ("interval", "scrapeTimeout"):
                assert DURATION.match(endpoint.get(key, "0")), key
            for selector in endpoint.get("basicAuth", {}).values():  # username/password: SecretKeySelectors
                assert set(selector) <= {"name", "key", "optional"} and selector["name"] and selector["key"]
    else:
        for group in spec["groups"]:
            assert set(group) <= OPERATOR_FIELDS["group"] and isinstance(group["name"], str) and group["name"]
            for rule in group["rules"]:
                assert set(rule) <= OPERATOR_FIELDS["rule"]
                assert ("alert" in rule) != ("record" in rule)
                assert isinstance(rule["expr"], (str, int)) and str(rule["expr"]).strip()
                assert DURATION.match(rule.get("for", "0")) and DURATION.match(rule.get("keep_firing_for", "0"))
                assert _string_map(rule.get("labels", {})) and _string_map(rule.get("annotations", {}))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def ci_values(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "ci" / name).read_text())
    return loaded


def test_ci_values_cover_the_required_cases() -> None:
    names = {path.name for path in CI_VALUES}
    assert {
        "default-values.yaml",
        "existingsecret-values.yaml",
        "monitoring-values.yaml",
        "networkpolicy-values.yaml",
        "webconfig-values.yaml",
        "sharding-values.yaml",
    } <= names
    monitoring = ci_values("monitoring-values.yaml")
    assert all(monitoring[key]["enabled"] for key in ("serviceMonitor", "prometheusRule", "dashboards"))
    assert ci_values("existingsecret-values.yaml")["existingSecret"]
    assert ci_values("networkpolicy-values.yaml")["networkPolicy"]["enabled"]
    web = ci_values("webconfig-values.yaml")["webConfig"]
    assert web["tls"]["existingSecret"] and web["config"]["basic_auth_users"]
    sharding = ci_values("sharding-values.yaml")
    assert sharding["sharding"]["enabled"] and sharding["sharding"]["shards"] > 1
    assert sharding["serviceMonitor"]["enabled"]


@pytest.mark.parametrize("values", VALUES_CASES)
def test_lint_finds_no_warning(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == []


@pytest.mark.parametrize("path", UNSHARDED_CI_VALUES, ids=lambda p: p.name)
def test_unsharded_render_equals_the_golden_render(path: Path) -> None:
    """Without sharding, every template renders byte for byte as the golden file holds it (NOTES.txt included);
    ci/default-values.yaml is the chart's defaults. UPDATE_GOLDEN=1 rewrites the goldens after a deliberate change."""
    values = yaml.safe_load(path.read_text()) or {}
    golden = GOLDEN / f"{path.name.removesuffix('.yaml')}.txt"
    rendered = "".join(
        f"# Source: {path}\n{text}\n" for path, text in sorted(render(values).items()) if path not in FILE_BACKED
    )
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text()


def test_lint_reports_values_that_break_the_schema() -> None:
    report = helm.lint(CHART, {"port": "http"}, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] or any(m["severity"] >= 2 for m in report["messages"])


@pytest.mark.parametrize("values", VALUES_CASES)
def test_every_manifest_validates_against_kubernetes(values: dict[str, Any]) -> None:
    docs = objects(values)
    kinds = [doc["kind"] for doc in docs]
    assert {"Service", "ServiceAccount", "ConfigMap"} <= set(kinds)
    workloads = [kind for kind in kinds if kind in {"Deployment", "StatefulSet", "PodDisruptionBudget"}]
    sharded = values.get("sharding", {}).get("enabled", False)
    assert sorted(workloads) == (["PodDisruptionBudget", "StatefulSet"] if sharded else ["Deployment"])
    for doc in docs:
        if doc["kind"] in OPERATOR_KINDS:
            validate_operator_object(doc)
        else:
            assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("path", [CHART / "values.yaml", *CI_VALUES], ids=lambda p: p.name)
def test_values_files_match_the_schema(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", str(CHART / "values.schema.json"), str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    _chart().validate_schema(yaml.safe_load(path.read_text()) or {})


def test_schema_is_a_valid_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--check-metaschema", str(CHART / "values.schema.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"config": {"targets": [{"name": "t", "platform": "siren", "password": "x"}]}}, id="inline"),
        pytest.param({"servicemonitor": {"enabled": True}}, id="misspelt-key"),
        pytest.param({"secrets": {"a/b": "x"}}, id="secret-file-name"),
        pytest.param({"telemetryPath": "/healthz"}, id="telemetry-path"),
        pytest.param({"sharding": {"enabled": True, "shards": 0}}, id="zero-shards"),
        pytest.param({"sharding": {"shards": "3"}}, id="shards-as-text"),
        pytest.param({"sharding": {"podDisruptionBudget": {"maxUnavailable": "half"}}}, id="pdb-max-unavailable"),
        pytest.param({"sharding": {"enabled": True}, "service": {"type": "LoadBalancer"}}, id="sharded-load-balancer"),
    ],
)
def test_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        _chart().validate_schema(values)


def test_default_pod_runs_as_non_root_read_only_without_capabilities() -> None:
    docs = objects({})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    main = container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = main["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in context
    assert main["resources"] == {}
    assert pod["automountServiceAccountToken"] is False


def test_probes_use_healthz_for_liveness_and_readyz_for_readiness() -> None:
    main = container(objects({}))
    port_names = {port["name"] for port in main["ports"]}
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {main["livenessProbe"]["httpGet"]["port"], main["readinessProbe"]["httpGet"]["port"]} <= port_names


def test_exporter_reads_the_config_map_it_mounts() -> None:
    values = ci_values("existingsecret-values.yaml")
    docs = objects(values)
    main = container(docs)
    flag = next(arg for arg in main["args"] if arg.startswith("--config.file="))
    config_file = Path(flag.split("=", 1)[1])
    mount = next(m for m in main["volumeMounts"] if m["mountPath"] == str(config_file.parent))
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    config_map = one(docs, "ConfigMap")
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert yaml.safe_load(config_map["data"][config_file.name]) == values["config"]
    assert "--web.listen-address=:9867" in main["args"]


def pod_checksum(values: dict[str, Any], key: str) -> str:
    """The Deployment's pod annotation `checksum/<key>`: when it changes, the pod rolls."""
    annotations = one(objects(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
    return str(annotations[f"checksum/{key}"])


def test_config_change_rolls_the_pod() -> None:
    base = ci_values("existingsecret-values.yaml")
    changed = json.loads(json.dumps(base))
    changed["config"]["min_interval_seconds"] = 30
    assert pod_checksum(base, "config") == pod_checksum(base, "config")
    assert pod_checksum(base, "config") != pod_checksum(changed, "config")


def test_existing_secret_is_mounted_and_no_secret_is_created() -> None:
    values = ci_values("existingsecret-values.yaml")
    docs = objects(values)
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == values["existingSecret"]
    mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == volume["name"])
    assert mount == {"name": volume["name"], "mountPath": "/etc/ingestion-exporter/secrets", "readOnly": True}


def test_chart_secret_holds_the_credential_files() -> None:
    values = ci_values("monitoring-values.yaml")
    docs = objects(values)
    secret = one(docs, "Secret")
    decoded = {name: base64.b64decode(data).decode() for name, data in secret["data"].items()}
    assert decoded == values["secrets"]
    volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    for target in values["config"]["targets"]:
        for key, path in target.items():
            if key.endswith("_file"):
                assert Path(path).parent == Path("/etc/ingestion-exporter/secrets")
                assert Path(path).name in secret["data"]


def _secret_forms(value: str) -> set[str]:
    raw = value.encode()
    return {value, base64.b64encode(raw).decode(), json.dumps(value)[1:-1]}


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(ci_values("monitoring-values.yaml"), id="monitoring-values.yaml"),
        pytest.param({**ci_values("monitoring-values.yaml"), "existingSecret": "elsewhere"}, id="with-existing-secret"),
        pytest.param({"secrets": {"pw": "s3cr3t-value-1", "token": "tok-value-2"}, "demo": True}, id="demo"),
    ],
)
def test_no_secret_value_is_rendered_outside_a_secret(values: dict[str, Any]) -> None:
    forms = set().union(*(_secret_forms(str(v)) for v in values["secrets"].values()))
    for path, text in render(values).items():
        docs = list(yaml.safe_load_all(text)) if path.endswith(".yaml") else [text]
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                continue
            dumped = doc if isinstance(doc, str) else json.dumps(doc)
            leaked = [form for form in forms if form in dumped]
            assert not leaked, f"{path} carries a secret value"


def test_scrape_annotations_without_service_monitor() -> None:
    docs = objects({})
    annotations = one(docs, "Service")["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container(docs)["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    assert "ServiceMonitor" not in {doc["kind"] for doc in docs}


def test_service_monitor_scrapes_the_service() -> None:
    docs = objects(ci_values("monitoring-values.yaml"))
    service = one(docs, "Service")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert "prometheus.io/scrape" not in service["metadata"].get("annotations", {})
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "ingestion-exporter"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "20s")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(monitor["spec"]) <= {"jobLabel", "selector", "namespaceSelector", "endpoints"}
    assert endpoint["scheme"] == "http"
    assert set(endpoint) <= {
        "port",
        "path",
        "scheme",
        "interval",
        "scrapeTimeout",
        "honorLabels",
        "tlsConfig",
        "relabelings",
        "metricRelabelings",
    }


def test_chart_links_to_the_grafana_folders_instead_of_copying_them() -> None:
    for name, source in (("alerts", ALERTS), ("dashboards", DASHBOARDS)):
        link = CHART / "files" / name
        assert link.is_symlink(), f"{link} must be a symbolic link to {source}, not a copy"
        assert link.resolve() == source.resolve()


def test_prometheus_rule_equals_the_grafana_rule_files() -> None:
    rule_files = sorted(ALERTS.glob("*.rules.yml"))
    assert rule_files, "grafana/alerts/*.rules.yml: no rule files"
    expected = [group for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]]
    docs = objects(ci_values("monitoring-values.yaml"))
    rule = one(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == expected
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item) and item["expr"]


def test_additional_rule_groups_follow_the_shipped_ones() -> None:
    extra = {"name": "site.rules", "rules": [{"alert": "SiteExtra", "expr": "vector(1)"}]}
    docs = objects({"prometheusRule": {"enabled": True, "additionalRuleGroups": [extra]}})
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    assert groups[-1] == extra
    assert len(groups) > 1


def test_dashboard_config_maps_equal_the_grafana_dashboards() -> None:
    files = {path.name: path.read_text() for path in sorted(DASHBOARDS.glob("*.json"))}
    assert files, "grafana/dashboards/*.json: no dashboards"
    values = ci_values("monitoring-values.yaml")
    maps = [
        doc
        for doc in objects(values)
        if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    rendered: dict[str, str] = {}
    for config_map in maps:
        assert config_map["metadata"]["namespace"] == values["dashboards"]["namespace"]
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Ingestion"}
        assert len(config_map["data"]) == 1
        rendered.update(config_map["data"])
    assert rendered == files
    for text in rendered.values():
        assert json.loads(text)["uid"]


def test_monitoring_objects_are_off_by_default() -> None:
    kinds = [doc["kind"] for doc in objects({})]
    assert not OPERATOR_KINDS & set(kinds)
    assert "NetworkPolicy" not in kinds
    assert kinds.count("ConfigMap") == 1


def test_network_policy_admits_scrapes_on_the_metrics_port_only() -> None:
    values = ci_values("networkpolicy-values.yaml")
    docs = objects(values)
    policy = one(docs, "NetworkPolicy")["spec"]
    assert (
        policy["podSelector"]["matchLabels"].items()
        <= one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == values["networkPolicy"]["ingressFrom"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 53, "protocol": "UDP"} in policy["egress"][0]["ports"]
    assert policy["egress"][1:] == values["networkPolicy"]["egress"]["rules"]


def test_demo_mode_passes_demo_and_no_config_file() -> None:
    args = container(objects({"demo": True}))["args"]
    assert "--demo" in args
    assert not [arg for arg in args if arg.startswith("--config.file")]


def test_notes_warn_when_no_target_is_configured() -> None:
    assert "config.targets is empty" in render({})["ingestion-exporter/templates/NOTES.txt"]
    notes = render(ci_values("existingsecret-values.yaml"))["ingestion-exporter/templates/NOTES.txt"]
    assert "config.targets is empty" not in notes
    assert "ingestion-exporter-credentials" in notes


def _documented_keys() -> list[str]:
    """Dotted paths of the values that carry a comment in values.yaml; the keys inside a commented map need none."""
    keys: list[str] = []
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in (CHART / "values.yaml").read_text().splitlines():
        match = re.match(r"^( *)([A-Za-z_][\w.-]*):(.*)$", line)
        if match:
            indent = len(match[1])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([key for _, key in stack] + [match[2]])
            commented = previous.lstrip().startswith("#") and len(previous) - len(previous.lstrip()) == indent
            covered = any(path.startswith(key + ".") for key in keys)
            leaf = match[3].strip() != ""
            if commented:
                keys.append(path)
            elif leaf and not covered:
                raise AssertionError(f"values.yaml: {path} has no comment")
            stack.append((indent, match[2]))
        if line.strip():
            previous = line
    return keys


def test_every_value_is_commented_and_in_the_readme_table() -> None:
    documented = _documented_keys()
    assert "config.targets" in documented and "image.repository" in documented
    readme = (CHART / "README.md").read_text()
    table = re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE)
    assert sorted(table) == sorted(documented)


WEB_CONFIG_FLAG = "--web.config.file="
OTHER_HASH = "$2b$10$xzbFqIepodAdeAIcFmfjHev2zDNPT10EvKfNklKvvAZaQQ2Ok0xVi"  # bcrypt of a throw-away password


def _web_config_parts(docs: list[dict[str, Any]]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(web-config file path from the flag, the volume mounted at its directory, the matching volume mount)."""
    (flag,) = [arg for arg in container(docs)["args"] if arg.startswith(WEB_CONFIG_FLAG)]
    path = Path(flag.removeprefix(WEB_CONFIG_FLAG))
    mount = next(m for m in container(docs)["volumeMounts"] if m["mountPath"] == str(path.parent))
    volumes = one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    volume = next(v for v in volumes if v["name"] == mount["name"])
    return str(path), volume, mount


def test_web_config_is_off_by_default() -> None:
    docs = objects({})
    main = container(docs)
    assert not [arg for arg in main["args"] if arg.startswith("--web.config")]
    assert "Secret" not in {doc["kind"] for doc in docs}
    assert "scheme" not in main["livenessProbe"]["httpGet"] and "scheme" not in main["readinessProbe"]["httpGet"]
    assert one(docs, "Service")["metadata"]["annotations"]["prometheus.io/scheme"] == "http"
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/web-config" not in annotations


def test_web_config_is_rendered_into_a_secret_and_mounted_for_the_flag(tmp_path: Path) -> None:
    from exporter.webconfig import WebConfigModel

    values = ci_values("webconfig-values.yaml")
    docs = objects(values)
    path, volume, mount = _web_config_parts(docs)
    assert mount["readOnly"] is True
    secrets = [doc for doc in docs if doc["kind"] == "Secret"]
    (secret,) = [doc for doc in secrets if doc["metadata"]["name"] == volume["secret"]["secretName"]]
    assert secret["type"] == "Opaque"
    assert Path(path).name in secret["data"]
    rendered = yaml.safe_load(base64.b64decode(secret["data"][Path(path).name]))
    # The chart's content plus cert_file/key_file from the mounted kubernetes.io/tls Secret.
    tls_mount = next(m for m in container(docs)["volumeMounts"] if m["name"] == "tls")
    tls_volume = next(v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == values["webConfig"]["tls"]["existingSecret"]
    assert tls_mount["readOnly"] is True
    server = rendered["tls_server_config"]
    assert server.pop("cert_file") == f"{tls_mount['mountPath']}/tls.crt"
    assert server.pop("key_file") == f"{tls_mount['mountPath']}/tls.key"
    assert rendered == values["webConfig"]["config"]
    # The exporter accepts what the chart renders (with its certificate files present).
    (tmp_path / "tls.crt").write_text("cert")
    (tmp_path / "tls.key").write_text("key")
    server.update(cert_file=str(tmp_path / "tls.crt"), key_file=str(tmp_path / "tls.key"))
    WebConfigModel.model_validate(rendered)


def test_web_config_never_leaves_its_secret() -> None:
    values = ci_values("webconfig-values.yaml")
    web_config = values["webConfig"]["config"]
    forms: set[str] = set()
    for user, hashed in web_config["basic_auth_users"].items():
        forms |= _secret_forms(hashed) | _secret_forms(yaml.safe_dump({user: hashed}).strip())
    (web_secret,) = [doc for doc in objects(values) if doc["kind"] == "Secret"]
    forms |= _secret_forms(base64.b64decode(web_secret["data"]["web-config.yml"]).decode())
    seen_in_secret = False
    for path, text in render(values).items():
        docs = list(yaml.safe_load_all(text)) if path.endswith(".yaml") else [text]
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                decoded = "".join(base64.b64decode(v).decode() for v in doc.get("data", {}).values())
                seen_in_secret |= "basic_auth_users" in decoded
                continue
            dumped = doc if isinstance(doc, str) else json.dumps(doc)
            assert not [form for form in forms if form in dumped], f"{path} carries the web config"
    assert seen_in_secret
    config_maps = [json.dumps(doc) for doc in objects(values) if doc["kind"] == "ConfigMap"]
    assert config_maps and not [text for text in config_maps if "basic_auth_users" in text or "web-config" in text]


def test_probes_use_https_with_tls_and_stay_unauthenticated() -> None:
    main = container(objects(ci_values("webconfig-values.yaml")))
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main[probe]["httpGet"]
        assert get["scheme"] == "HTTPS" and get["path"] == path
        assert "httpHeaders" not in get  # /healthz and /readyz are open by design: no credentials in the pod spec


def test_scrape_switches_to_https_with_tls() -> None:
    values = ci_values("webconfig-values.yaml")
    (endpoint,) = one(objects(values), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["basicAuth"] == values["serviceMonitor"]["basicAuth"]
    assert endpoint["tlsConfig"] == values["serviceMonitor"]["tlsConfig"]
    without_monitor = {**values, "serviceMonitor": {"enabled": False}}
    annotations = one(objects(without_monitor), "Service")["metadata"]["annotations"]
    assert annotations["prometheus.io/scheme"] == "https"
    forced = {**values, "serviceMonitor": {"enabled": True, "scheme": "http"}}
    (endpoint,) = one(objects(forced), "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "http" and "basicAuth" not in endpoint


def test_web_config_change_rolls_the_pod() -> None:
    base = ci_values("webconfig-values.yaml")
    changed = json.loads(json.dumps(base))
    changed["webConfig"]["config"]["basic_auth_users"]["grafana"] = OTHER_HASH
    other_tls = json.loads(json.dumps(base))
    other_tls["webConfig"]["tls"]["existingSecret"] = "renewed-tls"
    assert pod_checksum(base, "web-config") == pod_checksum(base, "web-config")
    assert len({pod_checksum(values, "web-config") for values in (base, changed, other_tls)}) == 3


def test_web_config_from_an_existing_secret_creates_no_secret() -> None:
    values = {"demo": True, "webConfig": {"existingSecret": "site-web-config"}}
    docs = objects(values)
    assert "Secret" not in {doc["kind"] for doc in docs}
    path, volume, _ = _web_config_parts(docs)
    assert volume["secret"]["secretName"] == "site-web-config"
    assert [item["key"] for item in volume["secret"]["items"]] == [Path(path).name] == ["web-config.yml"]
    main = container(docs)
    assert "scheme" not in main["livenessProbe"]["httpGet"]  # no TLS Secret: plain HTTP, perhaps basic auth
    assert "tls" not in {m["name"] for m in main["volumeMounts"]}


def test_basic_auth_alone_keeps_plain_http_probes() -> None:
    values = {"demo": True, "webConfig": {"config": {"basic_auth_users": {"prometheus": OTHER_HASH}}}}
    docs = objects(values)
    _web_config_parts(docs)
    main = container(docs)
    assert "scheme" not in main["readinessProbe"]["httpGet"]
    assert one(docs, "Service")["metadata"]["annotations"]["prometheus.io/scheme"] == "http"


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            {"webConfig": {"config": {"basic_auth_users": {"prometheus": "$2y$10$short"}}}}, id="cleartext-password"
        ),
        pytest.param({"webConfig": {"config": {"rate_limit": {"interval": "1s"}}}}, id="unsupported-key"),
        pytest.param({"webConfig": {"tls": {"secretName": "x"}}}, id="misspelt-tls-key"),
        pytest.param({"serviceMonitor": {"basicAuth": {"username": {"name": "s"}}}}, id="basic-auth-without-key"),
    ],
)
def test_schema_refuses_bad_web_config_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        _chart().validate_schema(values)


# --- sharding --------------------------------------------------------------------------------------------------

POD_NAME_ENV = {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
FROM_POD_NAME = "--shard.from-pod-name=$(POD_NAME)"


def sharded(values: dict[str, Any], shards: int) -> dict[str, Any]:
    return {**values, "sharding": {"enabled": True, "shards": shards}}


def shard_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = main
    return result


def test_sharding_renders_a_parallel_stateful_set_of_shards_instead_of_the_deployment() -> None:
    values = ci_values("sharding-values.yaml")
    shards = values["sharding"]["shards"]
    docs = objects(values)
    assert "Deployment" not in {doc["kind"] for doc in docs}
    stateful_set = one(docs, "StatefulSet")["spec"]
    service = one(docs, "Service")
    assert stateful_set["podManagementPolicy"] == "Parallel"
    assert stateful_set["replicas"] == shards
    assert stateful_set["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert stateful_set["selector"]["matchLabels"].items() <= stateful_set["template"]["metadata"]["labels"].items()
    main = shard_container(docs)
    assert POD_NAME_ENV in main["env"]
    assert FROM_POD_NAME in main["args"] and f"--total-shards={shards}" in main["args"]


def test_each_shard_pod_starts_the_exporter_as_its_own_shard() -> None:
    from exporter.cli import parse_args

    docs = objects(ci_values("sharding-values.yaml"))
    stateful_set = one(docs, "StatefulSet")
    shards = stateful_set["spec"]["replicas"]
    main = shard_container(docs)
    started = []
    for ordinal in range(shards):
        pod_name = f"{stateful_set['metadata']['name']}-{ordinal}"  # a StatefulSet's pods: <name>-<ordinal>
        env = {item["name"]: pod_name for item in main["env"] if item.get("valueFrom") == POD_NAME_ENV["valueFrom"]}
        # Kubernetes expands $(NAME) in args from the container's environment.
        args = parse_args([re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], arg) for arg in main["args"]])
        started.append((args.shard, args.total_shards))
    assert started == [(ordinal, shards) for ordinal in range(shards)]


@pytest.mark.parametrize(
    "values",
    [pytest.param(yaml.safe_load(path.read_text()) or {}, id=path.name) for path in UNSHARDED_CI_VALUES]
    + [pytest.param({"demo": True, "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]}, id="extra-env")],
)
def test_shard_pod_is_the_unsharded_pod_with_the_shard_flags(values: dict[str, Any]) -> None:
    pod = one(objects(values), "Deployment")["spec"]["template"]
    shard_pod = one(objects(sharded(values, 4)), "StatefulSet")["spec"]["template"]
    (main,) = shard_pod["spec"]["containers"]
    main["args"].remove(FROM_POD_NAME)
    main["args"].remove("--total-shards=4")
    assert main["env"].pop(0) == POD_NAME_ENV  # first, so that the chart's `env` may use $(POD_NAME) too
    if not main["env"]:
        del main["env"]
    assert shard_pod == pod


def test_changing_the_shards_rolls_every_pod_with_the_new_total() -> None:
    three, five = (one(objects(sharded({"demo": True}, n)), "StatefulSet")["spec"] for n in (3, 5))
    assert (three["replicas"], five["replicas"]) == (3, 5)
    (main,) = three["template"]["spec"]["containers"]
    main["args"][main["args"].index("--total-shards=3")] = "--total-shards=5"
    assert three["template"] == five["template"]  # the flag alone differs, and a new pod template rolls every pod


def test_the_monitor_scrapes_every_shard_through_the_headless_service() -> None:
    values = ci_values("sharding-values.yaml")
    docs = objects(values)
    service = one(docs, "Service")  # the only Service: each shard is scraped once
    monitor = one(docs, "ServiceMonitor")
    pod_labels = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()  # every shard pod is an endpoint
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "ingestion-exporter"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] in {port["name"] for port in shard_container(docs)["ports"]}
    annotated = one(objects({**values, "serviceMonitor": {"enabled": False}}), "Service")
    assert annotated["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert annotated["metadata"]["name"] == service["metadata"]["name"]


@pytest.mark.parametrize("max_unavailable", [1, "50%"])
def test_disruption_budget_covers_the_shards(max_unavailable: int | str) -> None:
    values = {"demo": True, "sharding": {"enabled": True, "podDisruptionBudget": {"maxUnavailable": max_unavailable}}}
    _chart().validate_schema(values)
    docs = objects(values)
    budget = one(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == max_unavailable
    assert budget["spec"]["selector"] == one(docs, "StatefulSet")["spec"]["selector"]
    assert kubernetes_validate.validate(budget, KUBE_VERSION, strict=True)


def test_sharded_names_stay_within_kubernetes_limits() -> None:
    docs = objects({"demo": True, "fullnameOverride": "x" * 63, "sharding": {"enabled": True}})
    stateful_set, service = one(docs, "StatefulSet"), one(docs, "Service")
    # Kubernetes labels each pod controller-revision-hash=<name>-<10-character hash>, a 63-character label value.
    assert len(stateful_set["metadata"]["name"]) <= 52
    assert len(service["metadata"]["name"]) <= 63 and service["metadata"]["name"].endswith("-headless")
    assert stateful_set["spec"]["serviceName"] == service["metadata"]["name"]
    for doc in (stateful_set, service):
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_notes_tell_that_every_shard_is_scraped() -> None:
    notes = render(ci_values("sharding-values.yaml"))["ingestion-exporter/templates/NOTES.txt"]
    assert "port-forward pod/ie-ingestion-exporter-0 " in notes
    assert "--total-shards=3" in notes and "scrape every pod" in notes
    assert "port-forward service/" not in notes


def test_the_extra_args_example_is_flags_the_exporter_takes() -> None:
    from exporter.cli import parse_args

    values = (CHART / "values.yaml").read_text()
    example = re.search(r"Extra command-line flags, e\.g\. `(\[[^`]*\])`", values)
    assert example, "the extraArgs comment shows an example"
    args = parse_args(json.loads(example[1]))
    assert args.max_requests == 8
