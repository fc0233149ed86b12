"""serve.toml is checked as strictly as the profiles: a typo never opens the node to anyone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgevcf.errors import ConfigError
from edgevcf.serve import config as config_mod
from edgevcf.serve.config import load_serve_config, parse_serve_config

MINIMAL = {"allowed": [{"ae_title": "CART_DX1", "host": "10.1.2.3"}]}


def test_the_documented_example_loads(tmp_path: Path) -> None:
    doc = config_mod.__doc__ or ""
    example = textwrap.dedent(doc.split("Example::", 1)[1]).strip()
    path = tmp_path / "serve.toml"
    path.write_text(example + "\n", encoding="utf-8")
    cfg = load_serve_config(path)
    assert (cfg.listen.ae_title, cfg.listen.port, cfg.listen.host) == ("EDGEVCF", 11112, "0.0.0.0")
    assert [(a.ae_title, a.host) for a in cfg.allowed] == [("CART_DX1", "10.1.2.3")]
    assert [(d.ae_title, d.host, d.port, d.tls) for d in cfg.destinations] == [
        ("PACS", "10.1.2.10", 104, False)
    ]
    assert cfg.storage.spool == "/var/lib/edgevcf/spool"  # absolute paths stay
    assert cfg.model.bundle == "/var/lib/edgevcf/bundles/current"
    sc = cfg.scoring
    assert (sc.isolation, sc.film_timeout_s, sc.max_tries, sc.stall_s) == ("process", 60, 2, 180)


def test_defaults_are_closed_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    cfg = parse_serve_config(MINIMAL, "t", base=tmp_path)
    assert cfg.listen.host == "127.0.0.1" and cfg.http.host == "127.0.0.1"
    assert cfg.storage.spool == str(tmp_path / "spool")
    assert cfg.storage.journal == str(tmp_path / "journal.sqlite")
    assert cfg.model.bundle == "" and cfg.scoring.isolation == "process"
    rel = parse_serve_config({**MINIMAL, "model": {"bundle": "bundles/current"}}, "t", tmp_path)
    assert rel.model.bundle == str(tmp_path / "bundles" / "current")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**MINIMAL, "listn": {}}, "unknown table"),
        ({**MINIMAL, "listen": {"aetitle": "X"}}, "unknown key"),
        ({**MINIMAL, "listen": {"port": "104"}}, "must be int"),
        ({**MINIMAL, "listen": {"ae_title": "A_TITLE_LONGER_THAN_16"}}, "is not an AE title"),
        ({**MINIMAL, "listen": {"port": 70000}}, "1..65535"),
        ({}, "is empty: no modality could send"),
        ({"allowed": [{"ae_title": "CART"}]}, "needs host"),
        ({"allowed": [{"ae_title": "CART", "host": "10.1.*"}]}, "no wildcards"),
        ({"allowed": {"ae_title": "CART", "host": "h"}}, "array of tables"),
        ({**MINIMAL, "tls": {"cert": "c.pem"}}, "cert and key go together"),
        ({**MINIMAL, "tls": {"cert": "c", "key": "k", "require_client_cert": True}}, "site's ca"),
        ({**MINIMAL, "forward": {"retry_initial_s": 10, "retry_max_s": 5}}, "retry_initial_s"),
        ({**MINIMAL, "destinations": [{"ae_title": "PACS", "host": "h", "port": 0}]}, "1..65535"),
        ({**MINIMAL, "scoring": {"isolation": "fork"}}, "isolation must be one of"),
        ({**MINIMAL, "scoring": {"max_tries": 0}}, "max_tries >= 1"),
        ({**MINIMAL, "scoring": {"film_timeout_s": 60, "stall_s": 30}}, "longer than film_"),
        ({**MINIMAL, "model": {"bundel": "b"}}, "unknown key"),
    ],
)
def test_mistakes_are_refused_with_the_key_named(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_serve_config(data, "serve.toml")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text("[listen\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"serve\.toml: not valid TOML"):
        load_serve_config(path)
