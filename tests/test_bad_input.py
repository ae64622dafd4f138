"""Bad input through the real CLI, as a user or an attacker would give it (docs/bad-input.md).

Every case runs ``python -m jetson_deploy`` as a subprocess (crash cases need a real process:
a segfault is exit -11, not an exception) and asserts the exit code, exactly one ``Error:``
line, no traceback, and that sentinel user files survive byte for byte.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO_SPEC = ROOT / "jetson_deploy" / "demo" / "spec.json"
SENTINEL = b"my thesis, chapter 3\n"


def jd(args, tmp, env=None, cwd=None, timeout=240, argv=None):
    """Run the CLI; HOME and TMPDIR are private so writes outside what was asked for show.
    ``argv``: run that command line instead (a wrapper that runs the CLI itself)."""
    e = dict(os.environ)
    e.update({"PYTHONPATH": str(ROOT), "HOME": str(tmp / "home"), "TMPDIR": str(tmp / "tmp"), "PYTHONFAULTHANDLER": ""})
    e.pop("JETSON_DEPLOY_DEBUG", None)
    e.pop("JETSON_DEPLOY_REQUIRE_KEY", None)
    e.update(env or {})
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    cmd = argv or [sys.executable, "-m", "jetson_deploy"] + [os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args]
    p = subprocess.Popen(cmd,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd or tmp), env=e)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def refused(res, code=2, *needles):
    rc, out, err = res
    assert rc == code, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out, err
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def sentinel_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "thesis.txt").write_bytes(SENTINEL)
    return path


def survived(path: Path) -> None:
    assert (path / "thesis.txt").read_bytes() == SENTINEL


@pytest.fixture()
def imgs(tmp_path):
    import cv2
    import numpy as np

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(d / "{}.png".format(i)), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return d


def write_spec(tmp: Path, name: str, text) -> Path:
    p = tmp / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


SPEC = json.loads(DEMO_SPEC.read_text())
YAML_OK = ("task: classify\ninput: {name: input, shape: [1, 3, 64, 64], dtype: float32, color: rgb}\n"
           "preprocess: {scale: 0.00392, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}\n")


def _json(**changes):
    d = json.loads(json.dumps(SPEC))
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            d[a][b] = v
        else:
            d[k] = v
    return json.dumps(d)


SPEC_CASES = {
    "not-utf8.yaml": (b"task: classify\nlabels: [\xff\xfe]\n", "not UTF-8"),
    "binary.json": (b"\x00\x01\x02PK\x03\x04", "binary"),
    "deep.json": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "deep.yaml": ("[" * 100000 + "]" * 100000, ""),
    "date.yaml": (YAML_OK + "labels: [2024-01-01]\n", "labels"),
    "baddate.yaml": (YAML_OK + "x-when: 2024-13-45\n", ""),
    "binary-tag.yaml": (YAML_OK + "x-blob: !!binary aGVsbG8=\n", "plain JSON"),
    "inf.yaml": (YAML_OK.replace("std: [0.25, 0.25, 0.25]", "std: .inf"), "preprocess.std"),
    "nan.yaml": (YAML_OK.replace("scale: 0.00392", "scale: .nan"), "preprocess.scale"),
    "infinity.json": (_json(**{"preprocess.scale": 1}).replace('"scale": 1', '"scale": Infinity'), "preprocess.scale"),
    "typo.json": (_json().replace('"preprocess"', '"preprocessing"'), "did you mean 'preprocess'"),
    "huge.json": (_json(**{"input.shape": [1, 3, 50000, 50000]}).replace('"resize": [64, 64], ', ""), "too large"),
    "newline-label.json": (_json(labels=["circle\nsquare", "triangle", "none", "x"]), "line break"),
    "dup-outputs.json": (_json(outputs=["logits", "logits"]), "outputs"),
}


@pytest.mark.needs("cv2", "yaml")
@pytest.mark.parametrize("name", sorted(SPEC_CASES))
def test_bad_spec_files_one_line(tmp_path, imgs, name):
    text, needle = SPEC_CASES[name]
    spec = write_spec(tmp_path, name, text)
    out = sentinel_dir(tmp_path / "prev")
    refused(jd(["calibrate", imgs, "--spec", spec, "-o", tmp_path / "set"], tmp_path), 2, needle)
    survived(out)
    assert not (tmp_path / "set").exists()


@pytest.mark.needs("cv2")
def test_labels_file_not_utf8(tmp_path, imgs):
    (tmp_path / "labels.txt").write_bytes(b"cat\n\xff\xfe\n")
    spec = write_spec(tmp_path, "s.json", _json(labels="labels.txt"))
    refused(jd(["calibrate", imgs, "--spec", spec, "-o", tmp_path / "set"], tmp_path), 2, "not UTF-8")


# ---- -o never destroys what the tool did not make ------------------------------------------
@pytest.mark.needs("cv2")
def test_calibrate_output_policy(tmp_path, imgs):
    v = sentinel_dir(tmp_path / "v")
    refused(jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", v], tmp_path), 2, str(v), "not a calibration set")
    survived(v)
    refused(jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", "."], v), 2, "current directory")
    survived(v)
    refused(jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", "/proc/jd-nope/set"], tmp_path), 2)
    refused(jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", "x" * 5000], tmp_path), 2, "shorter path")
    # a 250-character name works: temporary names are short
    long_name = tmp_path / ("s" * 250)
    rc, out, err = jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", long_name, "--quiet"], tmp_path)
    assert rc == 0, err
    assert (long_name / "manifest.json").is_file()
    # ours: replaced fine; an empty directory too
    assert jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", long_name, "--quiet"], tmp_path)[0] == 0
    (tmp_path / "empty").mkdir()
    assert jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", tmp_path / "empty", "--quiet"], tmp_path)[0] == 0


@pytest.mark.needs("cv2")
def test_failed_model_step_keeps_previous_set(tmp_path, imgs):
    out = tmp_path / "set"
    assert jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", out, "--quiet"], tmp_path)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra in (["--model", tmp_path / "missing.onnx"], ["--model", DEMO_SPEC, "--trt-version", "junk"]):
        rc, _, err = jd(["calibrate", imgs, "--spec", DEMO_SPEC, "-o", out, "--seed", "7", "--quiet"] + extra, tmp_path)
        assert rc == 2 and "Traceback" not in err, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".jd-")] == []


def test_stale_temporaries_of_killed_runs_are_cleaned(tmp_path):
    dead = 4194304 + 17  # above pid_max: never a live process
    (tmp_path / ".jd-{}-abcd.partial".format(dead)).mkdir()
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "jd-run-{}-abcd".format(dead)).mkdir()
    keep = tmp_path / ".jd-{}-live.partial".format(os.getpid())
    keep.mkdir()
    refused(jd(["bundle", "pack", tmp_path / "nope", "-o", tmp_path / "x.jdb"], tmp_path), 2)
    assert not (tmp_path / "tmp" / "jd-run-{}-abcd".format(dead)).exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # this run's own scratch is gone too
    # beside an output: cleaned when that output is prepared
    from jetson_deploy._files import prepare_output

    prepare_output(tmp_path / "out", "bundle")
    assert not (tmp_path / ".jd-{}-abcd.partial".format(dead)).exists() and keep.exists()


# ---- bundles -------------------------------------------------------------------------------------
@pytest.fixture()
def bundle(tmp_path):
    from support.bundles import make_bundle

    return make_bundle(tmp_path / "b")


def test_pack_never_replaces_user_files_or_devices(tmp_path, bundle):
    user = tmp_path / "notes.jdb"
    user.write_bytes(SENTINEL)
    refused(jd(["bundle", "pack", bundle, "-o", user], tmp_path), 2, "not a packed bundle")
    assert user.read_bytes() == SENTINEL
    refused(jd(["bundle", "pack", bundle, "-o", "/dev/null"], tmp_path), 2, "never replaced")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert jd(["bundle", "pack", bundle, "-o", tmp_path / "ok.jdb"], tmp_path)[0] == 0
    assert jd(["bundle", "pack", bundle, "-o", tmp_path / "ok.jdb"], tmp_path)[0] == 0  # ours: replaced
    v = sentinel_dir(tmp_path / "v")
    refused(jd(["bundle", "unpack", tmp_path / "ok.jdb", "-o", v], tmp_path), 2)
    survived(v)


def test_add_engine_on_tampered_bundle_refused(tmp_path, bundle):
    (bundle / "notes.txt").write_bytes(SENTINEL)
    eng = tmp_path / "e.engine"
    eng.write_bytes(b"PLAN")
    refused(jd(["bundle", "add-engine", bundle, eng, "--tensorrt", "8.6.2", "--sm", "87", "--precision", "fp16"], tmp_path), 1)
    assert (bundle / "notes.txt").read_bytes() == SENTINEL


def test_add_engine_symlinked_engines_dir_refused(tmp_path, bundle):
    outside = tmp_path / "outside"
    os.rename(str(bundle / "engines"), str(outside))
    os.symlink(str(outside), str(bundle / "engines"))
    eng = tmp_path / "e.engine"
    eng.write_bytes(b"PLAN")
    refused(jd(["bundle", "add-engine", bundle, eng, "--tensorrt", "8.5.2", "--sm", "87", "--precision", "fp16"], tmp_path), 1)
    assert (bundle / "engines").is_symlink()


def test_cache_clear_removes_only_its_entries(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "mine.engine").write_bytes(SENTINEL)
    (cache / "notes.json").write_text('{"sha256": "x", "size": 1}')
    rc, out, err = jd(["bundle", "cache", "clear", "--cache-dir", cache], tmp_path)
    assert rc == 0, err
    assert (cache / "mine.engine").read_bytes() == SENTINEL and (cache / "notes.json").exists()


def test_bundle_reading_errors_one_line(tmp_path, bundle):
    refused(jd(["bundle", "inspect", tmp_path], tmp_path), 2, "not a bundle")
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    rc, out, err = jd(["bundle", "inspect", deep], tmp_path)
    assert rc == 1 and "Traceback" not in err and "not valid JSON" in err, err
    os.mkdir(str(bundle / "manifest.sig"))
    rc, out, err = jd(["bundle", "verify", bundle], tmp_path)
    assert rc == 1 and "manifest.sig" in out + err and "Traceback" not in err


@pytest.mark.needs("cryptography")
def test_encrypted_openssh_key_one_line(tmp_path, bundle):
    import shutil

    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen not installed")
    subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(tmp_path / "k")])
    res = jd(["bundle", "sign", bundle, "--key", tmp_path / "k"], tmp_path, env={"JETSON_DEPLOY_KEY_PASSWORD": "secret"})
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        refused(res, 2, "bcrypt")
    else:
        assert res[0] == 0, res


def test_deploy_usage_errors_are_exit_2(tmp_path, bundle):
    refused(jd(["deploy", bundle, "pi@h", "-o", "NoEquals"], tmp_path), 2, "KEY=VALUE")
    refused(jd(["deploy", bundle, "pi@h", "--ssh-config", tmp_path / "missing"], tmp_path), 2)


def test_debug_shows_the_traceback(tmp_path):
    for args, env in ((["--debug", "bundle", "inspect", tmp_path / "none"], {}), (["bundle", "inspect", tmp_path / "none"], {"JETSON_DEPLOY_DEBUG": "1"})):
        rc, out, err = jd(args, tmp_path, env=env)
        assert rc != 0 and "Traceback" in err, err


# ---- the runtime path: a real demo bundle ---------------------------------------------------------
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    rc, out, err = jd(["demo", "--workdir", tmp / "d", "--frames", "20"], tmp)
    assert rc == 0, err
    assert not (tmp / "home" / ".cache").exists(), "ONNX Runtime wrote its telemetry file"
    return tmp / "d"


def _bad_name(tmp: Path, data: bytes, name: bytes) -> bytes:
    p = os.fsencode(str(tmp)) + b"/" + name
    with open(p, "wb") as f:
        f.write(data)
    return p


@pytest.mark.slow
@pytest.mark.needs("torch", "cv2", "onnxruntime")
def test_non_utf8_names_never_segfault(tmp_path, demo):
    clip = (demo / "clip.mp4").read_bytes()
    video = _bad_name(tmp_path, clip, b"\xff\xfe.mp4")
    folder = os.fsencode(str(tmp_path)) + b"/imgs"
    os.mkdir(folder)
    png = __import__("cv2").imencode(".png", __import__("numpy").zeros((32, 32, 3), "uint8"))[1].tobytes()
    _bad_name(Path(os.fsdecode(folder)), png, b"\xff.png")
    b = demo / "bundle"
    rc, out, err = jd(["run", b, "--source", folder], tmp_path)
    assert rc == 0 and "Traceback" not in err, err  # read through Python + imdecode
    refused(jd(["run", b, "--source", video], tmp_path), 2, "UTF-8")
    refused(jd(["bench", b, "--source", video, "--iterations", "10"], tmp_path), 2, "UTF-8")
    refused(jd(["run", b, "--source", demo / "clip.mp4", "--sink", os.fsencode(str(tmp_path)) + b"/o\xff.mp4"], tmp_path), 2, "UTF-8")
    refused(jd(["demo", "--workdir", os.fsencode(str(tmp_path)) + b"/w\xff"], tmp_path), 2, "UTF-8")
    rc, out, err = jd(["calibrate", video, folder, "--spec", DEMO_SPEC, "-o", tmp_path / "set", "--quiet"], tmp_path)
    assert rc == 0 and "Traceback" not in err, err
    skipped = json.loads((tmp_path / "set" / "manifest.json").read_text())["skipped"]
    assert any("UTF-8" in s["reason"] for s in skipped)


RUN_CASES = [
    (["--source", "synthetic://64x64", "--interval", "nan"], "--interval"),
    (["--source", "synthetic://64x64", "--stall-timeout", "-1"], "--stall-timeout"),
    (["--source", "synthetic://64x64", "--device", "bogus"], "--device"),
    (["--source", ""], "--source"),
    (["--source", "synthetic://64x64", "--sink", "a.jsonl", "--sink", "a.jsonl"], "--sink"),
    (["--source", "synthetic://100000x100000"], "too large"),
    (["--source", "synthetic://64x64@-1"], "fps"),
]


@pytest.mark.slow
@pytest.mark.needs("torch", "cv2", "onnxruntime")
def test_run_options_refused(tmp_path, demo):
    for args, needle in RUN_CASES:
        refused(jd(["run", demo / "bundle"] + args, tmp_path), 2, needle)
    assert not (tmp_path / "home" / ".cache").exists()


@pytest.mark.slow
@pytest.mark.needs("torch", "cv2", "onnxruntime", "cryptography")
def test_signature_required_at_run_time(tmp_path, demo):
    keys = tmp_path / "k"
    assert jd(["bundle", "keygen", "-o", keys], tmp_path)[0] == 0
    b = demo / "bundle"
    refused(jd(["run", b, "--source", "synthetic://64x64", "--max-frames", "2", "--key", str(keys) + ".pub"], tmp_path), 1, "not signed")
    refused(jd(["bench", b, "--iterations", "10", "--warmup", "0"], tmp_path, env={"JETSON_DEPLOY_REQUIRE_KEY": str(keys) + ".pub"}), 1)
    import shutil

    signed = tmp_path / "signed"
    shutil.copytree(str(b), str(signed))
    assert jd(["bundle", "sign", signed, "--key", keys], tmp_path)[0] == 0
    rc, out, err = jd(["run", signed, "--source", "synthetic://64x64", "--max-frames", "2"], tmp_path,
                      env={"JETSON_DEPLOY_REQUIRE_KEY": str(keys) + ".pub"})
    assert rc == 0, err


@pytest.mark.slow
@pytest.mark.needs("torch", "cv2", "onnxruntime")
def test_convert_and_demo_output_policy(tmp_path, demo):
    v = sentinel_dir(tmp_path / "v")
    refused(jd(["convert", "jetson_deploy.demo:load_model", "--spec", DEMO_SPEC, "-o", v], tmp_path), 2, str(v))
    survived(v)
    refused(jd(["demo", "--workdir", v], tmp_path), 2, "--workdir")
    survived(v)
    factory = tmp_path / "quits.py"
    factory.write_text("import sys\ndef make():\n    sys.exit(0)\n")
    refused(jd(["convert", "{}:make".format(factory), "--spec", DEMO_SPEC, "-o", tmp_path / "out"], tmp_path), 2, "SystemExit")


def test_unpack_max_size_must_be_positive(tmp_path, bundle):
    assert jd(["bundle", "pack", bundle, "-o", tmp_path / "b.jdb"], tmp_path)[0] == 0
    refused(jd(["bundle", "unpack", tmp_path / "b.jdb", "-o", tmp_path / "u", "--max-size", "-1"], tmp_path), 2, "--max-size")


def _spec_copy(tmp: Path, name: str, **changes) -> Path:
    data = json.loads(DEMO_SPEC.read_text())
    data.update(changes)
    return write_spec(tmp, name, json.dumps(data))


@pytest.mark.slow
@pytest.mark.needs("torch", "cv2", "onnx", "onnxruntime")
def test_convert_spec_must_fit_the_model(tmp_path):
    """3 labels for the demo's 4 classes; an .onnx MODEL whose outputs the spec misnames. (A PyTorch
    model's outputs take the spec's names at export: there `outputs: [nope]` names, it cannot miss.)"""
    three = _spec_copy(tmp_path, "three.json", labels=["circle", "square", "triangle"])
    out = tmp_path / "out"
    line = refused(jd(["convert", "jetson_deploy.demo:load_model", "--spec", three, "-o", out], tmp_path), 2,
                   str(three), "3 labels", "4 classes", "give 4 labels")
    assert not out.exists(), line
    assert jd(["convert", "jetson_deploy.demo:load_model", "--spec", DEMO_SPEC, "-o", tmp_path / "ok"], tmp_path)[0] == 0
    onnx_model = tmp_path / "ok" / "model.onnx"
    nope = _spec_copy(tmp_path, "nope.json", outputs=["nope"])
    refused(jd(["convert", onnx_model, "--spec", nope, "-o", out], tmp_path), 2, str(onnx_model), "['logits']", "nope",
            "set outputs: [logits]")
    assert not out.exists()
    refused(jd(["convert", onnx_model, "--spec", three, "-o", out], tmp_path), 2, "3 labels", "4 classes")
    assert not out.exists()


# ---- issue #29: trust what was verified, and nothing else ---------------------------------------
@pytest.fixture(scope="module")
def colors(tmp_path_factory):
    """A runnable bundle (the colour model, ONNX Runtime), unsigned."""
    from support.runtime import make_bundle

    return make_bundle(tmp_path_factory.mktemp("colors") / "colors-1.0.0")


RUN_COLORS = ["--source", "synthetic://32x24?pool=2", "--max-frames", "2", "--backend", "onnxruntime", "--interval", "0"]


def jd_with_etc(tmp: Path, setup: str, args, env=None):
    """The CLI in a private mount namespace whose /etc is an overlay (the real /etc untouched):
    SETUP (shell) prepares /etc/jetson-deploy there first."""
    import shlex
    import shutil

    for d in ("u", "w"):
        (tmp / "ovl" / d).mkdir(parents=True, exist_ok=True)
    script = ("set -e; mount -t overlay overlay -o lowerdir=/etc,upperdir={u},workdir={w} /etc; mkdir -p /etc/jetson-deploy; {setup}; "
              "exec {py} -m jetson_deploy {args}").format(u=tmp / "ovl" / "u", w=tmp / "ovl" / "w", setup=setup, py=sys.executable,
                                                         args=" ".join(shlex.quote(str(a)) for a in args))
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    return jd([], tmp, env=env, argv=ns + ["sh", "-c", script]) if shutil.which("unshare") else pytest.skip("unshare not installed")


TRUST_ANCHORS = {
    "directory": "mkdir /etc/jetson-deploy/trusted.pub",
    "dangling": "ln -s /nonexistent/key.pub /etc/jetson-deploy/trusted.pub",
    "fifo": "mkfifo /etc/jetson-deploy/trusted.pub",
}


@pytest.mark.needs("onnxruntime", "cryptography", "bin:unshare")
@pytest.mark.parametrize("kind", sorted(TRUST_ANCHORS))
def test_unusable_device_wide_key_refuses_to_run(tmp_path, colors, kind):
    """#29.2: /etc/jetson-deploy/trusted.pub configured but unusable: exit 2 naming it, nothing runs."""
    out = tmp_path / "out.jsonl"
    refused(jd_with_etc(tmp_path, TRUST_ANCHORS[kind], ["run", colors] + RUN_COLORS + ["--sink", out]), 2,
            "/etc/jetson-deploy/trusted.pub")
    assert not out.exists()


