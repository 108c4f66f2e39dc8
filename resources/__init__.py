"""Dagster resources and the engines behind them (storage, lineage, training, export, registry).

Heavy libraries (torch, timm, albumentations, openvino, great_expectations) are imported inside the
functions that use them so that loading the Dagster definitions stays fast.
"""
