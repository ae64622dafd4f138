"""Calibration sources: find images and videos, read them, hash frames.

Pass 1 (:func:`scan_sources`) walks the SOURCE arguments and lists candidates
without decoding pixels: image paths, and for each video its frame count.  Pass 2
(:mod:`.dataset`) decides which candidates to read and decodes only those, one
frame at a time, so memory never depends on how many files there are.

Bad files never stop a run: they are recorded as ``Skipped(path, reason)``.
"""
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import is_utf8_path
from ..errors import BadInput
from ..vocab import IMAGE_EXTS, VIDEO_EXTS

log = logging.getLogger(__name__)

# A forward gap up to this many frames is decoded (grab) instead of seeking:
# seeking costs a keyframe decode anyway.
SEEK_GAP = 16


def _cv2():
    from .._lazy import require

    return require("cv2", "reading calibration images and videos")


@dataclass
class Skipped:
    path: str
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class VideoInfo:
    path: str
    frames: int
    fps: float = 0.0
    seekable: bool = True  # False: frame count had to be found by decoding


@dataclass
class ScanResult:
    images: "List[str]" = field(default_factory=list)
    videos: "List[VideoInfo]" = field(default_factory=list)
    skipped: "List[Skipped]" = field(default_factory=list)
    ignored: int = 0  # files in folders whose extension is neither image nor video

    @property
    def candidates(self) -> int:
        return len(self.images) + sum(v.frames for v in self.videos)


