from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from camseg.slide import (
    ArrayReader,
    atomic_save,
    dist_info,
    merge_slide_maps,
    run_sharded,
    shard_indices,
    sliding_window,
)


def _slide(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (24, 40, 3), dtype=np.uint8)


def _fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return t.mean(dim=(1, 2, 3)), t[:, 0] * t[:, 1]


def _infer(i: int) -> dict[str, torch.Tensor]:
    out = sliding_window(ArrayReader(_slide(i)), _fn, tile=8, stride=4, progress=False)
    return {"cam": out.cam, "tile_probs": out.tile_probs}


def _worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        assert dist_info() == (rank, world_size)
        merged = run_sharded(list(range(5)), _infer, out_dir, keys=[f"s{i}" for i in range(5)])
        assert (merged is None) == (rank != 0)
        # tile-level sharding of one slide: each rank stitches its tiles, rank 0 merges
        part = sliding_window(
            ArrayReader(_slide(9)),
            _fn,
            tile=8,
            stride=4,
            shard=(rank, world_size),
            progress=False,
        )
        atomic_save(part, os.path.join(out_dir, f"tiles-{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_shard_and_merge(tmp_path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert sorted(p.name for p in tmp_path.glob("shard-*")) == [
        "shard-00000-of-00002.pt",
        "shard-00001-of-00002.pt",
    ]
    merged = torch.load(tmp_path / "merged.pt", weights_only=False)
    assert list(merged) == [f"s{i}" for i in range(5)]
    for i in range(5):
        torch.testing.assert_close(merged[f"s{i}"]["cam"], _infer(i)["cam"])
    parts = [torch.load(tmp_path / f"tiles-{r}.pt", weights_only=False) for r in range(2)]
    assert len(parts[0].coords) + len(parts[1].coords) == 5 * 9
    full = sliding_window(ArrayReader(_slide(9)), _fn, tile=8, stride=4, progress=False)
    both = merge_slide_maps(parts)
    torch.testing.assert_close(both.cam, full.cam)
    torch.testing.assert_close(both.prob, full.prob)
    torch.testing.assert_close(both.weight, full.weight)


def test_run_sharded_without_process_group(tmp_path) -> None:
    # two "ranks" run one after the other in this process; rank 0 polls for shard 1
    assert run_sharded([10, 11, 12], lambda v: v + 1, tmp_path, rank=1, world_size=2) is None
    merged = run_sharded([10, 11, 12], lambda v: v + 1, tmp_path, rank=0, world_size=2)
    assert merged == {0: 11, 1: 12, 2: 13}
    assert torch.load(tmp_path / "merged.pt") == merged
    assert not list(tmp_path.glob("*.tmp"))


def test_run_sharded_times_out_on_missing_shard(tmp_path) -> None:
    with pytest.raises(TimeoutError, match="shard-00001-of-00002"):
        run_sharded([1, 2], lambda v: v, tmp_path, rank=0, world_size=2, timeout=0.3)


def test_run_sharded_bad_input(tmp_path) -> None:
    with pytest.raises(ValueError, match="one key per item"):
        run_sharded([1, 2], lambda v: v, tmp_path, keys=["a"])
    with pytest.raises(ValueError, match="unique"):
        run_sharded([1, 2], lambda v: v, tmp_path, keys=["a", "a"])
    with pytest.raises(ValueError, match=r"`rank` to be in \[0, 1\]"):
        run_sharded([1, 2], lambda v: v, tmp_path, rank=2, world_size=2)


def test_shard_indices_partition() -> None:
    for n in range(0, 9):
        for world in range(1, 4):
            shards = [shard_indices(n, rank=r, world_size=world) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
    with pytest.raises(ValueError, match="`world_size`"):
        shard_indices(3, rank=0, world_size=0)


def test_atomic_save_leaves_no_partial_file(tmp_path) -> None:
    class Boom:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    target = tmp_path / "sub" / "x.pt"
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"x": Boom()}, target)
    assert not target.exists() and list((tmp_path / "sub").iterdir()) == []
    atomic_save([1, 2], target)
    assert torch.load(target) == [1, 2]


def test_merge_slide_maps_bad_input() -> None:
    a = sliding_window(ArrayReader(_slide(0)), _fn, tile=8, progress=False)
    b = sliding_window(ArrayReader(_slide(0)[:16]), _fn, tile=8, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        merge_slide_maps([])
    with pytest.raises(ValueError, match="same slide, level and output size"):
        merge_slide_maps([a, b])
    with pytest.raises(ValueError, match="same microns per pixel"):
        merge_slide_maps([a, a._replace(mpp=0.5)])
    with pytest.raises(TypeError, match="`shard` to be a tuple"):
        sliding_window(ArrayReader(_slide(0)), _fn, tile=8, shard=[0, 2], progress=False)


def test_merge_slide_maps_wrong_types() -> None:
    with pytest.raises(TypeError, match=r"`parts\[0\]` is"):
        merge_slide_maps([5])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="`parts` to be a sequence of SlideMaps"):
        merge_slide_maps(5)  # type: ignore[arg-type]