@pytest.mark.needs("onnxruntime", "cryptography", "bin:unshare")
def test_device_wide_key_file_is_enforced(tmp_path, colors):
    """The control: a real trusted.pub refuses the unsigned bundle (exit 1)."""
    assert jd(["bundle", "keygen", "-o", tmp_path / "k"], tmp_path)[0] == 0
    refused(jd_with_etc(tmp_path, "cp {} /etc/jetson-deploy/trusted.pub".format(tmp_path / "k.pub"), ["run", colors] + RUN_COLORS),
            1, "not signed")


@pytest.mark.needs("onnxruntime", "cryptography")
@pytest.mark.parametrize("value", [" ", "", "\t"])
def test_blank_require_key_variable_refuses_to_run(tmp_path, colors, value):
    out = tmp_path / "out.jsonl"
    refused(jd(["run", colors] + RUN_COLORS + ["--sink", out], tmp_path, env={"JETSON_DEPLOY_REQUIRE_KEY": value}), 2,
            "JETSON_DEPLOY_REQUIRE_KEY")
    assert not out.exists()


CONTROL_FIELDS = {  # case -> (edit, the field the one line names)
    "name-newline": (lambda m: m.update(name=m["name"] + "\n"), "field name"),
    "version-newline": (lambda m: m.update(version=m["version"] + "\n"), "field version"),
    "name-tab": (lambda m: m.update(name="de\tmo"), "field name"),
    "path-newline": (lambda m: m["artifacts"][0].update(path=m["artifacts"][0]["path"] + "\n"), "artifacts/0/path"),
    "kind-newline": (lambda m: m["artifacts"][0].update(kind=m["artifacts"][0]["kind"] + "\n"), "artifacts/0/kind"),
    "sha-newline": (lambda m: m["artifacts"][0].update(sha256=m["artifacts"][0]["sha256"] + "\n"), "artifacts/0/sha256"),
}


