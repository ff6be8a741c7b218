"""Convolutional nets for image inputs of any size (global pooling before the head)."""

from __future__ import annotations

from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head: the fast default for digits and MNIST."""

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, width: int = 32):
        super().__init__()
        cin = input_shape[0]
        self.block1 = _conv_bn(cin, width)
        self.block2 = nn.Sequential(_conv_bn(width, 2 * width, stride=2))
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(2 * width * 4, num_outputs)

    def forward(self, x):
        return self.head(self.pool(self.block2(self.block1(x))))


class AllCNN(nn.Module):
    """All-convolutional net (Springenberg et al. 2015) with BatchNorm, as in the seed papers.

    Downsampling is by strided convolutions; ``width`` scales the 96/192 channel counts.
    """

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int, width: float = 1.0, dropout: float = 0.0):
        super().__init__()
        c1, c2 = max(8, int(96 * width)), max(16, int(192 * width))
        cin = input_shape[0]
        self.block1 = nn.Sequential(_conv_bn(cin, c1), _conv_bn(c1, c1), _conv_bn(c1, c1, stride=2))
        self.block2 = nn.Sequential(_conv_bn(c1, c2), _conv_bn(c2, c2), _conv_bn(c2, c2, stride=2))
        self.block3 = nn.Sequential(_conv_bn(c2, c2), _conv_bn(c2, c2, kernel=1))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c2, num_outputs)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x)))
        return self.head(self.dropout(self.pool(x)))
