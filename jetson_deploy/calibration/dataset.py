"""Calibration sets: sample, dedupe, preprocess and shard frames; load them back.

A calibration set is a directory::

    manifest.json           what, from where, how (schema below)
    calib-00000.npy ...     calibration samples, (n, *sample_shape), bounded size
    holdout-00000.npy ...   held-out samples: never used for ranges, only for the accuracy gate

Sampling is two-pass over *lists*, never over pixels: pass 1 lists images and
video frame counts; pass 2 draws which candidates to read (seeded), reads them one
at a time, drops near-duplicates (64-bit pHash), preprocesses each through
:func:`jetson_deploy.preprocess.preprocess` (the runtime's own code) and appends
it to the current shard.  Peak memory is one decoded frame plus two shard buffers.
The directory is built under a temporary name and renamed into place at the end.
"""
import datetime
import hashlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .. import __version__
from .._messages import collect_messages
from .._files import CALIBRATION_SET, atomic_dir, prepare_output, sha256_file
from ..errors import BadInput
from ..spec import ModelSpec, load_spec
from .sources import HashIndex, ScanResult, Skipped, phash64, read_image, read_video_frames, scan_sources

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SHARD_BYTES = 32 << 20  # bound on one shard file (and on each in-memory shard buffer)
DEFAULT_DEDUPE_BITS = 5  # Hamming distance (of 64) at or below which frames are near-duplicates

PathLike = Union[str, Path]

log = logging.getLogger(__name__)


# ---- writing ---------------------------------------------------------------------------

class _ShardWriter:
    """Appends samples to a fixed-size buffer; writes a ``.npy`` shard when full."""

    def __init__(self, out_dir: Path, prefix: str, max_bytes: int = SHARD_BYTES) -> None:
        self.out_dir = out_dir
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.buf: "Optional[np.ndarray]" = None
        self.n = 0
        self.count = 0
        self.shards: "List[Dict[str, Any]]" = []

    def add(self, x: "np.ndarray") -> None:
        if self.buf is None:
            per = max(1, self.max_bytes // max(1, x.nbytes))
            self.buf = np.empty((per,) + x.shape, dtype=x.dtype)
        self.buf[self.n] = x
        self.n += 1
        self.count += 1
        if self.n == len(self.buf):
            self.flush()

    def flush(self) -> None:
        if self.buf is None or self.n == 0:
            return
        name = "{}-{:05d}.npy".format(self.prefix, len(self.shards))
        path = self.out_dir / name
        with open(str(path), "wb") as f:
            np.save(f, self.buf[: self.n])
        self.shards.append({"file": name, "count": self.n, "sha256": sha256_file(path)})
        self.n = 0


class _Stats:
    """Per-channel running sum / sum of squares (float64) of preprocessed samples."""

    def __init__(self, channel_axis: int) -> None:
        self.axis = channel_axis
        self.s: "Optional[np.ndarray]" = None
        self.ss: "Optional[np.ndarray]" = None
        self.n = 0

    def add(self, x: "np.ndarray") -> None:
        c = np.moveaxis(x, self.axis, 0).reshape(x.shape[self.axis], -1).astype(np.float64)
        if self.s is None:
            self.s = np.zeros(c.shape[0])
            self.ss = np.zeros(c.shape[0])
        self.s += c.sum(axis=1)
        self.ss += np.square(c).sum(axis=1)
        self.n += c.shape[1]

    def result(self) -> "Dict[str, List[float]]":
        if self.s is None or self.n == 0:
            return {"mean": [], "std": []}
        mean = self.s / self.n
        var = np.maximum(self.ss / self.n - mean * mean, 0.0)
        return {"mean": [round(float(m), 6) for m in mean], "std": [round(float(s), 6) for s in np.sqrt(var)]}


def _is_holdout(i: int, fraction: float) -> bool:
    """Every ~1/fraction-th accepted sample (starting mid-way) is held out.

    The accepted order is already random, so a regular pattern is an unbiased
    split that keeps the fraction exact for any count and needs no look-ahead.
    """
    if fraction <= 0:
        return False
    return math.floor((i + 1) * fraction + 0.5) > math.floor(i * fraction + 0.5)


class _Plan:
    """Seeded, round-based draws over the candidates of pass 1.

    Each round draws ``need`` more candidates, split among images and videos in
    proportion to what is left (multivariate hypergeometric).  Images come from a
    seeded shuffle; each video gives frames spaced evenly across the part of the
    clip not yet tried, with a seeded offset, so the first round spreads frames
    across the whole clip.
    """

    def __init__(self, scan: "ScanResult", rng: "np.random.Generator") -> None:
        self.rng = rng
        order = rng.permutation(len(scan.images)) if scan.images else np.zeros(0, dtype=np.int64)
        self.images = [scan.images[int(i)] for i in order]
        self.next_image = 0
        self.videos = scan.videos
        self.video_left = [np.arange(v.frames, dtype=np.int64) for v in scan.videos]

    def remaining(self) -> int:
        return (len(self.images) - self.next_image) + sum(len(v) for v in self.video_left)

    def draw(self, need: int) -> "Tuple[List[str], List[Tuple[int, List[int]]]]":
        counts = [len(self.images) - self.next_image] + [len(v) for v in self.video_left]
        total = sum(counts)
        need = min(need, total)
        if need <= 0:
            return [], []
        alloc = _split(self.rng, counts, need)
        k = int(alloc[0])
        imgs = self.images[self.next_image : self.next_image + k]
        self.next_image += k
        vids: "List[Tuple[int, List[int]]]" = []
        for vi, kv in enumerate(alloc[1:]):
            kv = int(kv)
            if kv <= 0:
                continue
            left = self.video_left[vi]
            r = len(left)
            u = float(self.rng.random())
            pos = np.floor((np.arange(kv) + u) * r / float(kv)).astype(np.int64)
            pos = np.unique(np.clip(pos, 0, r - 1))
            chosen = left[pos]
            self.video_left[vi] = np.delete(left, pos)
            vids.append((vi, [int(c) for c in chosen]))
        return imgs, vids


def _split(rng: "np.random.Generator", counts: "List[int]", need: int) -> "List[int]":
    """Multivariate hypergeometric draw of ``need`` items over ``counts``, one
    marginal at a time (``Generator.multivariate_hypergeometric`` needs numpy
    1.18; JetPack 5's python3-numpy is 1.17)."""
    out = []
    left = int(sum(counts))
    for c in counts:
        left -= c
        k = int(rng.hypergeometric(c, left, need)) if need > 0 and c > 0 and left > 0 else (min(c, need) if need > 0 else 0)
        out.append(k)
        need -= k
    return out


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a base dependency
        return None
    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, leave=False, dynamic_ncols=True)


