"""Optimization profiles: ``{input: (min, opt, max)}`` checked against the network, then added
to the builder config.  Dynamic inputs (a -1 dimension) need one."""
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..errors import BadInput
from .network import network_inputs

ShapeTriple = Tuple[Sequence[int], Sequence[int], Sequence[int]]
Profile = Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]]


def normalize_profiles(profiles: Any) -> "List[Profile]":
    """One dict or a list of dicts ``{input: (min, opt, max)}`` (or ``{"min":..,"opt":..,"max":..}``)."""
    if profiles is None:
        return []
    if isinstance(profiles, Mapping):
        profiles = [profiles]
    out = []
    for k, prof in enumerate(profiles):
        if not isinstance(prof, Mapping) or not prof:
            raise BadInput("optimization profile {} must map input names to (min, opt, max) shapes".format(k))
        out.append({str(name): _shape_triple(k, name, shapes) for name, shapes in prof.items()})
    return out


def _shape_triple(k: int, name: Any, shapes: Any) -> "Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]":
    if isinstance(shapes, Mapping):
        try:
            shapes = (shapes["min"], shapes["opt"], shapes["max"])
        except KeyError:
            raise BadInput("profile {} input '{}': give min, opt and max shapes".format(k, name))
    try:
        lo, mid, hi = (tuple(int(d) for d in s) for s in shapes)
    except (TypeError, ValueError):
        raise BadInput("profile {} input '{}': shapes must be three lists of ints (min, opt, max)".format(k, name))
    if not (len(lo) == len(mid) == len(hi)) or any(not (a <= b <= c) or a < 1 for a, b, c in zip(lo, mid, hi)):
        raise BadInput("profile {} input '{}': need 1 <= min <= opt <= max in every dimension, got {} {} {}".format(
            k, name, list(lo), list(mid), list(hi)))
    return lo, mid, hi


def add_profiles(builder: Any, config: Any, logger: Any, network: Any, profiles: "List[Profile]", name: str) -> "List[str]":
    """Add ``profiles`` (normalized) to ``config``; return the dynamic input names.

    Each profile must name only network inputs, cover every dynamic one, and keep the
    fixed dimensions of the model.
    """
    inputs = network_inputs(network)
    input_names = [t.name for t in inputs]
    dynamic = [t.name for t in inputs if any(int(d) < 0 for d in t.shape)]
    for k, prof in enumerate(profiles):
        unknown = sorted(set(prof) - set(input_names))
        if unknown:
            raise BadInput("profile {} names {} but {} has inputs {}".format(k, unknown, name, input_names))
        missing = [n for n in dynamic if n not in prof]
        if missing:
            raise BadInput("profile {} gives no shapes for dynamic input(s) {} of {}".format(k, missing, name))
        p = builder.create_optimization_profile()
        for t in inputs:
            if t.name in prof:
                _set_shape(p, k, t, prof[t.name])
        if config.add_optimization_profile(p) < 0:
            raise BadInput("TensorRT rejected optimization profile {}: {}".format(k, logger.summary() or "invalid shapes"))
    if dynamic and not profiles:
        raise BadInput("{} has dynamic input(s) {}: give an optimization profile, e.g. profiles={{'{}': (min, opt, max)}}".format(
            name, dynamic, dynamic[0]))
    return dynamic


def _set_shape(p: Any, k: int, tensor: Any, triple: "ShapeTriple") -> None:
    lo, mid, hi = triple
    net_shape = [int(d) for d in tensor.shape]
    if len(lo) != len(net_shape) or any(d >= 0 and (d != a or d != c) for d, a, c in zip(net_shape, lo, hi)):
        raise BadInput("profile {} input '{}': shapes {}..{} do not fit the model's shape {} (-1 = dynamic)".format(
            k, tensor.name, list(lo), list(hi), net_shape))
    p.set_shape(tensor.name, lo, mid, hi)


def profiles_report(profiles: "List[Profile]") -> "List[Dict[str, List[List[int]]]]":
    """Profiles as JSON lists, for the build report."""
    return [{k: [list(s) for s in v] for k, v in p.items()} for p in profiles]


def config_profile_for_calibration(builder: Any, prof: "Mapping[str, ShapeTriple]") -> Any:
    """A profile whose min/opt/max are all the opt shapes: TensorRT calibrates at one shape."""
    p = builder.create_optimization_profile()
    for n, (_, mid, _) in prof.items():
        p.set_shape(n, mid, mid, mid)
    return p
