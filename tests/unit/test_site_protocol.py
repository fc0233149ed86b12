"""The site protocol: strict reading, and how rules are judged (insufficient cells never pass)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgevcf.errors import ConfigError
from edgevcf.site.protocol import judge, load_protocol


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "protocol.toml"
    p.write_text(text)
    return p


RULE = '[[rules]]\nmeasure = "sensitivity"\nbound = "ci_low"\nat_least = 0.8\nwhere = "model"\n'


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[protocol]\nnmae = "x"\n' + RULE, "unknown key"),
        ("[protocol]\n", "no \\[\\[rules\\]\\]"),
        (RULE.replace("at_least = 0.8", "at_least = 0.8\nat_most = 0.9"), "exactly one"),
        (RULE.replace('"sensitivity"', '"sensitvity"'), "unknown measure"),
        (RULE.replace('"model"', '"scanner"'), "unknown scope"),
        (RULE.replace("0.8", '"high"'), "must be"),
        ("[extra]\n" + RULE, "unknown table"),
    ],
)
def test_bad_protocols_are_refused(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_protocol(_write(tmp_path, text))


def _cell(value: float, low: float, sufficient: bool = True) -> dict[str, object]:
    return {
        "sufficient": sufficient,
        "sensitivity": {"value": value, "ci_low": low, "ci_high": 1.0, "k": 1, "n": 2},
    }


def test_rules_judge_sufficient_cells_only(tmp_path: Path) -> None:
    proto = load_protocol(_write(tmp_path, RULE))
    assert len(proto.sha256) == 64 and proto.rules[0].describe() == (
        "sensitivity ci_low >= 0.8 (model)"
    )
    result = {
        "overall": _cell(0.9, 0.85),
        "subgroups": {"model": {"levels": {"A": _cell(0.9, 0.82), "B": _cell(0.5, 0.1, False)}}},
    }
    (v,) = judge(proto, result)
    assert v["verdict"] == "pass" and v["not_judged"] == ["model=B"]  # B is too small to judge
    result["subgroups"]["model"]["levels"]["A"] = _cell(0.85, 0.75)  # type: ignore[index]
    (v,) = judge(proto, result)
    assert v["verdict"] == "fail" and v["failed"] == ["model=A"]
    result["subgroups"]["model"]["levels"] = {"B": _cell(0.5, 0.1, False)}  # type: ignore[index]
    (v,) = judge(proto, result)
    assert v["verdict"] == "not judged"
