#!/usr/bin/env python3
"""Mutation testing by mutmut, one module at a time with only that module's own tests.

    nice python scripts/mutmut_module.py service                       # every mutant of jetson_deploy/service.py
    nice python scripts/mutmut_module.py runtime --sample 100          # a seeded random sample of its mutants
    nice python scripts/mutmut_module.py deploy --baseline --sample 100   # "before": only the tests on main
    nice python scripts/mutmut_module.py deploy --retest               # "after": its survivors against every test
    python scripts/mutmut_module.py deploy --survivors                 # the last run's survivors (recorded or open)
    python scripts/mutmut_module.py deploy --classify                  # open survivors sorted: message/string/logic

Modules and their tests: scripts/mutmut_modules.cfg.  The run happens in a scratch copy
(/tmp/jd-mutmut-MODULE, kept so that a later call resumes and ``--retest`` re-checks the
survivors against today's tests), with pytest's ``-m "not slow"`` (no sshd/ansible tests: their
minutes per mutant do not fit a shared 2-core machine) and one mutmut worker.

Score = killed (incl. timeouts) / checked mutants; a mutant no selected test executes counts as
a survivor ("no tests").  Sampling: mutant names sorted, shuffled with ``random.Random(seed)``,
the first N checked.  A survivor is killed by a new test or recorded, with the reason, in
docs/mutmut_equivalents.txt (``--survivors`` marks the ones already recorded).
"""
import argparse
import configparser
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "scripts" / "mutmut_modules.cfg"
EQUIVALENTS = ROOT / "docs" / "mutmut_equivalents.txt"
SKIP = {".git", ".venv", ".venv36", ".venv38", "__pycache__", ".pytest_cache", "build", "dist", "mutants", ".gpuwheels",
        ".whl", "out", "demo-out"}
KILLED = {"killed", "timeout", "caught by type check"}


def _copy_tree(dst: Path) -> None:
    if dst.exists():
        for name in os.listdir(str(ROOT)):
            if name in SKIP or name.endswith(".egg-info"):
                continue
            target = dst / name
            if target.is_dir():
                shutil.rmtree(str(target))
            elif target.exists():
                target.unlink()
    dst.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns(*SKIP, "*.egg-info")
    for name in os.listdir(str(ROOT)):
        if name in SKIP or name.endswith(".egg-info"):
            continue
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(str(src), str(dst / name), symlinks=True, ignore=ignore)
        else:
            shutil.copy2(str(src), str(dst / name))


def _module(name: str) -> "dict":
    cp = configparser.ConfigParser()
    cp.read(str(CONFIG))
    if name not in cp:
        sys.exit("unknown module {!r}; {} has: {}".format(name, CONFIG, ", ".join(cp.sections())))
    return {"mutate": cp[name]["mutate"].split(), "tests": cp[name]["tests"].split()}


def _write_setup_cfg(work: Path, mod: "dict") -> None:
    also = [n for n in os.listdir(str(ROOT)) if n not in SKIP and not n.endswith(".egg-info")
            and n not in ("jetson_deploy", "tests")]
    text = ["[mutmut]", "source_paths = jetson_deploy", "only_mutate ="] + ["    " + g for g in mod["mutate"]]
    text += ["pytest_add_cli_args_test_selection ="] + ["    " + t for t in mod["tests"]]
    text += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -m", "    not slow", "    -o", "    addopts="]
    text += ["also_copy ="] + ["    " + a for a in sorted(also)]
    (work / "setup.cfg").write_text("\n".join(text) + "\n")


