"""The anomaly task engine: a PatchCore-family detector fitted on good parts only.

``network`` is the pure torch graph (backbone body, patch aggregation, memory-bank search, map
post-processing) that is exported whole; ``coreset`` picks the memory bank; ``detector`` fits and
scores; ``metrics`` holds image/pixel AUROC and PRO.
"""
