"""Calibration sets: sampling (images + evenly sampled video), dedupe, determinism,
bad input, --num too large, atomicity, manifest contents."""
import hashlib
import logging
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.needs("cv2")

from support.calib import scene, write_clip, write_images, write_spec  # noqa: E402

from jetson_deploy.calibration import dataset as ds  # noqa: E402
from jetson_deploy.calibration.dataset import build_calibration_set, load_calibration_set  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402


@pytest.fixture()
def spec(tmp_path: Path) -> Path:
    return write_spec(tmp_path / "spec.json")


def _all(cs, part="calib"):
    it = cs.iter_batches(5) if part == "calib" else cs.iter_holdout(5)
    arrs = list(it)
    return np.concatenate(arrs, axis=0) if arrs else np.zeros((0,) + cs.shape, np.float32)


def test_images_and_video_make_a_set_with_manifest(tmp_path: Path, spec: Path) -> None:
    imgs = write_images(tmp_path / "imgs" / "nested", 12, seed=1)
    clip = write_clip(tmp_path / "clip.avi", 60, seed=2)
    cs = build_calibration_set([tmp_path / "imgs", clip], spec, tmp_path / "set", num=40, seed=0, holdout=0.25, progress=False)
    assert len(cs) + cs.num_holdout == 40
    assert cs.num_holdout == 10
    assert cs.shape == (3, 32, 32) and cs.input_name == "input"
    m = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert m["schema_version"] == 1 and m["spec_sha256"] == cs.spec_sha256
    assert m["samples"] == len(cs) and m["holdout"] == 10 and m["seed"] == 0
    kinds = {s["kind"] for s in m["sources"]}
    assert kinds == {"image", "video"}
    for s in m["sources"]:
        data = Path(s["path"]).read_bytes()
        assert s["sha256"] == hashlib.sha256(data).hexdigest()
    assert sum(s["samples"] for s in m["sources"]) == 40
    assert {str(p) for p in imgs} >= {s["path"] for s in m["sources"] if s["kind"] == "image"}
    # shards are bounded .npy files that hold exactly the samples
    calib, hold = _all(cs), _all(cs, "holdout")
    assert calib.shape == (len(cs), 3, 32, 32) and calib.dtype == np.float32
    assert hold.shape == (10, 3, 32, 32)
    # per-channel stats are those of the stored (preprocessed) data
    both = np.concatenate([calib, hold]).transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
    np.testing.assert_allclose(m["stats"]["mean"], both.mean(axis=1), atol=1e-4)
    np.testing.assert_allclose(m["stats"]["std"], both.std(axis=1), atol=1e-4)
    # batches: sizes and no overlap between calibration and held-out samples
    assert [len(b) for b in cs.iter_batches(16)] == [16, 14]
    flat_c = {hashlib.sha1(x.tobytes()).hexdigest() for x in calib}
    flat_h = {hashlib.sha1(x.tobytes()).hexdigest() for x in hold}
    assert not flat_c & flat_h


def test_samples_are_preprocessed_with_the_runtime_code(tmp_path: Path, spec: Path) -> None:
    from jetson_deploy.preprocess import preprocess
    from jetson_deploy.spec import load_spec

    (p,) = write_images(tmp_path / "one", 1, seed=5, exts=("png",))
    cs = build_calibration_set([p], spec, tmp_path / "set", num=1, holdout=0.0, progress=False)
    import cv2

    want = preprocess(cv2.imread(str(p)), load_spec(spec))
    np.testing.assert_array_equal(_all(cs)[0], want)