def _mutmut(work: Path, args: "list", log) -> int:
    exe = str(Path(sys.executable).with_name("mutmut"))
    env = dict(os.environ, JD_STRICT_SKIPS="0", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.call([exe] + args, cwd=str(work), env=env, stdout=log, stderr=subprocess.STDOUT)


def _statuses(work: Path) -> "dict":
    exe = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([exe, "results", "--all", "true"], cwd=str(work), stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return dict(m.groups() for m in re.finditer(r"^\s+(\S+): (.+)$", out, re.M))


def _recorded() -> "set":
    if not EQUIVALENTS.exists():
        return set()
    return {ln.split()[0] for ln in EQUIVALENTS.read_text().splitlines() if ln.strip() and not ln.startswith("#")}


def _report(name: str, work: Path, wanted: "list") -> "dict":
    st = _statuses(work)
    checked = {k: v for k, v in st.items() if (not wanted or k in wanted) and v != "not checked"}
    killed = sum(1 for v in checked.values() if v in KILLED)
    survivors = sorted(k for k, v in checked.items() if v not in KILLED)
    return {"module": name, "mutants": len(st), "checked": len(checked), "killed": killed,
            "score": round(killed / float(len(checked)), 3) if checked else None, "survivors": survivors}


_MESSAGE = re.compile(r"raise |BadInput\(|CheckFailed\(|RunFailed\(|Error\(|log\.(debug|info|warning|error)|say\(|echo |"
                      r"help=|print\(|warn|message|msg|\.format\(")


def _diff(work: Path, name: str) -> "tuple":
    exe = str(Path(sys.executable).with_name("mutmut"))
    out = subprocess.run([exe, "show", name], cwd=str(work), stdout=subprocess.PIPE, universal_newlines=True).stdout
    minus = [ln[1:] for ln in out.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    plus = [ln[1:] for ln in out.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return minus, plus


def _strip_strings(line: str) -> str:
    return re.sub(r"(?s)([rbuf]*)(\"[^\"]*\"|'[^']*')", '""', line)


def classify(work: Path, name: str) -> str:
    """A first sorting of a survivor (a person confirms it): 'message' when only the text of a
    message/log/help string changed, 'string' for any other string-only change, else 'logic'."""
    minus, plus = _diff(work, name)
    if minus and plus and [_strip_strings(x) for x in minus] == [_strip_strings(x) for x in plus]:
        return "message" if any(_MESSAGE.search(x) for x in minus) else "string"
    return "logic"


def _in_main(path: str) -> bool:
    return subprocess.call(["git", "-C", str(ROOT), "cat-file", "-e", "main:" + path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("module")
    ap.add_argument("--sample", type=int, default=0, help="check this many mutants, a seeded random sample")
    ap.add_argument("--seed", type=int, default=24)
    ap.add_argument("--baseline", action="store_true", help="only the tests that exist on the main branch (the 'before' score)")
    ap.add_argument("--survivors", action="store_true", help="print the last run's survivors and exit")
    ap.add_argument("--retest", action="store_true",
                    help="re-run the last run's survivors against every configured test (the 'after' score)")
    ap.add_argument("--classify", action="store_true", help="sort the last run's open survivors: message/string/logic")
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    mod = _module(a.module)
    work = Path(a.workdir or "/tmp/jd-mutmut-{}".format(a.module))
    report = work / "jd-mutmut-report.json"
    if a.survivors:
        rec = json.loads(report.read_text())
        known = _recorded()
        for s in rec["survivors"]:
            print(("recorded  " if s in known else "OPEN      ") + s)
        return 0
    if a.classify:
        rec = json.loads((work / "jd-mutmut-after.json").read_text()) if (work / "jd-mutmut-after.json").exists() \
            else json.loads(report.read_text())
        known = _recorded()
        for s in rec["survivors"]:
            if s not in known:
                print("{} {}".format(s, classify(work, s)))
        return 0
    if a.baseline:
        mod["tests"] = [t for t in mod["tests"] if _in_main(t)]
    _copy_tree(work)
    _write_setup_cfg(work, mod)
    with open(str(work / "jd-mutmut.log"), "a") as log:
        if a.retest:
            before = json.loads(report.read_text())
            if before["survivors"]:
                _mutmut(work, ["run", "--max-children", "1"] + before["survivors"], log)
            st = _statuses(work)
            still = sorted(k for k in before["survivors"] if st.get(k) not in KILLED)
            killed = before["checked"] - len(still)
            rec = dict(before, phase="after", killed=killed, survivors=still,
                       score=round(killed / float(before["checked"]), 3) if before["checked"] else None,
                       before_score=before["score"])
            (work / "jd-mutmut-after.json").write_text(json.dumps(rec, indent=1))
        else:
            sample = []
            if a.sample:
                # generate the mutants and the per-test stats, checking none, then check a sample
                _mutmut(work, ["run", "--max-children", "1", "zz.none_such*"], log)
                names = sorted(_statuses(work))
                random.Random(a.seed).shuffle(names)
                sample = names[:a.sample]
                _mutmut(work, ["run", "--max-children", "1"] + sample, log)
            else:
                _mutmut(work, ["run", "--max-children", "1"], log)
            rec = _report(a.module, work, sample)
            rec["phase"] = "before" if a.baseline else "run"
            rec["tests"] = mod["tests"]
            rec["sampled"] = bool(sample)
            report.write_text(json.dumps(rec, indent=1))
    print(json.dumps({k: v for k, v in rec.items() if k not in ("survivors", "tests")}))
    known = _recorded()
    open_ = [s for s in rec["survivors"] if s not in known]
    print("{} survivors, {} recorded as equivalent/accepted, {} open".format(len(rec["survivors"]), len(rec["survivors"]) - len(open_), len(open_)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
