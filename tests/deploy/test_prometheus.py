"""The Prometheus configuration, rules and Grafana dashboards of deploy/, without servers:
promtool's checks and rule unit tests, a firing and a quiet case for every alert, and
dashboards that are well-formed Grafana JSON whose queries use names the services declare."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from services.common.metrics import PipelineMetrics
from tests.deploy.monitoring import (
    DASHBOARDS,
    PROMETHEUS,
    ROOT,
    RULE_FILES,
    RULE_TESTS,
    alert_names,
    dashboards,
    load_yaml,
    metric_names,
    panels,
    recorded_names,
    rules,
    substitute,
    targets,
    used_names,
    variable_query_names,
)

GRAFANA = ROOT / "deploy" / "grafana"
SEVERITIES = {"critical", "warning"}
# Variables Grafana itself defines.
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"}


@pytest.fixture(scope="module")
def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: apt-get install -y prometheus (scripts/bootstrap.sh)")
    return binary


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


# --- promtool ------------------------------------------------------------------------------
def test_promtool_check_config(promtool: str) -> None:
    done = run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_check_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", *RULE_FILES)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_rules(promtool: str) -> None:
    done = run(promtool, "test", "rules", RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


# --- configuration and rules -----------------------------------------------------------------
def test_config_scrapes_the_three_services_and_loads_the_rules() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    jobs = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert jobs["api"] == ["api:9400"]
    assert jobs["ingest"] == ["ingest:9401"]
    assert jobs["segment"] == ["segment:9402", "segment-gpu:9402"]
    loaded = {(PROMETHEUS / path).resolve() for path in config["rule_files"]}
    assert loaded == {path.resolve() for path in RULE_FILES}


def test_alerts_have_severity_summary_description_and_runbook() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "StreamDown",
        "StreamStalled",
        "ConsumerLagGrowing",
        "StreamEventsStale",
        "LatencyObjectiveBurning",
        "WorkerRestarting",
    }
    for alert in alerts:
        assert alert["labels"]["severity"] in SEVERITIES, alert["alert"]
        for key in ("summary", "description", "runbook"):
            assert str(alert["annotations"].get(key, "")).strip(), (alert["alert"], key)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(RULE_TESTS)["tests"]:
        for check in case.get("alert_rule_test", []):
            expected = check.get("exp_alerts") or []
            (firing if expected else quiet).add(check["alertname"])
    assert not alert_names() - firing, f"no firing case: {sorted(alert_names() - firing)}"
    assert not alert_names() - quiet, f"no quiet case: {sorted(alert_names() - quiet)}"
    assert not (firing | quiet) - alert_names(), "tests.yml names an alert that does not exist"


def test_recording_rule_names_follow_the_convention() -> None:
    for name in recorded_names():
        assert re.fullmatch(r"segstream:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_used_names_are_declared_by_the_services_or_recorded() -> None:
    """Without processes: the families every process registers (PipelineMetrics) cover every
    name the rules and dashboards use (tests/integration/test_observability.py checks the
    running processes too)."""
    declared = declared_sample_names(generate_latest(PipelineMetrics().registry).decode())
    known = declared | recorded_names() | {"up"}
    unknown = {name: where for name, where in used_names().items() if name not in known}
    assert not unknown, f"names nobody exports: {unknown}"


def declared_sample_names(exposition: str) -> set[str]:
    """The sample names the families of an exposition can have, samples or not yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }
    names: set[str] = set()
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            family, kind = parts[2], parts[3]
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + s for s in suffixes.get(kind, ("",)))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


# --- the name extraction itself --------------------------------------------------------------
@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (model, le) (rate(a_bucket{le="2.5", x=~"$v"}[$__rate_interval]))', {"a_bucket"}),
        ('a - ignoring (le) b{le="+Inf"} > bool 1e3', {"a", "b"}),
        ("deriv(rec:x:sum[5m]) > 0 and on (model) rec:x:sum > 100", {"rec:x:sum"}),
        ("max_over_time(g[10m:1m] offset 5m) or vector(0)", {"g"}),
        ('label_replace(c_total, "dst", "$1", "src", "(.*)")', {"c_total"}),
        ("sum(x) without (instance) / count(y) by (job)", {"x", "y"}),
        ("topk(5, z) unless absent(w)", {"z", "w"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m]))) * 1000", {"h_bucket"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_variable_query_names() -> None:
    assert variable_query_names("label_values(a_total, model)") == {"a_total"}
    assert variable_query_names('label_values(g{model=~"$model"}, instance)') == {"g"}
    assert variable_query_names("label_values(model)") == set()
    assert variable_query_names("query_result(sum by (m) (b))") == {"b"}


def test_substitute() -> None:
    values = {"model": "m1", "__rate_interval": "30s"}
    assert substitute('x{model=~"$model"}[$__rate_interval]', values) == 'x{model=~"m1"}[30s]'
    assert substitute('x{model=~"${model:regex}"}', values) == 'x{model=~"m1"}'
    with pytest.raises(KeyError, match="stream"):
        substitute('x{stream=~"$stream"}', values)


# --- dashboards ----------------------------------------------------------------------------
def test_dashboards_are_grafana_json() -> None:
    found = dashboards()
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(found)
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids) and all(uids)
    for name, dashboard in found.items():
        assert dashboard["schemaVersion"] >= 36, name
        assert dashboard["title"] and dashboard["tags"] == ["segstream"], name
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        ids = [panel["id"] for panel in panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids {ids}"
        for panel in panels(dashboard):
            where = f"{name} / {panel.get('title')}"
            assert panel["type"] in {"timeseries", "stat"}, where
            assert panel["title"] and panel["gridPos"]["w"] > 0, where
            assert panel["datasource"]["uid"] == "${datasource}", where
            assert panel["targets"], where
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)), where
            for target in panel["targets"]:
                assert str(target.get("expr", "")).strip(), f"{where}: target without expr"
                assert target["datasource"]["uid"] == "${datasource}", where
                check_variables(target["expr"], set(variables), where)


def check_variables(expr: str, defined: set[str], where: str) -> None:
    known = {name: "" for name in defined | BUILTIN_VARIABLES}
    try:
        substitute(expr, known)
    except KeyError as exc:
        pytest.fail(f"{where}: {exc}")


def test_dashboard_panels_do_not_overlap() -> None:
    for name, dashboard in dashboards().items():
        taken: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name} / {panel['title']}"
            cells = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & taken, f"{name} / {panel['title']} overlaps another panel"
            taken |= cells


def test_every_dashboard_target_is_listed() -> None:
    # the integration test evaluates each of these through Prometheus
    assert len(list(targets())) >= 30


def test_grafana_provisioning() -> None:
    sources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].endswith(":9090")
    assert source["isDefault"] is True
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "segstream.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
