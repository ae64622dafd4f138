"""Stale temporaries: ``.jd-PID-*`` beside an output are removed only once process PID is gone; a
running job's half-written output (another process, e.g. a parallel convert) is never touched."""
import subprocess
import sys

from jetson_deploy._files import BUNDLE, clean_stale_temps, prepare_output


def _child():
    """A live process that is not this one (its pid is not exempt as 'ours')."""
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)


def test_a_live_processs_partial_is_kept_and_removed_once_it_exits(tmp_path):
    child = _child()
    try:
        part_dir = tmp_path / ".jd-{}-abcd1234.partial".format(child.pid)
        part_dir.mkdir()
        (part_dir / "model.onnx").write_bytes(b"half")
        part_file = tmp_path / ".jd-{}-ef567890.partial.mp4".format(child.pid)
        part_file.write_bytes(b"half")
        assert clean_stale_temps(tmp_path) == 0
        prepare_output(tmp_path / "out-bundle", BUNDLE)  # the output policy cleans the same way
        assert part_dir.is_dir() and part_file.is_file()
    finally:
        child.stdin.close()
        child.wait(60)
    # the child is gone (and reaped): its leftovers are stale now
    assert clean_stale_temps(tmp_path) == 2
    assert not part_dir.exists() and not part_file.exists()


def test_only_our_prefix_is_cleaned(tmp_path):
    child = _child()
    child.stdin.close()
    child.wait(60)
    mine = tmp_path / "{}-user.partial".format(child.pid)
    mine.write_text("the user's")
    odd = tmp_path / ".jd-notapid-x.partial"
    odd.write_text("?")
    assert clean_stale_temps(tmp_path) == 0 and mine.exists() and odd.exists()