def test_video_frames_are_spread_over_the_whole_clip(tmp_path: Path, spec: Path) -> None:
    clip = write_clip(tmp_path / "clip.avi", 200, seed=3)
    cs = build_calibration_set([clip], spec, tmp_path / "set", num=20, seed=7, progress=False)
    (src,) = cs.manifest["sources"]
    idx = src["frame_indices"]
    assert src["frames"] == 200 and len(idx) == 20
    gaps = np.diff([0] + idx + [200])
    assert idx[0] < 10 and idx[-1] >= 190  # not the first N frames
    assert gaps.max() <= 20  # evenly spread (stride 10, jitter < 1 stride)
    # the stored sample is really frame idx[k]: compare with a fresh decode of that frame
    import cv2

    from jetson_deploy.preprocess import preprocess

    cap = cv2.VideoCapture(str(clip))
    frames = []
    ok, f = cap.read()
    while ok:
        frames.append(f)
        ok, f = cap.read()
    data = np.concatenate([_all(cs), _all(cs, "holdout")])
    want = {hashlib.sha1(preprocess(frames[i], cs.spec).tobytes()).hexdigest() for i in idx}
    got = {hashlib.sha1(x.tobytes()).hexdigest() for x in data}
    assert got == want


def test_near_duplicates_are_dropped(tmp_path: Path, spec: Path) -> None:
    import cv2

    folder = tmp_path / "imgs"
    originals = write_images(folder, 10, seed=11, exts=("png",))
    for i, p in enumerate(originals[:4]):
        shutil.copy(str(p), str(folder / "copy{}.png".format(i)))  # exact copies
    for i, p in enumerate(originals[4:7]):
        img = cv2.imread(str(p))
        cv2.imwrite(str(folder / "reenc{}.jpg".format(i)), img, [cv2.IMWRITE_JPEG_QUALITY, 80])  # near copies
    cs = build_calibration_set([folder], spec, tmp_path / "set", num=100, progress=False)
    assert len(cs) + cs.num_holdout == 10
    assert cs.manifest["dedupe"]["dropped"] == 7
    # dedupe off keeps them all
    cs2 = build_calibration_set([folder], spec, tmp_path / "set2", num=100, progress=False, dedupe_bits=-1)
    assert len(cs2) + cs2.num_holdout == 17


def test_same_seed_same_set_other_seed_other_set(tmp_path: Path, spec: Path) -> None:
    write_images(tmp_path / "imgs", 30, seed=2)
    clip = write_clip(tmp_path / "clip.avi", 50, seed=4)
    srcs = [tmp_path / "imgs", clip]
    a = build_calibration_set(srcs, spec, tmp_path / "a", num=20, seed=1, progress=False)
    b = build_calibration_set(srcs, spec, tmp_path / "b", num=20, seed=1, progress=False)
    c = build_calibration_set(srcs, spec, tmp_path / "c", num=20, seed=2, progress=False)
    assert a.sha256 == b.sha256
    np.testing.assert_array_equal(_all(a), _all(b))
    assert a.manifest["sources"] == b.manifest["sources"]
    assert c.sha256 != a.sha256


def test_bad_files_are_skipped_with_reasons(tmp_path: Path, spec: Path, monkeypatch: "pytest.MonkeyPatch", caplog: "pytest.LogCaptureFixture") -> None:
    folder = tmp_path / "imgs"
    good = write_images(folder, 6, seed=3, exts=("png",))
    data = good[0].read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image\n")
    (folder / "README.txt").write_text("ignored: not an image extension\n")
    locked = folder / "locked"
    locked.mkdir()
    write_images(locked, 2, seed=99)
    real_scandir = os.scandir

    def scandir(path):  # root reads everything, so simulate the permission error
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with caplog.at_level(logging.INFO, logger="jetson_deploy.calibration"):
        cs = build_calibration_set([folder], spec, tmp_path / "set", num=50, progress=False)
    notes = [r.getMessage() for r in caplog.records]
    assert notes == cs.manifest["notes"]
    assert len(cs) + cs.num_holdout == 6
    reasons = {Path(s["path"]).name: s["reason"] for s in cs.manifest["skipped"]}
    assert "truncated PNG" in reasons["truncated.png"]
    assert "empty file" in reasons["empty.jpg"]
    assert "not a decodable image" in reasons["notes.jpg"]
    assert "cannot list directory" in reasons["locked"]
    assert "README.txt" not in reasons
    assert any("skipped 4" in n for n in notes)


