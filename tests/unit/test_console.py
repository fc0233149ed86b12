"""The console holds edgevcf's own output; toolchain chatter goes to the log file.

Checked in a child process, because what is split is the process's real file descriptors 1 and
2 (where native libraries write), which a test runner's capture would hide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = """
import logging, os, subprocess, sys, warnings
from pathlib import Path
from edgevcf import console
from edgevcf.cli import echo

out = Path(sys.argv[1])
with console.capture(level=logging.INFO):
    os.write(1, b"NATIVE-OUT before the move\\n")
    console.log_to(out / "edgevcf.log")
    os.write(1, b"NATIVE-OUT\\n")
    os.write(2, b"NATIVE-ERR\\n")
    print("PY-PRINT")
    print("PY-STDERR", file=sys.stderr)
    logging.getLogger("onnxruntime.quantization").info("THIRD-INFO")
    logging.getLogger().warning("ROOT-WARNING")
    warnings.warn("PY-WARNING", stacklevel=1)
    subprocess.run([sys.executable, "-c", "print('CHILD-PRINT')"], check=True)
    logging.getLogger("edgevcf.demo").info("OWN-INFO")
    logging.getLogger("edgevcf.demo").debug("OWN-DEBUG")
    echo("OWN-RESULT")
    echo("OWN-ERR", err=True)
    assert console.log_path() == out / "edgevcf.log"
os.write(2, b"AFTER-CAPTURE\\n")
print("PRINT-AFTER")
"""

CHATTER = (
    "NATIVE-OUT", "NATIVE-ERR", "PY-PRINT", "PY-STDERR", "THIRD-INFO", "ROOT-WARNING",
    "PY-WARNING", "CHILD-PRINT",
)  # fmt: skip


def test_chatter_goes_to_the_log_and_edgevcf_to_the_console(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env_cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_env(), "EDGEVCF_LOG_DIR": str(env_cache)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "OWN-RESULT\nPRINT-AFTER\n"
    err_lines = proc.stderr.splitlines()
    assert err_lines == ["INFO edgevcf.demo: OWN-INFO", "OWN-ERR", "AFTER-CAPTURE"]
    log = (tmp_path / "out" / "edgevcf.log").read_text()
    for marker in (*CHATTER, "NATIVE-OUT before the move", "OWN-INFO"):
        assert marker in log, marker
    assert "OWN-DEBUG" not in log  # the level holds in the log too (debug: --debug)
    # the log was moved, not copied: nothing is left under the cache's temporary name
    assert not env_cache.exists() or list(env_cache.iterdir()) == []


def test_without_an_output_folder_the_log_is_the_cache_one(tmp_path: Path) -> None:
    code = (
        "import os, logging; from edgevcf import console\n"
        "with console.capture(level=logging.INFO):\n"
        "    os.write(2, b'NATIVE-ERR\\n')\n"
        "    print(console.log_path(), file=console.stdout())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "EDGEVCF_LOG_DIR": str(tmp_path / "logs")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    log = Path(proc.stdout.strip())
    assert log == tmp_path / "logs" / "edgevcf.log"
    assert log.read_text() == "NATIVE-ERR\n"
    assert [p.name for p in log.parent.iterdir()] == ["edgevcf.log"]


def test_verbose_shows_everything(tmp_path: Path) -> None:
    code = (
        "import os, logging; from edgevcf import console\n"
        "with console.capture(level=logging.INFO, enabled=False):\n"
        "    os.write(2, b'NATIVE-ERR\\n')\n"
        "    logging.getLogger('onnxruntime').info('THIRD-INFO')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["NATIVE-ERR", "INFO onnxruntime: THIRD-INFO"]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
