"""`jetson-deploy bundle ...` through click: output and exit codes (0 ok, 1 failed check, 2 bad input)."""
import io
import json
import tarfile

import pytest
from click.testing import CliRunner

from support import cli_runner

from support.bundles import edit_manifest, flip_byte, make_bundle
from jetson_deploy.cli import cli


def run(*args):
    # --json: stdout must be the JSON alone, also on click 8.0 (Python 3.6) which mixes stderr in
    runner = cli_runner() if "--json" in args else CliRunner()
    r = runner.invoke(cli, ["bundle"] + [str(a) for a in args])
    return r


def test_help_lists_subcommands():
    r = run("--help")
    assert r.exit_code == 0
    for name in ("inspect", "verify", "sign", "keygen", "pack", "unpack", "add-engine", "cache"):
        assert name in r.output
    for name in ("inspect", "verify", "sign", "keygen", "pack", "unpack", "add-engine"):
        h = run(name, "--help")
        assert h.exit_code == 0 and "Usage" in h.output


def test_inspect_human_and_json(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    r = run("inspect", d)
    assert r.exit_code == 0, r.output
    for text in ("demo 0.1.0", "fp16", "top1_agreement = 1", "circle, square", "8.6.2", "orin", "model.onnx", "unsigned", "Engines", "1x3x16x16"):
        assert text in r.output, text
    r = run("inspect", d, "--json")
    assert r.exit_code == 0
    info = json.loads(r.output)
    assert info["name"] == "demo" and info["targets"][0]["sm"] == 87 and info["signature"]["state"] == "unsigned"
    assert info["spec"]["shape"] == [1, 3, 16, 16] and info["integrity"]["ok"] is True
    assert info["total_size"] == sum(a["size"] for a in info["artifacts"])


def test_verify_ok_and_tampered(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    r = run("verify", d)
    assert r.exit_code == 0 and r.output.startswith("OK"), r.output
    flip_byte(d / "engines/8.6.2_sm87_fp16.engine", 3)
    (d / "labels.txt").unlink()
    (d / "added.bin").write_bytes(b"?")
    r = run("verify", d)
    assert r.exit_code == 1
    assert "artifact engines/8.6.2_sm87_fp16.engine: sha256 mismatch" in r.output
    assert "artifact labels.txt: missing" in r.output and "added.bin: unlisted file" in r.output
    r = run("verify", d, "--json")
    assert r.exit_code == 1
    rep = json.loads(r.output)
    assert rep["ok"] is False and {p["path"] for p in rep["problems"]} == {"engines/8.6.2_sm87_fp16.engine", "labels.txt", "added.bin"}


def test_bad_input_exit_2(tmp_path):
    assert run("verify", tmp_path / "nope").exit_code == 2
    assert run("inspect", tmp_path / "nope").exit_code == 2
    r = run("verify", tmp_path / "nope")
    assert "does not exist" in r.output
    assert run("pack", tmp_path / "nope", "-o", tmp_path / "x.jdb").exit_code == 2
    d = make_bundle(tmp_path / "b")
    assert run("verify", d, "--key", tmp_path / "missing.pub").exit_code == 2
    assert run("add-engine", d, tmp_path / "missing.engine", "--tensorrt", "8.6.2", "--sm", "87", "--precision", "fp16").exit_code == 2
    assert run("add-engine", d, d / "model.onnx", "--tensorrt", "eight", "--sm", "87", "--precision", "fp16").exit_code == 2
    assert run("verify").exit_code == 2  # click usage error


def test_sign_verify_with_key_and_tamper(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    r = run("keygen", "-o", tmp_path / "k" / "signer")
    assert r.exit_code == 0 and "fingerprint" in r.output
    assert run("verify", d, "--key", tmp_path / "k" / "signer.pub").exit_code == 1  # unsigned with --key
    r = run("sign", d, "--key", tmp_path / "k" / "signer")
    assert r.exit_code == 0, r.output
    r = run("verify", d, "--key", tmp_path / "k" / "signer.pub")
    assert r.exit_code == 0 and "valid" in r.output
    assert "signed-unverified" in run("inspect", d).output
    edit_manifest(d, lambda m: m.update(precision="int8"))
    r = run("verify", d, "--key", tmp_path / "k" / "signer.pub")
    assert r.exit_code == 1 and "INVALID" in r.output
    assert "INVALID" in run("inspect", d, "--key", tmp_path / "k" / "signer.pub").output
    assert run("keygen", "-o", tmp_path / "k" / "signer").exit_code == 2  # exists


def test_pack_unpack_cli(tmp_path):
    d = make_bundle(tmp_path / "demo-0.1.0")
    assert run("pack", d, "-o", tmp_path / "a.jdb").exit_code == 0
    r = run("pack", d, "-o", tmp_path / "b.jdb", "--json")
    assert json.loads(r.output)["files"] == 4
    assert (tmp_path / "a.jdb").read_bytes() == (tmp_path / "b.jdb").read_bytes()
    assert run("verify", tmp_path / "a.jdb").exit_code == 0
    assert run("inspect", tmp_path / "a.jdb").exit_code == 0
    r = run("unpack", tmp_path / "a.jdb", "-o", tmp_path / "out")
    assert r.exit_code == 0 and (tmp_path / "out" / "manifest.json").exists()


def test_hostile_archive_cli_exit_1(tmp_path):
    arc = tmp_path / "evil.jdb"
    with tarfile.open(str(arc), "w") as t:
        ti = tarfile.TarInfo("demo-0.1.0/../../escape.txt")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"bad"))
    r = run("verify", arc)
    assert r.exit_code == 1 and "'..' in path" in r.output
    r = run("unpack", arc, "-o", tmp_path / "out")
    assert r.exit_code == 1 and not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "escape.txt").exists()


