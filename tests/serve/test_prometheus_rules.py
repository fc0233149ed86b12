"""The fleet's side: the shipped Prometheus alerting rules pass the real ``promtool`` (syntax
and unit tests), and the rules and the Grafana dashboard query only metrics the node exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from peers import config, running

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "edgevcf-rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "edgevcf-dashboard.json"
RULE_TESTS = ROOT / "tests" / "data" / "prometheus" / "edgevcf-rules.test.yml"
NAME = re.compile(r"\bedgevcf_serve_[a-z_]+")


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("needs promtool (Debian: apt-get install -y prometheus)")
    return tool


def test_the_rules_pass_promtool() -> None:
    tool = _promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 7 rules found" in check.stdout
    run = subprocess.run([tool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def _exported(serve_bundle: Path, tmp_path: Path) -> set[str]:
    """Metric names a running node exports, and the drift gauges of a watch past its burn-in."""
    from edgevcf.serve.config import Watch
    from edgevcf.serve.journal import Journal
    from edgevcf.serve.watching import NodeWatch
    from edgevcf.watch.drift import FilmRecord, Reference

    with running(serve_bundle, config(tmp_path / "node")) as svc:
        host, port = svc.addresses.http
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines()
             if line and not line.startswith("#")}  # fmt: skip
    recs = [FilmRecord("", True, i % 3 == 0, 0.5, -1.0 + i % 2, {}) for i in range(500)]
    ref = Reference.from_records(recs, "test", 40.0)
    with Journal(tmp_path / "j.sqlite") as j:
        manifest = {"site_calibration": {"drift_reference": ref.to_dict()}}
        gauges = NodeWatch(j, Watch(), "m", manifest).gauges()
        gauges_names = {"edgevcf_serve_" + k.split("{")[0] for k in gauges}
        # a value per signal appears once a period has been judged
        gauges_names.add("edgevcf_serve_watch_value")
    return names | gauges_names


def _queried(exprs: list[str]) -> set[str]:
    out = set()
    for e in exprs:
        for name in NAME.findall(e):
            out.add(re.sub(r"_(bucket|sum|count)$", "", name) if "_seconds_" in name else name)
    return out


def test_rules_and_dashboard_query_what_the_node_exports(
    serve_bundle: Path, tmp_path: Path
) -> None:
    import yaml

    exported = _exported(serve_bundle, tmp_path)
    exported |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported}
    rules = yaml.safe_load(RULES.read_text())
    rule_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dash: dict[str, Any] = json.loads(DASHBOARD.read_text())
    panel_exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(panel_exprs) >= 12 and all(p["targets"] for p in dash["panels"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            panel_exprs.append(var["query"])
    missing = _queried(rule_exprs + panel_exprs) - exported
    assert missing == set(), f"queried but never exported: {sorted(missing)}"
    assert "edgevcf_serve_watch_alarm_active" in _queried(rule_exprs)
