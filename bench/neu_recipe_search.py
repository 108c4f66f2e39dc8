"""Find (and re-measure) the from-scratch classification recipe on NEU steel-surface defects.

Target: test accuracy >= 99.5 % on a stratified, seeded 60/20/20 split of NEU-DET's 1,800 images
(6 classes x 300, class = file-name prefix), trained from scratch (no pretrained weights) in at most
10 minutes on a 2-core CPU. The defaults of ``resources.classify.trainer.TrainSettings`` are
the recipe this script found, and that class's docstring records the measured figures.

Two modes, so that the shared CPU is spent on a few full runs only:

    # seconds per full epoch of arch@size candidates, scaled from a 2nd epoch on a 192-image subset
    python bench/neu_recipe_search.py ../shared/datasets/neu_det --estimate resnet10t@128 resnet18@128

    # one full run of a recipe; prints a JSON line with accuracy and times
    python bench/neu_recipe_search.py ../shared/datasets/neu_det --arch resnet10t --image-size 128 --epochs 30

The dataset folder is an argument (it is research-only data and is never copied into the project);
images are read with Pillow from ``IMAGES/`` and ``Validation_Images/`` (the uploader's 1,770/30
split is not a useful test split, so both are pooled and re-split here).
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

# Run as a file (``python bench/neu_recipe_search.py``), the project root is not on the path.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

logger = logging.getLogger("bench.neu_recipe_search")

IMAGE_FOLDERS: tuple[str, ...] = ("IMAGES", "Validation_Images")
SPLIT_SEED = 0


def load_neu(root: Path, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """All NEU images resized to ``image_size`` (uint8 N×S×S×3), labels, class names, file names."""
    from PIL import Image

    files = sorted(p for folder in IMAGE_FOLDERS for p in (root / folder).glob("*.jpg"))
    if not files:
        raise SystemExit(f"no *.jpg under {root}/{{{','.join(IMAGE_FOLDERS)}}}; pass the neu_det folder")
    names = [p.stem.rsplit("_", 1)[0] for p in files]
    classes = sorted(set(names))
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            # PIL's bilinear filter widens its support when shrinking, i.e. it antialiases.
            images[i] = np.asarray(
                img.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR), dtype=np.uint8
            )
    labels = np.array([classes.index(n) for n in names], dtype=np.int64)
    logger.info("loaded %d images, %d classes, at %d px from %s", len(files), len(classes), image_size, root)
    return images, labels, classes, [p.name for p in files]


def split_60_20_20(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/val/test indices: 20 % test first, then 25 % of the rest as validation."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    trainval, test = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    train, val = train_test_split(trainval, test_size=0.25, stratify=labels[trainval], random_state=seed)
    return train, val, test


def estimate(root: Path, candidates: list[str], subset: int, batch_size: int, threads: int) -> list[dict]:
    """Seconds per full-size epoch (1,080 training images + 360 validation) from one subset epoch."""
    from resources.classify.trainer import TrainSettings, train_classifier

    results = []
    cache: dict[int, tuple[np.ndarray, np.ndarray, list[str]]] = {}
    for candidate in candidates:
        arch, _, size_text = candidate.partition("@")
        size = int(size_text or 128)
        if size not in cache:
            images, labels, classes, _ = load_neu(root, size)
            cache[size] = (images, labels, classes)
        images, labels, classes = cache[size]
        train, val, _ = split_60_20_20(labels)
        sub_train, sub_val = train[:subset], val[: max(12, subset // 3)]
        settings = TrainSettings(
            backbone="none", arch=arch, image_size=size, epochs=2, batch_size=batch_size, num_threads=threads, seed=0
        )
        result = train_classifier(
            images[sub_train], labels[sub_train], images[sub_val], labels[sub_val], classes, settings
        )
        # The second epoch is the steady state (the first pays allocator and kernel warm-up).
        per_image = result.history[-1].seconds / (len(sub_train) + len(sub_val) / 3)
        row = {
            "arch": arch,
            "image_size": size,
            "seconds_per_epoch_est": round(per_image * (len(train) + len(val) / 3), 1),
            "subset": len(sub_train),
        }
        logger.info("estimate %s", row)
        results.append(row)
    return results


def full_run(root: Path, args: argparse.Namespace) -> dict:
    """Train one recipe on the 60 % split, pick the epoch on the 20 % validation split, score the 20 % test."""
    from resources.data.augmentation import augment_images
    from resources.classify.trainer import (
        EpochRecord,
        TrainSettings,
        load_inference_model,
        predict_proba,
        train_classifier,
    )

    images, labels, classes, files = load_neu(root, args.image_size)
    train, val, test = split_60_20_20(labels)
    train_images, train_labels = images[train], labels[train]
    augment_seconds = 0.0
    if args.augment_copies > 0:
        started = time.perf_counter()
        aug_images, aug_labels, _ = augment_images(
            train_images,
            train_labels,
            preset="manufacturing",
            copies_per_image=args.augment_copies,
            balance_classes=False,
            seed=args.seed,
        )
        train_images = np.concatenate([train_images, aug_images])
        train_labels = np.concatenate([train_labels, aug_labels])
        augment_seconds = time.perf_counter() - started
    settings = TrainSettings(
        backbone="none",
        arch=args.arch,
        image_size=args.image_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        num_threads=args.threads,
        label_smoothing=args.label_smoothing,
        online_augmentation=not args.no_online_augmentation,
    )

    def log_epoch(record: EpochRecord) -> None:
        logger.info(
            "epoch %3d  train_loss %.4f  val_loss %.4f  val_acc %.4f  %.1f s",
            record.epoch,
            record.train_loss,
            record.val_loss,
            record.val_accuracy,
            record.seconds,
        )

    result = train_classifier(
        train_images, train_labels, images[val], labels[val], classes, settings, on_epoch=log_epoch
    )
    model = load_inference_model(result.checkpoint)
    started = time.perf_counter()
    probabilities = predict_proba(model, images[test])
    predict_seconds = time.perf_counter() - started
    predicted = probabilities.argmax(1)
    wrong = [
        f"{files[i]} -> {classes[p]}" for i, p in zip(test, predicted, strict=True) if p != labels[i]
    ]
    return {
        "settings": settings.model_dump(mode="json"),
        "augment_copies": args.augment_copies,
        "train_images": len(train_labels),
        "test_accuracy": round(float((predicted == labels[test]).mean()), 4),
        "test_errors": wrong,
        "best_epoch": result.best_epoch,
        "best_val_accuracy": result.history[result.best_epoch - 1].val_accuracy,
        "train_seconds": round(result.train_seconds, 1),
        "augment_seconds": round(augment_seconds, 1),
        "seconds_per_epoch": round(float(np.mean([r.seconds for r in result.history])), 2),
        "test_predict_ms_per_image": round(1000 * predict_seconds / len(test), 2),
    }


def main(argv: list[str] | None = None) -> int:
    from resources.classify.trainer import TrainSettings

    defaults = TrainSettings(backbone="none")  # this script studies the from-scratch recipe
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="the neu_det folder (holding IMAGES/ and Validation_Images/)")
    parser.add_argument("--estimate", nargs="+", metavar="ARCH@SIZE", help="only estimate seconds per epoch")
    parser.add_argument("--subset", type=int, default=192, help="training images per estimate")
    parser.add_argument("--arch", default=defaults.arch)
    parser.add_argument("--image-size", type=int, default=defaults.image_size)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing)
    parser.add_argument("--no-online-augmentation", action="store_true")
    parser.add_argument("--augment-copies", type=int, default=0, help="offline 'manufacturing' copies per image")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=defaults.num_threads)
    parser.add_argument("--out", type=Path, help="append the JSON result to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.estimate:
        rows = estimate(args.dataset, args.estimate, args.subset, args.batch_size, args.threads)
    else:
        rows = [full_run(args.dataset, args)]
    for row in rows:
        line = json.dumps(row)
        sys.stdout.write(line + "\n")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as handle:
                handle.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
