"""Dockerfiles: hadolint clean, base images pinned by tag, each one documented in docker/README.md."""
import re
import subprocess
from pathlib import Path

import pytest

from support import tool

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


HADOLINT = tool("hadolint")


def _base_images(text: str):
    """FROM images, with `ARG BASE=...` defaults substituted."""
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    images = []
    for ref in re.findall(r"^FROM\s+(\S+)", text, re.M):
        images.append(re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), ref))
    return images


def test_there_are_dockerfiles():
    assert {p.name for p in DOCKERFILES} >= {"workstation.Dockerfile", "l4t-jp46.Dockerfile", "l4t-jp5.Dockerfile", "l4t-jp6.Dockerfile"}


@pytest.mark.needs("bin:hadolint")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint(dockerfile):
    p = subprocess.run([HADOLINT, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), "--failure-threshold", "info",
                        str(dockerfile)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)
    assert p.returncode == 0, p.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_base_image_pinned_by_tag(dockerfile):
    for image in _base_images(dockerfile.read_text()):
        assert "$" not in image, "{}: FROM {} has no default".format(dockerfile.name, image)
        name, _, tag = image.rpartition("/")[2].partition(":")
        assert tag and tag != "latest", "{}: pin {} by tag".format(dockerfile.name, image)


def test_readme_has_build_run_and_selftest_for_each_image():
    text = (DOCKER / "README.md").read_text()
    for df in DOCKERFILES:
        assert "docker build -f docker/{}".format(df.name) in text, df.name
        tag = {"workstation": "workstation", "l4t-jp46": "jp46", "l4t-jp5": "jp5", "l4t-jp6": "jp6"}[df.name.split(".")[0]]
        assert re.search(r"docker run .*jetson-deploy:{} selftest".format(tag), text), tag
    for flag in ("--runtime nvidia", "--device /dev/video0", "-v /tmp/argus_socket:/tmp/argus_socket", "-e DISPLAY"):
        assert flag in text, flag
