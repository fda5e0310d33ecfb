"""The small training run the docs figures train at build time (shared by ``fig_*.py``)."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from camseg_pcam.train import TrainConfig, train_small_synthetic


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
            train_small_synthetic(tmp, n=(384, 64, 64), epochs=4, trainer=train)
            yield Path(tmp) / "run"
    finally:
        torch.set_num_threads(threads)
