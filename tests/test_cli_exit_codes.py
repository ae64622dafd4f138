"""Exit codes of errors nobody planned for: an unexpected exception is a failure (1), not bad input (2),
told in one line without a traceback (``--debug`` shows it); OSError-like input problems stay 2."""
import pytest
from click.testing import CliRunner

from jetson_deploy import machine
from jetson_deploy.cli import cli, describe_error


def _info(monkeypatch, exc, *flags):
    def probe(*args, **kwargs):
        raise exc

    monkeypatch.setattr(machine, "probe", probe)
    return CliRunner().invoke(cli, list(flags) + ["info", "--no-gpu"])


@pytest.mark.parametrize("exc", [RuntimeError("the driver said no"), KeyError("slot"), ValueError("odd")])
def test_an_unexpected_error_exits_1_in_one_line(monkeypatch, exc):
    r = _info(monkeypatch, exc)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: unexpected {}: ".format(type(exc).__name__)), r.output
    assert "--debug" in lines[0] and "Traceback" not in r.output


def test_debug_shows_the_traceback_instead(monkeypatch):
    r = _info(monkeypatch, RuntimeError("the driver said no"), "--debug")
    assert isinstance(r.exception, RuntimeError) and r.exit_code != 0


def test_input_problems_stay_usage_errors():
    assert describe_error(FileNotFoundError(2, "No such file or directory", "/x/spec.json")) == (
        "/x/spec.json: No such file or directory", 2)
    assert describe_error(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))[1] == 2
    assert describe_error(RuntimeError("boom")) == ("unexpected RuntimeError: boom", 1)
