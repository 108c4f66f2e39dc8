"""``mfgv lineage``: the tree from a model version back to its data, short by default.

By default each asset's line names its output, run, code version and the parameters that fit on a
line (cut at a parameter, never mid-token), and each dataset version its counts per split and label:
a screen or two. ``--full`` adds every parameter in full, and every image and label row (the audit
trail back to each image's sha256: thousands of lines for a real dataset).
"""

import json
from collections.abc import Iterator

from resources.lineage import LineageNode, LineageNotFound, LineageStore

__all__ = ["render_lineage"]

_SHORT_PARAMETERS = 160  # characters of parameters shown per asset without --full


def _parameters(params: dict, full: bool) -> str:
    if full:
        return json.dumps(params, sort_keys=True)
    parts, used, left_out = [], 0, 0
    for key in sorted(params):
        value = params[key]
        if isinstance(value, dict | list):
            left_out += 1
            continue
        text = f"{key}={json.dumps(value)}"
        if used + len(text) > _SHORT_PARAMETERS:
            left_out += 1
            continue
        parts.append(text)
        used += len(text) + 1
    return " ".join(parts) + (f" (+{left_out} more: --full)" if left_out else "")


def _describe(node: LineageNode, full: bool) -> str:
    row = node.row
    return (
        f"{node.asset}: {node.output_id}  [run {row['run_id'][:8]}, code {row['code_version']}, "
        f"{row['recorded_at'][:19]}] {_parameters(json.loads(row['parameters']), full)}"
    )


def _known_versions(store: LineageStore) -> list[str]:
    rows = store.read_table("lineage", "asset = ?", ["registered_model"])
    return sorted(set(rows["output_id"])) if not rows.empty else []


def render_lineage(model_version: str, *, full: bool = False, store: LineageStore | None = None) -> Iterator[str]:
    """Lines of ``model_version``'s lineage (see the module docstring); an unknown version is refused
    with the versions that exist."""
    store = store or LineageStore()
    try:
        root = store.trace(model_version)
    except LineageNotFound as exc:
        known = _known_versions(store)
        listed = ", ".join(known[-20:]) if known else "none yet (run `mfgv onboard` first)"
        raise LineageNotFound(f"no model version {model_version!r} in the lineage; registered versions: {listed}") from exc
    dataset_ids: list[str] = []
    label_set_ids: list[str] = []
    shown: set[str] = set()

    def walk(node: LineageNode, depth: int) -> Iterator[str]:
        if node.output_id in shown:  # the graph is a DAG: print each node once
            yield "  " * depth + f"{node.asset}: {node.output_id}  (see above)"
            return
        shown.add(node.output_id)
        yield "  " * depth + _describe(node, full)
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
        if full:
            yield "  images (sha256  split  label  batch/path):"
            for row in items.sort_values(["split", "label", "sha256"]).itertuples():
                yield f"    {row.sha256}  {row.split:5s}  {row.label}  {row.batch}/{row.rel_path}"
    if full:
        for label_set_id in label_set_ids:
            labels = store.read_table("labels", "annotation_set_id = ?", [label_set_id])
            yield f"{label_set_id}: {len(labels)} labels (sha256  reviewer  label  source  batch/path):"
            for row in labels.sort_values(["sha256", "reviewer"]).itertuples():
                yield f"    {row.sha256}  {row.reviewer}  {row.label}  {row.source}  {row.batch}/{row.rel_path}"
    else:
        yield "every image and label row, and every parameter: mfgv lineage " + model_version + " --full"
