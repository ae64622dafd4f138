"""Frame sources and result sinks, addressed by URI (jetson-inference style).

``open_source("csi://0")``, ``open_source("clip.mp4")``, ``open_source("synthetic://1280x720@30")``;
``open_sink("out.mp4")``, ``open_sink("results.jsonl")``, ``open_sink("null://")``.
A source's ``capture()`` returns a :class:`Frame` or None (end of stream or timeout);
``is_streaming`` says whether more may come.  No heavy import happens here.
"""
from .sources import Frame, Source, open_source, parse_source_uri  # noqa: F401
from .sinks import Sink, open_sink  # noqa: F401

__all__ = ["Frame", "Source", "open_source", "parse_source_uri", "Sink", "open_sink"]
