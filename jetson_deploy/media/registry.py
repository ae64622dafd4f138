"""Which class serves a URI: one table for sources (by scheme), one for sinks (by scheme or suffix).

As jetson-utils' ``videoSource::Create`` / ``videoOutput::Create``: this factory knows every
implementation and no implementation knows the factory, so the concrete modules import only
their base (:mod:`.sources`, :mod:`.sinks`) and nothing imports in a circle.

Adding a source -- one class, one line here::

    class HTTPSource(OpenCVSource):           # in opencv_sources.py, or a module of its own
        scheme = "http"
        @classmethod
        def options_from_uri(cls, uri):        # only when the URI carries more than ?key=value
            return {}

    register_source(HTTPSource, schemes=("http", "https"))

``open_source(uri, **options)`` then builds ``HTTPSource(uri, options_from_uri(uri) + options)``.
Adding a sink -- one :class:`~.sinks.Sink` subclass (``open_impl`` / ``render_impl`` /
``close_impl``, constructor ``(uri, fps)``), one line::

    register_sink(RTSPSink, schemes=("rtsp",))        # or suffixes=(".ts",) for a file type
"""
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Type

from ..errors import BadInput
from ..vocab import IMAGE_EXTS
from .http_sink import HTTPSink
from .local_sources import ImageSource, SyntheticSource
from .opencv_sources import CSISource, GstSource, RTSPSource, V4L2Source, VideoFileSource
from .rtsp_sink import RTSPSink
from .sinks import VIDEO_FOURCC, DisplaySink, JsonlSink, NullSink, Sink, VideoSink
from .sources import Source, uri_path

#: source kind (the class's ``scheme``) -> class; the kinds ``parse_source_uri`` returns
SOURCE_KINDS: "Dict[str, Type[Source]]" = {}
#: URI scheme (``csi`` of ``csi://0``) -> kind
SOURCE_SCHEMES: "Dict[str, str]" = {}
#: URI prefix without a scheme (``/dev/video``) -> kind
SOURCE_PREFIXES: "Dict[str, str]" = {}
#: sink URI scheme (``null`` of ``null://``) -> class
SINK_SCHEMES: "Dict[str, Type[Sink]]" = {}
#: sink file suffix (``.jsonl``) -> class
SINK_SUFFIXES: "Dict[str, Type[Sink]]" = {}


def register_source(cls: "Type[Source]", schemes: "Optional[Iterable[str]]" = None,
                    prefixes: "Iterable[str]" = ()) -> "Type[Source]":
    """Let ``open_source`` build ``cls`` for ``<scheme>://...`` URIs (default: ``cls.scheme``).

    ``schemes=()`` registers a kind reached only by path rules (video files, image folders).
    Returns ``cls``, so code outside this package may use it as a class decorator.
    """
    kind = cls.scheme
    SOURCE_KINDS[kind] = cls
    for s in ((kind,) if schemes is None else schemes):
        SOURCE_SCHEMES[s] = kind
    for p in prefixes:
        SOURCE_PREFIXES[p] = kind
    return cls


def register_sink(cls: "Type[Sink]", schemes: "Iterable[str]" = (), suffixes: "Iterable[str]" = ()) -> "Type[Sink]":
    """Let ``open_sink`` build ``cls(uri, fps)`` for ``<scheme>:...`` URIs or files ending in a suffix."""
    for s in schemes:
        SINK_SCHEMES[s] = cls
    for x in suffixes:
        SINK_SUFFIXES[x.lower()] = cls
    return cls


# The tables.  Order matters only for the wording of error messages.
register_source(CSISource)
register_source(V4L2Source, prefixes=("/dev/video",))
register_source(RTSPSource, schemes=("rtsp", "rtsps"))
register_source(GstSource)
register_source(SyntheticSource)
register_source(VideoFileSource, schemes=())  # clip.mp4, file://clip.mp4
register_source(ImageSource, schemes=())  # frames/, image.jpg

register_sink(DisplaySink, schemes=("display",))
register_sink(NullSink, schemes=("null",))
register_sink(JsonlSink, suffixes=(".jsonl",))
register_sink(VideoSink, suffixes=tuple(VIDEO_FOURCC))
register_sink(RTSPSink, schemes=("rtsp",))
register_sink(HTTPSink, schemes=("http",))


def _source_kind(uri: str) -> str:
    scheme, sep, _ = uri.partition("://")
    if sep and scheme in SOURCE_SCHEMES:
        return SOURCE_SCHEMES[scheme]
    for prefix, kind in SOURCE_PREFIXES.items():
        if uri.startswith(prefix):
            return kind
    path = uri_path(uri)
    if "://" in path:
        schemes = ", ".join(k + "://" for k in SOURCE_KINDS if k in SOURCE_SCHEMES.values())
        raise BadInput("source {}: unknown scheme; use {}, a video file or an image folder".format(uri, schemes))
    p = Path(path)
    return ImageSource.scheme if p.is_dir() or p.suffix.lower() in IMAGE_EXTS else VideoFileSource.scheme


def parse_source_uri(uri: str) -> "Tuple[str, Dict[str, Any]]":
    """(kind, options) for a source URI; kinds: synthetic csi v4l2 rtsp gst file images (and any registered)."""
    uri = str(uri)
    kind = _source_kind(uri)
    return kind, SOURCE_KINDS[kind].options_from_uri(uri)


def open_source(uri: Any, **options: Any) -> "Source":
    """Make (not yet open) the source for ``uri``; keyword options (not None) override URI ones."""
    if isinstance(uri, Source):
        return uri
    kind, opts = parse_source_uri(str(uri))
    opts.update({k: v for k, v in options.items() if v is not None})
    return SOURCE_KINDS[kind](str(uri), opts)


def open_sink(uri: Any, fps: float = 30.0) -> "Sink":
    """Make the sink for ``uri``: ``null://``, ``display://N``, ``*.jsonl``, a video file (or any registered)."""
    if isinstance(uri, Sink):
        return uri
    if uri is None:
        return NullSink("null://", fps)
    uri = str(uri)
    scheme, sep, _ = uri.partition(":")
    if sep and scheme in SINK_SCHEMES:
        return SINK_SCHEMES[scheme](uri, fps)
    path = uri_path(uri)
    if "://" in path:
        schemes = ", ".join(getattr(cls, "example", "") or s + "://" for s, cls in SINK_SCHEMES.items())
        raise BadInput("sink {}: use {}, a .jsonl file or a video file (.mp4/.avi)".format(uri, schemes))
    suffix = Path(path).suffix
    cls = SINK_SUFFIXES.get(suffix.lower())
    if cls is None:
        raise BadInput("sink {}: unknown file type {!r}; use .jsonl or a video file ({})".format(
            uri, suffix, ", ".join(sorted(VIDEO_FOURCC))))
    return cls(uri, fps)
