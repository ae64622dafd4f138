"""Before anything is uploaded: can each host's TensorRT parse the bundle's ONNX model?

A bundle records the oldest TensorRT whose ONNX parser reads it (``requires.tensorrt_min``,
docs/convert.md).  A board with an older TensorRT would take the upload, switch, and fail only
at the first engine build, so ``deploy`` refuses such a host up front (BadInput, exit 2, nothing
uploaded anywhere) unless ``--force``.  The host's TensorRT comes from, in order:

1. the inventory's host var ``tensorrt=8.2.1`` (no ssh call);
2. the board itself, in one ssh call, only when the bundle needs more than every supported
   JetPack has (TensorRT 8.0, ONNX opset 13): ``jetson-deploy info --json --no-gpu`` where it is
   installed (on PATH or in ``~/jd``, the README's venv), else the ``tensorrt`` dpkg package,
   else the L4T release (``/etc/nv_tegra_release``) mapped to its JetPack's TensorRT.

A host whose TensorRT cannot be learnt gets a warning and is deployed to.  A rootfs is read
from its ``etc/nv_tegra_release``.  Device-side code: Python 3.6, no torch.
"""
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..bundle.opset import bundle_requirement, compat_problem
from ..errors import BadInput, JetsonDeployError

log = logging.getLogger(__name__)

#: The TensorRT every supported JetPack (4.6 and newer) has: a bundle needing no more is never probed.
OLDEST_TENSORRT = (8, 0)

#: JetPack (as :func:`jetson_deploy.machine.jetpack_for_l4t` names it) -> the TensorRT it ships
#: (NVIDIA's JetPack release notes: 4.6.x 8.2.1, 5.0.2 8.4.1, 5.1.x 8.5.2, 6.0 8.6.2, 6.1/6.2 10.3.0).
JETPACK_TENSORRT = (("4.6", "8.2.1"), ("5.0", "8.4.1"), ("5.1", "8.5.2"), ("6.0", "8.6.2"), ("6.1", "10.3.0"),
                    ("6.2", "10.3.0"))

#: One ssh call: what the board says about its TensorRT (read-only; sh, no Python needed).
PROBE_SCRIPT = r"""jd_probe() {
  jd=$(command -v jetson-deploy 2>/dev/null)
  [ -z "$jd" ] && [ -x "$HOME/jd/bin/jetson-deploy" ] && jd="$HOME/jd/bin/jetson-deploy"
  if [ -n "$jd" ]; then
    printf 'INFO_JSON '; "$jd" info --json --no-gpu 2>/dev/null | tr -d '\n'; echo
  fi
  if command -v dpkg-query >/dev/null 2>&1; then
    printf 'DPKG_TRT '; dpkg-query -W -f='${Version}' tensorrt 2>/dev/null; echo
  fi
  if [ -r /etc/nv_tegra_release ]; then printf 'L4T '; head -n 1 /etc/nv_tegra_release; fi
  echo PROBED
}
jd_probe
"""

_VERSION_RE = re.compile(r"^\d+\.\d+(\.\d+)*")


def tensorrt_for_jetpack(jetpack: "Optional[str]") -> "Optional[str]":
    """The TensorRT a JetPack release ships (``"5.1.2"`` -> ``"8.5.2"``), None when unknown."""
    if not jetpack:
        return None
    for prefix, trt in JETPACK_TENSORRT:
        if jetpack == prefix or jetpack.startswith(prefix + ".") or jetpack.startswith(prefix + " "):
            return trt
    return None


def _version(text: "Optional[str]") -> "Optional[str]":
    m = _VERSION_RE.match((text or "").strip())
    return m.group(0) if m else None