@pytest.mark.parametrize("case", sorted(CONTROL_FIELDS))
def test_control_characters_in_manifest_fields_refused(tmp_path, bundle, case):
    """#29.12: a trailing newline passed the `$` of the schema's patterns and check_relpath, and made
    directories named 'shapes\\n' on the device.  verify, pack and deploy --rootfs refuse it."""
    from support.bundles import edit_manifest

    edit, field = CONTROL_FIELDS[case]
    edit_manifest(bundle, edit)
    rc, out, err = jd(["bundle", "verify", bundle], tmp_path)
    assert rc == 1 and "FAILED" in out and field in out and "control character" in out and "Traceback" not in err, (out, err)
    refused(jd(["bundle", "pack", bundle, "-o", tmp_path / "p.jdb"], tmp_path), 1, field)
    assert not (tmp_path / "p.jdb").exists()
    fs = tmp_path / "rootfs"
    fs.mkdir()
    refused(jd(["deploy", bundle, "--rootfs", fs], tmp_path), 1, field)
    assert [p for p in fs.rglob("*") if "\n" in p.name or "\t" in p.name] == []


def test_check_relpath_refuses_a_trailing_newline():
    from jetson_deploy.bundle.manifest import check_relpath
    from jetson_deploy.errors import BadInput

    for bad in ("labels.txt\n", "engines/x.engine\n", "a\n/b"):
        with pytest.raises(BadInput):
            check_relpath(bad)
    assert check_relpath("engines/x.engine") == "engines/x.engine"


