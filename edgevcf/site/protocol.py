"""The site's acceptance protocol: rules written *before* the films are seen, judged after.

A small TOML file (strict: unknown keys and wrong types refused)::

    [protocol]
    name = "Synth Clinic go-live"
    written = "2026-12-01"        # when it was fixed: before the data were collected
    min_films = 30                # a subgroup cell below either is "insufficient"
    min_positives = 10

    [[rules]]
    measure = "sensitivity"       # sensitivity | specificity | ppv | npv | auc | refusal_rate
    bound = "ci_low"              # value | ci_low | ci_high
    at_least = 0.80               # or at_most = ...
    where = "overall"             # overall | every-subgroup | a field (e.g. "model")

A rule over subgroups is judged in every *sufficient* level (an insufficient one is listed as not
judged, never as passed). The protocol file's sha256 is recorded with the verdicts, so which rules
were fixed in advance can be proven later.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevcf import subgroups
from edgevcf.errors import ConfigError
from edgevcf.hashing import sha256_file
from edgevcf.tomlconf import check_table, read_toml

MEASURES = ("sensitivity", "specificity", "ppv", "npv", "auc", "refusal_rate")
BOUNDS = ("value", "ci_low", "ci_high")
SCOPES = ("overall", "every-subgroup", *(f.name for f in subgroups.FIELDS))


@dataclass(frozen=True)
class Rule:
    """One acceptance rule (see the module docstring)."""

    measure: str
    bound: str = "ci_low"
    at_least: float | None = None
    at_most: float | None = None
    where: str = "overall"

    def describe(self) -> str:
        """The rule in words, e.g. ``sensitivity ci_low >= 0.8 (overall)``."""
        op, v = (">=", self.at_least) if self.at_least is not None else ("<=", self.at_most)
        return f"{self.measure} {self.bound} {op} {v:g} ({self.where})"


@dataclass(frozen=True)
class ProtocolHead:
    """The ``[protocol]`` table."""

    name: str = "site acceptance"
    written: str = ""
    min_films: int = 30
    min_positives: int = 10
    level: float = 0.95


@dataclass(frozen=True)
class Protocol:
    """A protocol file's content and fingerprint."""

    head: ProtocolHead
    rules: tuple[Rule, ...]
    source: str = ""
    sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """For validation.json and the site bundle's lineage."""
        return {
            "name": self.head.name,
            "written": self.head.written,
            "file": Path(self.source).name if self.source else "",
            "sha256": self.sha256,
            "min_films": self.head.min_films,
            "min_positives": self.head.min_positives,
            "level": self.head.level,
            "rules": [r.describe() for r in self.rules],
        }


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Read and check a protocol file."""
    p = Path(path)
    data = read_toml(p, "protocol file")
    unknown = sorted(set(data) - {"protocol", "rules"})
    if unknown:
        raise ConfigError(
            f"{p}: unknown table(s) {', '.join(unknown)}",
            hint="a protocol has [protocol] and [[rules]]",
        )
    head = check_table(ProtocolHead, data.get("protocol", {}), str(p), "protocol")
    if not 0 < head.level < 1 or head.min_films < 1 or head.min_positives < 0:
        raise ConfigError(f"{p}: [protocol] level in (0, 1), min_films >= 1, min_positives >= 0")
    raw = data.get("rules", [])
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{p}: no [[rules]]", hint="add at least one rule (see docs/site.md)")
    rules = tuple(_rule(check_table(Rule, r, str(p), "rules"), p) for r in raw)
    return Protocol(head, rules, str(p), sha256_file(p))


def _rule(r: Rule, p: Path) -> Rule:
    for key in ("at_least", "at_most"):
        v = getattr(r, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ConfigError(f"{p}: [[rules]] {key} must be a number, got {v!r}")
    where = f"{p}: rule {r.describe() if (r.at_least is None) != (r.at_most is None) else r}"
    if (r.at_least is None) == (r.at_most is None):
        raise ConfigError(f"{where}: give exactly one of at_least, at_most")
    if r.measure not in MEASURES:
        raise ConfigError(f"{where}: unknown measure", hint=f"one of {', '.join(MEASURES)}")
    if r.bound not in BOUNDS:
        raise ConfigError(f"{where}: unknown bound", hint=f"one of {', '.join(BOUNDS)}")
    if r.where not in SCOPES:
        raise ConfigError(f"{where}: unknown scope", hint=f"one of {', '.join(SCOPES)}")
    return r


def _value(c: dict[str, Any], rule: Rule) -> float | None:
    d = c.get(rule.measure)
    if not d:
        return None
    key = {"value": "auc" if rule.measure == "auc" else "value"}.get(rule.bound, rule.bound)
    v = d.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def judge(protocol: Protocol, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each rule's verdict on an analysis (``edgevcf.site.analysis.analyse``): ``pass``,
    ``fail`` (with the cells that failed) or ``not judged`` (no sufficient cell)."""
    out = []
    for rule in protocol.rules:
        cells: list[tuple[str, dict[str, Any]]] = []
        skipped: list[str] = []
        if rule.where == "overall":
            cells = [("overall", result["overall"])]
        else:
            names = (
                [f.name for f in subgroups.FIELDS]
                if rule.where == "every-subgroup"
                else [rule.where]
            )
            for name in names:
                for lvl, c in result["subgroups"][name]["levels"].items():
                    if c["sufficient"]:
                        cells.append((f"{name}={lvl}", c))
                    else:
                        skipped.append(f"{name}={lvl}")
        failed, judged = [], []
        for label, c in cells:
            v = _value(c, rule)
            if v is None:
                skipped.append(label)
                continue
            ok = v >= rule.at_least if rule.at_least is not None else v <= (rule.at_most or 0.0)
            judged.append({"cell": label, "value": v, "ok": bool(ok)})
            if not ok:
                failed.append(label)
        verdict = "not judged" if not judged else "fail" if failed else "pass"
        out.append(
            {
                "rule": rule.describe(),
                "verdict": verdict,
                "failed": failed,
                "judged": judged,
                "not_judged": skipped,
            }
        )
    return out
