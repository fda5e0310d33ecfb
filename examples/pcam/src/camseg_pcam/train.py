"""Training: one loop for CPU and GPU, one process or many (DDP through ``torchrun``).

:func:`train` reads PCam (official HDF5, torchvision's layout, or Kaggle's
layout), trains a :class:`~camseg_pcam.models.GAPClassifier` with
cross-entropy plus optional CAM-regularisation terms from :mod:`camseg.losses`,
validates every epoch (AUC, accuracy, NLL), logs every loss component to
``metrics.csv`` / ``metrics.jsonl`` (and TensorBoard when asked), writes
``last.pt`` atomically every epoch and ``best.pt`` when the validation AUC
improves, stops early when it stops improving, and resumes from ``last.pt``.

Reproducibility: the model is initialised from ``seed``; the sampler order and
the augmentation draws of epoch ``e`` are seeded from ``(seed, e, rank)``;
the global RNG states (dropout) are saved in every checkpoint. With
``deterministic=True`` PyTorch's deterministic algorithms are enforced. A run
interrupted after epoch ``e`` and resumed gives the same model as an
uninterrupted run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from camseg import functional as CF
from camseg import losses as L
from camseg import metrics
from camseg import postprocess as PP
from camseg.slide import atomic_save, dist_info
from camseg_pcam._validate import check_one_of, check_positive_int, describe
from camseg_pcam.augment import Augment, label_crops
from camseg_pcam.data import (
    KagglePCam,
    PCamBatchSampler,
    PCamFormatError,
    PCamH5,
    collate_batch,
    find_pcam_files,
    read_meta,
    split_by_slide,
)
from camseg_pcam.models import HEADS, MIL_POOLINGS, MODELS, GAPClassifier, build_model
from camseg_pcam.regularize import CAM_TERMS, CamRegularizer

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "TrainInterrupted",
    "build_datasets",
    "load_checkpoint_model",
    "load_config",
    "predict_loader",
    "read_checkpoint",
    "to_float_images",
    "train",
    "train_small_synthetic",
]

Amp = Literal["auto", "none", "bf16", "fp16"]


class TrainInterrupted(RuntimeError):
    """Raised by an ``on_epoch_end`` callback to stop a run (the checkpoint stays)."""


@dataclass
class TrainConfig:
    """All settings of a training run (the CLI flags map one to one onto these).

    Attributes:
        data: the data folder (PCam HDF5 files, ``pcam/`` sub-folder, or Kaggle layout).
        out: the run folder (checkpoints, metrics, config).
        data_format: ``"auto"``, ``"pcam"`` or ``"kaggle"``.
        model: one of :data:`camseg_pcam.models.MODELS`.
        weights: a local pretrained state dict for a torchvision backbone.
        width: the small CNN's first-stage width.
        norm: the small CNN's normalisation (``"batch"`` or ``"group"``).
        dropout: dropout before the head.
        epochs: the maximum number of epochs.
        batch_size: the global batch size (over all DDP processes).
        lr: the peak learning rate.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov momentum 0.9).
        warmup_epochs: linear warm-up length (fractions allowed), then cosine decay.
        balance: ``"sampler"`` (class-balanced sampling), ``"weights"`` (class
            weights in the loss) or ``"none"``.
        augment: D4 + HED jitter + brightness/contrast on the device.
        hed_sigma: HED jitter strength.
        amp: ``"auto"`` (bf16 on a GPU that has it, else fp16 on GPU; none on CPU),
            ``"none"``, ``"bf16"``, ``"fp16"``.
        channels_last: use the channels-last memory format (``None``: on GPU only).
        compile: wrap the model in :func:`torch.compile`.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        workers: DataLoader worker processes per rank.
        seed: the random seed.
        deterministic: enforce deterministic algorithms.
        patience: early-stopping patience in epochs (0 disables).
        max_steps_per_epoch: cap on training steps per epoch (0: no cap).
        cam: CAM-regularisation weights by term name (see
            :data:`camseg_pcam.regularize.CAM_TERMS`); empty for none.
        cam_size: the resolution the maps are upsampled to before the losses
            (0: feature resolution).
        cam_warmup_epochs: linear warm-up of the CAM weights (fractions allowed).
        val_fraction: for the Kaggle layout (no validation split): held-out share.
        holdout_fraction: hold out this share of the PCam train split, by slide
            (meta CSV ``wsi``), for pixel-level evaluation (real PCam has masks
            for train only); 0 trains on all of it.
        tensorboard: also log to TensorBoard (needs the ``tensorboard`` package).
        progress: show tqdm progress bars and one summary line per epoch.
        head: ``"gap"`` (global average pooling) or ``"mil"`` (the linear head at
            every location, pooled over the label region: the PCam rule as
            multiple-instance learning, see :class:`camseg_pcam.models.GAPClassifier`).
        mil_pooling: how a ``"mil"`` head pools its per-location logits over the
            label region: ``"lse"`` (log-mean-exp, temperature 1) or ``"max"`` (the
            label rule itself; the ``wsss`` preset's choice).
        dense: output stride 8 for the torchvision backbones (12×12 maps on 96×96).
        init: start from the weights of this checkpoint.
        teacher: a checkpoint whose per-location tumor probabilities give
            pseudo-masks (:func:`camseg.postprocess.pseudo_masks`) for a dense loss
            (:func:`camseg.losses.pseudo_mask_loss`): self-training.
        teacher_transforms: average the teacher's probabilities over the rotations
            and reflections of the batch (:func:`camseg.functional.transform_mean`):
            ``"d4"`` (8 calls), ``"c4"``, ``"flips"`` or ``"none"`` (one call).
        pseudo_margin: pseudo-masks: foreground at p >= 0.5 + margin, background at
            p <= 0.5 - margin, the rest ignored.
        pseudo_weight: weight of the dense loss.
        mask_supervision: train the per-location head on the train split's true
            masks with the same dense loss (fully supervised; a ceiling).
        crop: train on random crops of this side that hold the label region
            (:func:`camseg_pcam.augment.label_crops`, offsets multiples of 8; the
            ``"mil"`` head pools over the moved region); 0 trains on whole patches.
        preset: the preset that wrote this config (``"wsss"``), informational.
    """

    data: str = "data"
    out: str = "runs/pcam"
    data_format: Literal["auto", "pcam", "kaggle"] = "auto"
    model: str = "small"
    weights: str | None = None
    width: int = 16
    norm: Literal["batch", "group"] = "batch"
    dropout: float = 0.0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    warmup_epochs: float = 0.5
    balance: Literal["sampler", "weights", "none"] = "sampler"
    augment: bool = True
    hed_sigma: float = 0.05
    amp: Amp = "auto"
    channels_last: bool | None = None
    compile: bool = False
    device: str = "auto"
    workers: int = 0
    seed: int = 0
    deterministic: bool = False
    patience: int = 5
    max_steps_per_epoch: int = 0
    cam: dict[str, float] = field(default_factory=dict)
    cam_size: int = 0
    cam_warmup_epochs: float = 0.0
    val_fraction: float = 0.1
    holdout_fraction: float = 0.0
    tensorboard: bool = False
    progress: bool = True
    head: Literal["gap", "mil"] = "gap"
    mil_pooling: Literal["lse", "max"] = "lse"
    dense: bool = False
    init: str | None = None
    teacher: str | None = None
    teacher_transforms: Literal["none", "d4", "c4", "flips"] = "none"
    pseudo_margin: float = 0.25
    pseudo_weight: float = 1.0
    mask_supervision: bool = False
    crop: int = 0
    preset: str | None = None

    def validate(self) -> None:
        """Check the settings.

        Raises:
            ValueError: for an unknown option or a value out of range.
            TypeError: for a count that is not an int.
        """
        check_one_of(self.model, "model", MODELS)
        check_one_of(self.optimizer, "optimizer", ("adamw", "sgd"))
        check_one_of(self.balance, "balance", ("sampler", "weights", "none"))
        check_one_of(self.amp, "amp", ("auto", "none", "bf16", "fp16"))
        check_one_of(self.data_format, "data_format", ("auto", "pcam", "kaggle"))
        check_one_of(self.norm, "norm", ("batch", "group"))
        check_positive_int(self.epochs, "epochs")
        check_positive_int(self.batch_size, "batch_size")
        check_positive_int(self.workers, "workers", minimum=0)
        check_positive_int(self.max_steps_per_epoch, "max_steps_per_epoch", minimum=0)
        if not self.lr > 0:
            raise ValueError(f"Expected `lr` > 0, but got {self.lr!r}.")
        for name in self.cam:
            check_one_of(name, "cam", CAM_TERMS)
        check_one_of(self.head, "head", HEADS)
        check_one_of(self.mil_pooling, "mil_pooling", MIL_POOLINGS)
        check_one_of(self.teacher_transforms, "teacher_transforms", ("none", "d4", "c4", "flips"))
        if not 0.0 <= self.pseudo_margin < 0.5:
            raise ValueError(
                f"Expected `pseudo_margin` to lie in [0, 0.5), but got {self.pseudo_margin!r}."
            )
        if not self.pseudo_weight >= 0:
            raise ValueError(f"Expected `pseudo_weight` >= 0, but got {self.pseudo_weight!r}.")
        check_positive_int(self.crop, "crop", minimum=0)
        if self.crop and self.crop % 8:
            raise ValueError(f"Expected `crop` to be 0 or a multiple of 8, but got {self.crop!r}.")
        if self.teacher_transforms != "none" and not self.teacher:
            raise ValueError(
                "Expected `teacher_transforms` to be 'none' without a `teacher` (it averages "
                f"the teacher's probabilities), but got {self.teacher_transforms!r}."
            )
        if self.teacher and self.mask_supervision:
            raise ValueError(
                "Expected at most one of `teacher` and `mask_supervision`, but got both."
            )


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    r"""Read a run configuration (TOML, or a run's saved ``config.json``) into settings.

    A ``.json`` file is read as JSON (the ``config.json`` every run writes, so a
    run can be repeated with ``--config RUN/config.json``); anything else as TOML.
    Top-level keys are :class:`TrainConfig` fields; a ``[cam]`` table gives the
    CAM-regularisation weights, e.g.::

        model = "resnet18"
        epochs = 20
        [cam]
        suppression = 1.0
        size = 0.1

    Args:
        path: the TOML file.

    Returns:
        The settings as a dictionary.

    Raises:
        ValueError: for a key that is not a :class:`TrainConfig` field.
        RuntimeError: on Python 3.10 without the ``tomli`` package.

    Example:
        >>> import tempfile
        >>> p = Path(tempfile.mkdtemp()) / "run.toml"
        >>> _ = p.write_text('epochs = 3\n[cam]\nsuppression = 0.5\n')
        >>> load_config(p)
        {'epochs': 3, 'cam': {'suppression': 0.5}}
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as err:
            raise RuntimeError(
                "Reading TOML configs needs Python >= 3.11 or `pip install tomli`."
            ) from err
    if str(path).endswith(".json"):  # a run's own saved config.json
        try:
            settings = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"Expected {str(path)!r} to hold JSON, but: {err}.") from None
        if not isinstance(settings, dict):
            raise ValueError(f"Expected {str(path)!r} to hold a JSON object of settings.")
    else:
        with open(path, "rb") as fh:
            try:
                settings = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"Expected {str(path)!r} to hold TOML, but: {err}.") from None
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise ValueError(
            f"Expected the keys of {str(path)!r} to be TrainConfig fields, but got {unknown}."
        )
    return settings


