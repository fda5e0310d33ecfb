"""Shared fixtures: tiny models whose CAMs can be reasoned about."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyGAPNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> GAP -> linear: a CAM-friendly classifier."""

    def __init__(self, num_classes: int = 3, width: int = 6) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def tiny_net_cls() -> type[TinyGAPNet]:
    return TinyGAPNet


@pytest.fixture
def tiny_net() -> TinyGAPNet:
    torch.manual_seed(0)
    return TinyGAPNet()


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 12, 12, generator=g)
