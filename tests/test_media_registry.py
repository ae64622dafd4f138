"""The URI registry: a new source or sink is one class plus one registration; no import cycles;
the synthetic source without cv2 or with its own generator."""
import ast
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from jetson_deploy.errors import BadInput
from jetson_deploy.media import registry
from jetson_deploy.media.local_sources import SyntheticSource
from jetson_deploy.media.sinks import Sink
from jetson_deploy.media.sources import Frame, Source

MEDIA = Path(registry.__file__).resolve().parent


@pytest.fixture
def tables(monkeypatch):
    """Registrations made in a test vanish after it."""
    for name in ("SOURCE_KINDS", "SOURCE_SCHEMES", "SOURCE_PREFIXES", "SINK_SCHEMES", "SINK_SUFFIXES"):
        monkeypatch.setattr(registry, name, dict(getattr(registry, name)))


def test_a_new_source_is_one_class_and_one_registration(tables):
    class CounterSource(Source):
        scheme = "counter"

        @classmethod
        def options_from_uri(cls, uri):
            opts = super().options_from_uri(uri)
            opts["start"] = int(uri[len("counter://"):].split("?")[0] or 0)
            return opts

        def read_impl(self, timeout):
            n = self.options["start"] + self.frames_captured
            if n >= int(self.options.get("stop", 3)):
                self.end("done")
                return None
            return Frame(np.full((2, 2, 3), n, np.uint8))

    with pytest.raises(BadInput, match="unknown scheme"):
        registry.open_source("counter://1")
    registry.register_source(CounterSource, schemes=("counter", "cnt"))
    assert registry.parse_source_uri("counter://1?stop=4") == ("counter", {"start": 1, "stop": "4"})
    src = registry.open_source("counter://1?stop=4")
    assert isinstance(src, CounterSource)
    assert [int(f.image[0, 0, 0]) for f in src] == [1, 2, 3]
    assert isinstance(registry.open_source("cnt://0", stop=1), CounterSource)
    with pytest.raises(BadInput, match="counter://"):  # the error lists registered schemes
        registry.open_source("nope://x")


def test_a_new_sink_is_one_class_and_one_registration(tables, tmp_path):
    class ListSink(Sink):
        scheme = "list"
        needs_image = False

        def __init__(self, uri, fps=30.0):
            super().__init__(uri, fps)
            self.got = []

        def render_impl(self, frame, result, fps):
            self.got.append(result)

    with pytest.raises(BadInput, match="display://0"):
        registry.open_sink("list://")
    registry.register_sink(ListSink, schemes=("list",), suffixes=(".LST",))
    s = registry.open_sink("list://", fps=5)
    assert isinstance(s, ListSink) and s.fps == 5
    s.render(None, "r")
    assert s.got == ["r"]
    assert isinstance(registry.open_sink(str(tmp_path / "a.lst")), ListSink)
    with pytest.raises(BadInput, match="list://"):
        registry.open_sink("udp://h:1")


def test_synthetic_without_cv2_is_noise_with_one_warning(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now fails
    caplog.set_level(logging.WARNING, logger="jetson_deploy.media")
    src = registry.open_source("synthetic://16x8?frames=3&pool=0&seed=1").open()
    frames = list(src)
    assert src.describe()["generator"] == "noise"
    assert len(frames) == 3 and all(f.image.shape == (8, 16, 3) and f.truth is None for f in frames)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cv2" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()


def test_synthetic_takes_a_generator():
    class Flat:
        name = "flat"

        def __init__(self):
            self.n = 0

        def frame(self, width, height):
            self.n += 1
            return np.full((height, width), self.n, np.uint8), self.n % 2

    src = SyntheticSource("synthetic://4x2", {"width": 4, "height": 2, "frames": 2, "pool": 0}, generator=Flat())
    frames = list(src.open())
    assert src.describe()["generator"] == "flat"
    assert [(f.image.shape, int(f.image[0, 0, 2]), f.truth) for f in frames] == [((2, 4, 3), 1, 1), ((2, 4, 3), 2, 0)]
    src = registry.open_source("synthetic://4x2?frames=1", generator=Flat())  # open_source passes it on
    assert [f.truth for f in src.open()] == [1] and src.describe()["generator"] == "flat"


def _imports(path):
    """Module names ``path`` imports, relative ones as written (``.sources``, ``..demo``), functions included."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            out.add(base)
            out.update(base + ("." if node.module else "") + a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_media_never_imports_demo_and_sources_never_import_the_registry():
    for py in sorted(MEDIA.glob("*.py")):
        names = _imports(py)
        assert not any("demo" in n for n in names), py.name
        if py.name not in ("__init__.py", "registry.py"):
            assert not any(n.endswith("registry") for n in names), py.name
    siblings = {n for n in _imports(MEDIA / "sources.py") if n.startswith(".") and not n.startswith("..")}
    assert not siblings  # the base imports no source
