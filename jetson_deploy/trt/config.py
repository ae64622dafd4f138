"""Builder config: workspace limit, precision flags, strict types, DLA.

Each API difference (workspace pool vs ``max_workspace_size``, ``OBEY_PRECISION_CONSTRAINTS``
vs ``STRICT_TYPES``) is decided by :func:`jetson_deploy.trt.features`.
"""
from typing import Any, List, Optional, Tuple

from ..errors import BadInput


class Flags:
    """Sets ``BuilderFlag``s on a config and keeps their names, in order, for the build report."""

    def __init__(self, trt: Any, config: Any) -> None:
        self._trt = trt
        self._config = config
        self.names: "List[str]" = []

    def set(self, name: str) -> None:
        self._config.set_flag(getattr(self._trt.BuilderFlag, name))
        self.names.append(name)


def create_config(
    trt: Any, feats: Any, builder: Any, precision: str, workspace_mb: "Optional[int]", strict_types: bool,
) -> "Tuple[Any, Flags, Optional[int]]":
    """(config, flags set, workspace bytes or None) for ``precision``.

    INT8 also sets FP16 (where the GPU has it) so layers left unquantized run in FP16.
    """
    config = builder.create_builder_config()
    nbytes = None
    if workspace_mb is not None:
        nbytes = int(workspace_mb) << 20
        if feats.memory_pool_limit:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
        elif feats.max_workspace_size:
            config.max_workspace_size = nbytes
    flags = Flags(trt, config)
    if precision == "fp16":
        flags.set("FP16")
    elif precision == "int8":
        flags.set("INT8")
        if getattr(builder, "platform_has_fast_fp16", True):
            flags.set("FP16")
    if strict_types:
        if feats.obey_precision_constraints:
            flags.set("OBEY_PRECISION_CONSTRAINTS")
        elif feats.strict_types:
            flags.set("STRICT_TYPES")
    return config, flags, nbytes


def use_dla(trt: Any, feats: Any, builder: Any, config: Any, flags: Flags, dla_core: int, gpu_fallback: bool) -> None:
    """Run on DLA core ``dla_core``, with GPU fallback for layers DLA lacks unless told otherwise."""
    cores = int(getattr(builder, "num_DLA_cores", 0) or 0)
    if not feats.dla or cores == 0:
        raise BadInput("this device has no DLA cores (DLA is on Jetson Xavier and Orin AGX/NX): leave out --dla-core")
    if not 0 <= int(dla_core) < cores:
        raise BadInput("DLA core {} does not exist: this device has {} (0..{})".format(dla_core, cores, cores - 1))
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    if gpu_fallback:
        flags.set("GPU_FALLBACK")
