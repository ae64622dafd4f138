"""Where a board path lies inside a mounted image (``service install --rootfs``): '.', '' and '..'
components, relative and absolute directory symlinks, and the 40-link limit (a loop is refused,
never followed forever).  Found by mutmut (scripts/mutmut_module.py service)."""
import os

import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.service import board_path


def _chain(fs, n):
    """/l0 -> /l1 -> ... -> /l{n-1} -> /real (absolute links, as an image has them): n hops."""
    (fs / "real").mkdir()
    for i in range(n):
        os.symlink("/l{}".format(i + 1) if i + 1 < n else "/real", str(fs / "l{}".format(i)))


def test_dot_and_empty_components_are_skipped(tmp_path):
    fs = tmp_path / "fs"
    (fs / "etc" / "systemd" / "system").mkdir(parents=True)
    want = fs.resolve() / "etc" / "systemd" / "system" / "u.service"
    assert board_path(str(fs), "/etc/./systemd//system/u.service") == want
    assert board_path(str(fs), "/etc/systemd/x/../system/u.service") == want
    assert board_path(str(fs), "/../../etc/systemd/system/u.service") == want  # '..' stops at the image's top


def test_relative_and_absolute_directory_links_resolve_inside_the_image(tmp_path):
    fs = tmp_path / "fs"
    (fs / "data" / "jd").mkdir(parents=True)
    os.symlink("data/jd", str(fs / "opt"))            # relative
    os.symlink("/data", str(fs / "mnt"))              # absolute: re-rooted at the image
    assert board_path(str(fs), "/opt/active/demo") == fs.resolve() / "data" / "jd" / "active" / "demo"
    assert board_path(str(fs), "/mnt/jd/x") == fs.resolve() / "data" / "jd" / "x"


def test_forty_links_resolve_and_the_forty_first_is_refused(tmp_path):
    ok, bad = tmp_path / "ok", tmp_path / "bad"
    ok.mkdir()
    bad.mkdir()
    _chain(ok, 40)
    assert board_path(str(ok), "/l0/u.service") == ok.resolve() / "real" / "u.service"
    _chain(bad, 41)
    with pytest.raises(BadInput, match="too many symlinks"):
        board_path(str(bad), "/l0/u.service")


def test_a_symlink_loop_is_refused(tmp_path):
    fs = tmp_path / "fs"
    fs.mkdir()
    os.symlink("/b", str(fs / "a"))
    os.symlink("/a", str(fs / "b"))
    with pytest.raises(BadInput, match="too many symlinks"):
        board_path(str(fs), "/a/etc/u.service")
