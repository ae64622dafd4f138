"""Near-duplicate removal at its boundary: a hash exactly ``--dedupe-bits`` away is a duplicate, one bit
more is not, and ``--dedupe-bits 0`` still drops exact copies (``-1`` keeps everything)."""
import shutil

import pytest

from jetson_deploy.calibration.sources import HashIndex


def _flip(h, bits):
    """``h`` with its lowest ``bits`` bits flipped: Hamming distance exactly ``bits``."""
    return h ^ ((1 << bits) - 1)


@pytest.mark.parametrize("threshold", [0, 1, 4, 10])
def test_distance_equal_to_the_threshold_is_a_duplicate(threshold):
    idx = HashIndex(threshold)
    h = 0x9E3779B97F4A7C15
    idx.add(h)
    assert idx.nearest(_flip(h, threshold)) == threshold
    assert idx.is_duplicate(_flip(h, threshold))
    assert not idx.is_duplicate(_flip(h, threshold + 1))
    assert idx.is_duplicate(h)  # an exact copy, whatever the threshold


def test_negative_threshold_keeps_everything():
    idx = HashIndex(-1)
    idx.add(5)
    assert not idx.is_duplicate(5)


@pytest.mark.needs("cv2")
def test_dedupe_bits_zero_drops_exact_copies_only(tmp_path):
    from support.calib import write_images, write_spec
    from jetson_deploy.calibration.dataset import build_calibration_set

    spec = write_spec(tmp_path / "spec.json")
    folder = tmp_path / "imgs"
    originals = write_images(folder, 6, seed=21, exts=("png",))
    for i, p in enumerate(originals[:3]):
        shutil.copy(str(p), str(folder / "copy{}.png".format(i)))
    cs = build_calibration_set([folder], spec, tmp_path / "set", num=100, progress=False, dedupe_bits=0)
    assert cs.manifest["dedupe"]["threshold_bits"] == 0
    assert cs.manifest["dedupe"]["dropped"] == 3 and len(cs) + cs.num_holdout == 6
