"""What a run did: :class:`RunSummary` (``run --json`` prints its ``to_dict()``)."""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class RunSummary:
    """What a run did.  ``to_dict()`` is what ``run --json`` prints."""

    frames: int = 0
    fps: float = 0.0
    seconds: float = 0.0
    latency_ms: "Dict[str, float]" = field(default_factory=dict)
    dropped: int = 0
    captured: int = 0
    backend: str = ""
    source: str = ""
    sinks: "List[str]" = field(default_factory=list)
    end_reason: str = ""
    executor: "Dict[str, Any]" = field(default_factory=dict)
    host_ms_per_frame: float = 0.0
    wait_ms_per_frame: "Dict[str, float]" = field(default_factory=dict)
    accuracy: "Optional[float]" = None
    bundle: str = ""
    results: "Optional[List[Dict[str, Any]]]" = None
    syncs: "Optional[Dict[str, Any]]" = None
    capture_cpu_ms_per_frame: "Optional[float]" = None
    #: multi-source runs: per source index, uri, frames, fps, latency_ms, dropped, captured, end_reason
    sources: "Optional[List[Dict[str, Any]]]" = None
    #: rows per engine call, dynamic or fixed, engine calls a round (set by the run session)
    batch: "Optional[Dict[str, Any]]" = None
    #: the engine as it ran (backend's describe(): device, precision; torch: compile, recompiles)
    engine: "Optional[Dict[str, Any]]" = None

    def to_dict(self) -> "Dict[str, Any]":
        d = {
            "frames": self.frames, "fps": round(self.fps, 3), "seconds": round(self.seconds, 4),
            "latency_ms": self.latency_ms, "dropped": self.dropped, "captured": self.captured,
            "backend": self.backend, "source": self.source, "sinks": self.sinks, "end_reason": self.end_reason,
            "executor": self.executor, "host_ms_per_frame": round(self.host_ms_per_frame, 4),
            "wait_ms_per_frame": self.wait_ms_per_frame, "bundle": self.bundle,
        }
        if self.accuracy is not None:
            d["accuracy"] = round(self.accuracy, 5)
        if self.syncs is not None:
            d["syncs"] = self.syncs
        if self.capture_cpu_ms_per_frame is not None:
            d["capture_cpu_ms_per_frame"] = round(self.capture_cpu_ms_per_frame, 4)
        if self.sources is not None:
            d["sources"] = self.sources
        if self.batch is not None:
            d["batch"] = self.batch
        if self.engine is not None:
            d["engine"] = self.engine
        if self.results is not None:
            d["results"] = self.results
        return d
