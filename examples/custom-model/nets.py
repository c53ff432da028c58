"""A network of your own for trainlab: any callable that returns an nn.Module giving [batch, classes] logits.

trainlab calls it as ``TinyNet(input_shape=(C, H, W), num_classes=K, **args)``, args from the study's
``model.args``.
"""

from torch import nn


class TinyNet(nn.Module):
    """Two 3x3 convolutions of ``width`` channels, each followed by ReLU and a 2x2 max-pool, then a linear layer."""

    def __init__(self, input_shape, num_classes, width=16):
        super().__init__()
        channels, height, width_px = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(width * (height // 4) * (width_px // 4), num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
