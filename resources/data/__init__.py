"""Data engines shared by every task: images, labels and their quality, splits, augmentation,
variants, operator feedback, and the generated sample line."""
