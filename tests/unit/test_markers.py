"""The self-skipping markers of ``tests/conftest.py`` skip what cannot run here, with a hint."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from edgevcf import deps

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parents[1]
PYPROJECT = TESTS_DIR.parent / "pyproject.toml"
CONFTEST = TESTS_DIR / "conftest.py"

INLINE_TESTS = """
import pytest

@pytest.mark.requires_tensorrt
def test_needs_tensorrt():
    pytest.fail("must have been skipped: tensorrt is not installed")

@pytest.mark.slow
def test_slow():
    pass

def test_plain():
    pass
"""


def _load_conftest() -> ModuleType:
    """The project's conftest as a fresh module (independent of how pytest named it)."""
    spec = importlib.util.spec_from_file_location("_edgevcf_tests_conftest", CONFTEST)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def project_pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester dir with the project's pyproject (markers, --strict-markers) and conftest."""
    monkeypatch.delenv("EDGEVCF_RUNSLOW", raising=False)
    pytester.makepyprojecttoml(PYPROJECT.read_text(encoding="utf-8"))
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_inline=INLINE_TESTS)
    return pytester


@pytest.mark.requires_tensorrt
def test_requires_tensorrt_is_skipped_here() -> None:
    """Reported as skipped where TensorRT is absent (runs, and passes, where it is present)."""
    if not deps.available("tensorrt"):
        pytest.fail("the requires_tensorrt marker did not skip this test")


@pytest.mark.skipif(deps.available("tensorrt"), reason="tensorrt is installed here")
def test_pytester_tensorrt_and_slow_skipped_by_default(project_pytester: pytest.Pytester) -> None:
    result = project_pytester.runpytest_subprocess("test_inline.py", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*needs tensorrt: *JetPack*", "*slow: run with --runslow*"])


@pytest.mark.skipif(deps.available("tensorrt"), reason="tensorrt is installed here")
@pytest.mark.parametrize("how", ["option", "env"])
def test_pytester_runslow_enables_slow(
    project_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    args = ["test_inline.py"]
    if how == "option":
        args.append("--runslow")
    else:
        monkeypatch.setenv("EDGEVCF_RUNSLOW", "1")
    result = project_pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=2, skipped=1)


def test_conftest_markers_are_declared_in_pyproject(pytestconfig: pytest.Config) -> None:
    """Every marker the conftest acts on is registered (``--strict-markers`` would reject it)."""
    conftest = _load_conftest()
    declared = {line.split(":", 1)[0].strip() for line in pytestconfig.getini("markers")}
    used = {*conftest.BACKEND_MARKERS, conftest.CUDA_MARKER, conftest.SLOW_MARKER}
    assert used <= declared, f"undeclared: {sorted(used - declared)}"
    requires = {m for m in declared if m.startswith("requires_")}
    assert requires == {*conftest.BACKEND_MARKERS, conftest.CUDA_MARKER}
    assert all(name in deps.DEPENDENCIES for name in conftest.BACKEND_MARKERS.values())


@pytest.mark.skipif(deps.available("torch"), reason="torch is installed here")
def test_pytester_cuda_skipped_without_torch(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(PYPROJECT.read_text(encoding="utf-8"))
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(
        test_cuda="""
        import pytest

        @pytest.mark.requires_cuda
        def test_gpu():
            pytest.fail("must have been skipped: torch is not installed")
        """
    )
    result = pytester.runpytest_subprocess("test_cuda.py", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs CUDA via torch, and torch is not installed*"])
