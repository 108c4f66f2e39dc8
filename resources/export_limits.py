"""The export checks' default limits, shared by the export config and the engines that use them."""

__all__ = ["INT8_MAX_DISAGREEMENT", "PARITY_TOLERANCE"]

PARITY_TOLERANCE = 1e-4
"""Largest accepted |p_torch - p_runtime| on softmax probabilities (measured in resources/classify/exporter.py)."""

INT8_MAX_DISAGREEMENT = 0.005
"""Default share of held-out images on which INT8 may decide unlike FP32 (the export config's default too)."""
