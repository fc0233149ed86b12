"""What reaches the terminal: edgevcf's own steps, progress, warnings and results — nothing else.

The toolchains behind an export talk a lot, through every channel there is: Python ``logging``
(ONNX Runtime's quantiser, NNCF, litert-torch's "Use JAX lowering" on the root logger),
``warnings``, ``print`` to ``sys.stdout``, and C++ code writing straight to file descriptors 1 and
2 (TensorFlow/absl's ``I0000 ...`` lines, XNNPACK's delegate message, JAX's libtpu notice). None of
it is meant for the person running ``edgevcf export``, and ``--quiet`` cannot silence what bypasses
Python.

:func:`capture` therefore splits the process's output in two for the length of a command:

* the **console** — the terminal the command was started from — gets what edgevcf writes on
  purpose: the CLI's output (:func:`stdout`, :func:`stderr`), progress bars, and records of the
  ``edgevcf`` loggers at the chosen level;
* the **log file** gets everything else: file descriptors 1 and 2 are pointed at it (so native
  libraries and child processes write there), ``sys.stdout``/``sys.stderr`` too (so third-party
  ``print`` and handlers bound to them do), every logger's records and the ``warnings``.

The log is ``~/.local/state/edgevcf/edgevcf.log`` (the last command's), or ``OUT/edgevcf.log`` for
commands whose output folder is a workspace of their own (``demo``, ``train``, an ``export`` of
several bundles: :func:`log_to`); a bundle, and the report folders of ``bench`` and ``evaluate``
(written all or nothing), hold only what they are. ``--debug`` and ``--verbose`` skip the split:
everything is shown as it comes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TextIO

LOG_NAME = "edgevcf.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"

_lock = threading.Lock()
_console_out: TextIO | None = None
_console_err: TextIO | None = None
_log: _LogFile | None = None
_last_log: Path | None = None


def stdout() -> TextIO:
    """The console's standard output (the command's results, ``--json`` documents)."""
    return _console_out or sys.stdout


def stderr() -> TextIO:
    """The console's standard error (progress, edgevcf's log records, error messages)."""
    return _console_err or sys.stderr


def log_path() -> Path | None:
    """Where the log of this command will be once it ends (or of the last one, when none is
    running): what an error message points at. None when nothing was captured."""
    if _log is None:
        return _last_log
    return _log.final or _log.path


def forget_last_log() -> None:
    """Start a new command: :func:`log_path` names no earlier command's log."""
    global _last_log
    _last_log = None


def default_log_path() -> Path:
    """Where the last command without a workspace of its own keeps its log.

    ``$EDGEVCF_LOG_DIR``, else the XDG state folder (``$XDG_STATE_HOME/edgevcf``, by default
    ``~/.local/state/edgevcf``): logs are state, not cache (the cache may be wiped or be full).
    """
    folder = os.environ.get("EDGEVCF_LOG_DIR")
    if not folder:
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        folder = str(Path(state) / "edgevcf")
    return Path(folder) / LOG_NAME


def log_to(path: str | os.PathLike[str]) -> None:
    """Move the captured log to ``path`` (e.g. ``OUT/edgevcf.log``) and keep writing there.

    What was captured so far is copied over, so the file holds the whole run. Does nothing when
    output is not captured; a folder that cannot be written keeps the log where it was.
    """
    with _lock:
        if _log is None:
            return
        try:
            _log.move(Path(path))
        except OSError as exc:
            logging.getLogger(__name__).debug("log stays at %s: %s", _log.path, exc)


