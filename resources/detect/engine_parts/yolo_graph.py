"""The deployable detector: pixels in, a fixed-size table of detections out, everything in one graph.

anomalib's lesson: when the exported graph carries its own pre- and post-processing, a device cannot
get them wrong. :class:`DetectionGraph` takes what ``edge_sync/contract/imaging.py`` delivers (float32
N×3×S×S RGB, values 0..255), scales to 0..1 as ultralytics trained, runs the detector and returns
``detections`` (N, max_det, 6): ``x_min, y_min, x_max, y_max, score, class_id`` in input pixels,
sorted by score, padded with zero rows (score 0). The device thresholds the score column; nothing else.

Post-processing, identical in torch and in the exported graph because it *is* the graph:

* NMS-free heads (YOLO26, end-to-end): the head's own top-k over anchors × classes; no NMS.
* YOLO11/v8 heads: best class per anchor, the ``pre_nms_topk`` highest scores, class-aware NMS
  (``torchvision.ops.nms`` with boxes offset per class, which exports as ONNX ``NonMaxSuppression``),
  re-sorted by score (runtimes need not return NMS survivors in order), cut to ``max_det``.
  ultralytics drops boxes under the confidence threshold *before* NMS; here every candidate enters
  it and the threshold applies afterwards. The boxes above any threshold are the same: greedy NMS
  only lets a box suppress lower-scored ones, so a box under the threshold never removes one above.
"""

import torch
import torchvision
from torch import nn

__all__ = ["OUTPUT_NAME", "INPUT_NAME", "DetectionGraph"]

INPUT_NAME = "images"
OUTPUT_NAME = "detections"


class DetectionGraph(nn.Module):
    """An ultralytics ``DetectionModel`` (float32, eval, fused) with the platform's I/O contract."""

    def __init__(
        self,
        detector: nn.Module,
        *,
        end_to_end: bool,
        max_det: int = 300,
        iou: float = 0.7,
        pre_nms_topk: int = 3000,
    ) -> None:
        super().__init__()
        head = detector.model[-1]
        if getattr(head, "end2end", False) != end_to_end:
            raise ValueError(f"the detector's head end2end={head.end2end} differs from end_to_end={end_to_end}")
        head.export = True  # the head returns its decoded tensor only, no training dict
        head.max_det = max_det
        if not end_to_end:
            head.xyxy = True  # corners, as NMS and the contract want
        self.detector = detector
        self.end_to_end = end_to_end
        self.max_det = int(max_det)
        self.iou = float(iou)
        self.pre_nms_topk = int(pre_nms_topk)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.detector(images / 255.0)
        if isinstance(output, (list, tuple)):
            output = output[0]
        if self.end_to_end:
            detections = output  # (N, min(max_det, anchors), 6), sorted by score
        else:
            detections = torch.stack([self._nms(single) for single in output.unbind(0)])
        missing = self.max_det - detections.shape[1]
        if missing > 0:
            detections = torch.cat([detections, detections.new_zeros(detections.shape[0], missing, 6)], dim=1)
        # Corners clipped to the image, as ultralytics' predictor does after NMS (zero rows stay zero).
        height, width = images.shape[2], images.shape[3]
        xs = detections[..., 0::2][..., :2].clamp(0.0, float(width))
        ys = detections[..., 1::2][..., :2].clamp(0.0, float(height))
        return torch.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1], detections[..., 4], detections[..., 5]], dim=-1)

    def _nms(self, prediction: torch.Tensor) -> torch.Tensor:
        """(4 + nc, anchors) xyxy + class scores → (max_det, 6), per-class NMS, padded with zeros."""
        candidates = prediction.transpose(0, 1)
        boxes, class_scores = candidates[:, :4], candidates[:, 4:]
        scores, classes = class_scores.max(dim=1)
        k = min(self.pre_nms_topk, int(candidates.shape[0]))
        scores, index = scores.topk(k)
        boxes, classes = boxes[index], classes[index].to(boxes.dtype)
        offsets = classes[:, None] * (boxes.max() + 1.0)  # separates classes: NMS never compares two
        keep = torchvision.ops.nms(boxes + offsets, scores, self.iou)
        keep = keep[scores[keep].argsort(descending=True)][: self.max_det]
        kept = torch.cat([boxes[keep], scores[keep, None], classes[keep, None]], dim=1)
        return torch.cat([kept, kept.new_zeros(self.max_det, 6)], dim=0)[: self.max_det]
