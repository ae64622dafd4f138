"""Seeded synthetic frames with ground truth: the shapes the ``synthetic://`` source draws.

Each frame is a noisy background (two-colour gradient, low-frequency colour blobs,
optional distractor lines, per-pixel noise) with at most one shape on it: a circle,
a square or a triangle, filled or outlined, in any colour, size, position and
rotation.  Label ``none`` means background only.  The embedded demo model
(:mod:`jetson_deploy.demo`) is trained on these frames; it lives in ``media`` so the
source needs no demo package (demo imports media, never the other way round).

Every size and thickness is a fraction of ``min(width, height)``, so a 64x64
training frame and a 1280x720 benchmark frame have the same look once resized to
the model input.  Random numbers come from ``numpy.random.RandomState``, whose
streams numpy keeps stable across versions: the same seed gives the same frames on
the workstation and on a Jetson.  Drawing needs cv2 (imported at the first frame).
"""
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .._lazy import require
from ..errors import BadInput

LABELS = ["circle", "square", "triangle", "none"]
CIRCLE, SQUARE, TRIANGLE, NONE = 0, 1, 2, 3

# Shape extent (diameter of the circle; the polygons are scaled to look about as
# large) as a fraction of min(W, H): large enough to survive resizing to 64x64.
SIZE_RANGE = (0.3, 0.7)
# Outline thickness as a fraction of min(W, H): at least ~2.5 px at 64x64, and
# thicker than the sampling stride when 1280x720 is resized without antialiasing.
THICKNESS_RANGE = (0.045, 0.09)
MIN_CONTRAST = 110.0  # Euclidean BGR distance between the shape and the background under it
_SHIFT = 4  # fixed-point bits for sub-pixel cv2 drawing


def _cv2():
    return require("cv2", "drawing synthetic shape frames")


@dataclass
class Scene:
    """Everything needed to draw one frame, in size-independent units.

    Positions are fractions of (W, H); sizes are fractions of min(W, H).
    """

    label: int
    c0: "Tuple[float, float, float]"
    c1: "Tuple[float, float, float]"
    angle: float
    blobs: "np.ndarray"  # (g, g, 3) float32 offsets, upsampled to the frame
    noise: int  # per-pixel uniform noise amplitude
    lines: "List[Tuple[float, float, float, float, Tuple[int, int, int], float]]"
    cx: float = 0.5
    cy: float = 0.5
    size: float = 0.0
    filled: bool = True
    thickness: float = 0.0
    color: "Tuple[int, int, int]" = (255, 255, 255)
    vertices: "Optional[List[Tuple[float, float]]]" = None  # unit polygon (circumradius 1)

    def extent(self) -> float:
        """Half-size of the shape's bounding box around its centre, in min(W,H) units."""
        if self.label == NONE:
            return 0.0
        r = self.size / 2.0
        if self.vertices:
            r *= max(math.hypot(x, y) for x, y in self.vertices)
        return r + (0.0 if self.filled else self.thickness / 2.0)


def _rand_color(rng: "np.random.RandomState") -> "Tuple[float, float, float]":
    c = rng.randint(0, 256, size=3)
    return (float(c[0]), float(c[1]), float(c[2]))


