"""Plots of a benchmark-matrix results file (``bench_matrix.py``'s JSON).

Used by ``bench_matrix.py`` (the PNG beside the JSON) and by the docs
(``docs/_scripts/fig_benchmarks.py``), so the figures are drawn from the
results files only. Needs matplotlib.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

FORWARD = "forward (no_grad)"
BOUND = "autograd lower bound"
MAIN_CANDIDATES = (FORWARD, BOUND, "camseg GradCAM", "camseg GradCAMPlusPlus")
STYLE = {
    "torch": dict(color="0.35"),
    "camseg": dict(color="tab:blue"),
    "pytorch-grad-cam": dict(color="tab:red"),
    "torchcam": dict(color="tab:green"),
    "captum": dict(color="tab:purple"),
    "monai": dict(color="tab:orange"),
}


def _ok(row: dict[str, Any]) -> bool:
    return row.get("status") == "ok" and "time_s" in row


def _group_key(cfg: dict[str, Any]) -> tuple[Any, ...]:
    return (
        cfg["model"],
        cfg["side"],
        cfg["depth"],
        cfg["dtype"],
        cfg["device"],
        cfg.get("channels_last", False),
    )


def sweep_series(
    payload: dict[str, Any],
) -> tuple[str, dict[str, list[tuple[int, float, float | None]]]]:
    """The batch sweep with the most batch sizes: candidate -> [(batch, s/image, bytes)]."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for cfg in payload["configs"]:
        if "sweep" in cfg.get("groups", ()):
            groups[_group_key(cfg)].append(cfg)
    if not groups:
        return "", {}
    key, cfgs = max(groups.items(), key=lambda kv: (len(kv[1]), kv[0][0] == "resnet18"))
    series: dict[str, list[tuple[int, float, float | None]]] = defaultdict(list)
    for cfg in sorted(cfgs, key=lambda c: c["batch"]):
        for r in cfg["rows"]:
            if (
                _ok(r)
                and r["k"] == 1
                and (r["impl"] != "camseg" or r["candidate"] in MAIN_CANDIDATES)
            ):
                series[r["candidate"]].append(
                    (cfg["batch"], r["time_s"]["median"] / cfg["batch"], r.get("peak_mem_bytes"))
                )
    title = f"{key[0]} {key[1]}² px, {key[2]} layer, {key[3]}, {key[4]}"
    return title, dict(series)


def _style(name: str, rows_impl: str) -> dict[str, Any]:
    st = dict(STYLE.get(rows_impl, {}))
    st["linestyle"] = "--" if "PlusPlus" in name or name == BOUND else "-"
    st["marker"] = "o"
    return st


def _impl(name: str) -> str:
    for impl in STYLE:
        if impl != "torch" and name.startswith(impl + " "):
            return impl
    return "torch"