def test_truncated_jpeg_is_skipped(tmp_path: Path, spec: Path) -> None:
    import cv2

    folder = tmp_path / "imgs"
    folder.mkdir()
    ok, buf = cv2.imencode(".jpg", scene(np.random.default_rng(0)))
    (folder / "cut.jpg").write_bytes(buf.tobytes()[: len(buf) - 300])
    cv2.imwrite(str(folder / "fine.jpg"), scene(np.random.default_rng(1)))
    cs = build_calibration_set([folder], spec, tmp_path / "set", num=5, holdout=0.0, progress=False)
    assert len(cs) == 1
    assert "truncated JPEG" in cs.manifest["skipped"][0]["reason"]


def test_nothing_usable_is_bad_input_and_writes_nothing(tmp_path: Path, spec: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    (folder / "b.png").write_text("nope")
    with pytest.raises(BadInput) as e:
        build_calibration_set([folder], spec, tmp_path / "set", progress=False)
    msg = str(e.value)
    assert "no usable image" in msg and "\n" not in msg
    assert not (tmp_path / "set").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInput, match="no image"):
        build_calibration_set([empty], spec, tmp_path / "set", progress=False)
    with pytest.raises(BadInput, match="does not exist"):
        build_calibration_set([tmp_path / "missing"], spec, tmp_path / "set", progress=False)


def test_num_larger_than_available_uses_all_and_says_so(tmp_path: Path, spec: Path, caplog: "pytest.LogCaptureFixture") -> None:
    write_images(tmp_path / "imgs", 7, seed=8)
    with caplog.at_level(logging.INFO, logger="jetson_deploy.calibration"):
        cs = build_calibration_set([tmp_path / "imgs"], spec, tmp_path / "set", num=1000, progress=False)
    notes = [r.getMessage() for r in caplog.records]
    assert len(cs) + cs.num_holdout == 7
    assert any("--num 1000" in n and "using all" in n for n in notes)
    assert cs.manifest["num_requested"] == 1000


def test_interrupted_build_leaves_no_set_and_keeps_the_old_one(tmp_path: Path, spec: Path, monkeypatch: "pytest.MonkeyPatch") -> None:
    write_images(tmp_path / "imgs", 20, seed=9)
    out = tmp_path / "set"
    old = build_calibration_set([tmp_path / "imgs"], spec, out, num=5, progress=False)
    import jetson_deploy.preprocess as pp

    real = pp.preprocess
    calls = {"n": 0}

    def failing(frame, spec, out=None):
        calls["n"] += 1
        if calls["n"] > 8:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run
        return real(frame, spec, out)

    monkeypatch.setattr(pp, "preprocess", failing)
    with pytest.raises(KeyboardInterrupt):
        build_calibration_set([tmp_path / "imgs"], spec, out, num=15, progress=False, shard_bytes=3 * 32 * 32 * 4 * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "set", "spec.json"]  # no partial dirs
    again = load_calibration_set(out)
    assert again.sha256 == old.sha256 and len(again) + again.num_holdout == 5
    # and a fresh dir is not created at all
    with pytest.raises(KeyboardInterrupt):
        calls["n"] = 0
        build_calibration_set([tmp_path / "imgs"], spec, tmp_path / "new", num=15, progress=False)
    assert not (tmp_path / "new").exists()