def _gz_jdb(path: Path, bundle: Path, extra: "dict") -> Path:
    """BUNDLE packed as a gzip tar (as `tar czf` would), plus EXTRA members {name: size of zeros}."""
    import io
    import tarfile

    class Zeros(io.RawIOBase):
        def __init__(self, n):
            self.n = n

        def readable(self):
            return True

        def readinto(self, b):
            k = min(len(b), self.n)
            b[:k] = bytes(k)
            self.n -= k
            return k

    top = bundle.name
    with tarfile.open(str(path), "w:gz", compresslevel=1) as t:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                t.add(str(p), arcname="{}/{}".format(top, p.relative_to(bundle).as_posix()))
        for name, size in extra.items():
            ti = tarfile.TarInfo("{}/{}".format(top, name))
            ti.size = size
            t.addfile(ti, io.BufferedReader(Zeros(size)))
    return path


def _fsize_limited(args, mib):
    """The CLI under `ulimit -f` (RLIMIT_FSIZE): writing more than MIB MiB to one file kills it (SIGXFSZ)."""
    import shlex

    return ["sh", "-c", "ulimit -f {}; exec {} -m jetson_deploy {}".format(
        int(mib * 1024), sys.executable, " ".join(shlex.quote(str(a)) for a in args))]


@pytest.mark.needs("onnxruntime")
def test_disk_bomb_member_refused_before_extraction(tmp_path, colors):
    """#29.10: an unlisted 64 MiB member of zeros (64 KB compressed) is refused from the archive's
    headers: `run` and `verify` write nothing of it (under `ulimit -f 16M` a write of it would kill)."""
    bomb = _gz_jdb(tmp_path / "bomb.jdb", colors, {"zeros.bin": 64 << 20})
    assert bomb.stat().st_size < (1 << 20)
    for args in (["run", bomb] + RUN_COLORS, ["bundle", "verify", bomb], ["bundle", "unpack", bomb, "-o", tmp_path / "u"]):
        rc, out, err = jd([], tmp_path, argv=_fsize_limited(args, 16))
        assert rc == 1 and "Traceback" not in err, (args, rc, out, err)
        assert "zeros.bin" in out + err and "not listed in manifest.json" in out + err, (out, err)
        assert list((tmp_path / "tmp").iterdir()) == [] and not (tmp_path / "u").exists()