# --------------------------------------------------------------------------- helpers


def to_float_images(images: torch.Tensor, *, channels_last: bool = False) -> torch.Tensor:
    """Turn a uint8 batch ``(B, H, W, 3)`` into float ``(B, 3, H, W)`` in [0, 1].

    Args:
        images: uint8 ``(B, H, W, 3)`` (as read by the datasets).
        channels_last: return the channels-last memory format (no copy needed:
            the permuted HWC batch already has that layout).

    Returns:
        float32 ``(B, 3, H, W)``.

    Example:
        >>> to_float_images(torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)).shape
        torch.Size([1, 3, 2, 2])
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("Expected a CUDA device for `device='cuda'`, but none is available.")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "none" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def build_datasets(
    cfg: TrainConfig,
) -> tuple[Dataset[dict[str, torch.Tensor]], Dataset[dict[str, torch.Tensor]], torch.Tensor]:
    """The training and validation datasets of a config, and the training labels.

    PCam: the ``train`` split (less the held-out slides when
    ``holdout_fraction > 0``) and the ``valid`` split. Kaggle (no validation split): a
    seeded random ``val_fraction`` of the patches (a patch-level split, which
    is optimistic: Kaggle's layout has no slide names).

    Args:
        cfg: the run configuration.

    Returns:
        ``(train_set, val_set, train_labels (N,))``.

    Raises:
        PCamFormatError: for missing or malformed files.
    """
    fmt = cfg.data_format
    if fmt == "auto":
        fmt = "kaggle" if (Path(cfg.data) / "train_labels.csv").exists() else "pcam"
    if fmt == "pcam":
        files = find_pcam_files(cfg.data, "train")
        keep = None
        if cfg.holdout_fraction > 0:
            if files.meta is None:
                raise PCamFormatError(
                    f"Expected a meta CSV next to {str(files.x)!r} for `holdout_fraction` "
                    "(the slide-wise split needs the `wsi` column), but there is none."
                )
            keep, _ = split_by_slide(
                read_meta(files.meta)["wsi"], fraction=cfg.holdout_fraction, seed=cfg.seed
            )
        if cfg.mask_supervision and files.mask is None:
            raise PCamFormatError(
                f"Expected a train mask file next to {str(files.x)!r} for `mask_supervision`, "
                "but there is none."
            )
        train_set = PCamH5(files, masks=cfg.mask_supervision, indices=keep)
        val_set = PCamH5(find_pcam_files(cfg.data, "valid"), masks=False)
        return train_set, val_set, train_set.labels
    full = KagglePCam(cfg.data)
    n = len(full)
    names = np.array([f"patch{i}" for i in range(n)])
    keep, held = split_by_slide(names, fraction=cfg.val_fraction, seed=cfg.seed)
    return (
        torch.utils.data.Subset(full, keep.tolist()),
        torch.utils.data.Subset(full, held.tolist()),
        full.labels[torch.from_numpy(keep)],
    )


def _loader(
    ds: Dataset[dict[str, torch.Tensor]],
    sampler: PCamBatchSampler,
    workers: int,
    pin: bool,
) -> DataLoader[dict[str, torch.Tensor]]:
    return DataLoader(
        ds,
        batch_sampler=sampler,
        collate_fn=collate_batch if hasattr(ds, "__getitems__") else None,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


@torch.inference_mode()
def predict_loader(
    model: nn.Module,
    loader: DataLoader[dict[str, torch.Tensor]],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tumour probabilities and labels of every batch of a loader.

    Args:
        model: a classifier returning 2 logits.
        loader: yields batches with ``image`` uint8 ``(B, H, W, 3)`` and ``label``.
        device: where to compute.
        amp_dtype: autocast dtype or ``None``.
        channels_last: feed channels-last images.

    Returns:
        ``(probs (N,), labels (N,))`` on the CPU, float32 and int64.
    """
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for batch in loader:
        x = to_float_images(
            batch["image"].to(device, non_blocking=True), channels_last=channels_last
        )
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        probs.append(logits.float().softmax(1)[:, 1].cpu())
        labels.append(batch["label"])
    model.train(was_training)
    return torch.cat(probs), torch.cat(labels)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total - warmup, 1)
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, empty, not a checkpoint)."""


def read_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`train` (``weights_only=True``).

    Args:
        path: ``best.pt`` or ``last.pt`` of a run folder.
        map_location: where to put the tensors.

    Returns:
        The checkpoint dictionary (``model``, ``config``, ``epoch`` ...).

    Raises:
        FileNotFoundError: if the file does not exist.
        CheckpointError: if it is truncated, empty or not a checkpoint of this package;
            the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Missing checkpoint {str(p)!r}. Hint: train first.")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many kinds for bad bytes
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise CheckpointError(
            f"Cannot read checkpoint {str(p)!r} ({p.stat().st_size} bytes): it is truncated, "
            f"empty or not a torch checkpoint ({type(err).__name__}: {first}). "
            "Hint: delete it and train again."
        ) from None
    if not isinstance(ckpt, dict) or not {"model", "config"} <= set(ckpt):
        raise CheckpointError(
            f"Expected checkpoint {str(p)!r} to hold the keys 'model' and 'config' of a "
            "camseg-pcam run, but it does not. Hint: pass a best.pt or last.pt of a run."
        )
    return ckpt


def _build_from_config(cfg: Mapping[str, Any], weights: str | None = None) -> GAPClassifier:
    return build_model(
        cfg["model"],
        weights=weights,
        width=cfg["width"],
        norm=cfg["norm"],
        dropout=cfg["dropout"],
        head=cfg.get("head", "gap"),
        dense=bool(cfg.get("dense", False)),
        mil_pooling=cfg.get("mil_pooling", "lse"),  # runs written before the option: "lse"
    )


def load_checkpoint_model(path: str | os.PathLike[str], *, device: str = "cpu") -> GAPClassifier:
    """Rebuild a trained model from a checkpoint written by :func:`train`.

    Args:
        path: ``best.pt`` or ``last.pt`` of a run folder.
        device: where to put the model.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: if the checkpoint does not exist.
        CheckpointError: if it cannot be read.
    """
    ckpt = read_checkpoint(path)
    model = _build_from_config(ckpt["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(
            f"Expected checkpoint {str(path)!r} to fit its own config, but the weights do "
            f"not: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).eval()


def _write_history(out: Path, history: list[dict[str, Any]]) -> None:
    if not history:
        return
    keys: list[str] = []
    for row in history:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    _atomic_text(out / "metrics.csv", buf.getvalue())
    _atomic_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))


# --------------------------------------------------------------------------- training


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train a model as configured; the entry point of ``camseg-pcam train``.

    Under ``torchrun`` (environment variables ``RANK``/``WORLD_SIZE``) the run
    is data-parallel: NCCL on GPUs, gloo on CPUs; the global batch is split
    evenly over the processes, only rank 0 validates and writes files.

    Args:
        cfg: the configuration.
        resume: continue from ``cfg.out/last.pt`` (error if it does not exist).
        on_epoch_end: called as ``on_epoch_end(epoch, row)`` after each epoch's
            checkpoint is written (raise :class:`TrainInterrupted` to stop).

    Returns:
        A summary: ``best_val_auc``, ``best_epoch``, ``epochs_run``, ``history``
        (one dict per epoch), ``out``.

    Raises:
        FileNotFoundError: if ``resume`` and there is no checkpoint.
        PCamFormatError: for missing or malformed data files.
    """
    cfg.validate()
    rank, world = dist_info()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _pick_device(cfg.device, local_rank)
    distributed = world > 1
    if distributed and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
    try:
        return _train(cfg, resume, on_epoch_end, rank, world, device)
    finally:
        if distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@dataclass
