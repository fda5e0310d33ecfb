"""The ``camseg-slide`` command: whole slides -> heatmaps, masks, exports, metrics, pN stages.

::

    camseg-slide SLIDE... --run RUN --out DIR [--annotations DIR] [--patients CSV]

For each slide: open it (:func:`camseg.slide.open_slide`: OpenSlide or
tifffile), pick the level at the model's scale (``--mpp``, PCam's 0.97 µm per
pixel by default, or ``--level``), find the tissue on the coarsest level,
stream tissue tiles through the run's model and :class:`camseg.LinearCAM`
(:func:`camseg.slide.sliding_window`), threshold the stitched, probability-gated
CAM into a tumour mask, measure its regions and classify the lymph node
(CAMELYON17: negative / ITC / micro / macro). Written per slide into ``DIR``:

- ``<slide>.geojson``: tumour regions as polygons in level-0 pixels, with area and
  probability measurements (QuPath: *File > Import objects from file*);
- ``<slide>_heatmap.tif``: the heatmap as a pyramidal TIFF (an ASAP overlay);
- ``<slide>_maps.pt``: the stitched :class:`camseg.slide.SlideMaps`;
- ``<slide>.json``: the slide's numbers.

With ``--annotations DIR`` (``<slide>.xml`` in ASAP format as CAMELYON ships
them, or ``<slide>.geojson``/``.json`` from QuPath; a slide without a file is
tumour-free, the CAMELYON convention) each slide also gets IoU and Dice of its
mask, AUC and the per-slide Youden threshold of its heatmap
(:func:`camseg.slide.slide_metrics`), and its true node class. With
``--patients CSV`` the nodes are combined into pN stages per patient
(:func:`camseg.slide.patient_stages`) and, where the table holds the true
stages, scored with CAMELYON17's quadratic weighted kappa
(:func:`camseg.slide.stage_kappa`). Two table layouts are read: columns
``slide,patient[,stage]``, or CAMELYON17's ``patient,stage`` with rows
``patient_004.zip,pN1`` (a patient's stage) and ``patient_004_node_0.tif,macro``
(its nodes). Over all slides: ``slides.csv``, ``patients.csv`` and
``summary.json``.

Launched with ``torchrun --nproc-per-node K`` the slides are shared out over the
processes (:func:`camseg.slide.run_sharded`, gloo on CPU, NCCL with
``--device cuda``); rank 0 writes the summary. Errors are one line on stderr
(exit status 2 for bad input, 1 otherwise); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["main", "read_patient_table", "run_slides"]

PROG = "camseg-slide"


class UsageError(ValueError):
    """Bad command-line input (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _threshold(text: str) -> str | float:
    if text == "otsu":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'otsu' or a number in [0, 1], got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a threshold in [0, 1], got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Whole-slide tumour heatmaps, masks, QuPath/ASAP exports, per-slide "
        "metrics and pN stages with a camseg-pcam run's model.",
    )
    p.add_argument("slides", nargs="+", metavar="SLIDE", help="slide files (.tif, .svs, ...)")
    p.add_argument("--run", required=True, help="run folder of `camseg-pcam train`")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint inside --run")
    p.add_argument("--annotations", help="folder of <slide>.xml / .geojson ground truth")
    p.add_argument("--patients", help="CSV of slide -> patient (and true stages)")
    p.add_argument("--tile", type=_positive_int, default=96, help="tile side in pixels")
    p.add_argument("--stride", type=_positive_int, help="tile step (default: tile / 2)")
    p.add_argument(
        "--mpp",
        type=_positive_float,
        default=0.97,
        help="microns per pixel the model was trained at (PCam: 0.97); picks the level",
    )
    p.add_argument("--level", type=int, help="pyramid level to read (overrides --mpp)")
    p.add_argument(
        "--slide-mpp",
        type=_positive_float,
        help="microns per level-0 pixel, for slides whose files do not say",
    )
    p.add_argument(
        "--output-downsample",
        type=_positive_int,
        default=4,
        help="level pixels per heatmap pixel (divides tile and stride)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="mask threshold on the gated CAM: a number or 'otsu'",
    )
    p.add_argument(
        "--min-size", type=int, default=0, help="smallest tumour region kept (heatmap pixels)"
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


# --------------------------------------------------------------------------- patients


def _stem(name: str) -> str:
    base = os.path.basename(name.strip())
    for ext in (".ome.tiff", ".ome.tif"):
        if base.lower().endswith(ext):
            return base[: -len(ext)]
    return os.path.splitext(base)[0]


def read_patient_table(path: str | os.PathLike[str]) -> tuple[dict[str, str], dict[str, str]]:
    r"""Read a patient table: which slide belongs to which patient, and true pN stages.

    Two layouts: columns ``slide,patient`` with an optional ``stage`` (the
    patient's true pN stage, the same on each of its rows), or CAMELYON17's
    ``patient,stage`` whose ``.zip`` rows give a patient's stage and whose
    ``<patient>_node_<k>.tif`` rows list its nodes.

    Args:
        path: the CSV file.

    Returns:
        ``(slide stem -> patient, patient -> true stage)``; the second is empty when
        the table has no stages.

    Raises:
        UsageError: if the file is missing, lacks the columns, or contradicts itself.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "stages.csv")
        >>> from pathlib import Path
        >>> _ = Path(path).write_text(
        ...     "patient,stage\npatient_004.zip,pN1\npatient_004_node_0.tif,macro\n")
        >>> read_patient_table(path)
        ({'patient_004_node_0': 'patient_004'}, {'patient_004': 'pN1'})
    """
    from camseg.slide import PN_STAGES

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no such patient table: {str(p)!r}")
    try:
        rows = list(csv.DictReader(io.StringIO(p.read_text(encoding="utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as err:
        raise UsageError(f"cannot read patient table {str(p)!r}: {err}") from None
    cols = {c.strip().lower() for c in (rows[0].keys() if rows else []) if c}
    norm = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in rows]
    slides: dict[str, str] = {}
    stages: dict[str, str] = {}

    def set_stage(patient: str, stage: str, line: int) -> None:
        if stage not in PN_STAGES:
            raise UsageError(
                f"{str(p)!r} line {line}: expected a stage in {', '.join(PN_STAGES)}, got {stage!r}"
            )
        if stages.setdefault(patient, stage) != stage:
            raise UsageError(
                f"{str(p)!r} line {line}: patient {patient!r} has two stages, "
                f"{stages[patient]!r} and {stage!r}"
            )

    if {"slide", "patient"} <= cols:
        for i, r in enumerate(norm, start=2):
            if not r["slide"] or not r["patient"]:
                raise UsageError(f"{str(p)!r} line {i}: empty slide or patient")
            slides[_stem(r["slide"])] = r["patient"]
            if r.get("stage"):
                set_stage(r["patient"], r["stage"], i)
    elif {"patient", "stage"} <= cols:
        for i, r in enumerate(norm, start=2):
            name = r["patient"]
            if name.lower().endswith(".zip"):
                set_stage(_stem(name), r["stage"], i)
            elif "_node_" in name:
                slides[_stem(name)] = _stem(name).rsplit("_node_", 1)[0]
            else:
                raise UsageError(
                    f"{str(p)!r} line {i}: expected a patient_XXX.zip or "
                    f"patient_XXX_node_K.tif entry, got {name!r}"
                )
    else:
        raise UsageError(
            f"expected the patient table {str(p)!r} to have columns slide,patient[,stage] or "
            f"CAMELYON17's patient,stage, but it has {sorted(cols) or 'none'}"
        )
    return slides, stages


# --------------------------------------------------------------------------- one slide


def _find_annotation(folder: Path, stem: str) -> Path | None:
    for ext in (".xml", ".geojson", ".json"):
        cand = folder / f"{stem}{ext}"
        if cand.is_file():
            return cand
    return None


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _f(t: Any) -> float:
    return float(t)


def _process_slide(path: str, ns: argparse.Namespace, model: Any, device: str) -> dict[str, Any]:
    import torch

    import camseg
    from camseg import metrics
    from camseg.slide import (
        annotation_mask,
        atomic_save,
        node_class,
        open_slide,
        read_annotations,
        select_level,
        slide_mask,
        slide_metrics,
        slide_tissue_mask,
        sliding_window,
        tumor_regions,
        write_geojson,
        write_tiff_overlay,
    )

    out = Path(ns.out)
    stem = _stem(path)
    stride = ns.stride or max(1, ns.tile // 2)
    d = ns.output_downsample
    if ns.tile % d or stride % d:
        raise UsageError(
            f"--output-downsample {d} must divide --tile {ns.tile} and --stride {stride}"
        )
    with open_slide(path, mpp=ns.slide_mpp) as reader:
        if ns.level is not None:
            if not 0 <= ns.level < reader.level_count:
                raise UsageError(
                    f"--level {ns.level} does not exist in {path!r} ({reader.level_count} level(s))"
                )
            level = ns.level
        elif reader.mpp is None:
            if reader.level_count > 1:
                raise UsageError(
                    f"{path!r} does not say its microns per pixel, so --mpp cannot pick a level; "
                    "pass --level or --slide-mpp"
                )
            level = 0
        else:
            try:
                level = select_level(reader, ns.mpp, tolerance=0.25)
            except ValueError as err:
                raise UsageError(f"{path!r}: {err} Hint: pass --level.") from None
        tissue = slide_tissue_mask(reader)
        with torch.inference_mode(), camseg.LinearCAM(model, "features", head="fc") as cam:
            maps = sliding_window(
                reader,
                cam,
                tile=ns.tile,
                stride=stride,
                level=level,
                tissue=tissue,
                batch_size=ns.batch_size,
                output_downsample=d,
                device=device,
                progress=not ns.no_progress,
            )
        level0 = reader.dimensions(0)
        slide_mpp = reader.mpp
    maps = maps._replace(
        prob=maps.prob.cpu(),
        cam=maps.cam.cpu(),
        weight=maps.weight.cpu(),
        tile_probs=maps.tile_probs.cpu(),
    )
    mask = slide_mask(maps, threshold=ns.threshold, min_size=ns.min_size)
    covered = maps.weight > 0
    row: dict[str, Any] = {
        "slide": stem,
        "path": str(path),
        "level": maps.level,
        "downsample": maps.downsample,
        "mpp": slide_mpp,
        "tiles": len(maps.coords),
        "max_tile_probability": _f(maps.tile_probs.max()) if len(maps.tile_probs) else 0.0,
        "tumour_pixels": int(mask.sum()),
    }
    if maps.mpp is not None:
        regions = tumor_regions(mask, mpp=maps.mpp)
        largest = _f(regions.diameters_mm.max()) if len(regions.diameters_mm) else 0.0
        row.update(
            tumour_area_mm2=_f(regions.areas_mm2.sum()),
            largest_diameter_mm=largest,
            node_class=node_class(largest),
        )
    else:
        row.update(tumour_area_mm2=None, largest_diameter_mm=None, node_class=None)
    if ns.annotations:
        ann_path = _find_annotation(Path(ns.annotations), stem)
        row["annotation"] = None if ann_path is None else str(ann_path)
        h_o, w_o = maps.cam.shape
        if ann_path is None:
            truth = torch.zeros(h_o, w_o, dtype=torch.bool)
        else:
            anns = read_annotations(ann_path, slide_size=level0)
            truth = annotation_mask(anns, size=(w_o, h_o), downsample=maps.downsample)
        row["iou"] = _f(metrics.iou(mask[None], truth[None], average="none")[0])
        row["dice"] = _f(metrics.dice(mask[None], truth[None], average="none")[0])
        n_pos = int((truth & covered).sum())
        if 0 < n_pos < int(covered.sum()):
            m = slide_metrics(maps.cam, truth, valid=covered)
            row.update(
                auc=_f(m.auc),
                youden_threshold=_f(m.threshold),
                sensitivity=_f(m.sensitivity),
                specificity=_f(m.specificity),
                youden_iou=_f(m.iou),
            )
        else:  # the per-slide ROC needs tumour and non-tumour among the covered pixels
            row.update(
                auc=None, youden_threshold=None, sensitivity=None, specificity=None, youden_iou=None
            )
        if maps.mpp is not None:
            true_regions = tumor_regions(truth, mpp=maps.mpp)
            true_d = _f(true_regions.diameters_mm.max()) if len(true_regions.diameters_mm) else 0.0
            row["true_node_class"] = node_class(true_d)
    heat = maps.cam.clamp(0.0, 1.0)
    row["geojson"] = str(
        write_geojson(
            out / f"{stem}.geojson",
            mask,
            heatmap=heat,
            downsample=maps.downsample,
            mpp=maps.mpp,
        )
    )
    row["overlay"] = str(write_tiff_overlay(out / f"{stem}_heatmap.tif", heat, mpp=maps.mpp))
    row["maps"] = str(atomic_save(maps, out / f"{stem}_maps.pt"))
    _write_json(out / f"{stem}.json", row)
    return row


# --------------------------------------------------------------------------- all slides


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _summarise(ns: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    from camseg.slide import patient_stages, stage_kappa

    out = Path(ns.out)
    _write_csv(out / "slides.csv", rows)
    summary: dict[str, Any] = {"slides": len(rows)}
    scored = [r for r in rows if r.get("iou") is not None]
    if scored:
        summary["mean_iou"] = sum(r["iou"] for r in scored) / len(scored)
        summary["mean_dice"] = sum(r["dice"] for r in scored) / len(scored)
        aucs = [r["auc"] for r in scored if r.get("auc") is not None]
        summary["mean_auc"] = sum(aucs) / len(aucs) if aucs else None
        pairs = [r for r in scored if r.get("true_node_class") and r.get("node_class")]
        if pairs:
            summary["node_accuracy"] = sum(
                r["node_class"] == r["true_node_class"] for r in pairs
            ) / len(pairs)
    if ns.patients:
        slide_patient, true_stages = read_patient_table(ns.patients)
        nodes, patients = [], []
        for r in rows:
            if r["slide"] not in slide_patient:
                raise UsageError(
                    f"slide {r['slide']!r} is not in the patient table {ns.patients!r}"
                )
            if r.get("node_class") is None:
                raise UsageError(
                    f"slide {r['slide']!r} has no node class (its microns per pixel are unknown); "
                    "pass --slide-mpp"
                )
            nodes.append(r["node_class"])
            patients.append(slide_patient[r["slide"]])
        stages = patient_stages(nodes, patients)
        prows = [
            {
                "patient": pat,
                "stage": st,
                "true_stage": true_stages.get(pat, ""),
                "nodes": patients.count(pat),
            }
            for pat, st in stages.items()
        ]
        _write_csv(out / "patients.csv", prows)
        summary["patients"] = len(prows)
        both = [r for r in prows if r["true_stage"]]
        if both:
            summary["kappa"] = float(
                stage_kappa([r["true_stage"] for r in both], [r["stage"] for r in both])
            )
            summary["kappa_patients"] = len(both)
    _write_json(out / "summary.json", summary)
    return summary


def run_slides(ns: argparse.Namespace) -> dict[str, Any] | None:
    """Run the command on parsed arguments; the summary on rank 0, ``None`` elsewhere.

    Args:
        ns: the parsed arguments of ``camseg-slide``.

    Returns:
        The summary (also in ``summary.json``) on rank 0; ``None`` on other ranks.

    Raises:
        UsageError: for bad input (missing files, a level that does not exist ...).
    """
    import torch
    import torch.distributed as dist

    from camseg.slide import dist_info, run_sharded, shard_indices
    from camseg_pcam.train import load_checkpoint_model

    for s in ns.slides:
        if not os.path.isfile(s) and not os.path.isdir(s):
            raise UsageError(f"no such slide file: {s!r}")
    stems = [_stem(s) for s in ns.slides]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise UsageError(f"two slides share the name {dupes[0]!r}; their outputs would collide")
    if ns.annotations and not os.path.isdir(ns.annotations):
        raise UsageError(f"--annotations {ns.annotations!r} is not a folder")
    if ns.patients and not os.path.isfile(ns.patients):
        raise UsageError(f"no such patient table: {ns.patients!r}")
    if ns.min_size < 0:
        raise UsageError(f"--min-size must be >= 0, got {ns.min_size}")
    ckpt = Path(ns.run) / ns.checkpoint
    if not ckpt.is_file():
        raise UsageError(f"no checkpoint {str(ckpt)!r}; train first (camseg-pcam train)")

    started = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (
        dist.is_available() and dist.is_initialized()
    ):
        dist.init_process_group("nccl" if ns.device.startswith("cuda") else "gloo")
        started = True
    try:
        rank, world = dist_info()
        device = ns.device
        if device == "cuda" and world > 1:
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % torch.cuda.device_count()}"
        try:
            torch.device(device)
        except RuntimeError:
            raise UsageError(
                f"--device {ns.device!r} is not a device (cpu, cuda, cuda:1...)"
            ) from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"--device {ns.device!r}, but CUDA is not available here")
        Path(ns.out).mkdir(parents=True, exist_ok=True)
        model = load_checkpoint_model(ckpt, device=device)
        from tqdm.auto import tqdm

        mine = shard_indices(len(ns.slides), rank=rank, world_size=world)
        bar = tqdm(total=len(mine), desc="slides", unit="slide", disable=ns.no_progress)

        def one(path: str) -> dict[str, Any]:
            row = _process_slide(path, ns, model, device)
            bar.update(1)
            return row

        try:
            merged = run_sharded(ns.slides, one, Path(ns.out) / "shards", keys=stems)
        finally:
            bar.close()
        if merged is None:
            return None
        return _summarise(ns, [merged[s] for s in stems])
    finally:
        if started:
            dist.destroy_process_group()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``camseg-slide``.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 2 for bad input, 1 for other failures.
    """
    ns = _build_parser().parse_args(argv)
    try:
        summary = run_slides(ns)
    except Exception as err:
        if ns.debug:
            raise
        usage = isinstance(err, (UsageError, ValueError, TypeError, OSError, ImportError))
        text = " ".join(str(err).split()) or type(err).__name__
        hint = "" if usage else " (rerun with --debug for the traceback)"
        print(f"{PROG}: error: {text}{hint}", file=sys.stderr)
        return 2 if usage else 1
    if summary is not None:
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
        print(f"{shown}; results in {ns.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