@pytest.mark.needs("onnxruntime")
def test_member_larger_than_the_manifest_says_refused(tmp_path, colors):
    """A listed member whose header is bigger than its manifest size: refused from the headers."""
    import io
    import tarfile

    src = tmp_path / "src" / colors.name
    import shutil

    shutil.copytree(str(colors), str(src))
    arc = tmp_path / "grown.jdb"
    with tarfile.open(str(arc), "w:gz", compresslevel=1) as t:
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.name != "labels.txt":
                t.add(str(p), arcname="{}/{}".format(src.name, p.relative_to(src).as_posix()))
        ti = tarfile.TarInfo(src.name + "/labels.txt")
        ti.size = 32 << 20
        t.addfile(ti, io.BytesIO(bytes(ti.size)))
    rc, out, err = jd([], tmp_path, argv=_fsize_limited(["run", arc] + RUN_COLORS, 8))
    assert rc == 1 and "labels.txt" in err and "manifest.json lists" in err, (rc, err)


@pytest.mark.needs("onnxruntime", "bin:unshare")
def test_unpack_checks_free_space_first(tmp_path, colors):
    """A sound bundle larger than the free space of TMPDIR (a 16 MiB tmpfs): one line naming it."""
    import shlex
    import shutil

    from support.bundles import write_bundle

    big = write_bundle(tmp_path / "big-1.0.0", "big", "1.0.0", {"model.onnx": bytes(24 << 20)})
    arc = _gz_jdb(tmp_path / "big.jdb", big, {})
    shutil.rmtree(str(big))
    small = tmp_path / "small"
    small.mkdir()
    script = "mount -t tmpfs -o size=16m tmpfs {s} && TMPDIR={s} exec {py} -m jetson_deploy bundle verify {a}".format(
        s=shlex.quote(str(small)), py=sys.executable, a=shlex.quote(str(arc)))
    ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    line = refused(jd([], tmp_path, argv=ns + ["sh", "-c", script]), 2, "not enough free space", str(small))
    assert "24.0 MiB" in line