def fig_batch(payload: dict[str, Any]) -> Figure | None:
    """Time per image and peak memory against the batch size, per implementation."""
    title, series = sweep_series(payload)
    if not series:
        return None
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for name, pts in series.items():
        st = _style(name, _impl(name))
        bs = [p[0] for p in pts]
        ax_t.plot(bs, [p[1] * 1e3 for p in pts], label=name, **st)
        mem = [(p[0], p[2] / 2**20) for p in pts if p[2] is not None]
        if mem:
            ax_m.plot([m[0] for m in mem], [m[1] for m in mem], label=name, **st)
    for ax, label in ((ax_t, "ms per image (median)"), (ax_m, "peak memory of one call (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    ax_m.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"Cost against batch size: {title}", fontsize=10)
    return fig


def growth_points(payload: dict[str, Any]) -> dict[str, list[tuple[float, float, str]]]:
    """candidate -> [(megapixels per batch, seconds, label)]: ResNet-18, fp32, last layer."""
    out: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    device = payload["configs"][0]["device"] if payload["configs"] else "cpu"
    for cfg in payload["configs"]:
        if (cfg["model"], cfg["depth"], cfg["dtype"], cfg["device"]) != (
            "resnet18",
            "last",
            "fp32",
            device,
        ):
            continue
        mp = cfg["batch"] * cfg["side"] ** 2 / 1e6
        for r in cfg["rows"]:
            if _ok(r) and r["candidate"] in (FORWARD, "camseg GradCAM", "pytorch-grad-cam GradCAM"):
                out[r["candidate"]].append(
                    (mp, r["time_s"]["median"], f"{cfg['side']}² b{cfg['batch']}")
                )
    return {k: sorted(v) for k, v in out.items()}


def fig_growth(payload: dict[str, Any]) -> Figure | None:
    """Time against pixels per batch (image size x batch): linear growth is slope 1."""
    pts = growth_points(payload)
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8), layout="constrained")
    for name, p in pts.items():
        ax.plot([q[0] for q in p], [q[1] for q in p], label=name, **_style(name, _impl(name)))
    ref = pts.get(FORWARD) or next(iter(pts.values()))
    x0, y0 = ref[-1][0], ref[-1][1]
    xs = [min(q[0] for v in pts.values() for q in v), max(q[0] for v in pts.values() for q in v)]
    ax.plot(xs, [y0 * x / x0 for x in xs], color="0.7", linestyle=":", label="linear (slope 1)")
    for q in ref:
        ax.annotate(q[2], (q[0], q[1]), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("megapixels per batch (batch × H × W)")
    ax.set_ylabel("seconds per call (median)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    ax.set_title("ResNet-18: cost growth with image size and batch", fontsize=10)
    return fig


def peers_config(payload: dict[str, Any]) -> dict[str, Any] | None:
    cfgs = [c for c in payload["configs"] if "peers" in c.get("groups", ())]
    return max(cfgs, key=lambda c: c["batch"] * c["side"] ** 2) if cfgs else None


def fig_peers(payload: dict[str, Any]) -> Figure | None:
    """The peers side by side: time and peak memory of Grad-CAM and Grad-CAM++."""
    cfg = peers_config(payload)
    if cfg is None:
        return None
    rows = [
        r
        for r in cfg["rows"]
        if _ok(r) and r["k"] == 1 and r["method"] in ("forward", "GradCAM", "GradCAMPlusPlus")
    ]
    if not rows:
        return None
    names = [r["candidate"] for r in rows]
    colors = [STYLE.get(r["impl"], STYLE["torch"])["color"] for r in rows]
    fig, (ax_t, ax_m) = plt.subplots(
        1, 2, figsize=(10, 0.35 * len(rows) + 1.4), layout="constrained", sharey=True
    )
    y = range(len(rows))
    ax_t.barh(
        y,
        [r["time_s"]["median"] * 1e3 for r in rows],
        color=colors,
        xerr=[
            [(r["time_s"]["median"] - r["time_s"]["q1"]) * 1e3 for r in rows],
            [(r["time_s"]["q3"] - r["time_s"]["median"]) * 1e3 for r in rows],
        ],
    )
    ax_m.barh(y, [r.get("peak_mem_bytes", 0) / 2**20 for r in rows], color=colors)
    ax_t.set_yticks(list(y), names, fontsize=8)
    ax_t.invert_yaxis()
    ax_t.set_xlabel("ms per batch (median, IQR)")
    ax_m.set_xlabel("peak memory of one call (MiB)")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"Peers side by side: {cfg['id']}", fontsize=10)
    return fig


FIGURES = {"batch": fig_batch, "growth": fig_growth, "peers": fig_peers}


def figures(payload: dict[str, Any]) -> dict[str, Figure]:
    out = {}
    for name, fn in FIGURES.items():
        fig = fn(payload)
        if fig is not None:
            out[name] = fig
    return out


def save(fig: Figure, path: Path, *, dpi: int = 100) -> Path:
    """Save atomically (temporary file + ``os.replace``) and close the figure."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_summary_png(payload: dict[str, Any], path: Path) -> Path | None:
    """All the figures of one results file stacked into one PNG."""
    figs = figures(payload)
    if not figs:
        return None
    import numpy as np

    images = []
    for fig in figs.values():
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        plt.close(fig)
        buf.seek(0)
        images.append(plt.imread(buf))
    width = max(im.shape[1] for im in images)
    padded = [
        np.pad(im, ((0, 0), (0, width - im.shape[1]), (0, 0)), constant_values=1.0) for im in images
    ]
    stacked = np.concatenate(padded, axis=0)
    h, w = stacked.shape[:2]
    fig = plt.figure(figsize=(w / 90, h / 90), dpi=90)
    fig.figimage(stacked, 0, 0)
    return save(fig, path, dpi=90)
