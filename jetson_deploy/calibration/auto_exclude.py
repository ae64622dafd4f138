"""Accuracy-driven mixed precision: leave the layers that INT8 hurts most in float.

Layer groups: each weighted op (Conv, ConvTranspose, Gemm, MatMul) together with
the activation/normalisation chain that follows it (what TensorRT fuses into one
layer), plus every other quantizable op on its own.  Excluding a group means its
nodes are not quantized *and* the Q/DQ pairs on all its activation tensors are
removed, so it runs entirely in float (TensorRT: FP16).

Search (leave-one-out ranking, then greedy):

1. quantize everything; if the gate passes, stop;
2. for each group, quantize everything *except* that group and measure the
   agreement (ranking key: agreement, then mean cosine, then mean abs error);
3. walk the groups from the best to the worst, adding a group to the excluded
   set only when it improves the running result, until the gate passes or the
   budget (``exclude_budget`` groups) is spent.

Why leave-one-out rather than quantizing one group at a time: what we change is
"this layer back to float inside an otherwise INT8 network", and leave-one-out
measures exactly that, including the error that accumulates through the other
quantized layers.  Quantizing a single group alone measures an isolated
sensitivity that is nearly 1.0 for every layer of a decent model (top-1 hardly
moves from one layer's noise) and so ranks poorly.  Cost: one Q/DQ build and one
held-out evaluation per group, plus one per greedy step (no recalibration: the
ranges are computed once).
"""
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .._lazy import require
from .gate import Gate, better
from .qdq import QDQ_OP_TYPES, build_qdq
from .ranges import Ranges

log = logging.getLogger(__name__)

ANCHORS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FOLLOWERS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "BatchNormalization", "PRelu", "Elu", "Selu", "Tanh")


@dataclass
class LayerGroup:
    name: str  # the anchor node's name
    nodes: "List[str]"
    tensors: "List[str]"  # activation tensors (inputs/outputs of the nodes, no initializers)
    op_type: str = ""

    def to_dict(self) -> "Dict[str, Any]":
        return {"name": self.name, "op_type": self.op_type, "nodes": list(self.nodes), "tensors": list(self.tensors)}


@dataclass
class ExcludeResult:
    excluded: "List[LayerGroup]" = field(default_factory=list)
    before: "Optional[Dict[str, Any]]" = None
    after: "Optional[Dict[str, Any]]" = None
    ranking: "List[Dict[str, Any]]" = field(default_factory=list)  # leave-one-out record per group
    evaluations: int = 0


def layer_groups(model: Any) -> "List[LayerGroup]":
    """Quantizable layer groups of a model, in graph order (node names must be set)."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    consumers: "Dict[str, List[Any]]" = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    taken = set()
    groups: "List[LayerGroup]" = []
    for n in g.node:
        if n.name in taken or n.op_type not in set(ANCHORS) | set(QDQ_OP_TYPES):
            continue
        chain = [n]
        taken.add(n.name)
        if n.op_type in ANCHORS:
            cur = n
            while len(cur.output) == 1 and cur.output[0] not in graph_outputs:
                nxt = consumers.get(cur.output[0], [])
                if len(nxt) != 1 or nxt[0].op_type not in FOLLOWERS or nxt[0].name in taken:
                    break
                cur = nxt[0]
                chain.append(cur)
                taken.add(cur.name)
        tensors: "List[str]" = []
        for m in chain:
            for t in list(m.input) + list(m.output):
                if t and t not in inits and t not in tensors:
                    tensors.append(t)
        groups.append(LayerGroup(name=n.name, nodes=[m.name for m in chain], tensors=tensors, op_type=n.op_type))
    return groups


def search_exclusions(
    onnx_path: Path,
    ranges: "Ranges",
    gate: "Gate",
    min_agreement: float,
    budget: int,
    progress: bool = True,
) -> "Tuple[ExcludeResult, Path, Any]":
    """Run the search; returns (result, path of the best Q/DQ model, its temp dir).

    The caller copies the model out and then cleans up the temp dir
    (``tempdir.cleanup()``).
    """
    onnx = require("onnx", "auto-exclude")
    model = onnx.load(str(onnx_path), load_external_data=False)
    groups = layer_groups(model)
    td = tempfile.TemporaryDirectory(prefix="jd-autoexcl-")
    work = Path(td.name)
    res = ExcludeResult()
    counter = [0]

    def trial(excluded: "List[LayerGroup]") -> "Tuple[Dict[str, Any], Path]":
        counter[0] += 1
        p = work / "trial-{:03d}.onnx".format(counter[0])
        nodes = [x for gr in excluded for x in gr.nodes]
        tensors = [x for gr in excluded for x in gr.tensors]
        build_qdq(onnx_path, ranges, p, exclude_nodes=nodes, exclude_tensors=tensors)
        rec = gate.evaluate(p, min_agreement)
        res.evaluations += 1
        return rec, p

    base, best_path = trial([])
    res.before = base
    current = base
    if base["passed"] or budget <= 0 or not groups:
        res.after = base
        return res, best_path, td
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(groups), desc="auto-exclude: ranking layers", unit="layer", file=sys.stderr, leave=False, dynamic_ncols=True)
    scored: "List[Tuple[LayerGroup, Dict[str, Any]]]" = []
    for gr in groups:
        rec, p = trial([gr])
        p.unlink()
        scored.append((gr, rec))
        res.ranking.append({"group": gr.name, "metric": rec["metric"], "value": rec["value"], "cosine_mean": rec["cosine_mean"]})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    scored.sort(key=lambda t: (t[1]["value"], t[1]["cosine_mean"], -t[1]["mean_abs_error"]), reverse=True)
    excluded: "List[LayerGroup]" = []
    for gr, single in scored:
        if len(excluded) >= budget or current["passed"]:
            break
        rec, p = trial(excluded + [gr])
        if better(rec, current):
            excluded.append(gr)
            current = rec
            best_path = p
            log.info("auto-exclude: {} back to float -> {} {:.4f}".format(gr.name, rec["metric"], rec["value"]))
        else:
            p.unlink()
    res.excluded = excluded
    res.after = current
    return res, best_path, td
