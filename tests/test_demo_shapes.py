"""The demo frame generator: determinism, labels, sizes, clips and image folders."""
from collections import Counter

import numpy as np
import pytest

from support import optional_module

pytestmark = pytest.mark.needs("cv2")
cv2 = optional_module("cv2")

from jetson_deploy.demo import LABELS, ShapeGenerator, load_spec, spec_path, write_clip, write_images  # noqa: E402
from jetson_deploy.demo.shapes import label_of  # noqa: E402
from jetson_deploy.errors import BadInput  # noqa: E402


def _take(seed, n, w=96, h=72):
    return list(ShapeGenerator(seed).frames(n, w, h))


def test_same_seed_same_frames():
    a, b = _take(7, 12), _take(7, 12)
    for (fa, la), (fb, lb) in zip(a, b):
        assert la == lb
        assert np.array_equal(fa, fb)


def test_different_seed_different_frames():
    a, b = _take(1, 12), _take(2, 12)
    assert all(not np.array_equal(fa, fb) for (fa, _), (fb, _) in zip(a, b))


def test_successive_frames_differ():
    frames = [f for f, _ in _take(3, 6)]
    assert all(not np.array_equal(frames[i], frames[i + 1]) for i in range(5))


@pytest.mark.parametrize("w,h", [(64, 64), (96, 72), (160, 120), (72, 128), (1280, 720)])
def test_frame_size_and_dtype(w, h):
    frame, label = ShapeGenerator(0).frame(w, h)
    assert frame.shape == (h, w, 3)
    assert frame.dtype == np.uint8
    assert 0 <= label < len(LABELS)


def test_labels_roughly_uniform():
    counts = Counter(label for _, label in ShapeGenerator(11).frames(800, 48, 48))
    assert set(counts) == set(range(len(LABELS)))
    for k in range(len(LABELS)):
        assert 140 <= counts[k] <= 260, counts  # expected 200 each


def test_forced_label():
    gen = ShapeGenerator(5)
    for k in range(len(LABELS)):
        _, label = gen.frame(80, 60, label=k)
        assert label == k


def test_shape_stands_out_from_background():
    # The same scene with and without its shape: the shape changes a sizeable area.
    from jetson_deploy.demo.shapes import NONE, render, sample_scene

    rng = np.random.RandomState(4)
    for label in (0, 1, 2):
        for _ in range(5):
            scene = sample_scene(rng, 128, 96, label)
            scene.noise = 0
            with_shape = render(scene, 128, 96, rng)
            scene.label = NONE
            without = render(scene, 128, 96, rng)
            diff = np.abs(with_shape.astype(int) - without.astype(int)).sum(axis=2) > 60
            assert diff.mean() > 0.01


def test_too_small_frame_is_bad_input():
    with pytest.raises(BadInput):
        ShapeGenerator(0).frame(4, 4)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_write_clip_readable(tmp_path, suffix):
    path = tmp_path / ("clip" + suffix)
    labels = write_clip(path, 23, width=160, height=120, fps=10, seed=3, hold=4)
    assert len(labels) == 23
    assert all(0 <= x < len(LABELS) for x in labels)
    # Scenes are held for `hold` frames.
    assert all(labels[i] == labels[i - i % 4] for i in range(23))
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (120, 160, 3)
        n += 1
    cap.release()
    assert n == 23
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_write_clip_deterministic_labels(tmp_path):
    a = write_clip(tmp_path / "a.avi", 20, 64, 48, seed=9)
    b = write_clip(tmp_path / "b.avi", 20, 64, 48, seed=9)
    c = write_clip(tmp_path / "c.avi", 20, 64, 48, seed=10)
    assert a == b
    assert len(c) == 20


def test_write_clip_bad_suffix(tmp_path):
    with pytest.raises(BadInput, match=r"\.mp4"):
        write_clip(tmp_path / "clip.gif", 5)
    assert list(tmp_path.iterdir()) == []


def test_clip_shape_moves_within_a_scene():
    gen = ShapeGenerator(2)
    frames = list(gen.clip_frames(10, 128, 96, hold=10))
    labels = {label for _, label in frames}
    assert len(labels) == 1
    assert not np.array_equal(frames[0][0], frames[-1][0])


def test_write_images_readable(tmp_path):
    items = write_images(tmp_path / "imgs", 9, width=80, height=60, seed=4)
    assert len(items) == 9
    expected = [label for _, label in ShapeGenerator(4).frames(9, 80, 60)]
    assert [label for _, label in items] == expected
    for path, label in items:
        img = cv2.imread(str(path))
        assert img is not None and img.shape == (60, 80, 3)
        assert label_of(path.name) == label
    # PNG is lossless: the files hold exactly the generated frames.
    first = next(ShapeGenerator(4).frames(1, 80, 60))[0]
    assert np.array_equal(cv2.imread(str(items[0][0])), first)


def test_write_images_jpg_and_bad_ext(tmp_path):
    items = write_images(tmp_path, 3, 64, 64, seed=1, ext="jpg")
    assert all(p.suffix == ".jpg" and cv2.imread(str(p)) is not None for p, _ in items)
    with pytest.raises(BadInput):
        write_images(tmp_path / "x", 2, ext=".gif")


def test_spec_loads():
    spec = load_spec()
    assert spec_path().is_file()
    assert spec.labels == LABELS
    assert spec.shape == [1, 3, 64, 64]
    assert spec.input_name == "input"
    assert spec.outputs == ["logits"]
    assert spec.color == "rgb"


def test_dataset_is_preprocessed_generator_output():
    from jetson_deploy.demo import MIXED_SIZES, dataset
    from jetson_deploy.preprocess import preprocess

    spec = load_spec()
    x, y = dataset(6, seed=13, sizes=[(96, 72)], spec=spec)
    assert x.shape == (6, 3, 64, 64) and x.dtype == np.float32
    frames = list(ShapeGenerator(13).frames(6, 96, 72))
    assert y.tolist() == [label for _, label in frames]
    assert np.array_equal(x[0], preprocess(frames[0][0], spec))
    x2, y2 = dataset(6, seed=13, jpeg=1.0, sizes=[(96, 72)], spec=spec)  # JPEG changes pixels, not labels
    assert y2.tolist() == y.tolist()
    assert not np.array_equal(x2, x)
    assert len(set(MIXED_SIZES)) == len(MIXED_SIZES) >= 10