def test_small_shards_and_load_checks(tmp_path: Path, spec: Path) -> None:
    write_images(tmp_path / "imgs", 12, seed=10)
    sample_bytes = 3 * 32 * 32 * 4
    cs = build_calibration_set([tmp_path / "imgs"], spec, tmp_path / "set", num=12, holdout=0.0, progress=False, shard_bytes=5 * sample_bytes)
    shards = cs.manifest["shards"]["calib"]
    assert [s["count"] for s in shards] == [5, 5, 2]
    assert all((tmp_path / "set" / s["file"]).stat().st_size < 5 * sample_bytes + 256 for s in shards)
    assert [len(b) for b in cs.iter_batches(4)] == [4, 4, 4]
    assert [len(b) for b in cs.iter_batches(5, drop_last=True)] == [5, 5]
    cs.verify()
    (tmp_path / "set" / shards[1]["file"]).unlink()
    with pytest.raises(BadInput, match="missing"):
        load_calibration_set(tmp_path / "set")
    with pytest.raises(BadInput, match="not a calibration set"):
        load_calibration_set(tmp_path / "imgs")


def _decode_all(path: Path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    frames = []
    ok, f = cap.read()
    while ok:
        frames.append(f)
        ok, f = cap.read()
    return frames


@pytest.mark.parametrize("mode", ["seek", "no-count", "seek-fails"])
def test_video_reader_seeks_or_streams_to_the_same_frames(tmp_path: Path, mode: str, monkeypatch: "pytest.MonkeyPatch") -> None:
    import cv2

    from jetson_deploy.calibration import sources

    clip = write_clip(tmp_path / "clip.avi", 90, seed=6)
    every = _decode_all(clip)
    info, why = sources.probe_video(str(clip))
    assert why is None and info.frames == 90
    if mode == "no-count":
        info = sources.VideoInfo(path=info.path, frames=90, seekable=False)
    if mode == "seek-fails":
        real = cv2.VideoCapture

        class BadSeek:
            def __init__(self, *a):
                self.cap = real(*a)

            def set(self, prop, value):  # a container whose seeks land elsewhere
                if prop == cv2.CAP_PROP_POS_FRAMES:
                    self.cap.set(prop, max(0.0, value - 3))
                    return True
                return self.cap.set(prop, value)

            def __getattr__(self, name):
                return getattr(self.cap, name)

        monkeypatch.setattr(cv2, "VideoCapture", BadSeek)
    wanted = [3, 40, 41, 77, 89, 95]  # 95 is past the end
    got = list(sources.read_video_frames(info, wanted))
    assert [i for i, f, _ in got] == wanted
    for i, f, why in got:
        if i == 95:
            assert f is None and "past the end" in why
        else:
            np.testing.assert_array_equal(f, every[i])


def test_gray_and_nhwc_specs(tmp_path: Path) -> None:
    write_images(tmp_path / "imgs", 6, seed=12)
    gray = write_spec(
        tmp_path / "gray.json",
        input={"name": "x", "shape": [1, 24, 32, 1], "dtype": "float32", "color": "gray", "layout": "nhwc"},
        preprocess={"resize": [32, 24], "scale": 1.0 / 255.0, "mean": [0.5], "std": [0.5]},
    )
    cs = build_calibration_set([tmp_path / "imgs"], gray, tmp_path / "set", num=6, holdout=0.0, progress=False)
    assert cs.shape == (24, 32, 1) and cs.input_name == "x"
    data = _all(cs)
    assert data.shape == (6, 24, 32, 1) and -1.0 <= data.min() and data.max() <= 1.0
    assert len(cs.manifest["stats"]["mean"]) == 1 and cs.manifest["stats"]["channel_axis"] == 2


def test_symlink_loop_is_walked_once(tmp_path: Path, spec: Path) -> None:
    write_images(tmp_path / "imgs", 4, seed=13)
    os.symlink(str(tmp_path / "imgs"), str(tmp_path / "imgs" / "loop"))
    cs = build_calibration_set([tmp_path / "imgs"], spec, tmp_path / "set", num=50, holdout=0.0, progress=False)
    assert len(cs) == 4


def test_cli_builds_a_set_and_keeps_stdout_for_json(tmp_path: Path, spec: Path) -> None:
    from click.testing import CliRunner

    from jetson_deploy.cli import cli

    import inspect

    # click < 8.2 mixes stderr into stdout unless asked not to; 8.2 always separates them
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner).parameters else CliRunner()
    write_images(tmp_path / "imgs", 5, seed=14)
    res = runner.invoke(cli, ["calibrate", str(tmp_path / "imgs"), "--spec", str(spec), "-o", str(tmp_path / "set"), "--num", "50", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # progress bars and notes went to stderr
    assert doc["calibration_set"]["samples"] + doc["calibration_set"]["holdout"] == 5
    assert any("using all" in n for n in doc["notes"])
    assert "using all" in res.stderr
    res = runner.invoke(cli, ["calibrate", str(tmp_path / "nope"), "--spec", str(spec), "-o", str(tmp_path / "set2")])
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and res.stderr.startswith("Error: ")


def test_cli_quiet_keeps_notes_for_json_only(tmp_path: Path, spec: Path) -> None:
    from click.testing import CliRunner

    from jetson_deploy.cli import cli

    import inspect

    runner = CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner).parameters else CliRunner()
    write_images(tmp_path / "imgs", 5, seed=14)
    args = ["calibrate", str(tmp_path / "imgs"), "--spec", str(spec), "-o", str(tmp_path / "set"), "--num", "50", "--json", "--quiet"]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert any("using all" in n for n in json.loads(res.stdout)["notes"])
    assert res.stderr == ""


def test_library_calibrate_builds_or_refuses_in_one_line(tmp_path: Path, spec: Path) -> None:
    from jetson_deploy.calibration import calibrate
    from jetson_deploy.calibration.workflow import SetOptions

    write_images(tmp_path / "imgs", 5, seed=14)
    res = calibrate([tmp_path / "imgs"], tmp_path / "set", spec=spec, set_options=SetOptions(num=50), progress=False)
    assert res.int8 is None and any("using all" in n for n in res.notes)
    assert res.to_dict()["calibration_set"]["samples"] + res.calibration_set.num_holdout == 5
    res.enforce_gate()  # no model: nothing to gate
    with pytest.raises(BadInput, match="--spec is required"):
        calibrate([tmp_path / "imgs"], tmp_path / "set2")
    with pytest.raises(BadInput, match="or --model"):
        calibrate([], tmp_path / "set")
    with pytest.raises(BadInput, match="holds no calibration set"):
        calibrate([], tmp_path / "imgs", model=tmp_path / "m.onnx")


def test_calibrate_reads_every_image_kind_run_reads(tmp_path: Path, spec: Path) -> None:
    """One IMAGE_EXTS (jetson_deploy.vocab): a .tif/.tiff/.ppm in a folder is a calibration sample,
    as it is a frame for ``run frames/`` (calibrate used to ignore them)."""
    import inspect

    import cv2
    from click.testing import CliRunner

    from jetson_deploy.cli import cli
    from jetson_deploy.media.local_sources import ImageSource

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, ext in enumerate((".png", ".tif", ".tiff", ".ppm")):
        cv2.imwrite(str(folder / "f{}{}".format(i, ext)), scene(np.random.default_rng(40 + i)))
    runner = CliRunner(mix_stderr=False) if "mix_stderr" in inspect.signature(CliRunner).parameters else CliRunner()
    res = runner.invoke(cli, ["calibrate", str(folder), "--spec", str(spec), "-o", str(tmp_path / "set"), "--num", "4",
                              "--holdout", "0", "--dedupe-bits", "-1", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["calibration_set"]["samples"] == 4 and doc["calibration_set"]["skipped"] == 0
    assert not any("ignored" in n for n in doc["notes"]), doc["notes"]
    src = ImageSource(str(folder))
    src.open()
    try:
        assert len(src.files) == 4  # run reads the same four
    finally:
        src.close()
