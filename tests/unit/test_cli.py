"""Tests for the root CLI (:mod:`edgevcf.cli`), its error boundary, lazy imports, deps, errors."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

import edgevcf
from edgevcf import deps, errors, progress
from edgevcf.cli import LAZY_COMMANDS, RootGroup, cli, main
from edgevcf.deps import Dependency
from edgevcf.errors import (
    AccuracyGateError,
    BackendUnavailableError,
    ConfigError,
    DataError,
    EdgeVCFError,
    ExportError,
    ParityError,
)

#: Top-level modules that ``import edgevcf`` and ``--help`` must not import.
HEAVY_MODULES = (
    "torch",
    "torchvision",
    "onnxruntime",
    "openvino",
    "nncf",
    "tensorrt",
    "scipy",
    "onnx",
    "ai_edge_litert",
    "litert_torch",
)


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    """The root callback switches progress and configures logging; undo it after each test."""
    was_enabled = progress.enabled()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    progress.set_enabled(was_enabled)
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def bad_header_csv(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text("file,patient,label\na.png,p1,0\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------ help & version


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(runner: CliRunner, flag: str) -> None:
    result = runner.invoke(cli, [flag])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert "data" in result.output
    for option in ("--version", "--debug", "--quiet"):
        assert option in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"edgevcf, version {edgevcf.__version__}"


@pytest.mark.parametrize("args", [["data", "--help"], ["data", "synth", "--help"]])
def test_subcommand_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_lazy_commands_are_listed(runner: CliRunner) -> None:
    ctx = click.Context(cli)
    assert set(LAZY_COMMANDS) <= set(cli.list_commands(ctx))
    assert isinstance(cli.get_command(ctx, "data"), click.Group)
    assert cli.get_command(ctx, "no-such-command") is None
    result = runner.invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


@pytest.mark.parametrize(
    ("flags", "progress_on"), [([], True), (["-q"], False), (["--quiet"], False)]
)
def test_quiet_switches_progress_off(
    runner: CliRunner, flags: list[str], progress_on: bool
) -> None:
    progress.set_enabled(True)
    result = runner.invoke(cli, [*flags, "data", "--help"])
    assert result.exit_code == 0, result.output
    assert progress.enabled() is progress_on


@pytest.mark.parametrize("flags", [["--debug"], ["-q", "--debug"], ["--debug", "--quiet"]])
def test_debug_and_quiet_are_accepted(runner: CliRunner, flags: list[str]) -> None:
    result = runner.invoke(cli, [*flags, "data", "--help"])
    assert result.exit_code == 0, result.output


def test_main_is_the_console_script() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0


# ---------------------------------------------------------------------------- error boundary


def _assert_clean_error(result: Result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert "hint: " in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert isinstance(result.exception, SystemExit)


def test_missing_manifest_is_a_clean_data_error(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.csv"
    result = runner.invoke(cli, ["data", "split", str(missing)])
    _assert_clean_error(result, DataError.exit_code, "manifest not found")


def test_bad_header_is_a_clean_data_error(runner: CliRunner, bad_header_csv: Path) -> None:
    result = runner.invoke(cli, ["data", "split", str(bad_header_csv)])
    _assert_clean_error(result, DataError.exit_code, "missing required column")
    assert result.stdout == ""  # errors go to stderr, stdout stays clean for --json users


def test_config_error_exit_code(runner: CliRunner, bad_header_csv: Path, tmp_path: Path) -> None:
    args = ["data", "split", str(bad_header_csv), "--in-place", "--out", str(tmp_path / "o.csv")]
    result = runner.invoke(cli, args)
    _assert_clean_error(result, ConfigError.exit_code, "--in-place")


def test_debug_lets_the_exception_through(runner: CliRunner, bad_header_csv: Path) -> None:
    result = runner.invoke(cli, ["--debug", "data", "split", str(bad_header_csv)])
    assert isinstance(result.exception, DataError)
    assert result.exit_code != 0
    assert "Error: " not in result.output


def _throwaway_group(exc: BaseException) -> click.Group:
    """A root group like ``cli`` (same class, same --debug option) with one failing command."""

    @click.group(cls=RootGroup)
    @click.option("--debug", is_flag=True)
    def root(debug: bool) -> None:
        pass

    @root.command("boom")
    def boom() -> None:
        raise exc

    return root


def _error_classes() -> list[type[EdgeVCFError]]:
    """Every error class defined in :mod:`edgevcf.errors`, the base included."""
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, EdgeVCFError) and obj.__module__ == errors.__name__
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_error_class_maps_to_its_exit_code(runner: CliRunner, cls: type) -> None:
    group = _throwaway_group(cls("it went wrong", hint="do this"))
    result = runner.invoke(group, ["boom"])
    assert result.exit_code == cls.exit_code
    assert result.stderr == "Error: it went wrong\nhint: do this\n"


def test_error_without_hint_prints_no_hint_line(runner: CliRunner) -> None:
    result = runner.invoke(_throwaway_group(DataError("unreadable")), ["boom"])
    assert result.exit_code == DataError.exit_code
    assert result.stderr == "Error: unreadable\n"


def test_other_exceptions_are_bugs_and_keep_their_traceback(runner: CliRunner) -> None:
    result = runner.invoke(_throwaway_group(ZeroDivisionError("oops")), ["boom"])
    assert isinstance(result.exception, ZeroDivisionError)
    assert "Error: " not in result.output


def test_error_boundary_in_a_real_process(tmp_path: Path) -> None:
    """End to end: a library error gives a short message, ``--debug`` a traceback."""
    bad = tmp_path / "m.csv"
    bad.write_text("file,patient,label\na.png,p1,0\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "edgevcf", "data", "split", str(bad)]
    plain = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert plain.returncode == DataError.exit_code
    assert plain.stderr.startswith("Error: ")
    assert "Traceback" not in plain.stderr
    debug = subprocess.run(
        [*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, timeout=60, check=False
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "edgevcf.errors.DataError" in debug.stderr


# ------------------------------------------------------------------------------ lazy imports

_IMPORT_PROBE = textwrap.dedent(
    """
    import json, sys
    import edgevcf, edgevcf.cli
    from edgevcf.cli import cli
    args = json.loads(sys.argv[1])
    if args is not None:
        try:
            cli(args, standalone_mode=False)
        except SystemExit:
            pass
    heavy = json.loads(sys.argv[2])
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """
)


@pytest.mark.parametrize(
    "args",
    [None, ["--help"], ["data", "--help"], ["data", "synth", "--help"], ["data", "split", "-h"]],
    ids=["import", "help", "data-help", "synth-help", "split-help"],
)
def test_no_heavy_imports(args: list[str] | None) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, json.dumps(args), json.dumps(HEAVY_MODULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    offenders = json.loads(proc.stdout.strip().splitlines()[-1])
    assert offenders == [], f"heavy modules imported: {offenders}"


def test_python_dash_m_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgevcf", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"edgevcf, version {edgevcf.__version__}"


# ---------------------------------------------------------------------------------------- deps


def test_available_is_false_for_unknown_names() -> None:
    assert deps.available("definitely_not") is False


def test_require_unknown_name_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'definitely_not'"):
        deps.require("definitely_not")


def test_missing_returns_the_absent_subset() -> None:
    names = ("torch", "scipy", "onnxruntime", "tensorrt")
    result = deps.missing(*names)
    assert isinstance(result, list)
    assert result == [n for n in names if not deps.available(n)]
    assert deps.missing() == []


def test_every_backend_has_an_install_hint() -> None:
    for name, backend in deps.DEPENDENCIES.items():
        assert backend.module
        assert backend.pip_name
        assert "pip install" in backend.hint or "JetPack" in backend.hint, name
        assert isinstance(deps.available(name), bool)


def test_require_absent_backend_raises_with_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Dependency("no_such_mod_xyz", "no-such", "pip install no-such")
    monkeypatch.setitem(deps.DEPENDENCIES, "fake", fake)
    assert deps.available("fake") is False
    assert deps.missing("fake") == ["fake"]
    with pytest.raises(BackendUnavailableError, match="no-such is not installed") as info:
        deps.require("fake", "testing")
    assert info.value.hint == "pip install no-such"
    assert "(needed for testing)" in info.value.message
    assert info.value.exit_code == BackendUnavailableError.exit_code


def test_available_with_missing_parent_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(deps.DEPENDENCIES, "fake", Dependency("no_such_pkg_xyz.sub", "x", "pip x"))
    assert deps.available("fake") is False


def test_require_present_backend_returns_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(deps.DEPENDENCIES, "fake", Dependency("json", "json", "built in"))
    assert deps.require("fake") is json


def test_require_installed_but_broken_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pkg = tmp_path / "broken_backend_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('libfoo.so: cannot open')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    broken = Dependency("broken_backend_xyz", "broken", "pip b")
    monkeypatch.setitem(deps.DEPENDENCIES, "fake", broken)
    assert deps.available("fake") is True  # found, but ...
    with pytest.raises(BackendUnavailableError, match="failed to import") as info:
        deps.require("fake")
    assert info.value.hint == "pip b"
    assert isinstance(info.value.__cause__, ImportError)
    sys.modules.pop("broken_backend_xyz", None)


# -------------------------------------------------------------------------------------- errors


def test_error_classes_named_in_the_design_exist() -> None:
    names = {c.__name__ for c in _error_classes()}
    assert names >= {
        "EdgeVCFError",
        "ConfigError",
        "DataError",
        "BackendUnavailableError",
        "ExportError",
        "ParityError",
        "CalibrationError",
        "QuantizationError",
        "CompileError",
        "BundleError",
        "AccuracyGateError",
    }


def test_exit_codes_are_distinct_except_parity() -> None:
    subclasses = [c for c in _error_classes() if c is not EdgeVCFError]
    assert ParityError.exit_code == ExportError.exit_code
    assert issubclass(ParityError, ExportError)
    codes = {c.__name__: c.exit_code for c in subclasses if c is not ParityError}
    assert len(set(codes.values())) == len(codes), codes
    # 0 is success, 1 a crash (or the base class), 2 click's usage errors.
    assert not {0, 1, 2} & set(codes.values()), codes
    assert AccuracyGateError.exit_code == 4


def test_error_carries_message_and_hint() -> None:
    exc = ConfigError("bad flag", hint="use --x")
    assert str(exc) == "bad flag"
    assert exc.message == "bad flag"
    assert exc.hint == "use --x"
    assert ConfigError("no hint").hint is None
    assert isinstance(exc, EdgeVCFError)
    with pytest.raises(TypeError):
        ConfigError("msg", "hint must be keyword")  # type: ignore[misc]


def test_an_inconclusive_export_gate_says_how_large_a_tuning_split_would_decide_it() -> None:
    from types import SimpleNamespace

    from edgevcf.cli.export import _inconclusive

    r = SimpleNamespace(
        profile="intel-cpu", gate={"failed": ["auc"], "films_needed": {"auc": 1200}}
    )
    assert _inconclusive(r) == (
        "intel-cpu is inconclusive, not shown worse (auc: the CI spans the margin): a tuning "
        "split of about 1,200 films would decide it"
    )
    shown = SimpleNamespace(
        profile="x", gate={"failed": ["auc", "flips"], "films_needed": {"auc": 9}}
    )
    assert _inconclusive(shown) == ""  # the flip rate was shown too high: more films won't help
