"""A small CNN that reads the style blend of a shapes-world image: softmax over the 7 styles ~ blend weights.

Trained separately (``fit.py``) on fresh renders, pure and two-style blends, with the blend weights as soft
targets; independent of the reward model and its encoders.
"""

from __future__ import annotations

import torch
from torch import nn

from ..shapes.world import STYLES


class StyleNet(nn.Module):
    def __init__(self, width: int = 32, n_styles: int = len(STYLES)):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(3, width, 1), block(width, width, 2), block(width, 2 * width, 1), block(2 * width, 2 * width, 2)
        )
        self.head = nn.Linear(4 * width, n_styles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, 3, 64, 64) in [0, 1] -> logits (n, 7)."""
        f = self.features(x * 2 - 1)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.flatten(2).std(dim=2)], dim=1)
        return self.head(pooled)


def to_tensor(images) -> torch.Tensor:
    import numpy as np

    arr = np.stack([np.asarray(i, dtype=np.float32) for i in images]) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def predict(net: StyleNet, images, batch: int = 256):
    import numpy as np

    net.eval()
    out = []
    for i in range(0, len(images), batch):
        out.append(torch.softmax(net(to_tensor(images[i : i + batch])), dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(STYLES)), dtype=np.float32)
