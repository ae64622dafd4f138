"""The ``jetson-deploy`` command: a click group whose commands load on demand.

Each command lives in ``jetson_deploy.commands.<module>`` and is imported only when
invoked (or when its help is shown), so ``jetson-deploy --help`` needs only click.
Errors raised by the API as :class:`~jetson_deploy.errors.JetsonDeployError` become
one ``Error:`` line and the exit code they carry.
"""
import copy
import functools
import importlib
import logging
import os
import platform
import signal
import sys
from typing import Any, Dict, List, Optional, Tuple

import click

from . import __version__
from .errors import BadInput, JetsonDeployError

# name -> (module, attribute, one-line help shown in the group listing without importing)
COMMANDS: "Dict[str, Tuple[str, str, str]]" = {
    "info": ("jetson_deploy.commands.info", "info", "Describe this machine: Jetson model, JetPack, TensorRT, CUDA, GPU."),
    "demo": ("jetson_deploy.commands.demo", "demo", "Run the whole path on the embedded demo model (no GPU, no downloads)."),
    "calibrate": ("jetson_deploy.commands.calibrate", "calibrate", "Build an INT8 calibration set and ranges from images/videos."),
    "convert": ("jetson_deploy.commands.convert", "convert", "Convert a PyTorch/ONNX model into a bundle (ONNX, engines)."),
    "bundle": ("jetson_deploy.commands.bundle", "bundle", "Inspect, verify, sign and pack bundles."),
    "deploy": ("jetson_deploy.commands.deploy", "deploy", "Push a bundle to Jetsons over SSH and activate it atomically."),
    "rollback": ("jetson_deploy.commands.deploy", "rollback", "Switch hosts back to the previously active bundle version."),
    "devices": ("jetson_deploy.commands.deploy", "devices", "List installed and active bundle versions on hosts."),
    "publish": ("jetson_deploy.commands.publish", "publish", "Push a bundle to an OCI registry, tagged per channel; promote tags."),
    "agent": ("jetson_deploy.commands.agent", "agent", "On the board: follow a registry tag and update this board from it."),
    "fleet": ("jetson_deploy.commands.fleet", "fleet", "Boards that pull from a registry: their versions and health."),
    "run": ("jetson_deploy.commands.run", "run", "Run a bundle on a live source (camera, RTSP, video, images)."),
    "bench": ("jetson_deploy.commands.run", "bench", "Benchmark engine-only vs full-pipeline throughput and latency."),
    "service": ("jetson_deploy.commands.service", "service", "Run a deployed bundle as a systemd service (boot, restart, journal)."),
    "selftest": ("jetson_deploy.commands.selftest", "selftest", "Exercise the real device path (TensorRT, CUDA, camera) and report."),
}

# Workstation commands: they need torch/onnx and Python 3.8+.  The rest (the device side)
# runs on Python 3.6 (JetPack 4.6, the Nano) as well.
HOST_ONLY = ("calibrate", "convert", "demo")


def _host_only(name: str, callback: "Any") -> "Any":
    @functools.wraps(callback)
    def refuse(*args: "Any", **kwargs: "Any") -> None:
        raise BadInput(
            "'{}' needs Python 3.8+ and torch (this is Python {}): run it on the workstation or on "
            "JetPack 5/6; this board runs bundles made there (run, bench, bundle, selftest)".format(
                name, platform.python_version()))

    return refuse


