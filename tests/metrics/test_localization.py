import math

import pytest
import torch

from camseg.metrics import energy_pointing_game, label_region_energy, pointing_game


def test_pointing_game_hits_misses_and_empty() -> None:
    maps = torch.zeros(4, 6, 6)
    maps[:, 2, 2] = 1.0
    masks = torch.zeros(4, 6, 6, dtype=torch.bool)
    masks[0, 2, 2] = True  # hit
    masks[1, 5, 5] = True  # miss; distance sqrt(18) ~ 4.24
    masks[2, 2, 4] = True  # miss at tolerance 1, hit at tolerance 2
    # image 3: empty mask -> excluded
    got = pointing_game(maps, masks, average="none")
    assert got[:3].tolist() == [1.0, 0.0, 0.0] and math.isnan(float(got[3]))
    assert float(pointing_game(maps, masks)) == pytest.approx(1 / 3)
    assert pointing_game(maps, masks, tolerance=1, average="none")[:3].tolist() == [1, 0, 0]
    assert pointing_game(maps, masks, tolerance=2, average="none")[:3].tolist() == [1, 0, 1]
    # disk, not square: (5,5) is 4.24 px away -> miss at 4, hit at 5
    assert pointing_game(maps, masks, tolerance=4, average="none")[1] == 0
    assert pointing_game(maps, masks, tolerance=5, average="none")[1] == 1


def test_pointing_game_ties_and_all_empty() -> None:
    flat = torch.zeros(1, 4, 4)  # e.g. a gated map
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = True
    assert pointing_game(flat, mask).item() == 0.0  # not every maximum is inside
    assert pointing_game(flat, torch.ones(1, 4, 4, dtype=torch.bool)).item() == 1.0
    two = torch.zeros(1, 4, 4)
    two[0, 0, 0] = two[0, 3, 3] = 1.0
    assert pointing_game(two, mask).item() == 0.0
    assert math.isnan(float(pointing_game(flat, torch.zeros_like(mask))))


def test_energy_pointing_game() -> None:
    maps = torch.tensor(
        [[[3.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    )
    masks = torch.tensor([[[True, False], [False, False]]] * 3)
    got = energy_pointing_game(maps, masks, average="none")
    assert got[:2].tolist() == [0.75, 0.25] and math.isnan(float(got[2]))
    assert float(energy_pointing_game(maps, masks)) == pytest.approx(0.5)
    empty = torch.zeros(3, 2, 2, dtype=torch.bool)
    assert torch.isnan(energy_pointing_game(maps, empty, average="none")).all()


def test_label_region_energy_scaling() -> None:
    maps = torch.ones(1, 96, 96)
    assert float(label_region_energy(maps, average="none")[0]) == pytest.approx((32 / 96) ** 2)
    small = torch.zeros(2, 12, 12)
    small[0, 4:8, 4:8] = 1.0  # exactly the scaled centre 4x4
    small[1, 0, 0] = 1.0
    assert label_region_energy(small, average="none").tolist() == [1.0, 0.0]
    region = torch.zeros(12, 12, dtype=torch.bool)
    region[0, 0] = True
    assert label_region_energy(small, region=region, average="none").tolist() == [0.0, 1.0]
    assert math.isnan(float(label_region_energy(torch.zeros(1, 8, 8), average="none")[0]))
    assert float(label_region_energy(maps, region=96, average="macro")) == 1.0


def test_errors() -> None:
    maps = torch.rand(2, 4, 4)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="`maps` to be finite"):
        pointing_game(torch.full((2, 4, 4), float("nan")), m)
    with pytest.raises(TypeError, match=r"`masks` to be a torch\.bool mask"):
        pointing_game(maps, m.float())
    with pytest.raises(ValueError, match="same shape"):
        pointing_game(maps, m[:, :3])
    with pytest.raises(ValueError, match="`tolerance` to be an int >= 0"):
        pointing_game(maps, m, tolerance=-1)
    with pytest.raises(TypeError, match="`tolerance` to be an int"):
        pointing_game(maps, m, tolerance=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`average` to be one of"):
        pointing_game(maps, m, average="sum")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`maps` to be >= 0"):
        energy_pointing_game(maps - 1, m)
    with pytest.raises(ValueError, match=r"`region` to be in \[1, 96\]"):
        label_region_energy(maps, region=100)
    with pytest.raises(ValueError, match="rounds to zero"):
        label_region_energy(maps, region=4)
    with pytest.raises(TypeError, match="`region` to be an int"):
        label_region_energy(maps, region=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maps' spatial shape"):
        label_region_energy(maps, region=torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="floating-point"):
        label_region_energy(m)
