"""Model code more than one task uses: the bundled backbone catalogue, the start of a model's weights
(backbone, local file, registered model) and the gradient-training settings."""
