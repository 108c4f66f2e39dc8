"""What the split's part groups look like on a dataset, under the old rule and the current one.

For each rule: the number of groups, the largest group, images that have a look-alike within the
pHash distance not taken for a copy, and the images, groups and effective parts of each split that
``dataset_version`` would make (``resources.data.split_plan.plan_split`` with the task's training
labels). The old rule is the transitive one (every pair within the distance linked:
``near_copy_max_neighbours`` unbounded). Reads the images in place; writes nothing but stdout
(``--json``: the figures as JSON too).

    .venv/bin/python bench/split_groups.py ../shared/datasets/magnetic_tile --layout magnetic_tile
    .venv/bin/python bench/split_groups.py ../shared/datasets/neu_det --layout neu
    .venv/bin/python bench/split_groups.py some-mvtec-folder --layout mvtec --task anomaly
"""

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from resources.data.images import perceptual_hash  # noqa: E402
from resources.data.split_plan import SplitCollapsed, plan_split  # noqa: E402
from resources.data.splitting import SplitSpec  # noqa: E402

RULES = {"old (transitive)": 1_000_000, "current": SplitSpec().near_copy_max_neighbours}


def list_images(root: Path, layout: str) -> pd.DataFrame:
    """rel_path and label of every image, as the platform would label it."""
    if layout == "magnetic_tile":
        paths = sorted(root.glob("MT_*/Imgs/*.jpg"))
        labels = [p.parts[-3] for p in paths]
    elif layout == "neu":
        paths = sorted(root.rglob("*.jpg"))
        labels = [re.sub(r"_\d+$", "", p.stem) for p in paths]
    elif layout == "mvtec":
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp") and "ground_truth" not in p.parts)
        labels = [p.relative_to(root).parts[1] for p in paths]
    else:  # one folder per class
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".bmp"))
        labels = [p.relative_to(root).parts[0] for p in paths]
    if not paths:
        raise SystemExit(f"{root}: no images for layout {layout}")
    frame = pd.DataFrame(
        {
            "rel_path": [p.relative_to(root).as_posix() for p in paths],
            "sha256": [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths],
            "label": labels,
            "phash": [perceptual_hash(p) for p in paths],
        }
    )
    return frame.drop_duplicates("sha256").reset_index(drop=True)


def measure(items: pd.DataFrame, train_labels: frozenset[str] | None, seed: int, where: str) -> dict:
    out = {}
    for name, neighbours in RULES.items():
        spec = SplitSpec(seed=seed, near_copy_max_neighbours=neighbours)
        try:
            plan = plan_split(items.assign(stratum=items["label"]), spec, "phash", train_labels, where)
        except SplitCollapsed as exc:
            out[name] = {"collapsed": str(exc)}
            continue
        record = plan.record()
        out[name] = {
            "groups": int(plan.split["group_id"].nunique()),
            "largest_group": record["largest_group"],
            "look_alike_images": record["look_alike_images"],
            "splits": record["splits"],
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--layout", choices=["folders", "neu", "magnetic_tile", "mvtec"], default="folders")
    parser.add_argument("--task", choices=["classify", "anomaly"], default="classify")
    parser.add_argument("--good-class", default="good", help="--task anomaly: the class trained on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    items = list_images(args.dataset, args.layout)
    train_labels = frozenset({args.good_class}) if args.task == "anomaly" else None
    result = {"dataset": str(args.dataset), "images": len(items), "seed": args.seed,
              "rules": measure(items, train_labels, args.seed, str(args.dataset))}
    for name, row in result["rules"].items():
        if "collapsed" in row:
            print(f"{name}: COLLAPSED: {row['collapsed']}")
            continue
        held = ", ".join(f"{s} {v['images']}/{v['groups']}/{v['effective_parts']:g}" for s, v in row["splits"].items())
        print(f"{name}: {row['groups']} groups, largest {row['largest_group']}, look-alikes not linked "
              f"{row['look_alike_images']}; images/groups/effective parts: {held}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
