"""The figure and numbers of docs/slide.rst: ``examples/slide_demo.py`` end to end.

Run by ``docs/conf.py`` at every docs build (about 10 s on 2 CPU cores), so the
figure and the numbers beside it are what the current code gives; by hand:
``python docs/_scripts/fig_slide.py OUT_DIR``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _inc import write_inc

ROOT = Path(__file__).resolve().parents[2]


def main(out: Path) -> list[Path]:
    """Run the demo, draw its figure into ``out``; return the files written."""
    demo = runpy.run_path(str(ROOT / "examples" / "slide_demo.py"), run_name="slide_demo")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        result = demo["run"]()
    finally:
        torch.set_num_threads(threads)
    png = out / "slide_demo.png"
    tmp = out / ".slide_demo.tmp.png"
    demo["save_figure"](result, str(tmp))
    tmp.replace(png)
    s = result["summary"]
    y = s["per_slide_at_youden"]
    slide = result["slide"]
    share = float(slide.tumor.sum()) / max(1.0, float(slide.tissue.sum()))
    text = (
        f"On this build: {s['tiles_run']} tissue tiles, tumour {share:.1%} of the tissue; "
        f"pixel AUC of the stitched map {y['auc']:.3f}, and at the slide's Youden threshold "
        f"({y['threshold']:.2f}) "
        f"sensitivity {y['sensitivity']:.3f}, specificity {y['specificity']:.3f} and IoU "
        f"{y['iou']:.3f}; the Otsu mask's IoU {s['otsu_mask_iou']:.3f}. Largest tumour "
        f"{s['largest_tumour_mm']['true']:.2f} mm (true) against "
        f"{s['largest_tumour_mm']['predicted']:.2f} mm (predicted): node class "
        f"``{s['node_class']['true']}`` against ``{s['node_class']['predicted']}``.\n"
    )
    return [png, write_inc(out / "slide_demo.inc", text)]


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
