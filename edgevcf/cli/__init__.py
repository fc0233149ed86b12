"""The ``edgevcf`` command line: parse, call the library, print. The one error boundary.

Subcommands are loaded lazily (click's LazyGroup pattern) so ``edgevcf --help`` imports no
heavy backend. Library errors (:class:`~edgevcf.errors.EdgeVCFError`) become ``Error: ...`` and
``hint: ...`` on stderr with the error's exit code; ``--debug`` shows the traceback instead.
Any other exception is a bug and keeps its traceback.

The console holds edgevcf's own output only: what the toolchains print (Python logging,
warnings, native libraries writing to file descriptors 1 and 2) goes to a log file
(:mod:`edgevcf.console` says where); ``--verbose`` or ``--debug`` show it instead.
Commands write with :func:`echo`, which reaches the console while that split is in force.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import click

from edgevcf import __version__, console
from edgevcf.deps import import_symbol
from edgevcf.errors import EdgeVCFError


def echo(message: str = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` to the console (stdout, or stderr with ``err``), never into the log."""
    click.echo(message, file=console.stderr() if err else console.stdout(), nl=nl)


#: Where the root command leaves the console settings for the leaf commands (``ctx.meta``).
CONSOLE_KEY = "edgevcf.console"

#: name -> "module:attribute" of each top-level command, imported only when used.
LAZY_COMMANDS: dict[str, str] = {
    "data": "edgevcf.cli.data:data",
    "train": "edgevcf.cli.model:train",
    "evaluate": "edgevcf.cli.model:evaluate",
    "import-checkpoint": "edgevcf.cli.model:import_checkpoint",
    "import-model": "edgevcf.cli.model:import_model",
    "export": "edgevcf.cli.export:export",
    "targets": "edgevcf.cli.export:targets",
    "build": "edgevcf.cli.export:build",
    "predict": "edgevcf.cli.runtime:predict",
    "verify": "edgevcf.cli.runtime:verify",
    "score": "edgevcf.cli.runtime:score_cmd",
    "bench": "edgevcf.cli.runtime:bench",
    "validate": "edgevcf.cli.site:validate",
    "card": "edgevcf.cli.site:card",
    "demo": "edgevcf.cli.runtime:demo",
    "serve": "edgevcf.cli.serve:serve",
    "shadow": "edgevcf.cli.shadow:shadow",
    "promote": "edgevcf.cli.shadow:promote",
    "keys": "edgevcf.cli.keys:keys",
    "sign": "edgevcf.cli.keys:sign",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(
        self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            command: click.Command = import_symbol(self.lazy_commands[cmd_name])
            return _captured(command)
        return super().get_command(ctx, cmd_name)


def _captured(cmd: click.Command) -> click.Command:
    """Run each leaf command's callback inside :func:`edgevcf.console.capture`.

    Not earlier: ``--help`` and usage errors are printed while a command line is parsed, after
    the root's callback has run, and belong on the console.
    """
    if getattr(cmd, "_edgevcf_captured", False):
        return cmd
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _captured(sub)
    elif cmd.callback is not None:
        inner = cmd.callback

        @functools.wraps(inner)
        def run(*args: Any, **kwargs: Any) -> Any:
            settings = click.get_current_context().find_root().meta.get(CONSOLE_KEY, {})
            with console.capture(**settings):
                return inner(*args, **kwargs)

        cmd.callback = run
    cmd._edgevcf_captured = True  # type: ignore[attr-defined]
    return cmd


class RootGroup(LazyGroup):
    """Root group: turns library errors into a clean message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        console.forget_last_log()
        try:
            return super().invoke(ctx)
        except EdgeVCFError as exc:
            if ctx.params.get("debug"):
                raise
            echo(f"Error: {exc.message}", err=True)
            if exc.hint:
                echo(f"hint: {exc.hint}", err=True)
            log = console.log_path()
            if log is not None and log.is_file() and log.stat().st_size:
                echo(f"log: {log} (toolchain output; --debug shows everything)", err=True)
            ctx.exit(exc.exit_code)


@click.group(
    cls=RootGroup,
    lazy_commands=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="edgevcf")
@click.option(
    "--debug", is_flag=True, help="Show tracebacks and debug logs instead of short error messages."
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show the toolchains' own output (ONNX Runtime, NNCF, TensorFlow, ...) on the console "
    "instead of only in the log file.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no informational logs.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool, quiet: bool) -> None:
    """edgevcf: deploy a fresh vertebral-fracture classifier to edge hardware and prove it works.

    \b
    Typical flow:
      edgevcf data synth --out data/ --patients 200 --fast   # built-in synthetic radiographs
      edgevcf data check data/manifest.csv                    # counts, leakage, unreadable files
      edgevcf train --arch mobilenet_v3_large --data data/manifest.csv --out runs/mnv3
      edgevcf evaluate runs/mnv3/model.safetensors --data data/manifest.csv --out eval/
      edgevcf targets                                         # profiles and what runs here
      edgevcf export --target jetson,openvino,mobile --checkpoint runs/mnv3/model.safetensors \\
          --calib data/manifest.csv --out bundles/
    """
    from edgevcf import progress

    progress.set_enabled(not quiet)
    level = logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO)
    ctx.meta[CONSOLE_KEY] = {"level": level, "enabled": not (debug or verbose)}


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point.

    SIGTERM (a service manager stopping the cart software, ``kill``) becomes a normal exit so
    that clean-up runs: staging folders of an interrupted export or report are removed instead
    of being left behind.
    """
    import signal

    def _terminate(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if _in_main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    cli.main(args=argv, prog_name="edgevcf")


def _in_main_thread() -> bool:
    """Whether this is the main thread (only it may install signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()


__all__ = ["cli", "echo", "main"]
