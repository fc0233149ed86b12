"""The spool: whole files or nothing, private, a reserve kept (a full disk: tests/safety)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from edgevcf.errors import OutputError
from edgevcf.serve import spool as spool_mod
from edgevcf.serve.spool import Spool

KEY = "ab" * 32


def test_put_is_whole_and_private(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool", reserve_mb=0)
    p = s.put(KEY, b"DICM" * 1000)
    assert p.read_bytes() == b"DICM" * 1000
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    assert [x.name for x in (tmp_path / "spool").iterdir()] == [f"{KEY}.dcm"]
    assert s.put(KEY, b"other") == p and p.read_bytes() == b"DICM" * 1000  # a resend: kept
    s.remove(KEY)
    assert not p.exists()


def test_reserve_refuses_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Spool(tmp_path / "spool", reserve_mb=64)

    class Usage:
        free = 10_000_000

    monkeypatch.setattr(spool_mod.shutil, "disk_usage", lambda _p: Usage())
    with pytest.raises(OutputError, match="MB kept in reserve") as err:
        s.put(KEY, b"x" * 1000)
    assert err.value.hint and "free disk space" in err.value.hint
    assert list((tmp_path / "spool").iterdir()) == []


def test_a_crash_leftover_is_cleaned_and_keys_are_checked(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    root.mkdir()
    (root / f".{KEY}.123.part").write_bytes(b"half")
    Spool(root)
    assert list(root.iterdir()) == []
    for bad in ("", "../x", "a/b"):
        with pytest.raises(ValueError, match="hex digests"):
            Spool(root).path(bad)