class _Run:
    """What the epochs of a run share (built by :func:`_setup`)."""

    cfg: TrainConfig
    out: Path
    main: bool
    rank: int
    world: int
    device: torch.device
    model: GAPClassifier
    net: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: PCamBatchSampler
    train_loader: DataLoader[dict[str, torch.Tensor]]
    val_loader: DataLoader[dict[str, torch.Tensor]]
    steps: int
    amp_dtype: torch.dtype | None
    channels_last: bool
    class_weights: torch.Tensor | None = None
    regularizer: CamRegularizer | None = None
    augment: Augment | None = None
    teacher: GAPClassifier | None = None
    writer: Any = None
    start_epoch: int = 0
    best_auc: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _train(
    cfg: TrainConfig,
    resume: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    rank: int,
    world: int,
    device: torch.device,
) -> dict[str, Any]:
    run = _setup(cfg, rank, world, device)
    if resume:
        _resume(run)
    if run.main:
        _atomic_text(run.out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=2))
    epoch = run.start_epoch
    for epoch in range(run.start_epoch, cfg.epochs):
        row = _train_epoch(run, epoch)
        stop = _end_epoch(run, epoch, row)
        if on_epoch_end is not None and run.main:
            on_epoch_end(epoch + 1, row)
        if stop:
            break
    if run.writer is not None:
        run.writer.close()
    return {
        "best_val_auc": run.best_auc,
        "best_epoch": run.best_epoch,
        "epochs_run": epoch + 1,
        "history": run.history,
        "out": str(run.out),
    }