SINK_ARGS = {  # #29.7 and #29.13: refused before anything runs, one line naming the sink
    "short-token": (["--sink", "http://0.0.0.0:0/?token=a"], "16 or more"),
    "short-token-loopback": (["--sink", "http://127.0.0.1:0/?token=abc"], "16 or more"),
    "quality-0": (["--sink", "http://127.0.0.1:0/?quality=0"], "JPEG quality"),
    "quality-101": (["--sink", "http://127.0.0.1:0/?quality=101"], "JPEG quality"),
    "http-port": (["--sink", "http://127.0.0.1:99999/"], "not a TCP port"),
    "http-option": (["--sink", "http://127.0.0.1:0/?qualty=50"], "unknown option"),
    "rtsp-port-big": (["--sink", "rtsp://@:99999/x"], "not a TCP port"),
    "rtsp-port-negative": (["--sink", "rtsp://@:-1/x"], "not a TCP port"),
    "rtsp-bitrate-0": (["--sink", "rtsp://@:8554/x?bitrate=0"], "kbit/s is out of range"),
    "rtsp-bitrate-huge": (["--sink", "rtsp://@:8554/x?bitrate=99999999"], "kbit/s is out of range"),
    "rtsp-encoder": (["--sink", "rtsp://@:8554/x?encoder=x264enc%20!%20filesink"], "not a GStreamer element name"),
    "k-negative": (["--sink", "-1=out.jsonl"], "source index"),
    "k-letter": (["--sink", "a=out.jsonl"], "source index"),
    "k-fraction": (["--sink", "0.5=out.jsonl"], "source index"),
    "k-space": (["--sink", " 0=out.jsonl"], "source index"),
    "k-plus": (["--sink", "+1=out.jsonl"], "source index"),
    "k-empty": (["--sink", "0="], "source index"),
    "k-too-big": (["--sink", "1=out.jsonl"], "source 1 does not exist"),
    "same-file": (["--sink", "a.jsonl", "--sink", "0=a.jsonl"], "same file"),
    "same-file-dot": (["--sink", "a.jsonl", "--sink", "./a.jsonl"], "same file"),
    "same-file-video": (["--sink", "0=v.avi", "--sink", "./v.avi"], "same file"),
    "sink-is-source": (["--sink", "IN"], "same file"),
}


@pytest.mark.needs("onnxruntime", "cv2")
@pytest.mark.parametrize("case", sorted(SINK_ARGS))
def test_sink_arguments_refused_before_the_run(tmp_path, colors, case):
    args, needle = SINK_ARGS[case]
    work = tmp_path / "work"
    work.mkdir()
    clip = work / "in.avi"
    _write_clip(clip)
    args = [str(clip) if a == "IN" else a for a in args]
    refused(jd_inproc(["run", str(colors), "--source", str(clip), "--max-frames", "2", "--backend", "onnxruntime",
                       "--interval", "0"] + args, work), 2, needle)
    assert sorted(p.name for p in work.iterdir()) == ["in.avi"]  # nothing written, the input intact
    assert clip.read_bytes() == _write_clip.data


def jd_inproc(args, cwd):
    """The CLI in this process (click's runner; many cases, no interpreter start each): (rc, out, err)."""
    from click.testing import CliRunner

    from jetson_deploy.cli import cli

    here = os.getcwd()
    os.chdir(str(cwd))
    try:
        kw = {"mix_stderr": False} if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else {}
        r = CliRunner(**kw).invoke(cli, args)
    finally:
        os.chdir(here)
    return r.exit_code, r.stdout, r.stderr


def _write_clip(path):
    import cv2
    import numpy as np

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 24))
    for i in range(4):
        w.write(np.full((24, 32, 3), 60 * i, np.uint8))
    w.release()
    _write_clip.data = path.read_bytes()


@pytest.mark.needs("onnxruntime", "cv2")
def test_token_never_in_the_summary(tmp_path, colors):
    """#29.7: a token given in the URI landed in `run --json`."""
    token = "secret-" + "x" * 16
    rc, out, err = jd(["run", colors] + RUN_COLORS + ["--sink", "http://127.0.0.1:0/?token=" + token, "--json"], tmp_path)
    assert rc == 0, err
    assert token not in out and token not in err and "token=<redacted>" in json.loads(out)["sinks"][0]


@pytest.mark.needs("onnxruntime", "cv2")
@pytest.mark.parametrize("sink", ["out.avi", "out.jsonl"])
def test_write_errors_fail_in_one_line_naming_the_file(tmp_path, colors, sink):
    """#29.9: under `ulimit -f` (or a full disk) a video exited 0 truncated; a .jsonl left .partial."""
    work = tmp_path / "work"
    work.mkdir()
    frames = "60" if sink.endswith(".avi") else "800"  # well past 64 KiB of MJPEG / of lines
    args = ["run", colors, "--source", "synthetic://320x240?pool=4", "--max-frames", frames, "--backend", "onnxruntime",
            "--interval", "0", "--sink", str(work / sink)]
    line = refused(jd([], tmp_path, cwd=work, argv=_fsize_limited(args, 0.0625)), 1, str(work / sink))
    assert "File too large" in line or "could not be written whole" in line, line
    names = sorted(p.name for p in work.iterdir())
    if sink == "out.avi":
        assert names == []  # nothing published, nothing temporary left
    else:
        assert names == ["out.jsonl"]  # the log up to the failure, whole lines only
        assert all(json.loads(x)["task"] == "classify" for x in (work / sink).read_text().splitlines())


