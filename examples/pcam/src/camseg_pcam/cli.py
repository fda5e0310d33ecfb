"""The ``camseg-pcam`` command line.

Sub-commands::

    camseg-pcam make-synthetic OUT --n 2048 512 512      # PCam-format synthetic files
    camseg-pcam train --data DIR --out RUN [--config run.toml] [--cam suppression=1 ...]
    camseg-pcam evaluate --run RUN --data DIR --out RUN/eval
    camseg-pcam predict IMAGE... --run RUN --out RUN/predict
    camseg-pcam demo --out runs/demo                      # plain vs --preset wsss, CPU

``train`` takes every :class:`~camseg_pcam.train.TrainConfig` field as a flag
(``--batch-size``, ``--amp``, ``--no-augment`` ...); settings come from the
defaults, then the TOML file of ``--config``, then the flags. Launch it with
``torchrun --nproc-per-node K`` for data-parallel training (same flags).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camseg_pcam.train import TrainConfig, load_config

__all__ = ["DEMO_CAM", "demo", "main", "parse_cam"]

#: CAM-regularisation terms of the regulariser study: total variation of the
#: tumour-probability maps, the mix chosen on a validation split of ``camseg.synthetic``
#: in ``benchmarks/wsss_synthetic.py``. It does not carry over to a second generator
#: (``benchmarks/results/wsss_preset.md``), so the demo runs it only on request
#: (``camseg-pcam demo --cam smoothness=1``); the demo's method is ``--preset wsss``.
DEMO_CAM: dict[str, float] = {"smoothness": 1.0}


def parse_cam(items: Sequence[str]) -> dict[str, float]:
    """Parse ``NAME=WEIGHT`` items of ``--cam``.

    Args:
        items: e.g. ``["suppression=1", "size=0.1"]``.

    Returns:
        ``{name: weight}``.

    Raises:
        ValueError: for an item without ``=`` or with a non-numeric weight.

    Example:
        >>> parse_cam(["suppression=1", "size=0.1"])
        {'suppression': 1.0, 'size': 0.1}
    """
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(
                f"Expected `--cam` items as NAME=WEIGHT (e.g. suppression=1.0), but got {item!r}."
            ) from None
    return out


_ROLE = re.compile(r":[\w:]+:`~?([^`<]*?)(?:\s*<([^>]*)>)?`")


def _plain(text: str) -> str:
    """Docstring RST to plain text for ``--help``: roles, literals and ``%`` (argparse)."""
    text = _ROLE.sub(lambda m: (m.group(1) or m.group(2) or "").split(".")[-1], text)
    text = text.replace("``", "").replace("`", "")
    return text.replace("%", "%%")


def _field_help() -> dict[str, str]:
    doc = TrainConfig.__doc__ or ""
    helps: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        m = re.match(r"^ {8}(\w+): (.*)$", line)
        if m:
            current = m.group(1)
            helps[current] = m.group(2)
        elif current and line.startswith(" " * 12):
            helps[current] += " " + line.strip()
    return {name: _plain(h) for name, h in helps.items()}


def _field_choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of the TrainConfig fields that take one of a set."""
    import typing

    from camseg_pcam import train as train_module
    from camseg_pcam.models import MODELS

    hints = typing.get_type_hints(TrainConfig, vars(train_module))
    out: dict[str, tuple[str, ...]] = {"model": tuple(MODELS)}
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Literal:
            out[name] = tuple(str(v) for v in typing.get_args(hint))
    return out


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` where a default means something (not for None/False flags)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "(default" in text:
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (and exit 2, as argparse's)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    helps = _field_help()
    choices = _field_choices()
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        h = helps.get(f.name, "")
        if f.name == "preset":  # set by the --preset option below
            continue
        # defaults stay SUPPRESS so --config can supply them; the help shows TrainConfig's
        value = getattr(defaults, f.name)
        shown = "none" if value in ({}, None) else value
        h = f"{h} (default: {shown})"
        if f.name == "cam":
            p.add_argument(
                "--cam", nargs="+", metavar="NAME=WEIGHT", default=argparse.SUPPRESS, help=h
            )
        elif f.type in ("bool", "bool | None"):
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=h
            )
        else:
            kind: Any = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(
                flag, type=kind, choices=choices.get(f.name), default=argparse.SUPPRESS, help=h
            )
    p.add_argument(
        "--config",
        help="a TOML file with TrainConfig fields and a [cam] table, or a run's config.json",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument(
        "--preset",
        choices=["wsss"],
        default=None,
        help="wsss: weakly-supervised segmentation (MIL on a dense head, then two rounds of "
        "pseudo-mask self-training; it sets the head, the dense backbone and 48 px crops "
        "itself); writes OUT/stage1, OUT/stage2 and the final model in OUT",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="camseg-pcam",
        description="PatchCamelyon with camseg: train, regularise CAMs, evaluate, report.",
        formatter_class=_HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_HelpFormatter)

    p = command("make-synthetic", "Write synthetic patches in the PCam file format.")
    p.add_argument("out", help="output folder")
    p.add_argument(
        "--n",
        type=int,
        nargs="+",
        default=[2048, 512, 512],
        help="patches per split: one number or TRAIN VALID TEST",
    )
    p.add_argument("--seed", type=int, default=0, help="the random seed")
    p.add_argument(
        "--chunk-rows", type=int, default=32, help="HDF5 chunk length along N (0: contiguous)"
    )
    p.add_argument("--gzip", action="store_true", help="write .h5.gz like the official download")
    p.add_argument(
        "--kaggle",
        action="store_true",
        help="write the Kaggle layout (train_labels.csv + train/*.tif) instead",
    )

    _add_train_flags(command("train", "Train a classifier (flags override --config)."))

    p = command("evaluate", "Evaluate a run on a split and write the report.")
    p.add_argument("--run", required=True, help="the run folder")
    p.add_argument("--data", required=True, help="the PCam data folder")
    p.add_argument("--out", help="report folder (default: RUN/eval)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file inside the run")
    p.add_argument(
        "--split", default="test", choices=["test", "valid"], help="the split to evaluate"
    )
    p.add_argument("--batch-size", type=int, default=128, help="patches per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (auto: cuda if present)")
    p.add_argument(
        "--faithfulness", type=int, default=32, help="positives for the faithfulness metrics"
    )
    p.add_argument("--no-figures", action="store_true", help="skip the report's figures")

    p = command("predict", "Write the tumor probability and a CAM overlay per image.")
    p.add_argument("images", nargs="+", help="PNG/JPEG/TIFF files")
    p.add_argument("--run", required=True, help="the run folder")
    p.add_argument("--out", help="output folder (default: RUN/predict)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint file inside the run")
    p.add_argument("--device", default="cpu", help="cpu or cuda")

    p = command("demo", "Synthetic data, plain training vs. the WSSS preset, on the CPU.")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument(
        "--n",
        type=int,
        nargs=3,
        default=[2048, 512, 512],
        metavar=("TRAIN", "VAL", "TEST"),
        help="synthetic patches per split",
    )
    p.add_argument("--epochs", type=int, default=6, help="epochs per run")
    p.add_argument("--width", type=int, default=8, help="the small CNN's first-stage width")
    p.add_argument("--seed", type=int, default=0, help="the random seed")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--cam",
        nargs="*",
        default=None,
        metavar="NAME=WEIGHT",
        help="also train a CAM-regularised run with these terms (e.g. smoothness=1)",
    )
    return parser


def _train_config(ns: argparse.Namespace) -> TrainConfig:
    settings: dict[str, Any] = {}
    if ns.config:
        settings.update(load_config(ns.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in vars(ns).items():
        if key in names:
            settings[key] = parse_cam(value) if key == "cam" else value
    return TrainConfig(**settings)


def demo(
    out: str | os.PathLike[str],
    *,
    n: Sequence[int] = (2048, 512, 512),
    epochs: int = 6,
    width: int = 8,
    seed: int = 0,
    device: str = "cpu",
    cam: dict[str, float] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Synthetic data, a plain run and the weakly-supervised preset, both evaluated.

    Writes ``OUT/data`` (PCam-format files, reused when present), ``OUT/baseline``
    (plain training on labels) and ``OUT/wsss`` (``train --preset wsss``, see
    :mod:`camseg_pcam.wsss`), each with an ``eval/`` report, and
    ``OUT/summary.md`` / ``OUT/summary.json``, and prints the comparison. Masks are
    scored by each run's recommended recipe on the test split's true masks.

    Args:
        out: the output folder.
        n: patches per split (train, valid, test).
        epochs: epochs per run (the preset's stages take their share of them).
        width: the small CNN's width.
        seed: the seed of data and training.
        device: where to train.
        cam: CAM-regularisation terms of an extra run ``OUT/cam_regularised`` (e.g.
            :data:`DEMO_CAM`); ``None`` runs none.
        progress: show progress bars.

    Returns:
        ``{run_name: metrics}``.

    Raises:
        ValueError: for ``n`` that is not three positive counts.
    """
    from camseg_pcam.data import PCamFormatError, find_pcam_files
    from camseg_pcam.evaluate import evaluate
    from camseg_pcam.synthetic_io import write_pcam
    from camseg_pcam.train import train
    from camseg_pcam.wsss import train_preset

    counts = tuple(n)
    if len(counts) != 3 or not all(isinstance(c, int) and c > 0 for c in counts):
        raise ValueError(f"Expected `n` to be three positive patch counts, but got {n!r}.")
    base = Path(out)
    data = base / "data"
    t0 = time.perf_counter()
    try:
        find_pcam_files(data, "test")
        print(f"[demo] reusing synthetic data in {data}", flush=True)
    except PCamFormatError:
        print(f"[demo] writing {sum(counts)} synthetic PCam patches to {data}", flush=True)
        write_pcam(data, n=counts, seed=seed)
    common = TrainConfig(
        data=str(data), out=str(base / "baseline"), model="small", width=width,
        epochs=epochs, batch_size=64, lr=3e-3, warmup_epochs=0.5, patience=0, seed=seed,
        device=device, progress=progress,
    )  # fmt: skip
    runs: dict[str, TrainConfig] = {
        "baseline": common,
        "wsss": dataclasses.replace(common, out=str(base / "wsss")),
    }
    if cam:
        runs["cam_regularised"] = dataclasses.replace(
            common, out=str(base / "cam_regularised"), cam=dict(cam), cam_warmup_epochs=1.0
        )
    results: dict[str, Any] = {}
    for name, cfg in runs.items():
        print(f"[demo] training {name}", flush=True)
        if name == "wsss":
            train_preset(cfg)
        else:
            train(cfg)
        results[name] = evaluate(cfg.out, data, Path(cfg.out) / "eval", device=device)
    elapsed = time.perf_counter() - t0
    table = _summary_table(results)
    print("\n" + table, flush=True)
    print(f"[demo] done in {elapsed:.0f} s; reports in {base}/*/eval/report.md", flush=True)
    _write(base / "summary.md", f"# camseg-pcam demo\n\n{table}\nTotal time: {elapsed:.0f} s\n")
    _write(base / "summary.json", json.dumps({"elapsed_s": elapsed, **results}, indent=2))
    return results


def _summary_table(results: dict[str, Any]) -> str:
    rows = [
        "| run | test AUC | accuracy | NLL | mask recipe | mask IoU | mask Dice "
        "| IoU (positives) | centre energy (pos) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for name, r in results.items():
        c, loc = r["classification"], r["localisation"]
        rec = r["segmentation"].get("recommended", {})
        rows.append(
            f"| {name} | {c['auc']:.4f} | {c['accuracy']:.4f} | {c['nll']:.4f} | "
            f"{rec.get('recipe', '-')} | {rec.get('iou', nan):.4f} | {rec.get('dice', nan):.4f} "
            f"| {rec.get('iou_pos', nan):.4f} | {loc['label_region_energy_positives']:.4f} |"
        )
    return "\n".join(rows) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.

    Example:
        >>> import tempfile
        >>> main(["make-synthetic", tempfile.mkdtemp(), "--n", "4", "2", "2"])
        wrote synthetic PCam files to ...
        0
    """
    args = list(sys.argv[1:] if argv is None else argv)
    ns = _build_parser().parse_args(args)
    try:
        return _run(ns)
    except (ValueError, TypeError, OSError, KeyError) as err:
        if getattr(ns, "debug", False) or "--debug" in args:
            raise
        msg = " ".join(str(err).split()) or type(err).__name__
        print(f"camseg-pcam {ns.command}: error: {msg} (--debug for a traceback)", file=sys.stderr)
        return 2


def _run(ns: argparse.Namespace) -> int:
    if ns.command == "make-synthetic":
        if ns.kaggle:
            from camseg_pcam.synthetic_io import write_kaggle

            write_kaggle(ns.out, n=ns.n[0], seed=ns.seed)
        else:
            from camseg_pcam.synthetic_io import write_pcam

            counts = ns.n[0] if len(ns.n) == 1 else tuple(ns.n)
            write_pcam(
                ns.out,
                n=counts,
                seed=ns.seed,
                chunk_rows=ns.chunk_rows or None,
                gzip_wrap=ns.gzip,
            )
        print(f"wrote synthetic PCam files to {ns.out}")
    elif ns.command == "train":
        from camseg_pcam.train import train

        if ns.preset:
            from camseg_pcam.wsss import train_preset

            summary = train_preset(_train_config(ns), preset=ns.preset, resume=ns.resume)
        else:
            summary = train(_train_config(ns), resume=ns.resume)
        if int(os.environ.get("RANK", "0")) == 0:
            print(
                f"best val AUC {summary['best_val_auc']:.4f} at epoch {summary['best_epoch']}; "
                f"checkpoints in {summary['out']}"
            )
    elif ns.command == "evaluate":
        from camseg_pcam.evaluate import evaluate

        out = ns.out or str(Path(ns.run) / "eval")
        r = evaluate(
            ns.run,
            ns.data,
            out,
            checkpoint=ns.checkpoint,
            split=ns.split,
            batch_size=ns.batch_size,
            device=ns.device,
            n_faithfulness=ns.faithfulness,
            figures=not ns.no_figures,
        )
        c = r["classification"]
        print(
            f"{ns.split}: AUC {c['auc']:.4f}  accuracy {c['accuracy']:.4f}  NLL {c['nll']:.4f}; "
            f"report in {out}/report.md"
        )
        rec = r["segmentation"].get("recommended")
        if rec is not None:
            print(
                f"recommended masks ({rec['recipe']}, on the {r['segmentation']['source']}): "
                f"IoU {rec['iou']:.4f}  Dice {rec['dice']:.4f}  IoU (positives) "
                f"{rec.get('iou_pos', float('nan')):.4f}"
            )
        else:
            print(f"segmentation: {r['segmentation']['source']}")
    elif ns.command == "predict":
        from camseg_pcam.predict import predict

        out = ns.out or str(Path(ns.run) / "predict")
        for row in predict(ns.images, ns.run, out, checkpoint=ns.checkpoint, device=ns.device):
            print(f"{row['probability']:.4f}  {row['path']}")
    elif ns.command == "demo":
        cam = parse_cam(ns.cam) if ns.cam else None
        demo(
            ns.out, n=ns.n, epochs=ns.epochs, width=ns.width, seed=ns.seed, device=ns.device,
            cam=cam,
        )  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
