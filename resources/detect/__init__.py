"""Object-detection labels: one in-memory form (:mod:`boxes`), the COCO/YOLO/VOC formats
(:mod:`formats`), geometry checks (:mod:`checks`), reviewer agreement (:mod:`agreement`) and IoU
(:mod:`iou`).

Pure library code: no Dagster here; the assets that load a batch's boxes call these functions. numpy
is imported by the numeric modules; pyarrow, pandas, PIL, yaml and scipy only inside the functions
that use them, so importing the package stays light.
"""

from resources.detect.boxes import TABLE_COLUMNS, Box, BoxSet, ImageInfo, split_by_reviewer, table_schema
from resources.detect.errors import (
    BoxSetError,
    DetectLabelError,
    LabelFileError,
    LabelItemError,
    Problem,
    raise_for_problems,
)

__all__ = [
    "TABLE_COLUMNS",
    "Box",
    "BoxSet",
    "BoxSetError",
    "DetectLabelError",
    "ImageInfo",
    "LabelFileError",
    "LabelItemError",
    "Problem",
    "raise_for_problems",
    "split_by_reviewer",
    "table_schema",
]
