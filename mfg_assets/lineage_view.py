"""``mfgv lineage``: the tree from a model version back to every image hash and label."""

import json
from collections.abc import Iterator

from resources.lineage import LineageNode, LineageStore

__all__ = ["render_lineage"]


def _describe(node: LineageNode) -> str:
    row = node.row
    params = json.loads(row["parameters"])
    shown = {k: v for k, v in params.items() if not isinstance(v, (dict, list))}
    return (
        f"{node.asset}: {node.output_id}  [run {row['run_id'][:8]}, code {row['code_version']}, "
        f"{row['recorded_at'][:19]}] {json.dumps(shown, sort_keys=True)[:200]}"
    )


def render_lineage(model_version: str, *, show_items: bool = True, store: LineageStore | None = None) -> Iterator[str]:
    store = store or LineageStore()
    root = store.trace(model_version)
    dataset_ids: list[str] = []
    label_set_ids: list[str] = []
    shown: set[str] = set()

    def walk(node: LineageNode, depth: int) -> Iterator[str]:
        if node.output_id in shown:  # the graph is a DAG: print each node once
            yield "  " * depth + f"{node.asset}: {node.output_id}  (see above)"
            return
        shown.add(node.output_id)
        yield "  " * depth + _describe(node)
        if node.output_id.startswith("dataset:"):
            dataset_ids.append(node.output_id)
        if node.output_id.startswith("labels:"):
            label_set_ids.append(node.output_id)
        for child in node.inputs:
            yield from walk(child, depth + 1)
        if node.asset == "raw_images":
            for batch in json.loads(node.row["input_ids"]):
                yield "  " * (depth + 1) + f"landing batch: {batch}"

    yield from walk(root, 0)
    for dataset_id in dataset_ids:
        items = store.read_table("dataset_items", "dataset_id = ?", [dataset_id])
        counts = items.groupby(["split", "label"]).size()
        yield f"{dataset_id}: {len(items)} images"
        for (split, label), count in counts.items():
            yield f"  {split:5s} {label}: {count}"
        if show_items:
            yield "  images (sha256  split  label  batch/path):"
            for row in items.sort_values(["split", "label", "sha256"]).itertuples():
                yield f"    {row.sha256}  {row.split:5s}  {row.label}  {row.batch}/{row.rel_path}"
    if show_items:
        for label_set_id in label_set_ids:
            labels = store.read_table("labels", "annotation_set_id = ?", [label_set_id])
            yield f"{label_set_id}: {len(labels)} labels (sha256  reviewer  label  source  batch/path):"
            for row in labels.sort_values(["sha256", "reviewer"]).itertuples():
                yield f"    {row.sha256}  {row.reviewer}  {row.label}  {row.source}  {row.batch}/{row.rel_path}"