@pytest.mark.needs("bin:systemd-analyze")
def test_service_keeps_the_token_out_of_the_unit(tmp_path):
    """#29.7: the token went into the 0644 unit file and the command line; now a 0600 environment file."""
    from support.deploy import BOARD_PY, board_venv

    fs = tmp_path / "rootfs"
    (fs / "etc" / "systemd" / "system").mkdir(parents=True)
    board_venv(fs)
    token = "t0ken-" + "y" * 20
    rc, out, err = jd(["service", "install", "demo", "--source", "csi://0", "--user", "nvidia", "--rootfs", fs, "--python",
                       BOARD_PY, "--sink", "http://0.0.0.0:8080/?token=" + token], tmp_path)
    assert rc == 0, err
    unit = (fs / "etc/systemd/system/jetson-deploy-demo.service").read_text()
    env = fs / "etc/jetson-deploy/demo.env"
    assert token not in unit and "EnvironmentFile=/etc/jetson-deploy/demo.env" in unit and "--sink http://0.0.0.0:8080/" in unit
    assert oct(env.stat().st_mode & 0o777) == "0o600" and "JETSON_DEPLOY_HTTP_TOKEN=" + token in env.read_text()
    assert token not in out + err
    assert jd(["service", "uninstall", "demo", "--rootfs", fs], tmp_path)[0] == 0
    assert not env.exists()


# ---- #29.11 deploy and Ansible, #29.14 resource bounds ------------------------------------------
def test_controller_host_directories_are_one_to_one(tmp_path, bundle):
    """#29.11: inventory hosts `b+1` and `b_1` shared one controller directory and ran each other's scripts."""
    import random

    from jetson_deploy.ansible_steps import host_dir_name, prepare, stage

    stage(str(bundle), str(tmp_path / "w"))
    a = prepare(str(tmp_path / "w"), "b+1", "/opt/jd")["script"]
    b = prepare(str(tmp_path / "w"), "b_1", "/opt/jd")["script"]
    assert a != b and Path(a).parent != Path(b).parent
    rng = random.Random(7)
    assert host_dir_name("_2b") != host_dir_name("+")  # the escape character is escaped too
    names = {"".join(rng.choice("ab_+.-/12é ") for _ in range(rng.randint(1, 5))) for _ in range(5000)} | {".", "..", "_"}
    dirs = {host_dir_name(n) for n in names}
    assert len(dirs) == len(names) and not any("/" in d or d in (".", "..") for d in dirs)


@pytest.mark.parametrize("inventory,needle", [
    ("h ansible_user=-Jevil\n", "bad user name"),
    ("-oProxyCommand\n", "bad host"),
])
def test_option_looking_users_and_hosts_refused(tmp_path, bundle, inventory, needle):
    """#29.11: `ansible_user=-Jevil` reached ssh as `-Jevil@h`."""
    inv = tmp_path / "inv.ini"
    inv.write_text(inventory)
    refused(jd(["deploy", bundle, "--hosts", inv], tmp_path), 2, needle)
    refused(jd(["deploy", bundle, "--", "-Jevil@h"], tmp_path), 2, "bad user name")