class _OnlyEdgevcf(logging.Filter):
    """Pass records of edgevcf's own loggers: the console is not for third-party records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "edgevcf" or record.name.startswith("edgevcf.")


class _LogFile:
    """The log file, and file descriptors 1 and 2 pointed at it."""

    def __init__(self, final: Path) -> None:
        # Written under a name of this process's own (two commands at once never share a file),
        # renamed to ``final`` at the end unless :func:`log_to` moved it first.
        self.final: Path | None = final
        self.path = final.with_name(f"{final.stem}-{os.getpid()}{final.suffix}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.raw, self.text = self._open(self.path)

    @staticmethod
    def _open(path: Path) -> tuple[IO[bytes], TextIO]:
        # A new file, and two handles on it in append mode: a raw one for the file descriptors
        # (and child processes), a line-buffered text one for Python's writers. O_APPEND puts
        # every write at the end, so neither overwrites the other.
        path.write_bytes(b"")
        raw = open(path, "ab", buffering=0)  # noqa: SIM115 (lives as long as the capture)
        text = open(path, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115
        return raw, text

    def point_fds(self) -> None:
        for fd in (1, 2):
            os.dup2(self.raw.fileno(), fd)

    def move(self, dest: Path) -> None:
        if dest.resolve() == self.path.resolve():
            return
        self.text.flush()
        dest.parent.mkdir(parents=True, exist_ok=True)
        raw, text = self._open(dest)
        with open(self.path, "rb") as before:
            raw.write(before.read())
        old = (self.raw, self.text, self.path)
        self.raw, self.text, self.path, self.final = raw, text, dest, None
        self.point_fds()
        _tool_out.target = _tool_err.target = text
        for h in logging.getLogger().handlers:
            if isinstance(h, _FileHandler):
                h.setStream(text)
        old[0].close()
        old[1].close()
        with contextlib.suppress(OSError):
            old[2].unlink()

    def close(self) -> None:
        for f in (self.text, self.raw):
            with contextlib.suppress(ValueError, OSError):
                f.close()
        if self.final is not None:
            with contextlib.suppress(OSError):
                os.replace(self.path, self.final)
                self.path = self.final


class _ToolStream(io.TextIOBase):
    """What ``sys.stdout``/``sys.stderr`` are while captured: a forwarder to the log.

    Third-party handlers keep a reference to the ``sys.stderr`` of the moment they were made
    (NNCF's, absl's); a forwarder that outlives the capture sends their later writes to the
    real stream again instead of to a closed file.
    """

    def __init__(self, fallback: str) -> None:
        self.target: TextIO | None = None
        self._fallback = fallback

    def _stream(self) -> TextIO:
        if self.target is not None:
            return self.target
        real: TextIO = getattr(sys, f"__{self._fallback}__") or io.StringIO()
        return real

    def write(self, s: str) -> int:
        # Never fail a toolchain's print: the log closed under a writer in another thread
        # (ValueError), or a full disk / file-size limit (OSError), loses the text, not the run.
        try:
            return self._stream().write(s)
        except (ValueError, OSError):
            return len(s)

    def flush(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self._stream().flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True


_tool_out = _ToolStream("stdout")
_tool_err = _ToolStream("stderr")


class _FileHandler(logging.StreamHandler):
    """The log file's handler (a type of its own so :func:`log_to` can find it)."""


def _console_copy(stream: TextIO, fd: int) -> tuple[TextIO, bool]:
    """A stream to the console that survives pointing ``fd`` at the log.

    A stream on the real terminal (file descriptor ``fd``) is duplicated first; any other
    stream (click's test runner, a notebook) is used as it is.
    """
    try:
        if stream.fileno() == fd:
            stream.flush()
            dup = os.dup(fd)
            enc = getattr(stream, "encoding", None) or "utf-8"
            return os.fdopen(dup, "w", buffering=1, encoding=enc, errors="replace"), True
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return stream, False


def _open_log() -> _LogFile | None:
    """The log file at its default place, else in the temporary folder, else None."""
    import tempfile

    for path in (
        default_log_path(),
        Path(tempfile.gettempdir()) / f"edgevcf-{os.getuid()}" / LOG_NAME,
    ):
        try:
            return _LogFile(path)
        except OSError as exc:
            logging.getLogger(__name__).debug("no log at %s: %s", path, exc)
    return None


@contextlib.contextmanager
def capture(*, level: int = logging.INFO, enabled: bool = True) -> Iterator[None]:
    """Split console and log for the length of a command (see the module docstring).

    Args:
        level: Level of edgevcf's records on the console (INFO; WARNING with ``--quiet``).
        enabled: False (``--debug``/``--verbose``): no split, every logger's records at
            ``level`` on stderr as they come.
    """
    global _console_out, _console_err, _log, _last_log
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_sys = (sys.stdout, sys.stderr)
    log = None
    if enabled:
        with _lock:
            nested = _log is not None  # a command calling another: the outer split holds
        if nested:
            yield
            return
        log = _open_log()
    if log is None:  # --verbose / --debug, or nowhere to write a log: show everything
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))
        root.handlers, root.level = [handler], level
        try:
            yield
        finally:
            root.handlers, root.level = saved_handlers, saved_level
        return
    out, out_dup = _console_copy(sys.stdout, 1)
    err, err_dup = _console_copy(sys.stderr, 2)
    saved_fds = {fd: os.dup(fd) for fd in (1, 2)}
    console = logging.StreamHandler(err)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    console.setLevel(level)
    console.addFilter(_OnlyEdgevcf())
    to_file = _FileHandler(log.text)
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    try:
        with _lock:
            _console_out, _console_err, _log = out, err, log
            log.point_fds()
            _tool_out.target = _tool_err.target = log.text
            sys.stdout, sys.stderr = _tool_out, _tool_err
        root.handlers, root.level = [console, to_file], min(level, logging.INFO)
        logging.captureWarnings(True)
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers, root.level = saved_handlers, saved_level
        with _lock:
            sys.stdout, sys.stderr = saved_sys
            _tool_out.target = _tool_err.target = None
            for fd, saved in saved_fds.items():
                os.dup2(saved, fd)
                os.close(saved)
            log.close()
            _console_out = _console_err = _log = None
            _last_log = log.path
        for stream, dup in ((out, out_dup), (err, err_dup)):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
                if dup:
                    stream.close()


__all__ = [
    "LOG_NAME",
    "capture",
    "default_log_path",
    "forget_last_log",
    "log_path",
    "log_to",
    "stderr",
    "stdout",
]