def _polygon(rng: "np.random.RandomState", label: int) -> "List[Tuple[float, float]]":
    """Unit polygon: a square (half-diagonal 1.15) or a jittered triangle (circumradius ~1.2)."""
    if label == SQUARE:
        rot = rng.uniform(0.0, math.pi / 2)
        return [(1.15 * math.cos(rot + k * math.pi / 2), 1.15 * math.sin(rot + k * math.pi / 2)) for k in range(4)]
    rot = rng.uniform(0.0, 2 * math.pi / 3)
    pts = []
    for k in range(3):
        a = rot + k * 2 * math.pi / 3 + rng.uniform(-0.17, 0.17)  # +-10 degrees
        r = 1.2 * rng.uniform(0.88, 1.08)
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def sample_scene(rng: "np.random.RandomState", width: int, height: int, label: "Optional[int]" = None) -> "Scene":
    """Draw the random parameters of one frame (``label`` None: uniform over LABELS)."""
    if label is None:
        label = int(rng.randint(len(LABELS)))
    aspect = width / float(height)
    g = int(rng.randint(2, 7))
    scene = Scene(
        label=label,
        c0=_rand_color(rng),
        c1=_rand_color(rng),
        angle=float(rng.uniform(0, 2 * math.pi)),
        blobs=rng.uniform(-1.0, 1.0, size=(g, g, 3)).astype(np.float32) * float(rng.uniform(0, 60)),
        noise=int(rng.randint(0, 31)),
        lines=[],
    )
    n_lines = int(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))
    for _ in range(n_lines):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, 1, size=4))
        col = tuple(int(v) for v in rng.randint(0, 256, size=3))
        scene.lines.append((x0, y0, x1, y1, col, float(rng.uniform(0.008, 0.025))))  # type: ignore[arg-type]
    if label == NONE:
        return scene
    scene.size = float(rng.uniform(*SIZE_RANGE))
    scene.filled = bool(rng.rand() < 0.5)
    scene.thickness = float(rng.uniform(*THICKNESS_RANGE))
    if label != CIRCLE:
        scene.vertices = _polygon(rng, label)
    # Centre so that the whole shape stays inside the frame.
    ex, ey = _extent_wh(scene.extent(), width, height)
    scene.cx = float(rng.uniform(min(ex, 0.5), max(1 - ex, 0.5)))
    scene.cy = float(rng.uniform(min(ey, 0.5), max(1 - ey, 0.5)))
    # A colour that stands out from the background under the shape (estimated on a
    # small rendering, so the choice does not depend on the frame size).
    sw, sh = (48, max(8, int(round(48 / aspect)))) if aspect >= 1 else (max(8, int(round(48 * aspect))), 48)
    small = _background(scene, sw, sh).astype(np.float64)
    x_a, x_b = int(max(scene.cx - ex, 0) * sw), int(math.ceil(min(scene.cx + ex, 1) * sw))
    y_a, y_b = int(max(scene.cy - ey, 0) * sh), int(math.ceil(min(scene.cy + ey, 1) * sh))
    local = small[y_a : max(y_b, y_a + 1), x_a : max(x_b, x_a + 1)].reshape(-1, 3).mean(axis=0)
    scene.color = _contrasting_color(rng, local)
    return scene


def _extent_wh(ext: float, width: int, height: int) -> "Tuple[float, float]":
    """An extent in min(W,H) units as (fraction of W, fraction of H)."""
    m = float(min(width, height))
    return ext * m / width, ext * m / height


def _background(scene: "Scene", width: int, height: int) -> "np.ndarray":
    """Gradient plus colour blobs, drawn at most 96 px wide/high and upsampled (it is smooth)."""
    cv2 = _cv2()
    r = min(1.0, 96.0 / max(width, height))
    w, h = max(2, int(round(width * r))), max(2, int(round(height * r)))
    ca, sa = math.cos(scene.angle), math.sin(scene.angle)
    xs = (np.arange(w, dtype=np.float32) / (w - 1) - 0.5) * ca
    ys = (np.arange(h, dtype=np.float32) / (h - 1) - 0.5) * sa
    t = (ys[:, None] + xs[None, :]) / (abs(ca) + abs(sa)) + 0.5  # 0..1 along the gradient
    c0 = np.asarray(scene.c0, dtype=np.float32)
    c1 = np.asarray(scene.c1, dtype=np.float32)
    bg = c0[None, None, :] + t[:, :, None] * (c1 - c0)[None, None, :]
    bg += cv2.resize(scene.blobs, (w, h), interpolation=cv2.INTER_CUBIC)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    if (w, h) != (width, height):
        bg = cv2.resize(bg, (width, height), interpolation=cv2.INTER_LINEAR)
    return bg


def _contrasting_color(rng: "np.random.RandomState", local_mean: "np.ndarray") -> "Tuple[int, int, int]":
    for _ in range(64):
        c = rng.randint(0, 256, size=3).astype(np.float64)
        if np.linalg.norm(c - local_mean) >= MIN_CONTRAST:
            return (int(c[0]), int(c[1]), int(c[2]))
    c = np.where(local_mean < 128, 255, 0)  # the far corner of the colour cube is always far enough
    return (int(c[0]), int(c[1]), int(c[2]))