def test_ssh_destination_follows_double_dash(tmp_path, bundle):
    """Defence in depth: whatever passes the checks, ssh never reads the destination as an option."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "ssh.args"
    fake = bindir / "ssh"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done > {}\necho "ssh: connect: Connection refused" >&2\nexit 255\n'.format(log))
    fake.chmod(0o755)
    rc, out, err = jd(["deploy", bundle, "pi@board"], tmp_path, env={"PATH": "{}:{}".format(bindir, os.environ["PATH"])})
    assert rc == 1 and "Traceback" not in err, err
    args = log.read_text().splitlines()
    assert args[args.index("pi@board") - 1] == "--", args


@pytest.mark.parametrize("extra,needle", [
    (["--keep", "0"], "jd_keep"),
    (["--service", "x;reboot"], "jd_service"),
    (["--service", "demo", "--settle", "-1"], "jd_service_settle"),
    (["--health-timeout", "nan"], "jd_health_timeout"),
])
def test_ansible_plan_checks_the_play_variables_even_when_nothing_changes(tmp_path, bundle, extra, needle):
    """#29.11: jd_keep=0 was accepted; a hostile jd_service was not looked at when the device was up to date."""
    from jetson_deploy.ansible_steps import stage

    info = stage(str(bundle), str(tmp_path / "w"))
    answer = "PREPARED\nHAVE sha256sum\nACTIVE {}\nTARGET ok\n".format(info["version"])  # already active: "unchanged"
    p = subprocess.run([sys.executable, "-m", "jetson_deploy.ansible_steps", "plan", str(tmp_path / "w"), "h", "--root",
                        "/opt/jd"] + extra, input=answer, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert p.returncode == 1 and needle in p.stderr and "Traceback" not in p.stderr, (p.returncode, p.stdout, p.stderr)
    ok = subprocess.run([sys.executable, "-m", "jetson_deploy.ansible_steps", "plan", str(tmp_path / "w"), "h", "--root",
                         "/opt/jd"], input=answer, stdout=subprocess.PIPE, universal_newlines=True,
                        env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["action"] == "unchanged"


def _vm_limited(args, gib=3):
    """The CLI under `ulimit -v` (GiB): an unbounded read fails there instead of taking the machine's memory."""
    import shlex

    return ["sh", "-c", "ulimit -v {}; exec {} -m jetson_deploy {}".format(
        gib << 20, sys.executable, " ".join(shlex.quote(str(a)) for a in args))]


def test_hosts_file_bounds(tmp_path, bundle):
    """#29.14: a FIFO blocked forever, /dev/zero read until memory ran out, a long line was quadratic."""
    fifo = tmp_path / "hosts.fifo"
    os.mkfifo(str(fifo))
    refused(jd(["deploy", bundle, "--hosts", fifo], tmp_path, timeout=60), 2, "not a regular file")
    refused(jd([], tmp_path, argv=_vm_limited(["deploy", bundle, "--hosts", "/dev/zero"]), timeout=60), 2, "not a regular file")
    long_line = tmp_path / "long.ini"
    long_line.write_text("h k=" + "a" * 4000000 + "\n")
    refused(jd(["deploy", bundle, "--hosts", long_line], tmp_path, timeout=60), 2, "characters long")
    big = tmp_path / "big.ini"
    big.write_text("h\n" * (3 << 20))
    refused(jd(["deploy", bundle, "--hosts", big], tmp_path, timeout=60), 2, "larger than")


@pytest.mark.needs("cv2")
def test_calibrate_refuses_devices_and_pipes(tmp_path):
    fifo = tmp_path / "in.fifo"
    os.mkfifo(str(fifo))
    for src in ("/dev/zero", str(fifo)):
        refused(jd([], tmp_path, argv=_vm_limited(["calibrate", src, "--spec", DEMO_SPEC, "-o", tmp_path / "set"]), timeout=120),
                2, "not a regular file")
    assert not (tmp_path / "set").exists()


@pytest.mark.needs("onnxruntime")
def test_synthetic_pool_is_bounded(tmp_path, colors):
    for uri in ("synthetic://4096x4096?pool=100000", "synthetic://64x64?pool=-1", "synthetic://64x64?pool=5000"):
        refused(jd([], tmp_path, argv=_vm_limited(["run", colors, "--source", uri, "--backend", "onnxruntime", "--max-frames", "1"]),
                   timeout=120), 2, "pool=")


def test_convert_refuses_an_opset_no_tensorrt_reads():
    """#29.13: `convert --opset 21` wrote no requires.tensorrt_min (no TensorRT in the table reads 21)."""
    from types import SimpleNamespace

    from jetson_deploy.convert.manifest import _requires
    from jetson_deploy.errors import BadInput

    def stages(opset):
        return SimpleNamespace(exported=SimpleNamespace(info={"opset": opset}), folded=SimpleNamespace(record={}))

    assert _requires(stages(17))["tensorrt_min"] == "8.4" and _requires(stages(20))["tensorrt_min"] == "10.0"
    with pytest.raises(BadInput, match="opset 21 is newer than any TensorRT"):
        _requires(stages(21))


@pytest.mark.slow
@pytest.mark.needs("torch", "onnx", "onnxruntime")
def test_convert_opset_21_one_line(tmp_path):
    out = tmp_path / "out"
    refused(jd(["convert", "jetson_deploy.demo:load_model", "--spec", DEMO_SPEC, "--opset", "21", "-o", out], tmp_path), 2,
            "--opset 20")
    assert not out.exists()


@pytest.mark.needs("onnxruntime")
def test_a_tensorrt_that_calls_sys_exit_is_one_line(tmp_path, colors):
    """#29.15: a `tensorrt` module calling sys.exit(3) made info/selftest/run exit 3 with no word."""
    fake = tmp_path / "site" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import sys\nsys.exit(3)\n")
    env = {"PYTHONPATH": "{}:{}".format(tmp_path / "site", ROOT)}
    rc, out, err = jd(["info"], tmp_path, env=env)
    assert rc == 0 and "broken (SystemExit: 3)" in out, (rc, out, err)
    rc, out, err = jd(["selftest"], tmp_path, env=env)
    assert rc == 1 and "SystemExit: 3" in out and "Traceback" not in err, (rc, out, err)
    refused(jd(["run", colors] + RUN_COLORS[:-4] + ["--backend", "tensorrt"], tmp_path, env=env), 2, "SystemExit: 3")
    refused(jd(["bundle", "engine", colors], tmp_path, env=env), 2, "SystemExit: 3")


@pytest.mark.parametrize("command", [["bundle", "verify"], ["bundle", "inspect"], ["bundle", "pack"], ["bundle", "unpack"]])
def test_bundle_path_that_is_a_device_or_pipe(tmp_path, command):
    """Found by scripts/fuzz_cli.py: a FIFO as BUNDLE blocked, /dev/zero never ended."""
    fifo = tmp_path / "b.fifo"
    os.mkfifo(str(fifo))
    extra = ["-o", tmp_path / "out"] if command[1] in ("pack", "unpack") else []
    for path in (fifo, "/dev/zero"):
        refused(jd(command + [path] + extra, tmp_path, timeout=60), 2, "a device, pipe or socket")


@pytest.mark.needs("cv2")
def test_selftest_camera_that_is_a_pipe_or_not_utf8(tmp_path):
    """Found by scripts/fuzz_cli.py: `selftest --camera FIFO` blocked in OpenCV forever; a non-UTF-8
    name segfaulted it.  Both are a FAIL with the reason."""
    fifo = tmp_path / "cam.fifo"
    os.mkfifo(str(fifo))
    for cam, why in ((str(fifo), "not a camera device"), (os.fsencode(str(tmp_path)) + b"/\xff", "not valid UTF-8")):
        rc, out, err = jd(["selftest", "--camera", cam], tmp_path, timeout=120)
        assert rc == 1 and "Traceback" not in err, (rc, out, err)
        assert any(ln.startswith("camera") and "FAIL" in ln and why in ln for ln in out.splitlines()), out