def _setup(cfg: TrainConfig, rank: int, world: int, device: torch.device) -> _Run:
    """Seeds, data, model, optimizer, schedule and the optional loss parts."""
    out = Path(cfg.out)
    main = rank == 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % world:
        raise ValueError(
            f"Expected `batch_size` to be a multiple of the number of processes ({world}), "
            f"but got {cfg.batch_size}."
        )
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    train_set, val_set, train_labels = build_datasets(cfg)
    sampler = PCamBatchSampler(
        train_labels,
        cfg.batch_size,
        balanced=cfg.balance == "sampler",
        drop_last=len(train_labels) >= cfg.batch_size,
        seed=cfg.seed,
        rank=rank,
        world_size=world,
    )
    pin = device.type == "cuda"
    train_loader = _loader(train_set, sampler, cfg.workers, pin)
    val_labels = getattr(val_set, "labels", None)
    if val_labels is None:
        val_labels = torch.zeros(len(val_set))  # type: ignore[arg-type]
    val_sampler = PCamBatchSampler(val_labels, max(cfg.batch_size, 256), shuffle=False)
    val_loader = _loader(val_set, val_sampler, cfg.workers, pin)

    model = _build_from_config(dataclasses.asdict(cfg), cfg.weights).to(device)
    if cfg.init:
        model.load_state_dict(read_checkpoint(cfg.init, map_location=device)["model"])
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = _amp_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    steps = len(sampler)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    total = steps * cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(round(cfg.warmup_epochs * steps), total)
    )
    class_weights = None
    if cfg.balance == "weights":
        counts = torch.bincount(train_labels.long(), minlength=2).clamp_min(1).float()
        class_weights = (counts.sum() / (2 * counts)).to(device)

    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)  # type: ignore[assignment]
    regularizer = None
    if cfg.cam:
        regularizer = CamRegularizer(
            cfg.cam, size=cfg.cam_size, warmup_steps=round(cfg.cam_warmup_epochs * steps)
        )
    teacher = None
    if cfg.teacher:
        teacher = load_checkpoint_model(cfg.teacher, device=str(device))
        teacher.requires_grad_(False)
    writer = None
    if cfg.tensorboard and main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tensorboard"))
    return _Run(
        cfg=cfg,
        out=out,
        main=main,
        rank=rank,
        world=world,
        device=device,
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        sampler=sampler,
        train_loader=train_loader,
        val_loader=val_loader,
        steps=steps,
        amp_dtype=amp_dtype,
        channels_last=channels_last,
        class_weights=class_weights,
        regularizer=regularizer,
        augment=Augment(hed_sigma=cfg.hed_sigma) if cfg.augment else None,
        teacher=teacher,
        writer=writer,
    )