def _walk(root: Path, on_error: "Callable[[str, str], None]", _seen: "Optional[set]" = None) -> "Iterator[Path]":
    """Files under ``root``, recursively, in sorted order (deterministic).

    Directories reached twice through symlinks are walked once (no loops)."""
    seen = _seen if _seen is not None else set()
    real = os.path.realpath(str(root))
    if real in seen:
        return
    seen.add(real)
    try:
        entries = sorted(os.scandir(str(root)), key=lambda e: e.name)
    except OSError as exc:
        on_error(str(root), "cannot list directory ({})".format(exc.strerror or exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            for p in _walk(Path(entry.path), on_error, seen):
                yield p
        elif entry.is_file():
            yield Path(entry.path)
        else:  # a FIFO blocks a read, a device never ends
            on_error(entry.path, "not a regular file (a device, pipe or socket)")


def probe_video(path: str) -> "Tuple[Optional[VideoInfo], Optional[str]]":
    """(VideoInfo, None) or (None, reason).  Reads no pixels when the container
    reports a frame count; otherwise counts frames with ``grab()`` (decode only)."""
    cv2 = _cv2()
    if os.path.getsize(path) == 0:
        return None, "empty file (0 bytes)"
    if not is_utf8_path(path):
        return None, "file name is not valid UTF-8 (OpenCV cannot open it): rename it"
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            return None, "cannot open as a video"
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        seekable = True
        if n <= 0:
            seekable = False
            n = 0
            while cap.grab():
                n += 1
        if n <= 0:
            return None, "video has no decodable frames"
        return VideoInfo(path=path, frames=n, fps=fps, seekable=seekable), None
    finally:
        cap.release()


def scan_sources(sources: "Sequence[Union[str, Path]]") -> "ScanResult":
    """Pass 1: list image files and videos (with frame counts); no pixels decoded.

    A SOURCE that does not exist is a usage error (BadInput); unreadable or
    unsupported files are recorded in ``skipped`` with the reason.
    """
    res = ScanResult()
    if not sources:
        raise BadInput("no SOURCE given: pass image files, folders of images or video files")
    seen = set()

    def skip(p: str, reason: str) -> None:
        res.skipped.append(Skipped(p, reason))

    def add_file(p: Path, explicit: bool) -> None:
        key = os.path.realpath(str(p))
        if key in seen:
            return
        seen.add(key)
        ext = p.suffix.lower()
        if ext in VIDEO_EXTS:
            try:
                info, why = probe_video(str(p))
            except OSError as exc:
                info, why = None, "cannot read ({})".format(exc.strerror or exc)
            if info is None:
                skip(str(p), why or "unreadable video")
            else:
                res.videos.append(info)
        elif ext in IMAGE_EXTS or explicit:
            # an explicit file with an unknown extension is tried as an image;
            # decoding decides (and records why not)
            res.images.append(str(p))
        else:
            res.ignored += 1

    for src in sources:
        p = Path(src)
        if not p.exists() and not p.is_symlink():
            raise BadInput("calibration source {} does not exist: pass image files, folders or videos".format(p))
        if p.is_dir():
            for f in _walk(p, skip):
                add_file(f, explicit=False)
        elif p.exists() and not p.is_file():  # /dev/zero or a FIFO: read until memory runs out, or forever
            raise BadInput("calibration source {} is not a regular file or a folder (a device or pipe): pass image "
                           "files, folders or videos".format(p))
        else:
            add_file(p, explicit=True)
    if res.ignored:
        log.info("ignored {} file(s) in folders that are neither images ({}) nor videos".format(res.ignored, "/".join(IMAGE_EXTS)))
    return res


# ---- images -------------------------------------------------------------------------

def _truncation_reason(data: bytes) -> "Optional[str]":
    """Detect truncated PNG/JPEG files that decoders would half-decode silently."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if b"IEND" not in data[-16:]:
            return "truncated PNG (no IEND chunk at the end)"
    elif data[:2] == b"\xff\xd8":
        tail = data[-64:].rstrip(b"\x00\r\n \t")
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
    return None


def read_image(path: str) -> "Tuple[Optional[np.ndarray], str, Optional[str]]":
    """(BGR uint8 image or None, sha256 of the file, reason when None)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return None, "", "cannot read ({})".format(exc.strerror or exc)
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return None, digest, "empty file (0 bytes)"
    why = _truncation_reason(data)
    if why:
        return None, digest, why
    cv2 = _cv2()
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None, digest, "not a decodable image (unknown format or corrupt data)"
    return img, digest, None


# ---- videos -------------------------------------------------------------------------

def read_video_frames(
    info: "VideoInfo", indices: "Sequence[int]"
) -> "Iterator[Tuple[int, Optional[np.ndarray], Optional[str]]]":
    """Yield (index, BGR frame or None, reason) for sorted frame ``indices``.

    Seeks (``CAP_PROP_POS_FRAMES``) across long gaps and decodes forward across
    short ones.  When a seek lands wrong or a read after a seek fails, seeking is
    considered unreliable for this file and the remaining frames are read by
    streaming the file from the start (grab, retrieve only the wanted frames), so
    the even spacing is kept and only one frame is held at a time.
    """
    cv2 = _cv2()
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    cap = cv2.VideoCapture(info.path)
    done = 0
    try:
        if not cap.isOpened():
            for i in wanted:
                yield i, None, "cannot open video"
            return
        pos = 0
        reliable = info.seekable
        for i in wanted:
            if reliable and (i < pos or i - pos > SEEK_GAP):
                ok = cap.set(cv2.CAP_PROP_POS_FRAMES, float(i))
                if not ok or int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != i:
                    reliable = False
                    break
                ok, frame = cap.read()
                if not ok or frame is None or int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) != i + 1:
                    reliable = False
                    break
                pos = i + 1
                done += 1
                yield i, frame, None
                continue
            if not reliable and i < pos:
                break
            while pos < i and cap.grab():
                pos += 1
            if pos < i:  # ran out of frames
                break
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                break
            done += 1
            yield i, frame, None
        else:
            return
    finally:
        cap.release()
    rest = wanted[done:]
    # streaming fallback from the start of the file
    cap = cv2.VideoCapture(info.path)
    try:
        pos = 0
        for i in rest:
            while pos < i and cap.grab():
                pos += 1
            if pos < i:
                yield i, None, "frame {} is past the end of the video".format(i)
                continue
            ok, frame = cap.read()
            pos += 1
            if not ok or frame is None:
                yield i, None, "frame {} could not be decoded".format(i)
                continue
            yield i, frame, None
    finally:
        cap.release()


# ---- near-duplicate detection ---------------------------------------------------------

def phash64(frame: "np.ndarray") -> int:
    """64-bit perceptual hash: the 8x8 lowest DCT frequencies of a 32x32 grey
    thumbnail, each bit "above the median".

    Chosen over dHash because it is steadier under sensor noise and re-encoding:
    on the test scenes (noisy flat backgrounds) a JPEG re-encode moved dHash by up
    to 11 bits but pHash by at most 4, while distinct scenes stayed >= 8 apart.
    """
    cv2 = _cv2()
    small = cv2.resize(_gray(frame), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    d = cv2.dct(small)[:8, :8].reshape(-1)
    bits = d > np.median(d[1:])  # the DC term is left out of the median
    return int(np.packbits(bits.astype(np.uint8)).view(">u8")[0])


def _gray(frame: "np.ndarray") -> "np.ndarray":
    cv2 = _cv2()
    if frame.ndim == 3 and frame.shape[2] >= 3:
        return cv2.cvtColor(frame[:, :, :3], cv2.COLOR_BGR2GRAY)
    return frame.reshape(frame.shape[0], frame.shape[1])


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class HashIndex:
    """Accepted hashes; ``is_duplicate`` when one is within ``threshold`` bits."""

    def __init__(self, threshold: int = 4) -> None:
        self.threshold = int(threshold)
        self._arr = np.zeros(1024, dtype=np.uint64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def nearest(self, h: int) -> int:
        """Smallest Hamming distance to an accepted hash (65 when empty)."""
        if self._n == 0:
            return 65
        x = np.bitwise_xor(self._arr[: self._n], np.uint64(h))
        dist = _POP8[x.view(np.uint8)].reshape(self._n, 8).sum(axis=1)
        return int(dist.min())

    def is_duplicate(self, h: int) -> bool:
        return self.threshold >= 0 and self.nearest(h) <= self.threshold

    def add(self, h: int) -> None:
        if self._n == len(self._arr):
            self._arr = np.concatenate([self._arr, np.zeros_like(self._arr)])
        self._arr[self._n] = np.uint64(h)
        self._n += 1