class LazyGroup(click.Group):
    """A group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: "click.Context") -> "List[str]":
        return sorted(set(COMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: "click.Context", name: str) -> "Optional[click.Command]":
        cmd = super().get_command(ctx, name)
        if cmd is not None or name not in COMMANDS:
            return cmd
        module, attr, _ = COMMANDS[name]
        cmd = getattr(importlib.import_module(module), attr)
        if name in HOST_ONLY and sys.version_info < (3, 8) and cmd.callback is not None:
            cmd = copy.copy(cmd)
            cmd.callback = _host_only(name, cmd.callback)
        return cmd

    def format_commands(self, ctx: "click.Context", formatter: "click.HelpFormatter") -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx) if name in COMMANDS]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: "click.Context"):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except JetsonDeployError as exc:
            if _debug(ctx):
                raise
            click.echo("Error: {}".format(_one_line(str(exc))), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            code = 128 + getattr(exc, "signum", signal.SIGINT)
            click.echo("Error: {}; outputs are left as they were before this run".format(
                "stopped (SIGTERM)" if code == 143 else "interrupted"), err=True)
            ctx.exit(code)
        except Exception as exc:  # every other error: one line, never a traceback (unless --debug)
            if _debug(ctx):
                raise
            message, code = describe_error(exc)
            click.echo("Error: {} (run with --debug or {}=1 for the traceback)".format(message, DEBUG_ENV), err=True)
            ctx.exit(code)


DEBUG_ENV = "JETSON_DEPLOY_DEBUG"


def _debug(ctx: "click.Context") -> bool:
    obj = ctx.find_root().meta.get("jetson_deploy.debug")
    return bool(obj) or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no message)"


def describe_error(exc: BaseException) -> "Tuple[str, int]":
    """One line naming what failed, and the exit code (2: bad input, 1: failed)."""
    if isinstance(exc, OSError):
        names = [n for n in (exc.filename, getattr(exc, "filename2", None)) if n is not None]
        what = " -> ".join(os.fsdecode(n) if isinstance(n, bytes) else str(n) for n in names)
        reason = exc.strerror or _one_line(str(exc))
        return ("{}: {}".format(what, reason) if what else reason), 2
    if isinstance(exc, UnicodeError):
        return "a file or name is not valid UTF-8 text ({}): give a UTF-8 text file and names".format(_one_line(str(exc))), 2
    if isinstance(exc, RecursionError):
        return "an input is nested too deeply to read (a JSON/YAML file with thousands of levels?)", 2
    if isinstance(exc, MemoryError):
        return "out of memory (is a shape, size or count in the input far too large?)", 2
    if isinstance(exc, OverflowError):
        return "a number in the input is too large: {}".format(_one_line(str(exc))), 2
    return "unexpected {}: {}".format(type(exc).__name__, _one_line(str(exc))), 1


class _EchoHandler(logging.Handler):
    """The one message channel of the CLI: library ``logging`` records become stderr lines.

    ``click.echo`` looks ``sys.stderr`` up at each call, so click's test runner sees them too.
    """

    def emit(self, record: "logging.LogRecord") -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - never let a message break a command
            self.handleError(record)


def install_message_handler(level: int = logging.INFO) -> None:
    """Route the ``jetson_deploy`` loggers to stderr as plain lines (idempotent).

    ``level`` applies to the handler as well as the logger: a block that lowers a child logger to
    INFO to collect its notes (``_messages.collect_messages``) must not print them under ``--quiet``."""
    root = logging.getLogger("jetson_deploy")
    handlers = [h for h in root.handlers if isinstance(h, _EchoHandler)]
    if not handlers:
        handler = _EchoHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        handlers = [handler]
    for h in handlers:
        h.setLevel(level)
    root.setLevel(level)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="jetson-deploy")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error (also {}=1).".format(DEBUG_ENV))
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors on stderr: no progress lines, notes or progress bars.")
@click.pass_context
def cli(ctx: "click.Context", debug: bool, quiet: bool) -> None:
    """Calibrate, convert, bundle, deploy and run PyTorch models on NVIDIA Jetson.

    \b
    Examples:
      jetson-deploy demo --workdir demo-out
      jetson-deploy --quiet convert jetson_deploy.demo:load_model --spec jetson_deploy/demo/spec.json -o shapes-1.0.0
      jetson-deploy COMMAND --help     # every command's options, with examples
    """
    ctx.meta["jetson_deploy.debug"] = debug
    ctx.meta["jetson_deploy.quiet"] = quiet
    install_message_handler(logging.WARNING if quiet else logging.INFO)
    quiet_native_libraries()
    from ._scratch import use_private_tempdir

    use_private_tempdir()


def quiet_native_libraries() -> None:
    """OpenCV/FFmpeg print warnings before our one error line: only errors; ONNX Runtime writes no telemetry file."""
    for name, value in (("ORT_DISABLE_TELEMETRY", "1"), ("OPENCV_LOG_LEVEL", "ERROR"), ("OPENCV_FFMPEG_LOGLEVEL", "16"), ("OPENCV_VIDEOIO_DEBUG", "0")):
        os.environ.setdefault(name, value)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, ``kill``, systemd, most supervisors) handled as Ctrl-C is: a run
    drains, publishes its results and exits 0; stopped again while publishing it exits 143."""

    signum = signal.SIGTERM


def _on_sigterm(signum: int, frame: "Any") -> None:
    raise Terminated()


def ignore_stop_signals() -> None:
    """The command is done (results published, exit code known): from here to the process's end a
    SIGINT/SIGTERM is ignored, so it exits with that code and never dies by the signal (-2/-15).
    Ignored, not handled: the interpreter resets Python-level handlers to the default while it
    finalizes, and a signal then would kill it."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            pass


def main(argv: "Optional[List[str]]" = None) -> None:
    # The console command: our handler is the only one; a root handler someone configured
    # must not print every line twice.  (Library use and click's test runner keep propagation.)
    logging.getLogger("jetson_deploy").propagate = False
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="jetson-deploy")
    except SystemExit:
        ignore_stop_signals()
        raise
    except KeyboardInterrupt as exc:  # outside a command (start-up): the same codes as inside one
        ignore_stop_signals()
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
