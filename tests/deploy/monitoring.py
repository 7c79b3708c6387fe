"""The Prometheus rules and Grafana dashboards of deploy/, read for the tests: their PromQL
expressions, the metric names those use, and template variables substituted the way Grafana
does."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules"
RULE_FILES = (RULES / "recording.yml", RULES / "alerts.yml")
RULE_TESTS = RULES / "tests.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
DASHBOARD_FILES = ("overview.json", "ingest.json", "segment.json", "analytics.json")

# Series Prometheus itself adds to every target.
SYNTHETIC = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)

# Words of PromQL that are neither metric names nor called like functions.
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
        "atan2",
        # aggregations take their grouping before the parenthesis: sum by (x) (...)
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    }
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)\]\]")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_MODIFIER = re.compile(r"\b(?:offset\s+-?[\w.]+|@\s*[\w.()]+)", re.IGNORECASE)
_TOKEN = re.compile(
    r"(?P<number>(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)"
    r"(?:ms|[smhdwy])?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
)
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.*),)?\s*\w+\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression selects.

    String literals, label matchers, ranges, grouping clauses and template variables are
    removed first; of what is left, identifiers that are followed by ``(`` (functions) or are
    PromQL keywords are not names.
    """
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("", text)
    text = _MATCHERS.sub(" ", text)
    while _RANGE.search(text):
        text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _MODIFIER.sub(" ", text)
    names: set[str] = set()
    for match in _TOKEN.finditer(text):
        name = match.group("name")
        if name is None or name.lower() in KEYWORDS:
            continue
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function call
        names.add(name)
    return names


def variable_query_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (label_values, query_result)."""
    found = _LABEL_VALUES.match(query)
    if found:
        return metric_names(found.group("selector") or "")
    found = _QUERY_RESULT.match(query)
    if found:
        return metric_names(found.group("expr"))
    if query.strip().startswith(("label_names(", "metrics(")):
        return set()
    return metric_names(query)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with Grafana's ``$var``, ``${var}``, ``${var:fmt}`` and ``[[var]]`` replaced
    by ``values``; a variable without a value raises KeyError naming it."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> Iterator[dict[str, Any]]:
    """Every rule of the rule files (recording and alerting)."""
    for path in RULE_FILES:
        for group in load_yaml(path)["groups"]:
            yield from group["rules"]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules() if "alert" in rule}


def dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DASHBOARDS / name).read_text()) for name in DASHBOARD_FILES}


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets() -> Iterator[Target]:
    for name, dashboard in dashboards().items():
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                yield Target(name, panel["title"], target.get("refId", "?"), target.get("expr", ""))


def variable_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard, variable, query) of every query variable."""
    for name, dashboard in dashboards().items():
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield name, variable["name"], str(text)


def used_names() -> dict[str, set[str]]:
    """Metric name -> where it is used (rules, panel targets, variable queries)."""
    used: dict[str, set[str]] = {}
    for rule in rules():
        where = f"rule {rule.get('record') or rule.get('alert')}"
        for name in metric_names(str(rule["expr"])):
            used.setdefault(name, set()).add(where)
    for target in targets():
        for name in metric_names(target.expr):
            used.setdefault(name, set()).add(str(target))
    for dashboard, variable, query in variable_queries():
        for name in variable_query_names(query):
            used.setdefault(name, set()).add(f"{dashboard} / ${variable}")
    return used
