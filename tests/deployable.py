"""A from-scratch model honouring the trainer's contract, for export and edge tests (not a test module)."""


def deployable_model(seed: int, num_classes: int):
    """0..255 RGB in, normalisation inside, softmax out: what the exporter and the devices expect."""
    import timm
    import torch

    class Deployable(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255)
            self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net((images - self.mean) / self.std), dim=1)

    torch.manual_seed(seed)
    return Deployable(timm.create_model("resnet10t", pretrained=False, num_classes=num_classes)).eval()


def smooth_images(n: int, size: int, seed: int = 0):
    """uint8 N×size×size×3 images with structure (blocky noise), so models give varied outputs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, size // 4, size // 4, 3)).astype(np.float32)
    smooth = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)
    return np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8)
