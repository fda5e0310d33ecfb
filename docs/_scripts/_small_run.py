"""The small training run the docs figures train at build time (shared by ``fig_*.py``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from camseg_pcam.synthetic_io import write_pcam
from camseg_pcam.train import TrainConfig


@contextlib.contextmanager
def small_run(train: Callable[[TrainConfig], Any]) -> Iterator[Path]:
    """Run ``train`` on 384 synthetic PCam patches (small model, 4 epochs, CPU, <= 2 threads).

    Yields the run folder (it and the data are removed afterwards); torch keeps at
    most 2 threads inside the block, so the figures cost the same on any machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data, run = Path(tmp) / "data", Path(tmp) / "run"
            write_pcam(data, n=(384, 64, 64), seed=1)
            cfg = TrainConfig(
                data=str(data), out=str(run), model="small", width=8, epochs=4,
                batch_size=64, lr=3e-3, warmup_epochs=0.5, patience=0, seed=0,
                device="cpu", progress=False,
            )  # fmt: skip
            train(cfg)
            yield run
    finally:
        torch.set_num_threads(threads)
