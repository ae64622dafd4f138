"""Issue #27: what the docs promise works, run as the docs say (README.md and docs/*.md).

Every ```bash block runs, in document order, in one scratch directory per document with this
checkout's ``jetson_deploy/`` etc. visible and this venv's ``jetson-deploy`` first on PATH; a block
that cannot run here carries ``<!-- not runnable here: WHY -->`` and is listed at the end of the
run (``-rA`` shows it).  Every path a document names exists, and no plain fence hides a command
(support/docs.py).  One converted demo bundle (``demo_bundle``) is shared by the docs/ documents.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.docs import CHECKOUT_LINKS, ROOT, blocks, documents, named_paths, path_exists, unmarked_commands

DOCS = documents()
BIN = Path(sys.executable).parent


def _env(work: Path) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["HOME"] = str(work / "home")  # keys, caches and configs a command writes stay in the scratch dir
    env["JETSON_DEPLOY_CACHE"] = str(work / "engine-cache")
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv has installed
    return env


def _scratch(tmp_path: Path, doc: str, demo_bundle: Path) -> Path:
    work = tmp_path / "work"
    (work / "home").mkdir(parents=True)
    for name in CHECKOUT_LINKS:
        os.symlink(str(ROOT / name), str(work / name))
    os.symlink(str(BIN.parent), str(work / ".venv"))
    if doc.startswith("docs/"):  # the docs' examples start from the demo bundle (each document says so)
        shutil.copytree(str(demo_bundle), str(work / "shapes-1.0.0"))
    return work


@pytest.mark.parametrize("doc", DOCS)
def test_command_blocks_run_as_written(doc, tmp_path, request):
    runnable = [b for b in blocks(doc) if b.runnable]
    if not runnable:
        return  # nothing to run in this document (its blocks are usage lines, outputs or marked)
    work = _scratch(tmp_path, doc, request.getfixturevalue("demo_bundle"))
    for b in runnable:
        p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b.text], cwd=str(work), env=_env(work),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)
        assert p.returncode == 0, "{} exited {}:\n{}\n---- output ----\n{}".format(b.where, p.returncode, b.text, p.stdout[-4000:])


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_block_is_run_or_marked(doc):
    """A command shown in a plain fence is neither run nor said to be unrunnable: fence it ```bash
    (and mark it when it cannot run here) or ```text when it is a usage line or a transcript."""
    hidden = [(b.where, ln) for b in blocks(doc) for ln in unmarked_commands(b)]
    assert not hidden, hidden
    marked = [b for b in blocks(doc) if b.not_runnable is not None]
    assert all(b.lang in ("bash", "sh") for b in marked), [b.where for b in marked if b.lang not in ("bash", "sh")]


@pytest.mark.parametrize("doc", DOCS)
def test_every_path_a_doc_names_exists(doc):
    missing = [p for p in named_paths(doc) if not path_exists(doc, p)]
    assert not missing, "{} names paths this checkout does not have: {}".format(doc, missing)


def test_docs_blocks_summary(capsys):
    """The count of blocks run and the list of blocks not runnable here (shown with -s or -rA)."""
    all_blocks = [b for d in DOCS for b in blocks(d)]
    run = [b for b in all_blocks if b.runnable]
    marked = [b for b in all_blocks if b.not_runnable is not None]
    assert run, "no runnable command block in the docs"
    with capsys.disabled():
        print("\ndocs: {} command blocks run, {} marked not runnable here:".format(len(run), len(marked)))
        for b in marked:
            print("  {}  {}".format(b.where, b.not_runnable))