def tensorrt_from_probe(stdout: str) -> "Tuple[Optional[str], str]":
    """(TensorRT version, where it was read) from :data:`PROBE_SCRIPT`'s answer."""
    from ..deploy.transport import ScriptResult
    from ..machine import jetpack_for_l4t

    res = ScriptResult(0, stdout, "")
    info: "Dict[str, Any]" = {}
    try:
        info = json.loads(res.first("INFO_JSON") or "{}")
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    found = _version(info.get("tensorrt"))
    if found:
        return found, "jetson-deploy info on the device"
    found = _version(res.first("DPKG_TRT"))
    if found:
        return found, "the device's tensorrt package"
    jetpack = (info.get("jetson") or {}).get("jetpack") if isinstance(info.get("jetson"), dict) else None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", res.first("L4T") or "")
    if not jetpack and m:
        jetpack = jetpack_for_l4t("{}.{}".format(m.group(1), m.group(2)))
    found = tensorrt_for_jetpack(jetpack)
    if found:
        return found, "JetPack {} on the device".format(jetpack)
    return None, "the device did not say (no jetson-deploy on its PATH or in ~/jd, no tensorrt package, no L4T release)"


def tensorrt_of_rootfs(rootfs: str) -> "Tuple[Optional[str], str]":
    """An image's TensorRT, from its L4T release file."""
    from ..machine import jetpack_for_l4t, l4t_release

    jetpack = jetpack_for_l4t(l4t_release(Path(rootfs)))
    found = tensorrt_for_jetpack(jetpack)
    return found, ("JetPack {} in the image".format(jetpack) if found else "the image has no L4T release file")


def needs_probe(manifest: "Dict[str, Any]") -> bool:
    """True when the bundle needs more than the TensorRT every supported JetPack has."""
    from ..bundle.opset import _tuple

    need = bundle_requirement(manifest or {})
    return need is not None and _tuple(need[0])[:2] > OLDEST_TENSORRT


def check_hosts(manifest: "Dict[str, Any]", hosts: "Sequence[Any]", probe: "Callable[[Any], str]", force: bool = False,
                jobs: int = 8) -> "Dict[str, str]":
    """Refuse (BadInput) when a host's TensorRT is older than the bundle needs; ``{label: version}`` known.

    ``probe(host)`` runs :data:`PROBE_SCRIPT` on a host and returns its stdout (called only for hosts
    without an inventory ``tensorrt`` and only when :func:`needs_probe`).  With ``force`` the
    problems are warnings and nothing is refused.
    """
    known: "Dict[str, Tuple[Optional[str], str]]" = {}
    ask = []
    for h in hosts:
        if getattr(h, "tensorrt", None):
            known[h.label] = (str(h.tensorrt), "inventory")
        elif needs_probe(manifest):
            ask.append(h)
    if ask:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(ask)))) as pool:
            for h, found in zip(ask, pool.map(lambda h: _probe_one(h, probe), ask)):
                known[h.label] = found
    refuse_old(manifest, known, force)
    return {label: v for label, (v, _) in known.items() if v}


def _probe_one(host: Any, probe: "Callable[[Any], str]") -> "Tuple[Optional[str], str]":
    try:
        return tensorrt_from_probe(probe(host))
    except JetsonDeployError as exc:  # unreachable now: the deploy itself reports it
        return None, "probe failed: {}".format(exc)


def refuse_old(manifest: "Dict[str, Any]", known: "Dict[str, Tuple[Optional[str], str]]", force: bool) -> None:
    """One line naming every host that is too old (BadInput), or warnings with ``force``."""
    problems: "List[str]" = []
    for label, (version, where) in known.items():
        if version is None:
            if needs_probe(manifest):
                log.warning("[%s] warning: TensorRT version unknown (%s); the bundle needs TensorRT >= %s: deploying "
                            "anyway (set tensorrt= for the host in the inventory to check it)", label, where,
                            bundle_requirement(manifest)[0])
            continue
        problem = compat_problem(manifest, version)
        if problem:
            problems.append("{} (TensorRT {} from {}): {}".format(label, version, where, problem))
    if not problems:
        return
    if force:
        for p in problems:
            log.warning("warning: --force: deploying anyway to %s", p)
        return
    raise BadInput("refusing to deploy, nothing uploaded: {}; deploy with --force to push it anyway".format(
        "; ".join(problems)))