def build_calibration_set(
    sources: "Sequence[PathLike]",
    spec: "Union[ModelSpec, PathLike, dict]",
    out_dir: "PathLike",
    num: int = 500,
    seed: int = 0,
    holdout: float = 0.1,
    progress: bool = True,
    dedupe_bits: int = DEFAULT_DEDUPE_BITS,
    shard_bytes: int = SHARD_BYTES,
) -> "CalibrationSet":
    """Build a calibration set of ``num`` samples (calibration + held-out) in ``out_dir``.

    ``holdout`` is the fraction of samples kept out of range computation for the
    accuracy gate.  ``dedupe_bits`` < 0 disables near-duplicate removal.  Raises
    :class:`BadInput` when nothing usable is found.  Notes for the user (``--num``
    too large, files skipped) are logged and kept in the set's manifest.
    """
    prepare_output(out_dir, CALIBRATION_SET)
    with atomic_dir(Path(out_dir), kind=CALIBRATION_SET) as tmp:
        fill_calibration_set(sources, spec, tmp, num=num, seed=seed, holdout=holdout, progress=progress,
                             dedupe_bits=dedupe_bits, shard_bytes=shard_bytes)
    return load_calibration_set(out_dir)


def fill_calibration_set(
    sources: "Sequence[PathLike]",
    spec: "Union[ModelSpec, PathLike, dict]",
    tmp: Path,
    num: int = 500,
    seed: int = 0,
    holdout: float = 0.1,
    progress: bool = True,
    dedupe_bits: int = DEFAULT_DEDUPE_BITS,
    shard_bytes: int = SHARD_BYTES,
) -> None:
    """Write a calibration set into the empty staging directory ``tmp`` (the caller swaps it in)."""
    spec = load_spec(spec)
    if num < 1:
        raise BadInput("--num must be at least 1, got {}".format(num))
    if not 0.0 <= holdout < 1.0:
        raise BadInput("holdout fraction must be in [0, 1), got {}".format(holdout))
    if dedupe_bits > 64:
        raise BadInput("--dedupe-bits must be at most 64 (-1 keeps duplicates), got {}".format(dedupe_bits))
    with collect_messages(__name__, "jetson_deploy.calibration.sources") as notes:
        scan = scan_sources(sources)
        total = scan.candidates
        if total == 0:
            raise BadInput(_nothing_usable(sources, scan.skipped))
        target = min(num, total)
        if num > total:
            log.info("--num {} is more than the {} image(s)/frame(s) found; using all of them".format(num, total))
        sampler = _Sampler(tmp, spec, holdout, dedupe_bits, shard_bytes, list(scan.skipped))
        sampler.run(_Plan(scan, np.random.default_rng(seed)), scan, target, progress)
        sampler.finish(sources, min(num, total), target)
        manifest = _manifest(sampler, scan, spec, seed=seed, num=num, holdout=holdout, dedupe_bits=dedupe_bits, notes=notes)
        with open(str(tmp / MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")


class _Sampler:
    """Pass 2: reads the drawn candidates, drops near-duplicates, preprocesses and shards them."""

    def __init__(self, tmp: Path, spec: "ModelSpec", holdout: float, dedupe_bits: int, shard_bytes: int, skipped: "List[Skipped]") -> None:
        self.tmp = tmp
        self.spec = spec
        self.holdout = holdout
        self.index = HashIndex(dedupe_bits)
        self.calib_w = _ShardWriter(tmp, "calib", shard_bytes)
        self.hold_w = _ShardWriter(tmp, "holdout", shard_bytes)
        self.channel_axis = 0 if spec.layout == "nchw" else 2
        self.stats = _Stats(self.channel_axis)
        self.expect = tuple(int(s) for s in spec.shape[1:])
        self.skipped = skipped
        self.duplicates: "List[Dict[str, Any]]" = []
        self.n_duplicates = 0
        self.accepted = 0
        self.image_entries: "Dict[str, Dict[str, Any]]" = {}
        self.video_entries: "Dict[int, Dict[str, Any]]" = {}
        self.bar: Any = None

    def run(self, plan: "_Plan", scan: "ScanResult", target: int, progress: bool) -> None:
        self.bar = _progress(target, progress, "calibration set")
        try:
            while self.accepted < target and plan.remaining() > 0:
                imgs, vids = plan.draw(target - self.accepted)
                self._read_images(imgs, target)
                self._read_videos(vids, scan, target)
        finally:
            if self.bar is not None:
                self.bar.close()

    def _read_images(self, imgs: "List[str]", target: int) -> None:
        for path in imgs:
            if self.accepted >= target:
                break
            img, digest, why = read_image(path)
            if img is None:
                self.skipped.append(Skipped(path, why or "unreadable"))
                continue
            if self._accept(img, path):
                self.image_entries[path] = {"path": path, "kind": "image", "sha256": digest, "samples": 1}

    def _read_videos(self, vids: "List[Tuple[int, List[int]]]", scan: "ScanResult", target: int) -> None:
        for vi, frames in vids:
            info = scan.videos[vi]
            for fi, frame, why in read_video_frames(info, frames):
                if self.accepted >= target:
                    break
                where = "{}#{}".format(info.path, fi)
                if frame is None:
                    self.skipped.append(Skipped(where, why or "unreadable frame"))
                    continue
                if self._accept(frame, where):
                    e = self.video_entries.setdefault(vi, {"path": info.path, "kind": "video", "frames": info.frames, "frame_indices": []})
                    e["frame_indices"].append(fi)

    def _accept(self, frame: "np.ndarray", where: str) -> bool:
        from ..preprocess import preprocess

        h = phash64(frame)
        if self.index.is_duplicate(h):
            self.n_duplicates += 1
            if len(self.duplicates) < 100:
                self.duplicates.append({"source": where})
            return False
        x = preprocess(frame, self.spec)
        if tuple(x.shape) != self.expect:
            raise BadInput("preprocessing gives shape {} but the spec's input.shape wants {}: check the spec".format(tuple(x.shape), self.expect))
        self.index.add(h)
        (self.hold_w if _is_holdout(self.accepted, self.holdout) else self.calib_w).add(x)
        self.stats.add(x)
        self.accepted += 1
        if self.bar is not None:
            self.bar.update(1)
        return True

    def finish(self, sources: "Sequence[PathLike]", requested: int, target: int) -> None:
        """Flush the shards; refuse an empty set; say what fell short."""
        if self.accepted == 0:
            raise BadInput(_nothing_usable(sources, self.skipped))
        self.calib_w.flush()
        self.hold_w.flush()
        if self.calib_w.count == 0:
            raise BadInput("only {} usable sample(s), all held out: add more images or frames".format(self.accepted))
        if self.accepted < target:
            log.info("{} sample(s) requested, {} usable ({} near-duplicate(s) dropped, {} file(s)/frame(s) skipped)".format(
                requested, self.accepted, self.n_duplicates, len(self.skipped)))
        if self.skipped:
            log.info("skipped {} file(s)/frame(s); reasons are listed in manifest.json".format(len(self.skipped)))
        for e in self.video_entries.values():
            e["frame_indices"].sort()
            e["samples"] = len(e["frame_indices"])
            e["sha256"] = sha256_file(e["path"])

    def sources(self) -> "List[Dict[str, Any]]":
        return sorted(list(self.image_entries.values()) + list(self.video_entries.values()), key=lambda d: d["path"])


def _manifest(
    sm: "_Sampler", scan: "ScanResult", spec: "ModelSpec", seed: int, num: int, holdout: float, dedupe_bits: int, notes: "List[str]",
) -> "Dict[str, Any]":
    shards = {"calib": sm.calib_w.shards, "holdout": sm.hold_w.shards}
    sample = np.load(str(sm.tmp / sm.calib_w.shards[0]["file"]), mmap_mode="r")
    dtype = str(sample.dtype)
    del sample
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "calibration-set",
        "tool": {"name": "jetson-deploy", "version": __version__},
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "spec": spec.to_dict(),
        "spec_sha256": spec.sha256(),
        "input_name": spec.input_name,
        "sample_shape": list(sm.expect),
        "dtype": dtype,
        "seed": int(seed),
        "num_requested": int(num),
        "samples": int(sm.calib_w.count),
        "holdout": int(sm.hold_w.count),
        "holdout_fraction": float(holdout),
        "candidates": {"images": len(scan.images), "videos": len(scan.videos), "total": int(scan.candidates)},
        "dedupe": {"method": "phash64", "threshold_bits": int(dedupe_bits), "dropped": int(sm.n_duplicates), "examples": sm.duplicates},
        "stats": dict(sm.stats.result(), channel_axis=sm.channel_axis, note="per channel of one sample, over all samples, after preprocessing"),
        "shards": shards,
        "set_sha256": _set_sha256(spec.sha256(), shards),
        "sources": sm.sources(),
        "skipped": [s.to_dict() for s in sm.skipped],
        "notes": list(notes),
    }


def _set_sha256(spec_sha: str, shards: "Dict[str, List[Dict[str, Any]]]") -> str:
    """Identity of a set's content: the spec and every shard's hash, in order."""
    blob = json.dumps({"spec": spec_sha, "shards": {k: [s["sha256"] for s in v] for k, v in shards.items()}}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _nothing_usable(sources: "Sequence[PathLike]", skipped: "List[Skipped]") -> str:
    what = ", ".join(str(s) for s in list(sources)[:3]) + (" ..." if len(sources) > 3 else "")
    if skipped:
        first = skipped[0]
        return "no usable image or video frame in {} ({} skipped; e.g. {}: {})".format(what, len(skipped), first.path, first.reason)
    return "no image (jpg/png/bmp/webp) or video file found in {}".format(what)


# ---- reading ---------------------------------------------------------------------------

class CalibrationSet:
    """A calibration set on disk.  Samples are read shard by shard (memory-mapped)."""

    def __init__(self, path: "PathLike", manifest: "Dict[str, Any]") -> None:
        self.path = Path(path)
        self.manifest = manifest
        self.spec = ModelSpec.from_dict(manifest["spec"], source=str(self.path / MANIFEST))
        self.spec_sha256: str = manifest["spec_sha256"]
        self.input_name: str = manifest["input_name"]
        self.shape: "Tuple[int, ...]" = tuple(int(s) for s in manifest["sample_shape"])
        self.dtype = np.dtype(manifest["dtype"])
        self.sha256: str = manifest["set_sha256"]
        self.num_holdout: int = int(manifest["holdout"])
        self.skipped: "List[Dict[str, str]]" = list(manifest.get("skipped", []))
        self.notes: "List[str]" = list(manifest.get("notes", []))

    def __len__(self) -> int:
        return int(self.manifest["samples"])

    def __repr__(self) -> str:
        return "CalibrationSet({!r}, samples={}, holdout={}, shape={})".format(str(self.path), len(self), self.num_holdout, self.shape)

    @property
    def stats(self) -> "Dict[str, Any]":
        return dict(self.manifest.get("stats", {}))

    def _iter(self, part: str, batch_size: int, dtype: Any, drop_last: bool) -> "Iterator[np.ndarray]":
        if batch_size < 1:
            raise BadInput("batch size must be at least 1, got {}".format(batch_size))
        out_dtype = np.dtype(dtype) if dtype is not None else self.dtype
        pending: "List[np.ndarray]" = []
        have = 0
        for shard in self.manifest["shards"][part]:
            arr = np.load(str(self.path / shard["file"]), mmap_mode="r")
            start = 0
            while start < len(arr):
                take = min(batch_size - have, len(arr) - start)
                pending.append(arr[start : start + take])
                have += take
                start += take
                if have == batch_size:
                    yield np.ascontiguousarray(np.concatenate(pending, axis=0), dtype=out_dtype)
                    pending, have = [], 0
            del arr
        if have and not drop_last:
            yield np.ascontiguousarray(np.concatenate(pending, axis=0), dtype=out_dtype)

    def iter_batches(self, batch_size: int, dtype: Any = None, drop_last: bool = False) -> "Iterator[np.ndarray]":
        """Calibration samples only, as (B, *shape) arrays in the stored dtype
        (float32 for float32 specs) unless ``dtype`` is given.  The last batch may
        be smaller unless ``drop_last``."""
        return self._iter("calib", batch_size, dtype, drop_last)

    def iter_holdout(self, batch_size: int, dtype: Any = None, drop_last: bool = False) -> "Iterator[np.ndarray]":
        """Held-out samples (never used for ranges): for the accuracy gate."""
        return self._iter("holdout", batch_size, dtype, drop_last)

    def verify(self) -> None:
        """Re-hash every shard against the manifest; raise BadInput on a mismatch."""
        for part in ("calib", "holdout"):
            for shard in self.manifest["shards"][part]:
                p = self.path / shard["file"]
                if not p.is_file() or sha256_file(p) != shard["sha256"]:
                    raise BadInput("calibration set {}: shard {} is missing or changed; rebuild it with calibrate".format(self.path, shard["file"]))


def is_calibration_set(path: "PathLike") -> bool:
    p = Path(path) / MANIFEST
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("kind") == "calibration-set"
    except (OSError, ValueError):
        return False


def load_calibration_set(path: "PathLike", verify: bool = False) -> "CalibrationSet":
    """Open a calibration set directory; checks the manifest and that shards exist."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise BadInput("{} is not a calibration set (no manifest.json): build one with 'jetson-deploy calibrate'".format(path))
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BadInput("{}: not valid JSON ({}); rebuild the set with 'jetson-deploy calibrate'".format(mpath, exc))
    if not isinstance(manifest, dict) or manifest.get("kind") != "calibration-set":
        raise BadInput("{} is not a calibration-set manifest".format(mpath))
    ver = manifest.get("schema_version")
    if not isinstance(ver, int) or ver > SCHEMA_VERSION:
        raise BadInput("{}: schema_version {!r} is newer than this jetson-deploy understands ({})".format(mpath, ver, SCHEMA_VERSION))
    for key in ("spec", "spec_sha256", "input_name", "sample_shape", "dtype", "samples", "holdout", "shards", "set_sha256"):
        if key not in manifest:
            raise BadInput("{}: missing field '{}'; rebuild the set with 'jetson-deploy calibrate'".format(mpath, key))
    for part in ("calib", "holdout"):
        n = 0
        for shard in manifest["shards"].get(part, []):
            if not (path / shard["file"]).is_file():
                raise BadInput("calibration set {}: shard {} is missing; rebuild it with calibrate".format(path, shard["file"]))
            n += int(shard["count"])
        want = manifest["samples"] if part == "calib" else manifest["holdout"]
        if n != int(want):
            raise BadInput("calibration set {}: {} shards hold {} samples, manifest says {}".format(path, part, n, want))
    cs = CalibrationSet(path, manifest)
    if cs.spec.sha256() != cs.spec_sha256:
        raise BadInput("{}: spec_sha256 does not match the stored spec; the manifest was edited".format(mpath))
    if verify:
        cs.verify()
    return cs
