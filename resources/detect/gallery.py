"""The report gallery's pictures for detection: label boxes and the model's boxes on the image."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["draw_boxes"]

_TRUTH = (40, 200, 60)
_PREDICTED = (230, 40, 40)


def draw_boxes(image: "np.ndarray", truth: "np.ndarray", predicted: "np.ndarray", threshold: float) -> "np.ndarray":
    """``image`` (uint8 H×W×3) with the label boxes (``truth``: K×5, x0 y0 x1 y1 class) in green and
    the predicted boxes scoring at least ``threshold`` (K×6, ... score class) in red, with their score."""
    import numpy as np
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for box in np.asarray(truth).reshape(-1, 5):
        draw.rectangle([float(v) for v in box[:4]], outline=_TRUTH, width=1)
    for box in np.asarray(predicted).reshape(-1, 6):
        if box[4] >= threshold:
            draw.rectangle([float(v) for v in box[:4]], outline=_PREDICTED, width=1)
            draw.text((float(box[0]) + 1, float(box[1]) + 1), f"{box[4]:.2f}", fill=_PREDICTED)
    return np.asarray(canvas)
