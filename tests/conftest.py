"""Shared fixtures: tiny models whose CAMs can be reasoned about, devices and dtypes.

``device`` and ``dtype`` follow kornia's ``BaseTester``: a test that takes them
runs once per device (cpu, and cuda when present) and per floating dtype
(float32, float64, bfloat16), so "output on the caller's device and dtype" is
tested everywhere it is claimed. ``CAMSEG_TEST_DEVICES`` / ``CAMSEG_TEST_DTYPES``
(comma-separated) narrow the sets, e.g. ``CAMSEG_TEST_DTYPES=float64``.

Hypothesis: the ``ci`` profile (derandomized, the failing example's blob
printed so it reproduces) is loaded when the ``CI`` environment variable is
set; ``HYPOTHESIS_PROFILE`` picks a profile by name.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from torch import nn

settings.register_profile(
    "ci",
    derandomize=True,
    print_blob=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None)
_profile = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
if _profile is not None:
    settings.load_profile(_profile)


def _selected(env: str, available: list[str]) -> list[str]:
    wanted = os.environ.get(env)
    if not wanted:
        return available
    chosen = [name.strip() for name in wanted.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise pytest.UsageError(f"{env} names {unknown}, but only {available} are available here.")
    return chosen


DEVICES = _selected(
    "CAMSEG_TEST_DEVICES", ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
)
DTYPES = _selected("CAMSEG_TEST_DTYPES", ["float32", "float64", "bfloat16"])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every test device: cpu, and cuda when one is present."""
    return torch.device(request.param)


@pytest.fixture(params=DTYPES)
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """Every floating dtype the library promises to keep: float32, float64, bfloat16."""
    return getattr(torch, request.param)


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    """``atol``/``rtol`` for comparing a result in ``dtype`` with a float64 reference."""
    if dtype == torch.bfloat16:
        return {"atol": 3e-2, "rtol": 3e-2}
    if dtype == torch.float32:
        return {"atol": 1e-5, "rtol": 1e-4}
    return {"atol": 1e-10, "rtol": 1e-10}


@pytest.fixture
def tol(dtype: torch.dtype) -> dict[str, float]:
    """Tolerances for the current ``dtype`` against a float64 reference."""
    return tolerance(dtype)


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
