"""Frame sources and result sinks, addressed by URI (jetson-inference style).

``open_source("csi://0")``, ``open_source("clip.mp4")``, ``open_source("synthetic://1280x720@30")``;
``open_sink("out.mp4")``, ``open_sink("results.jsonl")``, ``open_sink("null://")``.
A source's ``capture()`` returns a :class:`Frame` or None (end of stream or timeout);
``is_streaming`` says whether more may come.  No heavy import happens here.

Modules: ``sources`` / ``sinks`` (the templates; sinks also holds the file, display and null
sinks), ``local_sources`` / ``opencv_sources`` (the sources), ``shapes`` (the synthetic frames),
``capture`` (a source on its own thread), ``overlay`` (drawing results), ``registry`` (URI ->
class; how to add a source or a sink is in its docstring).
"""
from .registry import open_sink, open_source, parse_source_uri, register_sink, register_source
from .sinks import Sink
from .sources import Frame, Source

__all__ = ["Frame", "Source", "open_source", "parse_source_uri", "register_source",
           "Sink", "open_sink", "register_sink"]
