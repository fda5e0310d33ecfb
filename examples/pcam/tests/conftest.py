from __future__ import annotations

from pathlib import Path

import pytest
from camseg_pcam.synthetic_io import write_pcam


@pytest.fixture(scope="session")
def pcam_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny synthetic PCam files (48/24/24 patches), shared by the example's tests."""
    root = tmp_path_factory.mktemp("pcam")
    write_pcam(root, n=(48, 24, 24), seed=3, patches_per_slide=8)
    return root
