"""Files written atomically get the mode a plain ``open()`` would give them (issue 12)."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from camseg.slide import atomic_save, write_geojson


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_files_respect_the_umask(tmp_path, umask: int) -> None:
    old = os.umask(umask)
    try:
        saved = atomic_save({"a": 1}, tmp_path / "x.pt")
        plain = tmp_path / "plain"
        with open(plain, "w"):
            pass
        geo = write_geojson(tmp_path / "m.geojson", torch.zeros(4, 4, dtype=torch.bool))
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    assert stat.S_IMODE(os.stat(plain).st_mode) == expected
    assert stat.S_IMODE(os.stat(saved).st_mode) == expected
    assert stat.S_IMODE(os.stat(geo).st_mode) == expected
    assert torch.load(saved) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.geojson", "plain", "x.pt"]