def test_newer_schema_cli(tmp_path):
    d = make_bundle(tmp_path / "b")
    edit_manifest(d, lambda m: m.update(schema_version=7))
    r = run("verify", d)
    assert r.exit_code == 1 and "schema_version 7 is newer" in r.output
    r = run("inspect", d)
    assert r.exit_code == 1 and "schema_version 1" in r.output


def test_add_engine_cli(tmp_path):
    d = make_bundle(tmp_path / "b")
    run("keygen", "-o", tmp_path / "k")
    run("sign", d, "--key", tmp_path / "k")
    eng = tmp_path / "e.plan"
    eng.write_bytes(b"PLAN" * 50)
    r = run("add-engine", d, eng, "--tensorrt", "10.3.0.26", "--sm", "8.7", "--precision", "int8", "--jetpack", "6.1", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["artifact"]["path"] == "engines/10.3.0_sm87_int8.engine" and out["signature_removed"] is True
    assert run("verify", d).exit_code == 0
    info = json.loads(run("inspect", d, "--json").output)
    assert sorted((t["tensorrt"], t["precision"]) for t in info["targets"]) == [("10.3.0", "int8"), ("8.6.2", "fp16")]


def test_cache_list_and_clear(tmp_path):
    from jetson_deploy.bundle import open_bundle, resolve_engine

    b = open_bundle(make_bundle(tmp_path / "b"))
    resolve_engine(b, "8.6.2", 72, "fp16", cache_dir=tmp_path / "c", build_fn=lambda *a: b"plan-bytes")
    r = run("cache", "list", "--cache-dir", tmp_path / "c", "--json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert len(data["entries"]) == 1 and data["entries"][0]["bundle_name"] == "demo"
    assert "TensorRT 8.6.2 sm72 fp16" in run("cache", "list", "--cache-dir", tmp_path / "c").output
    assert "removed 1" in run("cache", "clear", "--cache-dir", tmp_path / "c").output