def render(scene: "Scene", width: int, height: int, rng: "np.random.RandomState", dx: float = 0.0, dy: float = 0.0) -> "np.ndarray":
    """Draw ``scene`` as a BGR uint8 frame; (dx, dy) move the shape (fractions of W, H).

    ``rng`` supplies the per-pixel noise, fresh for each frame of a clip.
    """
    if width < 8 or height < 8:
        raise BadInput("synthetic frames need at least 8x8 pixels, got {}x{}".format(width, height))
    cv2 = _cv2()
    img = _background(scene, width, height)
    m = min(width, height)
    one = 1 << _SHIFT
    for x0, y0, x1, y1, col, th in scene.lines:
        p0 = (int(x0 * width * one), int(y0 * height * one))
        p1 = (int(x1 * width * one), int(y1 * height * one))
        cv2.line(img, p0, p1, col, max(1, int(round(th * m))), cv2.LINE_AA, _SHIFT)
    if scene.label != NONE:
        cx, cy = (scene.cx + dx) * width, (scene.cy + dy) * height
        color = scene.color
        thick = -1 if scene.filled else max(2, int(round(scene.thickness * m)))
        r = scene.size / 2.0 * m
        if scene.vertices is None:
            cv2.circle(img, (int(cx * one), int(cy * one)), int(r * one), color, thick, cv2.LINE_AA, _SHIFT)
        else:
            pts = np.array([[(cx + r * vx) * one, (cy + r * vy) * one] for vx, vy in scene.vertices], dtype=np.int32)
            if scene.filled:
                cv2.fillPoly(img, [pts], color, cv2.LINE_AA, _SHIFT)
            else:
                cv2.polylines(img, [pts], True, color, thick, cv2.LINE_AA, _SHIFT)
    if scene.noise > 0:
        # Uniform in [-noise, noise] from raw random bytes (10x faster than randint at 1280x720).
        raw = np.frombuffer(rng.bytes(img.size), dtype=np.uint8).reshape(img.shape)
        noise = raw.astype(np.int16)
        noise *= 2 * scene.noise + 1
        noise >>= 8
        noise += img
        noise -= scene.noise
        np.clip(noise, 0, 255, out=noise)
        img = noise.astype(np.uint8)
    return img


class ShapeGenerator:
    """Seeded source of labelled synthetic frames: same seed, same frames.

    >>> gen = ShapeGenerator(seed=1)
    >>> frame, label = gen.frame(160, 120)   # BGR uint8 (120, 160, 3), index into LABELS
    """

    labels = LABELS
    name = "shapes"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        self.rng = np.random.RandomState(self.seed)

    def frame(self, width: int, height: int, label: "Optional[int]" = None) -> "Tuple[np.ndarray, int]":
        """One frame of ``width`` x ``height`` and its label index (uniform over LABELS unless given)."""
        width, height = int(width), int(height)
        scene = sample_scene(self.rng, width, height, label)
        return render(scene, width, height, self.rng), scene.label

    def frames(self, n: int, width: int, height: int) -> "Iterator[Tuple[np.ndarray, int]]":
        """``n`` frames of the same size (see :meth:`frame`)."""
        for _ in range(int(n)):
            yield self.frame(width, height)

    def clip_frames(self, n_frames: int, width: int, height: int, hold: int = 5) -> "Iterator[Tuple[np.ndarray, int]]":
        """Frames of a video: each scene held ``hold`` frames while its shape drifts
        slightly, with fresh sensor noise on every frame."""
        if hold < 1:
            raise BadInput("hold must be at least 1 frame, got {}".format(hold))
        done = 0
        while done < n_frames:
            scene = sample_scene(self.rng, width, height)
            # Drift up to ~1.5% of min(W,H) a frame, kept inside the frame.
            u = self.rng.uniform(-0.015, 0.015, size=2)
            vx, vy = _extent_wh(float(u[0]), width, height)[0], _extent_wh(float(u[1]), width, height)[1]
            ex, ey = _extent_wh(scene.extent(), width, height)
            for k in range(min(hold, n_frames - done)):
                dx = float(np.clip(scene.cx + vx * k, min(ex, 0.5), max(1 - ex, 0.5))) - scene.cx
                dy = float(np.clip(scene.cy + vy * k, min(ey, 0.5), max(1 - ey, 0.5))) - scene.cy
                yield render(scene, width, height, self.rng, dx, dy), scene.label
                done += 1