def _resume(run: _Run) -> None:
    """Load ``last.pt`` into a set-up run (model, optimizer, schedule, RNG, history)."""
    ckpt_path = run.out / "last.pt"
    if not ckpt_path.exists():
        raise FileNotFoundError(f"Missing checkpoint {str(ckpt_path)!r} to resume from.")
    ckpt = read_checkpoint(ckpt_path, map_location=run.device)
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
        run.scheduler.load_state_dict(ckpt["scheduler"])
        run.scaler.load_state_dict(ckpt["scaler"])
        run.start_epoch, run.history = ckpt["epoch"], ckpt["history"]
        run.best_auc, run.best_epoch = ckpt["best_auc"], ckpt["best_epoch"]
        run.bad_epochs = ckpt["bad_epochs"]
        rng = ckpt["rng"]
        _set_rng_state(rng[run.rank] if isinstance(rng, list) else rng, run.device)
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise CheckpointError(
            f"Cannot resume from {str(ckpt_path)!r}: it does not fit this run's settings "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            "Hint: resume with the run's own config.json (--config RUN/config.json)."
        ) from None


def _dense_targets(
    run: _Run,
    x: torch.Tensor,
    y: torch.Tensor,
    masks: torch.Tensor | None,
    regions: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Pixel targets of a batch: true masks (``mask_supervision``) or teacher pseudo-masks.

    ``regions`` are the label regions of cropped images (``(B, H, W)``), else the centre.
    """
    if run.cfg.mask_supervision and masks is not None:
        return masks.to(torch.int8)
    if run.teacher is None:
        return None
    teacher = run.teacher

    def tumor_probs(images: torch.Tensor) -> torch.Tensor:
        logits = teacher.tumor_logits(teacher.forward_features(images)[1])
        return torch.sigmoid(CF.upsample(logits, (images.shape[-2], images.shape[-1])))

    group = None if run.cfg.teacher_transforms == "none" else run.cfg.teacher_transforms
    with torch.no_grad():
        probs = CF.transform_mean(tumor_probs, x, transforms=group)
        region = regions if regions is not None else 1.0 / 3.0
        return PP.pseudo_masks(probs, y, margin=run.cfg.pseudo_margin, region=region)


def _moved_region_logits(
    model: GAPClassifier, feats: torch.Tensor, regions: torch.Tensor
) -> torch.Tensor:
    """Two-class logits of a ``"mil"`` head pooled over each crop's own label region."""
    z = model.tumor_logits(feats)
    cells = F.adaptive_max_pool2d(regions[:, None].float(), tuple(z.shape[-2:]))[:, 0] > 0
    s = L.mil_pool(z, region=cells, pooling=model.mil_pooling)
    return torch.stack([-0.5 * s, 0.5 * s], dim=1)


def _train_epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One pass over the training data; returns the epoch's row of ``metrics.csv``."""
    from tqdm.auto import tqdm

    cfg, device, model = run.cfg, run.device, run.model
    run.sampler.set_epoch(epoch)
    gen = torch.Generator().manual_seed(cfg.seed * 7919 + epoch * 104729 + run.rank)
    run.net.train()
    if run.teacher is not None:
        run.teacher.eval()
    sums: dict[str, float] = {}
    seen = 0
    wait = compute = 0.0
    t_epoch = time.perf_counter()
    bar = tqdm(
        total=run.steps,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        disable=not (cfg.progress and run.main),
        leave=False,
        file=sys.stderr,
    )
    t0 = time.perf_counter()
    for step, batch in enumerate(run.train_loader):
        if step >= run.steps:
            break
        t1 = time.perf_counter()
        wait += t1 - t0
        x = to_float_images(batch["image"].to(device, non_blocking=True))
        y = batch["label"].to(device, non_blocking=True)
        masks = batch["mask"].to(device) if "mask" in batch else None
        if run.augment is not None:
            x, masks = run.augment(x, masks, gen)
        regions = None
        if cfg.crop and cfg.crop < x.shape[-1]:
            x, masks, regions = label_crops(x, masks, size=cfg.crop, generator=gen)
        if run.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = _dense_targets(run, x, y, masks, regions)
        with torch.autocast(device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
            logits, feats = run.net(x, return_features=True)
            if regions is not None and model.head == "mil":
                logits = _moved_region_logits(model, feats, regions)
            ce = F.cross_entropy(logits.float(), y, reduction="none")
            cw = run.class_weights
            ce = (ce * cw[y]).mean() if cw is not None else ce.mean()
            loss = ce
            parts = {"ce": ce.detach()}
            if targets is not None:
                z = CF.upsample(model.tumor_logits(feats), (x.shape[-2], x.shape[-1]))
                dense = L.pseudo_mask_loss(z, targets)
                loss = loss + cfg.pseudo_weight * dense
                parts["dense"] = dense.detach()
                parts["ignored_share"] = (targets < 0).float().mean()
            if run.regularizer is not None:
                reg, reg_parts = run.regularizer(
                    model, x, feats, y, step=epoch * run.steps + step, generator=gen
                )
                loss = loss + reg
                parts.update({f"cam_{k}": v.detach() for k, v in reg_parts.items()})
        run.optimizer.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.scheduler.step()
        parts["loss"] = loss.detach()
        n = int(y.shape[0])
        seen += n
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v) * n
        bar.update(1)
        bar.set_postfix(loss=f"{float(parts['loss']):.3f}")
        t0 = time.perf_counter()
        compute += t0 - t1
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train_time = time.perf_counter() - t_epoch
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": run.scheduler.get_last_lr()[0]}
    row.update({f"train_{k}": v / max(seen, 1) for k, v in sums.items()})
    row["train_images_per_s"] = seen * run.world / max(train_time, 1e-9)
    row["train_data_wait_share"] = wait / max(wait + compute, 1e-9)
    row["train_seconds"] = train_time
    return row


def _end_epoch(run: _Run, epoch: int, row: dict[str, Any]) -> bool:
    """Validate, write checkpoints and logs, print the summary line; True to stop."""
    cfg, device = run.cfg, run.device
    stop = False
    if run.main:
        probs, labels = predict_loader(
            run.model,
            run.val_loader,
            device,
            amp_dtype=run.amp_dtype,
            channels_last=run.channels_last,
        )
        auc = float(metrics.roc_auc(probs, labels))
        row["val_auc"] = auc
        row["val_accuracy"] = float(((probs >= 0.5).long() == labels).float().mean())
        row["val_nll"] = float(metrics.nll(probs, labels))
        improved = auc > run.best_auc + 1e-4
        if improved:
            run.best_auc, run.best_epoch, run.bad_epochs = auc, epoch + 1, 0
        else:
            run.bad_epochs += 1
        row["best_val_auc"] = run.best_auc
        run.history.append(row)
        _save_checkpoints(run, epoch, improved)
        if run.writer is not None:
            for k, v in row.items():
                if k != "epoch":
                    run.writer.add_scalar(k, v, epoch + 1)
        if cfg.progress:
            print(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {row.get('train_loss', math.nan):.4f}  "
                f"val AUC {auc:.4f}  acc {row['val_accuracy']:.4f}  NLL {row['val_nll']:.4f}  "
                f"({row['train_seconds']:.0f} s, {row['train_images_per_s']:.0f} img/s)"
                + ("  *" if improved else ""),
                flush=True,
            )
        stop = cfg.patience > 0 and run.bad_epochs >= cfg.patience
    else:
        _gather_rng(device, run.world)
    if run.world > 1:
        flag = torch.tensor([int(stop)], device=device)
        torch.distributed.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def _save_checkpoints(run: _Run, epoch: int, improved: bool) -> None:
    """``last.pt`` every epoch, ``best.pt`` when the validation AUC improved, the logs."""
    ckpt = {
        "epoch": epoch + 1,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": _gather_rng(run.device, run.world),
        "best_auc": run.best_auc,
        "best_epoch": run.best_epoch,
        "bad_epochs": run.bad_epochs,
        "history": run.history,
        "config": dataclasses.asdict(run.cfg),
    }
    atomic_save(ckpt, run.out / "last.pt")
    if improved:
        atomic_save(ckpt, run.out / "best.pt")
    _write_history(run.out, run.history)


def _gather_rng(device: torch.device, world: int) -> Any:
    """Every rank's RNG state (a list under DDP, gathered on all ranks)."""
    state = _rng_state(device)
    if world == 1:
        return state
    states: list[Any] = [None] * world
    torch.distributed.all_gather_object(states, state)
    return states


def train_small_synthetic(
    folder: str | os.PathLike[str],
    *,
    n: tuple[int, int, int] = (2048, 128, 64),
    epochs: int = 6,
    seed: int = 0,
    data_seed: int = 1,
    trainer: Callable[[TrainConfig], Any] = train,
) -> GAPClassifier:
    """Train the small CPU model on synthetic PCam files; return it in eval mode.

    Writes ``n`` (train, valid, test) synthetic patches in the PCam file format under
    ``folder/data`` and trains the ``"small"`` model (width 8, batch 64, learning rate
    3e-3, half an epoch of warm-up) into ``folder/run`` on the CPU, without progress
    bars: the recipe of the documentation's examples and figures (the default, about
    20 s on 2 cores, reaches a validation AUC of about 0.9).

    Args:
        folder: where the data and the run go (created).
        n: patches per split (train, valid, test).
        epochs: training epochs.
        seed: training seed.
        data_seed: seed of the synthetic patches.
        trainer: what runs the configuration: :func:`train` (default), or e.g.
            :func:`camseg_pcam.wsss.train_preset` for the WSSS preset.

    Returns:
        The best checkpoint's model (:func:`load_checkpoint_model`), in eval mode.

    Raises:
        ValueError: if a count is not a positive int or ``epochs`` is not >= 1.
        TypeError: if ``trainer`` is not callable.

    Example:
        >>> import tempfile
        >>> model = train_small_synthetic(tempfile.mkdtemp(), n=(64, 16, 16), epochs=1)
        >>> model(torch.zeros(2, 3, 96, 96)).shape, model.training
        (torch.Size([2, 2]), False)
    """
    from camseg_pcam.synthetic_io import write_pcam

    check_positive_int(epochs, "epochs")
    if not callable(trainer):
        raise TypeError(
            f"Expected `trainer` to be a callable taking a TrainConfig, but got "
            f"{describe(trainer)}."
        )
    base = Path(folder)
    write_pcam(base / "data", n=n, seed=data_seed)
    cfg = TrainConfig(
        data=str(base / "data"), out=str(base / "run"), model="small", width=8,
        epochs=epochs, batch_size=64, lr=3e-3,
        warmup_epochs=0.5, patience=0, seed=seed, device="cpu", progress=False,
    )  # fmt: skip
    trainer(cfg)
    return load_checkpoint_model(base / "run" / "best.pt").eval()
