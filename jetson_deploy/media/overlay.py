"""Draw results on frames: label/score + FPS (classify), boxes (detect), class mask (segment)."""
from typing import Any, Optional, Tuple

import numpy as np

from .._lazy import require


def palette(n: int) -> "np.ndarray":
    """n distinct BGR colours (class 0 black: background)."""
    rng = np.random.RandomState(12345)
    p = rng.randint(64, 256, size=(max(n, 1), 3)).astype(np.uint8)
    p[0] = 0
    return p


def _text(cv2: Any, img: "np.ndarray", text: str, org: "Tuple[int, int]", scale: float, color=(255, 255, 255)) -> int:
    """Draw ``text`` on a black box whose top-left is ``org``; return the box height."""
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, top = org
    y = top + th + 3  # baseline
    cv2.rectangle(img, (x - 3, top), (x + tw + 3, y + base + 2), (0, 0, 0), -1)
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)
    return y + base + 2 - top


def draw(image: "np.ndarray", result: Any, fps: "Optional[float]" = None, alpha: float = 0.45) -> "np.ndarray":
    """Annotate ``image`` in place (BGR uint8) and return it.  Callers pass a copy when shared."""
    cv2 = require("cv2", "drawing overlays")
    h, w = image.shape[:2]
    scale = max(0.4, min(w, h) / 720.0)
    task = getattr(result, "task", "classify")
    if task == "segment" and getattr(result, "mask", None) is not None:
        mask = result.mask
        colors = palette(max(int(mask.max()) + 1, result.num_classes or 0))
        cm = colors[mask.astype(np.int64)]
        cm = cv2.resize(cm, (w, h), interpolation=cv2.INTER_NEAREST)
        fg = cv2.resize((mask > 0).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        blended = cv2.addWeighted(image, 1.0 - alpha, cm, alpha, 0)
        image[fg] = blended[fg]
    if task == "detect":
        colors = palette(max(len(getattr(result, "detections", [])), 1) + 64)
        for d in result.detections:
            x1, y1, x2, y2 = (int(round(v)) for v in d.box)
            c = tuple(int(v) for v in colors[(d.class_id % 63) + 1])
            cv2.rectangle(image, (x1, y1), (x2, y2), c, max(1, int(2 * scale)))
            _text(cv2, image, "{} {:.2f}".format(d.label, d.score), (x1 + 2, max(y1 - int(22 * scale), 0)), max(0.4, 0.5 * scale))
    lines = []
    if task in ("classify", "segment") and getattr(result, "label", None) is not None:
        lines.append("{} {:.2f}".format(result.label, result.score or 0.0))
    if fps is not None:
        lines.append("{:.1f} FPS".format(fps))
    y = max(4, int(8 * scale))
    for ln in lines:  # each box sized from the font's own metrics, so lines never overlap
        y += _text(cv2, image, ln, (max(6, int(8 * scale)), y), max(0.5, 0.8 * scale)) + 2
    return image
