"""Torch-level pieces of the detection engine, imported only inside functions (they import torch at
module level): :mod:`.yolo_graph` is the deployable network with its pre- and post-processing."""

__all__: list[str] = []
