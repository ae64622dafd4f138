"""Odd values for every flag and argument of every command; report what is not one clear line.

    python scripts/fuzz_cli.py [--json] [COMMAND ...]

Runs the CLI in this process (click's runner) in a scratch directory, once per (command, flag,
value), the other arguments made valid where that is cheap.  Reports each run that printed a
traceback, ended in ``Error: unexpected ...``, exited with a code other than 0/1/2, or printed
more than one ``Error:`` line.  Device-touching places are never given the real root: ``--rootfs``
and output flags get scratch paths, ``service install`` runs with ``--print``.
"""
import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VALUES = ["", " ", "-1", "0", "nan", "inf", "1e309", "x" * 300, "a\nb", "/dev/null", "/dev/zero", ".", "DIR", "FILE",
          "FIFO", "\udcff", "0=", "-", "::", "@", "%n"]
SKIP_FLAGS = {"help", "force", "version"}
DANGEROUS = {"rootfs", "root", "workdir", "output", "out", "cache_dir", "prefix", "hosts", "key"}


def commands():
    import click

    from jetson_deploy.cli import cli

    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            for sub in cmd.list_commands(click.Context(cmd)):
                yield [name, sub], cmd.get_command(click.Context(cmd), sub)
        else:
            yield [name], cmd


class Timeout(Exception):
    pass


def invoke(args, scratch, seconds=20):
    from click.testing import CliRunner

    from jetson_deploy.cli import cli

    def alarm(*_):
        raise Timeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    here = os.getcwd()
    os.chdir(str(scratch))
    try:
        kw = {"mix_stderr": False} if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else {}
        r = CliRunner(**kw).invoke(cli, args)
        return r.exit_code, r.stdout, r.stderr, r.exc_info
    except Timeout:
        return None, "", "TIMEOUT", None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(here)


def concrete(value, scratch):
    return {"DIR": str(scratch / "dir"), "FILE": str(scratch / "file.bin"), "FIFO": str(scratch / "fifo")}.get(value, value)


RUNNABLE = {  # command -> options that make it run quickly on BUNDLE
    "run": ["--source", "synthetic://32x24?pool=2", "--max-frames", "2", "--backend", "onnxruntime", "--interval", "0"],
    "bench": ["--iterations", "10", "--warmup", "0", "--backend", "onnxruntime", "--source", "synthetic://32x24?pool=2"],
}


def base_args(path, cmd, scratch, bundle=None):
    """Arguments that make the command otherwise runnable and harmless."""
    import click

    args = []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            args.append(str(bundle) if bundle and "bundle" in p.name else str(scratch / "dir"))
        elif p.required and p.name not in ("source",):
            args += [p.opts[0], str(scratch / "file.bin")]
    if path == ["service", "install"]:
        args += ["--print", "--source", "csi://0", "--user", "nvidia"]
    if bundle and path[0] in RUNNABLE:
        args += RUNNABLE[path[0]]
    elif any(p.name == "source" and p.required for p in cmd.params if isinstance(p, click.Option)):
        args += ["--source", "synthetic://32x24?pool=2"]
    return args


def bad(rc, out, err, exc):
    text = out + err
    if rc is None:
        return "timeout"
    if "Traceback" in text:
        return "traceback"
    if "Error: unexpected" in text:
        return "unexpected"
    if rc not in (0, 1, 2):
        return "exit {}".format(rc)
    if sum(1 for ln in err.splitlines() if ln.startswith("Error:")) > 1:
        return "several Error lines"
    if exc is not None and exc[0] not in (SystemExit,):
        return "escaped {}".format(exc[0].__name__)
    return None


def main(argv=None):
    import click

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("only", nargs="*")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print each command line on stderr before it runs")
    ap.add_argument("--bundle", default=None, help="a runnable bundle (ONNX Runtime) for run, bench and bundle commands")
    a = ap.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="jd-fuzz-"))
    (scratch / "dir").mkdir()
    (scratch / "file.bin").write_bytes(os.urandom(64))
    os.mkfifo(str(scratch / "fifo"))
    os.environ.update(HOME=str(scratch), TMPDIR=str(scratch))
    found = []
    runs = 0
    for path, cmd in commands():
        if a.only and path[0] not in a.only:
            continue
        base = base_args(path, cmd, scratch, a.bundle)
        slots = [(p, "arg") for p in cmd.params if isinstance(p, click.Argument)]
        slots += [(p, "opt") for p in cmd.params if isinstance(p, click.Option) and not p.is_flag and p.name not in SKIP_FLAGS]
        for param, kind in slots:
            for v in VALUES:
                val = concrete(v, scratch)
                if param.name in DANGEROUS and v in ("/", ".", "-"):
                    continue
                if kind == "arg":
                    i = [q for q in cmd.params if isinstance(q, click.Argument)].index(param)
                    args = list(base)
                    args[i] = val
                else:
                    args = base + [param.opts[0], val]
                if path[0] == "service" and path[1] == "install" and param.name == "print_only":
                    continue
                if a.verbose:
                    print(" ".join(path + args)[:200], file=sys.stderr, flush=True)
                rc, out, err, exc = invoke(path + args, scratch)
                runs += 1
                why = bad(rc, out, err, exc)
                if why:
                    line = next((ln for ln in (err + out).splitlines() if ln.startswith("Error")), (err + out).strip()[-200:])
                    found.append({"command": " ".join(path), "param": param.name, "value": v, "why": why, "rc": rc, "line": line})
    if a.json:
        print(json.dumps({"runs": runs, "found": found}, indent=1))
    else:
        for f in found:
            print("{command} {param}={value!r}: {why} (exit {rc}): {line}".format(**f))
        print("{} runs, {} not one clear line".format(runs, len(found)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
