"""Option groups shared by several commands (sqlite-utils style decorators)."""
import click

from ..vocab import BACKENDS


def backend_option(default: str = "auto"):
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=default,
        show_default=True,
        help="Inference backend; auto picks TensorRT when present, else torch CUDA, else ONNX Runtime.",
    )


def json_option():
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object to stdout and nothing else there.")


class FiniteFloat(click.ParamType):
    """A float in [lo, hi]: click.FloatRange lets NaN through (every comparison with NaN is false)."""

    name = "number"

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail("{!r} is not a number".format(value), param, ctx)
        if not (self.lo <= x <= self.hi):  # also NaN
            self.fail("{} is not between {:g} and {:g}".format(value, self.lo, self.hi), param, ctx)
        return x


def device_option():
    return click.option("--device", default=None, callback=_check_device,
                        help="Device for the engine, e.g. cuda:0 or cpu (default: the backend's choice).")


def _check_device(ctx, param, value):  # type: ignore[no-untyped-def]
    import re

    if value is not None and not re.match(r"^(cpu|cuda(:\d{1,2})?|\d{1,2})$", value):
        raise click.BadParameter("{!r} is not a device: give cpu, cuda, cuda:N or N".format(value), ctx, param)
    return value


def nonempty(ctx, param, value):  # type: ignore[no-untyped-def]
    """Callback: an empty string is not the current directory."""
    if value is not None and not str(value).strip():
        raise click.BadParameter("must not be empty", ctx, param)
    return value


def key_option():
    return click.option(
        "--key", "key", type=click.Path(dir_okay=False), default=None,
        help="Refuse the bundle unless it carries a valid signature by this public key "
             "(default: $JETSON_DEPLOY_REQUIRE_KEY or /etc/jetson-deploy/trusted.pub when present).")


def global_quiet() -> bool:
    """``jetson-deploy --quiet CMD``: the command also hides its progress bars."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get("jetson_deploy.quiet"))


#: The release that drops the old spellings of renamed flags (Polygraphy-style: a shim says when it goes).
REMOVE_IN = "0.3.0"


def warn_renamed(command: str, old: str, new: str) -> None:
    """One warning line for an old flag spelling that still works for one more release."""
    import logging

    logging.getLogger("jetson_deploy.commands").warning(
        "warning: `%s %s` is renamed `%s`; the old spelling goes in %s", command, old, new, REMOVE_IN)
