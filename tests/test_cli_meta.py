"""Meta-tests: every command has help, is in the README, and works on the base install."""
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import jetson_deploy
from jetson_deploy.cli import COMMANDS, cli

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ["torch", "cv2", "onnxruntime", "onnx", "onnxscript", "tensorrt", "pycuda", "torch2trt", "yaml", "jsonschema", "cryptography"]


def all_commands():
    """(path, command) for every command and subcommand."""
    out = []
    ctx = click.Context(cli)

    def walk(prefix, group):
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            out.append((prefix + [name], cmd))
            if isinstance(cmd, click.Group):
                walk(prefix + [name], cmd)

    walk([], cli)
    return out


def test_every_command_loads_and_has_help():
    cmds = all_commands()
    assert {p[0] for p, _ in cmds} >= set(COMMANDS)
    for path, cmd in cmds:
        assert cmd is not None, path
        assert (cmd.help or "").strip(), "command {} has no help text".format(" ".join(path))
        r = CliRunner().invoke(cli, path + ["--help"])
        assert r.exit_code == 0, (path, r.output)
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, "option {} of {} has no help".format(param.opts, " ".join(path))


def test_precision_choices_are_the_one_vocabulary():
    """Every --precision offers exactly jetson_deploy.vocab.PRECISIONS (one definition, no drifting copies)."""
    from jetson_deploy.vocab import PRECISIONS

    seen = []
    for path, cmd in all_commands():
        for param in cmd.params:
            if isinstance(param, click.Option) and "--precision" in param.opts:
                seen.append(" ".join(path))
                choices = tuple(c for c in param.type.choices if c != "auto")  # selftest: auto picks one
                assert set(choices) <= set(PRECISIONS), (path, param.type.choices)
                if path[0] != "selftest":
                    assert choices == PRECISIONS, (path, param.type.choices)
    assert {"convert", "demo"} <= set(seen), seen


def test_every_top_level_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in COMMANDS:
        assert re.search(r"jetson-deploy {}\b".format(name), readme), "README does not show `jetson-deploy {}`".format(name)


def test_version_and_help():
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and jetson_deploy.__version__ in r.output
    r = CliRunner().invoke(cli, ["-h"])
    assert r.exit_code == 0 and "calibrate" in r.output


BLOCKER = textwrap.dedent(
    """
    import sys, importlib.abc
    BLOCK = set({heavy!r})
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCK:
                raise ImportError("blocked for the base-install test: " + name)
            return None
    sys.meta_path.insert(0, Blocker())
    """
)


def run_blocked(code):
    script = BLOCKER.format(heavy=HEAVY) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=str(ROOT), timeout=120)


def test_base_install_imports_every_module_and_shows_every_help():
    """With no optional dependency importable: every submodule imports, every --help works."""
    r = run_blocked(
        """
        import importlib, pkgutil, jetson_deploy
        bad = []
        for m in pkgutil.walk_packages(jetson_deploy.__path__, "jetson_deploy."):
            if m.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(m.name)
            except Exception as e:
                bad.append("%s: %s" % (m.name, e))
        from click.testing import CliRunner
        from jetson_deploy.cli import cli
        import click
        ctx = click.Context(cli)
        def walk(prefix, group):
            for name in group.list_commands(ctx):
                cmd = group.get_command(ctx, name)
                r = CliRunner().invoke(cli, prefix + [name, "--help"])
                if r.exit_code != 0:
                    bad.append("help %s: %s %s" % (prefix + [name], r.output, r.exception))
                if isinstance(cmd, click.Group):
                    walk(prefix + [name], cmd)
        walk([], cli)
        print("\\n".join(bad))
        sys.exit(1 if bad else 0)
        """
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_dependency_message_says_what_to_install():
    r = run_blocked(
        """
        from jetson_deploy._lazy import require
        from jetson_deploy.errors import MissingDependency
        try:
            require("torch", "model export")
        except MissingDependency as e:
            print(e)
        """
    )
    assert "torch is needed for model export" in r.stdout and "pip install" in r.stdout


def test_no_heavy_import_at_module_top():
    pat = re.compile(r"^(import|from) (tensorrt|pycuda|torch|torch2trt|onnxruntime|onnx|cv2)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "jetson_deploy").rglob("*.py") if pat.search(p.read_text())]
    assert not offenders, offenders


@pytest.mark.needs("vermin")
def test_package_and_device_tests_parse_on_python_36():
    """JetPack 4.6 (the Nano) ships Python 3.6: the package and the device-side tests must run there.

    vermin runs from this interpreter (its package has no ``__main__``), never from PATH.
    vermin does not see the PEP 562 trap (a module ``__getattr__`` ignored on 3.6):
    tests/test_core_py36.py does, in the 3.6 CI leg.
    """
    import vermin  # noqa: F401
    r = subprocess.run(
        [sys.executable, "-c", "import sys, vermin; sys.argv[0] = 'vermin'; sys.exit(vermin.main())", "-t=3.6-", "--no-tips", "--violations", "--backport", "dataclasses",
         "jetson_deploy", "tests"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, cwd=str(ROOT),
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_public_api_resolves_lazily():
    r = run_blocked(
        """
        import sys, jetson_deploy as jd
        for name in jd._API:
            obj = getattr(jd, name)
            assert callable(obj), name
        assert not any(m in sys.modules for m in ("torch", "cv2", "onnxruntime", "tensorrt")), "heavy import"
        print("ok", len(jd._API))
        """
    )
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr
