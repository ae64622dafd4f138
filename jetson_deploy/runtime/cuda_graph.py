"""A captured per-frame enqueue, replayed with one launch (batch-1 latency is launch-bound)."""
from typing import Any


class CudaGraph:
    """``replay()`` launches the captured work on its stream; it never synchronises the host."""

    def __init__(self, graph: Any, stream: Any) -> None:
        self.graph = graph
        self.stream = stream
        self.context: Any = None  # the TensorRT execution context captured (one per graph)

    def replay(self) -> None:
        import torch  # graphs are captured through torch.cuda; only reached when torch made one

        with torch.cuda.stream(self.stream):
            self.graph.replay()
